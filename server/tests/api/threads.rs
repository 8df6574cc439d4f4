//! Threads (api.md §3.7): creation (idempotent, feature flag), replies with counters and events,
//! follow / unfollow / read marks, pagination, permissions and errors.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::support::{Gateway, TestServer, User};

api_tests!(
    threads_are_created_once_per_parent_and_announced,
    replies_count_follow_and_announce,
    following_and_read_marks,
    thread_messages_paginate,
    thread_validation_and_not_found,
    thread_permissions_follow_the_channel,
    thread_creation_requires_the_feature,
    read_only_sessions_cannot_reply,
);

async fn create_thread(user: &User, channel: &str, message: &str) -> Value {
    let r = user.post_empty(&format!("/api/v1/channels/{channel}/messages/{message}/threads")).await;
    assert_eq!(r.status, 200, "create thread: {:?}", r.body);
    r.body
}

async fn reply(user: &User, thread: &str, content: &str) -> Value {
    let r = user.post(&format!("/api/v1/threads/{thread}/messages"), json!({"content": content})).await;
    assert_eq!(r.status, 200, "reply: {:?}", r.body);
    r.body
}

/// Subscribes and waits until the server has processed it (a SUBSCRIBE to an unknown channel
/// answers ERROR, and commands are handled in order).
async fn subscribe(gateway: &mut Gateway, channel: &str) {
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": channel}})).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": "999999999"}})).await;
    let error = gateway.expect_op("ERROR").await;
    assert_eq!(error["d"]["channel_id"], "999999999", "{error}");
}

async fn deny_everyone(admin: &User, channel: &str, deny: i64) {
    let r =
        admin.put(&format!("/api/v1/channels/{channel}/overrides/everyone"), json!({"allow": 0, "deny": deny})).await;
    assert_eq!(r.status, 200, "override: {:?}", r.body);
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn threads_are_created_once_per_parent_and_announced(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let channel = admin.create_channel("threads").await;
    let parent = admin.post_message(&channel, "let us discuss").await;
    let mut gateway = server.gateway(bob.token()).await;
    subscribe(&mut gateway, &channel).await;

    let created = create_thread(&bob, &channel, &id(&parent)).await;
    let thread_id = created["thread_id"].as_str().unwrap().to_owned();
    assert_eq!(created["parent_message_id"], parent["id"]);
    assert_eq!(created["channel_id"], channel.as_str());
    assert_eq!(created["reply_count"], 0);
    assert_eq!(created["follower_count"], 1);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{created}");

    let event = gateway.expect_op("THREAD_CREATE").await;
    assert_eq!(
        event["d"],
        json!({"thread_id": thread_id, "channel_id": channel, "parent_message_id": parent["id"], "creator_id": bob.user_id})
    );

    // Idempotent: the same thread, no second event, the creator stays the first caller.
    let again = create_thread(&admin, &channel, &id(&parent)).await;
    assert_eq!(again["thread_id"], thread_id.as_str());
    assert_eq!(again["created_at"], created["created_at"]);
    gateway.expect_no_op("THREAD_CREATE", Duration::from_millis(500)).await;

    let thread = bob.get(&format!("/api/v1/threads/{thread_id}")).await;
    assert_eq!(thread.status, 200);
    assert_eq!(
        thread.body,
        json!({
            "id": thread_id, "channel_id": channel, "parent_message_id": parent["id"], "creator_id": bob.user_id,
            "created_at": created["created_at"], "last_reply_at": null, "reply_count": 0, "follower_count": 1,
            "is_following": true,
        })
    );
    let for_admin = admin.get(&format!("/api/v1/threads/{thread_id}")).await;
    assert_eq!(for_admin.body["is_following"], false);

    // The parent carries the thread summary.
    let message = admin.get(&format!("/api/v1/channels/{channel}/messages/{}", id(&parent))).await;
    assert_eq!(message.status, 200);
    assert_eq!(
        message.body["thread"],
        json!({"thread_id": thread_id, "reply_count": 0, "last_reply_at": null, "last_reply_author_id": null})
    );
}

async fn replies_count_follow_and_announce(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let channel = admin.create_channel("replies").await;
    let parent = admin.post_message(&channel, "parent").await;
    let thread_id = create_thread(&admin, &channel, &id(&parent)).await["thread_id"].as_str().unwrap().to_owned();
    let mut gateway = server.gateway(admin.token()).await;
    subscribe(&mut gateway, &channel).await;

    let first = reply(&bob, &thread_id, "first reply").await;
    assert_eq!(first["channel_id"], channel.as_str());
    assert_eq!(first["thread_id"], thread_id.as_str());
    assert_eq!(first["author_id"], bob.user_id.as_str());
    assert_eq!(first["content"], "first reply");
    assert_eq!(first["deleted"], false);
    assert_eq!(first["thread"], Value::Null);
    assert_eq!(first["attachments"], json!([]));

    let created = gateway.expect_op("THREAD_MESSAGE_CREATE").await;
    assert_eq!(created["d"]["thread_id"], thread_id.as_str());
    assert_eq!(created["d"]["message"], first);
    let update = gateway.expect_op("THREAD_UPDATE").await;
    assert_eq!(update["d"], json!({"thread_id": thread_id, "reply_count": 1, "last_reply_at": first["created_at"]}));

    let second = reply(&admin, &thread_id, "second reply").await;
    let update = gateway.expect_op("THREAD_UPDATE").await;
    assert_eq!(update["d"]["reply_count"], 2);
    assert_eq!(update["d"]["last_reply_at"], second["created_at"]);
    // A reply is not a channel message.
    gateway.expect_no_op("MESSAGE_CREATE", Duration::from_millis(500)).await;

    // Counters: replies, followers (the replying author follows), last reply.
    let thread = bob.get(&format!("/api/v1/threads/{thread_id}")).await.body;
    assert_eq!(thread["reply_count"], 2);
    assert_eq!(thread["follower_count"], 2);
    assert_eq!(thread["is_following"], true);
    assert_eq!(thread["last_reply_at"], second["created_at"]);
    let summary = admin.get(&format!("/api/v1/channels/{channel}/messages/{}", id(&parent))).await.body;
    assert_eq!(
        summary["thread"],
        json!({"thread_id": thread_id, "reply_count": 2, "last_reply_at": second["created_at"],
               "last_reply_author_id": admin.user_id})
    );

    // Channel listings leave replies out; the thread lists them.
    let listing = admin.get(&format!("/api/v1/channels/{channel}/messages")).await.body;
    let ids: Vec<&Value> = listing["messages"].as_array().unwrap().iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, vec![&parent["id"]]);
    let replies = bob.get(&format!("/api/v1/threads/{thread_id}/messages")).await;
    assert_eq!(replies.status, 200);
    assert_eq!(replies.body, json!({"messages": [second, first], "has_more": false}));

    // A reply can be fetched, edited and deleted through the message routes of its channel.
    let fetched = admin.get(&format!("/api/v1/channels/{channel}/messages/{}", id(&first))).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body["thread_id"], thread_id.as_str());
}

async fn following_and_read_marks(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let channel = admin.create_channel("follow").await;
    let parent = admin.post_message(&channel, "parent").await;
    let thread_id = create_thread(&admin, &channel, &id(&parent)).await["thread_id"].as_str().unwrap().to_owned();
    let thread_url = format!("/api/v1/threads/{thread_id}");
    let follow_url = format!("{thread_url}/follow");

    // Reading without following has no effect but succeeds.
    assert_eq!(bob.put_empty(&format!("{thread_url}/read")).await.status, 204);
    assert_eq!(bob.delete(&follow_url).await.status, 204, "unfollow when not following");

    assert_eq!(bob.put_empty(&follow_url).await.status, 204);
    assert_eq!(bob.put_empty(&follow_url).await.status, 204, "follow is idempotent");
    let thread = bob.get(&thread_url).await.body;
    assert_eq!((thread["is_following"].clone(), thread["follower_count"].clone()), (json!(true), json!(2)));
    assert_eq!(bob.put_empty(&format!("{thread_url}/read")).await.status, 204);

    assert_eq!(bob.delete(&follow_url).await.status, 204);
    let thread = bob.get(&thread_url).await.body;
    assert_eq!((thread["is_following"].clone(), thread["follower_count"].clone()), (json!(false), json!(1)));

    // The creator can unfollow its own thread too.
    assert_eq!(admin.delete(&follow_url).await.status, 204);
    assert_eq!(admin.get(&thread_url).await.body["follower_count"], 0);
}

async fn thread_messages_paginate(server: TestServer) {
    let admin = server.login(1).await;
    let channel = admin.create_channel("paging").await;
    let parent = admin.post_message(&channel, "parent").await;
    let thread_id = create_thread(&admin, &channel, &id(&parent)).await["thread_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id(&reply(&admin, &thread_id, &format!("reply {i}")).await));
    }
    let url = format!("/api/v1/threads/{thread_id}/messages");
    let page_ids = |v: &Value| -> Vec<String> {
        v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    };

    let newest = admin.get(&format!("{url}?limit=2")).await;
    assert_eq!(newest.status, 200);
    assert_eq!(page_ids(&newest.body), vec![ids[4].clone(), ids[3].clone()]);
    assert_eq!(newest.body["has_more"], true);
    let older = admin.get(&format!("{url}?limit=2&before={}", ids[3])).await.body;
    assert_eq!(page_ids(&older), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(older["has_more"], true);
    let oldest = admin.get(&format!("{url}?limit=2&before={}", ids[1])).await.body;
    assert_eq!(page_ids(&oldest), vec![ids[0].clone()]);
    assert_eq!(oldest["has_more"], false);

    let forward = admin.get(&format!("{url}?limit=3&after={}", ids[0])).await.body;
    assert_eq!(page_ids(&forward), vec![ids[1].clone(), ids[2].clone(), ids[3].clone()]);
    assert_eq!(forward["has_more"], true);
    let clamped = admin.get(&format!("{url}?limit=0")).await.body;
    assert_eq!(page_ids(&clamped), vec![ids[4].clone()]);
    let all = admin.get(&format!("{url}?limit=1000")).await.body;
    assert_eq!(page_ids(&all).len(), 5);

    let both = admin.get(&format!("{url}?before=5&after=1")).await;
    assert_eq!((both.status, both.error()), (400, "before and after are mutually exclusive"));
    let bad_cursor = admin.get(&format!("{url}?before=abc")).await;
    assert_eq!((bad_cursor.status, bad_cursor.error()), (400, "invalid id: before"));
    let bad_limit = admin.get(&format!("{url}?limit=many")).await;
    assert_eq!(bad_limit.status, 400);
    assert!(bad_limit.error().starts_with("invalid query string"), "{}", bad_limit.error());
}

async fn thread_validation_and_not_found(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let channel = admin.create_channel("validation").await;
    let other = admin.create_channel("elsewhere").await;
    let parent = admin.post_message(&channel, "parent").await;
    let elsewhere = admin.post_message(&other, "elsewhere").await;
    let thread_id = create_thread(&admin, &channel, &id(&parent)).await["thread_id"].as_str().unwrap().to_owned();
    let a_reply = reply(&admin, &thread_id, "a reply").await;

    // Creation: unknown channel, unknown message, a message of another channel, a thread reply.
    let r = admin.post_empty(&format!("/api/v1/channels/999999/messages/{}/threads", id(&parent))).await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));
    let r = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/999999/threads")).await;
    assert_eq!((r.status, r.error()), (404, "message not found"));
    let r = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{}/threads", id(&elsewhere))).await;
    assert_eq!((r.status, r.error()), (404, "message not found"));
    let r = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{}/threads", id(&a_reply))).await;
    assert_eq!((r.status, r.error()), (404, "message not found"), "a reply cannot be a thread parent");
    let r = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/abc/threads")).await;
    assert_eq!((r.status, r.error()), (400, "invalid id: message_id"));

    // Unknown threads.
    for r in [
        admin.get("/api/v1/threads/999999").await,
        admin.get("/api/v1/threads/999999/messages").await,
        admin.post("/api/v1/threads/999999/messages", json!({"content": "hi"})).await,
        admin.put_empty("/api/v1/threads/999999/follow").await,
        admin.delete("/api/v1/threads/999999/follow").await,
        admin.put_empty("/api/v1/threads/999999/read").await,
    ] {
        assert_eq!((r.status, r.error()), (404, "thread not found"));
    }
    let r = admin.get("/api/v1/threads/0").await;
    assert_eq!((r.status, r.error()), (400, "invalid id: thread_id"));

    // Replies follow the content and attachment rules; a failure stores nothing.
    let url = format!("/api/v1/threads/{thread_id}/messages");
    let r = bob.post(&url, json!({"content": "  \n "})).await;
    assert_eq!((r.status, r.error()), (422, "message content must not be empty"));
    let r = bob.post(&url, json!({"content": "x".repeat(4001)})).await;
    assert_eq!((r.status, r.error()), (422, "message content must be at most 4000 characters"));
    let r = bob.post(&url, json!({"content": "with file", "attachment_ids": ["999999"]})).await;
    assert_eq!(
        (r.status, r.error()),
        (409, "attachment 999999 not found, not yours, already used, or from another channel")
    );
    let r = bob.post(&url, json!({"content": "with file", "attachment_ids": ["x"]})).await;
    assert_eq!((r.status, r.error()), (400, "invalid id: attachment_ids"));
    let r = bob.post(&url, json!({})).await;
    assert_eq!(r.status, 422);
    let ok = bob.post(&url, json!({"content": "x".repeat(4000), "attachment_ids": null})).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let thread = admin.get(&format!("/api/v1/threads/{thread_id}")).await.body;
    assert_eq!(thread["reply_count"], 2);
}

async fn thread_permissions_follow_the_channel(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let hidden = admin.create_channel("hidden").await;
    let readonly = admin.create_channel("announcements").await;
    let hidden_parent = admin.post_message(&hidden, "secret").await;
    let hidden_thread =
        create_thread(&admin, &hidden, &id(&hidden_parent)).await["thread_id"].as_str().unwrap().to_owned();
    let ro_parent = admin.post_message(&readonly, "news").await;
    let ro_thread = create_thread(&admin, &readonly, &id(&ro_parent)).await["thread_id"].as_str().unwrap().to_owned();
    deny_everyone(&admin, &hidden, 2).await; // READ_MESSAGES
    deny_everyone(&admin, &readonly, 1).await; // SEND_MESSAGES

    let missing_read = (403, "missing read_messages permission");
    let r = bob.post_empty(&format!("/api/v1/channels/{hidden}/messages/{}/threads", id(&hidden_parent))).await;
    assert_eq!((r.status, r.error()), missing_read);
    let r = bob.get(&format!("/api/v1/threads/{hidden_thread}")).await;
    assert_eq!((r.status, r.error()), missing_read);
    let r = bob.get(&format!("/api/v1/threads/{hidden_thread}/messages")).await;
    assert_eq!((r.status, r.error()), missing_read);
    let r = bob.put_empty(&format!("/api/v1/threads/{hidden_thread}/follow")).await;
    assert_eq!((r.status, r.error()), missing_read);
    // Unfollow and read need no permission.
    assert_eq!(bob.delete(&format!("/api/v1/threads/{hidden_thread}/follow")).await.status, 204);
    assert_eq!(bob.put_empty(&format!("/api/v1/threads/{hidden_thread}/read")).await.status, 204);

    // Reading without sending: the thread is visible, replies are refused.
    assert_eq!(bob.get(&format!("/api/v1/threads/{ro_thread}")).await.status, 200);
    assert_eq!(bob.put_empty(&format!("/api/v1/threads/{ro_thread}/follow")).await.status, 204);
    let r = bob.post(&format!("/api/v1/threads/{ro_thread}/messages"), json!({"content": "hi"})).await;
    assert_eq!((r.status, r.error()), (403, "missing send_messages permission"));
    assert_eq!(admin.get(&format!("/api/v1/threads/{ro_thread}")).await.body["reply_count"], 0);

    // The administrator bypasses overrides.
    assert_eq!(
        admin.post(&format!("/api/v1/threads/{hidden_thread}/messages"), json!({"content": "ok"})).await.status,
        200
    );

    // A DM channel is not a channel for thread creation.
    let dm = bob.post("/api/v1/dms", json!({"recipient_pubkey": admin.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm_id = dm.body["channel_id"].as_str().unwrap().to_owned();
    let dm_message = bob.post(&format!("/api/v1/dms/{dm_id}/messages"), json!({"content": "psst"})).await;
    let r = bob.post_empty(&format!("/api/v1/channels/{dm_id}/messages/{}/threads", id(&dm_message.body))).await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));
}

async fn thread_creation_requires_the_feature(server: TestServer) {
    let backend = server.backend;
    drop(server);
    let server = TestServer::start_with(backend, |c| c.features.message_threads = false).await;
    let admin = server.login(1).await;
    let channel = admin.create_channel("nothreads").await;
    let parent = admin.post_message(&channel, "parent").await;
    let r = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{}/threads", id(&parent))).await;
    assert_eq!((r.status, r.error()), (403, "message threads are disabled on this server"));
    let r = admin.get("/api/v1/threads/1").await;
    assert_eq!((r.status, r.error()), (404, "thread not found"));
}

async fn read_only_sessions_cannot_reply(server: TestServer) {
    let admin = server.login(1).await;
    let bot = server.login_bot(3).await;
    let joined = bot.post_empty("/api/v1/members/join").await;
    assert_eq!(joined.status, 200, "{:?}", joined.body);
    let channel = admin.create_channel("bots").await;
    let parent = admin.post_message(&channel, "parent").await;
    let thread_id = create_thread(&admin, &channel, &id(&parent)).await["thread_id"].as_str().unwrap().to_owned();
    // Reading is fine, replying is not.
    assert_eq!(bot.get(&format!("/api/v1/threads/{thread_id}/messages")).await.status, 200);
    let r = bot.post(&format!("/api/v1/threads/{thread_id}/messages"), json!({"content": "beep"})).await;
    assert_eq!((r.status, r.error()), (403, "read-only session: bot requires admin approval"));
}
