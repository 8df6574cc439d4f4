//! Direct messages (api.md §3.10): opening, listing, messages, deletion, hiding and reopening,
//! events to the two participants only, and every error.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::support::{TestServer, User, pubkey_of};

api_tests!(
    opening_a_dm_creates_it_once_and_tells_both,
    dm_messages_reach_the_two_participants_only,
    dm_messages_paginate_and_mark_read,
    hidden_dms_reopen_on_a_new_message,
    dm_messages_are_deleted_by_their_author,
    dm_open_errors,
    dm_route_errors,
);

async fn open(user: &User, recipient: &User) -> Value {
    let r = user.post("/api/v1/dms", json!({"recipient_pubkey": recipient.pubkey})).await;
    assert_eq!(r.status, 200, "open dm: {:?}", r.body);
    r.body
}

async fn send(user: &User, dm: &str, content: &str) -> Value {
    let r = user.post(&format!("/api/v1/dms/{dm}/messages"), json!({"content": content})).await;
    assert_eq!(r.status, 200, "send dm: {:?}", r.body);
    r.body
}

fn dm_user(user: &User) -> Value {
    json!({"user_id": user.user_id, "pubkey": user.pubkey, "display_name": null, "avatar_hash": null})
}

fn channel_id(dm: &Value) -> String {
    dm["channel_id"].as_str().unwrap().to_owned()
}

async fn opening_a_dm_creates_it_once_and_tells_both(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;
    let carol = server.login(3).await;
    let mut alice_gw = server.gateway(alice.token()).await;
    let mut bob_gw = server.gateway(bob.token()).await;
    let mut carol_gw = server.gateway(carol.token()).await;

    let dm = open(&alice, &bob).await;
    let id = channel_id(&dm);
    assert_eq!(dm["recipient"], dm_user(&bob));
    assert_eq!((dm["last_message_at"].clone(), dm["last_read_at"].clone()), (Value::Null, Value::Null));
    assert!(dm["created_at"].as_str().unwrap().ends_with('Z'));

    let for_alice = alice_gw.expect_op("DM_CREATE").await;
    assert_eq!(for_alice["d"], dm);
    let for_bob = bob_gw.expect_op("DM_CREATE").await;
    assert_eq!(
        for_bob["d"],
        json!({"channel_id": id, "recipient": dm_user(&alice), "created_at": dm["created_at"],
               "last_message_at": null, "last_read_at": null})
    );
    carol_gw.expect_no_op("DM_CREATE", Duration::from_millis(500)).await;

    // Opening again (from either side) finds the same channel and announces nothing.
    assert_eq!(open(&alice, &bob).await, dm);
    let from_bob = open(&bob, &alice).await;
    assert_eq!(channel_id(&from_bob), id);
    assert_eq!(from_bob["recipient"], dm_user(&alice));
    alice_gw.expect_no_op("DM_CREATE", Duration::from_millis(300)).await;
    bob_gw.expect_no_op("DM_CREATE", Duration::from_millis(100)).await;

    // Lists: each side sees it with the other as recipient; Carol sees nothing.
    let list = alice.get("/api/v1/dms").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body, json!({"dms": [dm]}));
    assert_eq!(bob.get("/api/v1/dms").await.body["dms"][0]["recipient"], dm_user(&alice));
    assert_eq!(carol.get("/api/v1/dms").await.body, json!({"dms": []}));

    // DM channels are not text channels.
    let channels = alice.get("/api/v1/channels").await.body;
    assert!(channels["channels"].as_array().unwrap().iter().all(|c| c["id"] != id.as_str()));
    let r = alice.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));
    let r = alice.get(&format!("/api/v1/channels/{id}/messages")).await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));
}

async fn dm_messages_reach_the_two_participants_only(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;
    let carol = server.login(3).await;
    let dm = open(&alice, &bob).await;
    let id = channel_id(&dm);
    let mut alice_gw = server.gateway(alice.token()).await;
    let mut bob_gw = server.gateway(bob.token()).await;
    let mut carol_gw = server.gateway(carol.token()).await;

    let message = send(&alice, &id, "hello bob").await;
    assert_eq!(message["channel_id"], id.as_str());
    assert_eq!(message["author_id"], alice.user_id.as_str());
    assert_eq!(message["content"], "hello bob");
    assert_eq!(
        (&message["attachments"], &message["reactions"], &message["thread"], &message["thread_id"]),
        (&json!([]), &json!([]), &Value::Null, &Value::Null)
    );
    assert_eq!(alice_gw.expect_op("DM_MESSAGE_CREATE").await["d"], message);
    assert_eq!(bob_gw.expect_op("DM_MESSAGE_CREATE").await["d"], message);
    carol_gw.expect_no_op("DM_MESSAGE_CREATE", Duration::from_millis(500)).await;
    // Neither had it hidden: no DM_CREATE.
    bob_gw.expect_no_op("DM_CREATE", Duration::from_millis(100)).await;

    // The list carries the last message time and the sender's read mark.
    let listed = alice.get("/api/v1/dms").await.body["dms"][0].clone();
    assert_eq!(listed["last_message_at"], message["created_at"]);
    assert_eq!(listed["last_read_at"], message["created_at"]);
    let for_bob = bob.get("/api/v1/dms").await.body["dms"][0].clone();
    assert_eq!(for_bob["last_message_at"], message["created_at"]);
    assert_eq!(for_bob["last_read_at"], Value::Null, "bob has not read it");

    // Most recent message first, never-used DMs last.
    let with_carol = open(&alice, &carol).await;
    let dave = server.login(4).await;
    let with_dave = open(&alice, &dave).await;
    let order = |body: Value| -> Vec<String> { body["dms"].as_array().unwrap().iter().map(channel_id).collect() };
    assert_eq!(
        order(alice.get("/api/v1/dms").await.body),
        vec![id.clone(), channel_id(&with_dave), channel_id(&with_carol)]
    );
    send(&carol, &channel_id(&with_carol), "hi alice").await;
    assert_eq!(
        order(alice.get("/api/v1/dms").await.body),
        vec![channel_id(&with_carol), id.clone(), channel_id(&with_dave)]
    );
}

async fn dm_messages_paginate_and_mark_read(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;
    let id = channel_id(&open(&alice, &bob).await);
    let mut ids = Vec::new();
    for i in 0..5 {
        let sender = if i % 2 == 0 { &alice } else { &bob };
        ids.push(send(sender, &id, &format!("message {i}")).await["id"].as_str().unwrap().to_owned());
    }
    let url = format!("/api/v1/dms/{id}/messages");
    let page_ids = |v: &Value| -> Vec<String> {
        v["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    };

    // A cursor page does not touch the read mark.
    let before_read = alice.get("/api/v1/dms").await.body["dms"][0]["last_read_at"].clone();
    let older = alice.get(&format!("{url}?before={}&limit=2", ids[3])).await;
    assert_eq!(older.status, 200);
    assert_eq!(page_ids(&older.body), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(older.body["has_more"], true);
    let forward = alice.get(&format!("{url}?after={}&limit=10", ids[1])).await.body;
    assert_eq!(page_ids(&forward), vec![ids[2].clone(), ids[3].clone(), ids[4].clone()]);
    assert_eq!(forward["has_more"], false);
    assert_eq!(alice.get("/api/v1/dms").await.body["dms"][0]["last_read_at"], before_read);

    // The newest page sets it to now.
    let newest = alice.get(&format!("{url}?limit=2")).await.body;
    assert_eq!(page_ids(&newest), vec![ids[4].clone(), ids[3].clone()]);
    assert_eq!(newest["has_more"], true);
    let listed = alice.get("/api/v1/dms").await.body["dms"][0].clone();
    let read_at = listed["last_read_at"].as_str().unwrap();
    assert!(read_at > listed["last_message_at"].as_str().unwrap(), "{listed}");

    let r = alice.get(&format!("{url}?before=3&after=1")).await;
    assert_eq!((r.status, r.error()), (400, "before and after are mutually exclusive"));
    let r = alice.get(&format!("{url}?after=x")).await;
    assert_eq!((r.status, r.error()), (400, "invalid id: after"));
    assert_eq!(alice.get(&format!("{url}?limit=x")).await.status, 400);
}

async fn hidden_dms_reopen_on_a_new_message(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;
    let id = channel_id(&open(&alice, &bob).await);
    send(&alice, &id, "first").await;

    let r = bob.delete(&format!("/api/v1/dms/{id}")).await;
    assert_eq!((r.status, r.bytes.len()), (204, 0));
    assert_eq!(bob.get("/api/v1/dms").await.body, json!({"dms": []}));
    assert_eq!(alice.get("/api/v1/dms").await.body["dms"].as_array().unwrap().len(), 1);
    // Hidden, not gone: the messages remain readable.
    assert_eq!(bob.get(&format!("/api/v1/dms/{id}/messages")).await.body["messages"][0]["content"], "first");
    assert_eq!(bob.delete(&format!("/api/v1/dms/{id}")).await.status, 204, "hiding twice");

    let mut alice_gw = server.gateway(alice.token()).await;
    let mut bob_gw = server.gateway(bob.token()).await;
    let message = send(&alice, &id, "are you there?").await;
    // Bob first gets DM_CREATE (from his side), then the message.
    let first = bob_gw.next_frame().await;
    let first = if first["op"] == "HEARTBEAT" { bob_gw.next_frame().await } else { first };
    assert_eq!(first["op"], "DM_CREATE", "{first}");
    assert_eq!(first["d"]["channel_id"], id.as_str());
    assert_eq!(first["d"]["recipient"], dm_user(&alice));
    assert_eq!(first["d"]["last_message_at"], message["created_at"]);
    assert_eq!(bob_gw.expect_op("DM_MESSAGE_CREATE").await["d"], message);
    // Alice never hid it.
    assert_eq!(alice_gw.expect_op("DM_MESSAGE_CREATE").await["d"], message);
    alice_gw.expect_no_op("DM_CREATE", Duration::from_millis(300)).await;
    assert_eq!(channel_id(&bob.get("/api/v1/dms").await.body["dms"][0]), id);

    // The sender reopens its own hidden DM by sending.
    assert_eq!(alice.delete(&format!("/api/v1/dms/{id}")).await.status, 204);
    let reply = send(&alice, &id, "again").await;
    let reopened = alice_gw.expect_op("DM_CREATE").await;
    assert_eq!(reopened["d"]["recipient"], dm_user(&bob));
    assert_eq!(reopened["d"]["last_read_at"], reply["created_at"]);
    assert_eq!(alice_gw.expect_op("DM_MESSAGE_CREATE").await["d"], reply);
    bob_gw.expect_no_op("DM_CREATE", Duration::from_millis(300)).await;

    // POST /dms reopens it for the caller only.
    assert_eq!(bob.delete(&format!("/api/v1/dms/{id}")).await.status, 204);
    assert_eq!(channel_id(&open(&bob, &alice).await), id);
    assert_eq!(bob.get("/api/v1/dms").await.body["dms"].as_array().unwrap().len(), 1);
}

async fn dm_messages_are_deleted_by_their_author(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;
    let carol = server.login(3).await;
    let id = channel_id(&open(&alice, &bob).await);
    let other = channel_id(&open(&alice, &carol).await);
    let message = send(&alice, &id, "oops").await;
    let message_id = message["id"].as_str().unwrap().to_owned();
    let elsewhere = send(&alice, &other, "for carol").await;
    let mut bob_gw = server.gateway(bob.token()).await;
    let mut carol_gw = server.gateway(carol.token()).await;

    let url = format!("/api/v1/dms/{id}/messages/{message_id}");
    let r = bob.delete(&url).await;
    assert_eq!((r.status, r.error()), (403, "cannot delete another user's message"));
    let r = carol.delete(&url).await;
    assert_eq!((r.status, r.error()), (403, "not a participant in this DM"));
    let r = alice.delete(&format!("/api/v1/dms/{id}/messages/{}", elsewhere["id"].as_str().unwrap())).await;
    assert_eq!((r.status, r.error()), (404, "message not found"), "a message of another DM");
    let r = alice.delete(&format!("/api/v1/dms/{id}/messages/999999")).await;
    assert_eq!((r.status, r.error()), (404, "message not found"));
    let r = alice.delete(&format!("/api/v1/dms/{id}/messages/x")).await;
    assert_eq!((r.status, r.error()), (400, "invalid id: message_id"));

    let r = alice.delete(&url).await;
    assert_eq!((r.status, r.bytes.len()), (204, 0));
    assert_eq!(bob_gw.expect_op("DM_MESSAGE_DELETE").await["d"], json!({"id": message_id, "channel_id": id}));
    carol_gw.expect_no_op("DM_MESSAGE_DELETE", Duration::from_millis(500)).await;
    assert_eq!(alice.delete(&url).await.status, 204, "deleting again");

    let listed = bob.get(&format!("/api/v1/dms/{id}/messages")).await.body;
    assert_eq!(listed["messages"][0]["id"], message_id.as_str());
    assert_eq!(listed["messages"][0]["deleted"], true);
    assert_eq!(listed["messages"][0]["content"], "");
}

async fn dm_open_errors(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;

    let r = alice.post("/api/v1/dms", json!({"recipient_pubkey": "not-base58!"})).await;
    assert_eq!((r.status, r.error()), (400, "invalid public key format"));
    let r = alice.post("/api/v1/dms", json!({"recipient_pubkey": alice.pubkey})).await;
    assert_eq!((r.status, r.error()), (400, "cannot open a DM with yourself"));
    let stranger = pubkey_of(&SigningKey::from_bytes(&[77; 32]));
    let r = alice.post("/api/v1/dms", json!({"recipient_pubkey": stranger})).await;
    assert_eq!((r.status, r.error()), (404, "user not found"));
    let r = alice.post("/api/v1/dms", json!({})).await;
    assert_eq!(r.status, 422);

    // A user who left is no longer a member.
    assert_eq!(bob.delete("/api/v1/members/me").await.status, 204);
    let r = alice.post("/api/v1/dms", json!({"recipient_pubkey": bob.pubkey})).await;
    assert_eq!((r.status, r.error()), (404, "user not found"));
    let r = bob.post("/api/v1/dms", json!({"recipient_pubkey": alice.pubkey})).await;
    assert_eq!((r.status, r.error()), (403, "membership required"));
    assert_eq!(alice.get("/api/v1/dms").await.body, json!({"dms": []}));
}

async fn dm_route_errors(server: TestServer) {
    let alice = server.login(1).await;
    let bob = server.login(2).await;
    let carol = server.login(3).await;
    let id = channel_id(&open(&alice, &bob).await);
    let messages = format!("/api/v1/dms/{id}/messages");

    // Unknown DMs, and text channel ids, are not DMs.
    let general = alice.get("/api/v1/channels").await.body["channels"][0]["id"].as_str().unwrap().to_owned();
    for dm in ["999999", general.as_str()] {
        let r = alice.get(&format!("/api/v1/dms/{dm}/messages")).await;
        assert_eq!((r.status, r.error()), (404, "dm not found"));
        let r = alice.post(&format!("/api/v1/dms/{dm}/messages"), json!({"content": "hi"})).await;
        assert_eq!((r.status, r.error()), (404, "dm not found"));
        let r = alice.delete(&format!("/api/v1/dms/{dm}")).await;
        assert_eq!((r.status, r.error()), (404, "dm not found"));
        let r = alice.delete(&format!("/api/v1/dms/{dm}/messages/1")).await;
        assert_eq!((r.status, r.error()), (404, "dm not found"));
    }
    let r = alice.get("/api/v1/dms/abc/messages").await;
    assert_eq!((r.status, r.error()), (400, "invalid id: channel_id"));

    // Outsiders.
    let outsider = (403, "not a participant in this DM");
    let r = carol.get(&messages).await;
    assert_eq!((r.status, r.error()), outsider);
    let r = carol.post(&messages, json!({"content": "hi"})).await;
    assert_eq!((r.status, r.error()), outsider);
    let r = carol.delete(&format!("/api/v1/dms/{id}")).await;
    assert_eq!((r.status, r.error()), outsider);

    // Content rules; attachments are refused; nothing is stored on failure.
    let r = alice.post(&messages, json!({"content": "   "})).await;
    assert_eq!((r.status, r.error()), (422, "message content must not be empty"));
    let r = alice.post(&messages, json!({"content": "x".repeat(4001)})).await;
    assert_eq!((r.status, r.error()), (422, "message content must be at most 4000 characters"));
    let r = alice.post(&messages, json!({"content": "file", "attachment_ids": ["1"]})).await;
    assert_eq!((r.status, r.error()), (422, "attachments are not supported in direct messages"));
    let r = alice.post(&messages, json!({"content": "", "attachment_ids": ["1"]})).await;
    assert_eq!((r.status, r.error()), (422, "attachments are not supported in direct messages"));
    assert_eq!(alice.post(&messages, json!({"content": "fine", "attachment_ids": []})).await.status, 200);
    let r = alice.post(&messages, json!({"content": 5})).await;
    assert_eq!(r.status, 422);
    let listed = alice.get(&messages).await.body;
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1);

    // Read-only sessions cannot send.
    let bot = server.login_bot(9).await;
    assert_eq!(bot.post_empty("/api/v1/members/join").await.status, 200);
    let bot_dm = channel_id(&open(&alice, &bot).await);
    let r = bot.post(&format!("/api/v1/dms/{bot_dm}/messages"), json!({"content": "beep"})).await;
    assert_eq!((r.status, r.error()), (403, "read-only session: bot requires admin approval"));
    assert_eq!(bot.get(&format!("/api/v1/dms/{bot_dm}/messages")).await.status, 200);

    // The recipient left: sending is refused, reading still works.
    assert_eq!(bob.delete("/api/v1/members/me").await.status, 204);
    let r = alice.post(&messages, json!({"content": "still there?"})).await;
    assert_eq!((r.status, r.error()), (403, "recipient is not a member"));
    assert_eq!(alice.get(&messages).await.status, 200);
}
