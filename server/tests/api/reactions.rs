//! Reactions (api.md §3.6): toggle/replace semantics, reactor lists, removal, validation,
//! permissions, the feature flag and REACTION_* events.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::messages::{create_channel, general, grant_role, post, subscribed};
use crate::support::{Gateway, TestServer};

api_tests!(
    toggle_add_remove_replace,
    reactor_lists_page_by_user_id,
    removing_reactions,
    emoji_and_target_validation,
    permissions_apply_in_the_channel,
    feature_flag_gates_every_route,
    events_reach_subscribers,
);

/// The next frame that is not a HEARTBEAT.
async fn next_event(gateway: &mut Gateway) -> Value {
    loop {
        let frame = gateway.next_frame().await;
        if frame["op"] != "HEARTBEAT" {
            return frame;
        }
    }
}

fn reactions_path(channel: &str, message: &str) -> String {
    format!("/api/v1/channels/{channel}/messages/{message}/reactions")
}

async fn toggle_add_remove_replace(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "react to me").await;
    let id = message["id"].as_str().unwrap();
    let base = reactions_path(&channel, id);
    let message_path = format!("/api/v1/channels/{channel}/messages/{id}");

    let resp = user.put_empty(&format!("{base}/👍")).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    assert_eq!(admin.put_empty(&format!("{base}/👍")).await.status, 204);
    assert_eq!(user.get(&message_path).await.body["reactions"], json!([{"emoji": "👍", "count": 2, "me": true}]));

    // Another emoji replaces the user's reaction; it orders after the older one.
    assert_eq!(user.put_empty(&format!("{base}/%F0%9F%8E%89")).await.status, 204);
    assert_eq!(
        user.get(&message_path).await.body["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": false}, {"emoji": "🎉", "count": 1, "me": true}])
    );
    assert_eq!(
        admin.get(&message_path).await.body["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": true}, {"emoji": "🎉", "count": 1, "me": false}])
    );
    // The same emoji again removes it.
    assert_eq!(user.put_empty(&format!("{base}/🎉")).await.status, 204);
    assert_eq!(user.get(&message_path).await.body["reactions"], json!([{"emoji": "👍", "count": 1, "me": false}]));
    // Listings carry the same summaries; plain text emoji names work too.
    assert_eq!(user.put_empty(&format!("{base}/party%20parrot")).await.status, 204);
    let list = user.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!(
        list.body["messages"][0]["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": false}, {"emoji": "party parrot", "count": 1, "me": true}])
    );
}

async fn reactor_lists_page_by_user_id(server: TestServer) {
    let admin = server.login(1).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "popular").await;
    let base = reactions_path(&channel, message["id"].as_str().unwrap());
    let mut users = vec![admin];
    for seed in 2..=5 {
        users.push(server.login(seed).await);
    }
    let named = users[2].patch("/api/v1/profile", json!({"display_name": "Carol"})).await;
    for user in &users {
        assert_eq!(user.put_empty(&format!("{base}/⭐")).await.status, 204);
    }
    // One user holds another emoji; it does not count for ⭐.
    assert_eq!(users[4].put_empty(&format!("{base}/🔥")).await.status, 204);

    let mut expected: Vec<i64> = users[..4].iter().map(|u| u.user_id.parse().unwrap()).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    let ids = |body: &Value| -> Vec<i64> {
        body["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().parse().unwrap()).collect()
    };

    let page = users[0].get(&format!("{base}/⭐?limit=3")).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!((ids(&page.body), &page.body["total"]), (expected[..3].to_vec(), &json!(4)));
    let page = users[0].get(&format!("{base}/⭐?limit=3&before={}", expected[2])).await;
    assert_eq!((ids(&page.body), &page.body["total"]), (expected[3..].to_vec(), &json!(4)));
    let page = users[0].get(&format!("{base}/⭐")).await;
    assert_eq!(ids(&page.body), expected);
    let page = users[0].get(&format!("{base}/⭐?limit=0")).await;
    assert_eq!(ids(&page.body), expected[..1].to_vec());
    let page = users[0].get(&format!("{base}/🔥")).await;
    assert_eq!(page.body["total"], 1);
    assert_eq!(page.body["users"][0]["id"], users[4].user_id.as_str());
    let page = users[0].get(&format!("{base}/🙈")).await;
    assert_eq!((page.status, &page.body), (200, &json!({"users": [], "total": 0})));

    // Every key is present; display names come along when set.
    let everyone = users[0].get(&format!("{base}/⭐")).await;
    for entry in everyone.body["users"].as_array().unwrap() {
        if named.status == 200 && entry["id"] == users[2].user_id.as_str() {
            assert_eq!(entry["display_name"], "Carol");
        } else {
            assert_eq!(entry["display_name"], Value::Null);
        }
    }

    let resp = users[0].get(&format!("{base}/⭐?limit=many")).await;
    assert_eq!(resp.status, 400);
    let resp = users[0].get(&format!("{base}/⭐?before=abc")).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: before"));
}

async fn removing_reactions(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let other = server.login(3).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "hm").await;
    let id = message["id"].as_str().unwrap();
    let base = reactions_path(&channel, id);
    let message_path = format!("/api/v1/channels/{channel}/messages/{id}");

    assert_eq!(user.put_empty(&format!("{base}/👀")).await.status, 204);
    assert_eq!(other.put_empty(&format!("{base}/👀")).await.status, 204);
    // Removing one's own reaction; again is fine.
    let resp = user.delete(&base).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    assert_eq!(user.delete(&base).await.status, 204);
    assert_eq!(admin.get(&message_path).await.body["reactions"], json!([{"emoji": "👀", "count": 1, "me": false}]));

    // Someone else's needs MANAGE_MESSAGES.
    let resp = user.delete(&format!("{base}/users/{}", other.user_id)).await;
    assert_eq!((resp.status, resp.error()), (403, "missing manage_messages permission"));
    let resp = admin.delete(&format!("{base}/users/{}", other.user_id)).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    assert_eq!(admin.get(&message_path).await.body["reactions"], json!([]));
    assert_eq!(admin.delete(&format!("{base}/users/{}", other.user_id)).await.status, 204);
    assert_eq!(admin.delete(&format!("{base}/users/999999")).await.status, 204);
    let resp = admin.delete(&format!("{base}/users/abc")).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: user_id"));

    // A moderator role works as well.
    grant_role(&admin, &user, "mods", 4, 10).await;
    assert_eq!(other.put_empty(&format!("{base}/👀")).await.status, 204);
    assert_eq!(user.delete(&format!("{base}/users/{}", other.user_id)).await.status, 204);
    assert_eq!(admin.get(&message_path).await.body["reactions"], json!([]));
}

async fn emoji_and_target_validation(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "x").await;
    let id = message["id"].as_str().unwrap();
    let base = reactions_path(&channel, id);

    let long = "a".repeat(65);
    // 16 four-byte characters = 64 bytes is the maximum; one more byte is too many.
    let max = "😀".repeat(16);
    assert_eq!(user.put_empty(&format!("{base}/{max}")).await.status, 204);
    for bad in [long.as_str(), &format!("{max}a"), "%FF", "%C3%28"] {
        let resp = user.put_empty(&format!("{base}/{bad}")).await;
        assert_eq!((resp.status, resp.error()), (400, "invalid emoji"), "{bad}");
        let resp = user.get(&format!("{base}/{bad}")).await;
        assert_eq!((resp.status, resp.error()), (400, "invalid emoji"), "{bad}");
    }

    let resp = user.put_empty(&format!("{}/👍", reactions_path(&channel, "999999"))).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = user.get(&format!("{}/👍", reactions_path(&channel, "999999"))).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = user.delete(&reactions_path(&channel, "999999")).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = admin.delete(&format!("{}/users/{}", reactions_path(&channel, "999999"), user.user_id)).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    // Another channel's message is not found through this channel.
    let other = create_channel(&admin, "other").await;
    let resp = user.put_empty(&format!("{}/👍", reactions_path(&other, id))).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = user.put_empty(&format!("{}/👍", reactions_path("424242", id))).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    let resp = user.put_empty(&format!("{}/👍", reactions_path("abc", id))).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: channel_id"));

    // DM channel ids are not channels here.
    let dm = admin.post("/api/v1/dms", json!({"recipient_pubkey": user.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm_channel = dm.body["channel_id"].as_str().unwrap();
    let sent = admin.post(&format!("/api/v1/dms/{dm_channel}/messages"), json!({"content": "psst"})).await;
    let dm_base = reactions_path(dm_channel, sent.body["id"].as_str().unwrap());
    for resp in [
        user.put_empty(&format!("{dm_base}/👍")).await,
        user.get(&format!("{dm_base}/👍")).await,
        user.delete(&dm_base).await,
        admin.delete(&format!("{dm_base}/users/{}", user.user_id)).await,
    ] {
        assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    }
}

async fn permissions_apply_in_the_channel(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "x").await;
    let base = reactions_path(&channel, message["id"].as_str().unwrap());
    let overrides = format!("/api/v1/channels/{channel}/overrides/everyone");

    // No ADD_REACTIONS in this channel.
    assert_eq!(admin.put(&overrides, json!({"allow": 0, "deny": 1024})).await.status, 200);
    let resp = user.put_empty(&format!("{base}/👍")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing add_reactions permission"));
    assert_eq!(admin.put_empty(&format!("{base}/👍")).await.status, 204);
    assert_eq!(user.get(&format!("{base}/👍")).await.status, 200);

    // No READ_MESSAGES: nothing about reactions.
    assert_eq!(admin.put(&overrides, json!({"allow": 0, "deny": 2})).await.status, 200);
    let resp = user.put_empty(&format!("{base}/👍")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing read_messages permission"));
    let resp = user.get(&format!("{base}/👍")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing read_messages permission"));
}

async fn feature_flag_gates_every_route(server: TestServer) {
    let backend = server.backend;
    drop(server);
    let server = TestServer::start_with(backend, |c| c.features.emoji_reactions = false).await;
    let admin = server.login(1).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "x").await;
    let base = reactions_path(&channel, message["id"].as_str().unwrap());
    let disabled = "emoji reactions are disabled on this server";
    for resp in [
        admin.put_empty(&format!("{base}/👍")).await,
        admin.get(&format!("{base}/👍")).await,
        admin.delete(&base).await,
        admin.delete(&format!("{base}/users/{}", admin.user_id)).await,
    ] {
        assert_eq!((resp.status, resp.error()), (403, disabled));
    }
}

async fn events_reach_subscribers(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let message = post(&admin, &channel, "watch").await;
    let id = message["id"].as_str().unwrap();
    let base = reactions_path(&channel, id);
    let mut gateway = subscribed(&server, &admin, &channel).await;
    let event = |emoji: &str| json!({"channel_id": channel, "message_id": id, "user_id": user.user_id, "emoji": emoji});

    assert_eq!(user.put_empty(&format!("{base}/👍")).await.status, 204);
    let frame = next_event(&mut gateway).await;
    assert_eq!((&frame["op"], &frame["d"]), (&json!("REACTION_ADD"), &event("👍")));

    // Replacing emits REACTION_REMOVE for the old emoji, then REACTION_ADD for the new one.
    assert_eq!(user.put_empty(&format!("{base}/🎉")).await.status, 204);
    let frame = next_event(&mut gateway).await;
    assert_eq!((&frame["op"], &frame["d"]), (&json!("REACTION_REMOVE"), &event("👍")));
    let frame = next_event(&mut gateway).await;
    assert_eq!((&frame["op"], &frame["d"]), (&json!("REACTION_ADD"), &event("🎉")));

    assert_eq!(user.put_empty(&format!("{base}/🎉")).await.status, 204);
    let frame = next_event(&mut gateway).await;
    assert_eq!((&frame["op"], &frame["d"]), (&json!("REACTION_REMOVE"), &event("🎉")));

    assert_eq!(user.put_empty(&format!("{base}/🔥")).await.status, 204);
    gateway.expect_op("REACTION_ADD").await;
    assert_eq!(user.delete(&base).await.status, 204);
    let frame = next_event(&mut gateway).await;
    assert_eq!((&frame["op"], &frame["d"]), (&json!("REACTION_REMOVE"), &event("🔥")));

    // Removing nothing emits nothing.
    assert_eq!(user.delete(&base).await.status, 204);
    gateway.expect_no_op("REACTION_REMOVE", std::time::Duration::from_millis(300)).await;
}
