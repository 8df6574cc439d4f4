//! Typing indicators (api.md §3.8): TYPING_START to the channel's subscribers except the sender,
//! to the other participant for DMs, rate limited per (user, channel), never stored.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::api_tests;
use crate::support::{Gateway, TestServer};

api_tests!(
    typing_reaches_subscribers_except_the_sender,
    typing_is_rate_limited_per_user_and_channel,
    typing_in_a_dm_reaches_the_other_participant_only,
    typing_errors,
);

/// Subscribes and waits until the server has processed it (a SUBSCRIBE to an unknown channel
/// answers ERROR, and commands are handled in order).
async fn subscribe(gateway: &mut Gateway, channel: &str) {
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": channel}})).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": "999999999"}})).await;
    let error = gateway.expect_op("ERROR").await;
    assert_eq!(error["d"]["channel_id"], "999999999", "{error}");
}

fn typing_url(channel: &str) -> String {
    format!("/api/v1/channels/{channel}/typing")
}

async fn typing_reaches_subscribers_except_the_sender(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let channel = admin.create_channel("chat").await;
    assert_eq!(bob.patch("/api/v1/profile", json!({"display_name": "Bob"})).await.status, 200);
    let mut admin_gw = server.gateway(admin.token()).await;
    let mut bob_gw = server.gateway(bob.token()).await;
    let mut bob_other_gw = server.gateway(bob.token()).await;
    subscribe(&mut admin_gw, &channel).await;
    subscribe(&mut bob_gw, &channel).await;
    subscribe(&mut bob_other_gw, &channel).await;

    let before = chrono::Utc::now().timestamp();
    let r = bob.post_empty(&typing_url(&channel)).await;
    assert_eq!((r.status, r.bytes.len()), (204, 0));
    let event = admin_gw.expect_op("TYPING_START").await;
    let d = &event["d"];
    assert_eq!(d["channel_id"], channel.as_str());
    assert_eq!(d["user_id"], bob.user_id.as_str());
    assert_eq!(d["display_name"], "Bob");
    let at = d["timestamp"].as_i64().unwrap();
    assert!(at >= before && at <= chrono::Utc::now().timestamp() + 1, "{at}");
    assert_eq!(d.as_object().unwrap().len(), 4, "{d}");
    // None of the sender's connections hears it.
    bob_gw.expect_no_op("TYPING_START", Duration::from_millis(500)).await;
    bob_other_gw.expect_no_op("TYPING_START", Duration::from_millis(100)).await;

    // Without a display name the key is null; unsubscribed connections hear nothing.
    let carol = server.login(3).await;
    let mut carol_gw = server.gateway(carol.token()).await;
    assert_eq!(admin.post_empty(&typing_url(&channel)).await.status, 204);
    let event = bob_gw.expect_op("TYPING_START").await;
    assert_eq!(event["d"]["user_id"], admin.user_id.as_str());
    assert_eq!(event["d"]["display_name"], serde_json::Value::Null);
    carol_gw.expect_no_op("TYPING_START", Duration::from_millis(500)).await;
    admin_gw.expect_no_op("TYPING_START", Duration::from_millis(100)).await;
}

async fn typing_is_rate_limited_per_user_and_channel(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let one = admin.create_channel("one").await;
    let two = admin.create_channel("two").await;
    let mut gw = server.gateway(admin.token()).await;
    subscribe(&mut gw, &one).await;
    subscribe(&mut gw, &two).await;

    assert_eq!(bob.post_empty(&typing_url(&one)).await.status, 204);
    assert_eq!(gw.expect_op("TYPING_START").await["d"]["channel_id"], one.as_str());
    // Within 2 s: still 204, nothing forwarded for the same (user, channel)…
    assert_eq!(bob.post_empty(&typing_url(&one)).await.status, 204);
    // …but another channel has its own limit.
    assert_eq!(bob.post_empty(&typing_url(&two)).await.status, 204);
    assert_eq!(gw.expect_op("TYPING_START").await["d"]["channel_id"], two.as_str());
    gw.expect_no_op("TYPING_START", Duration::from_millis(500)).await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(bob.post_empty(&typing_url(&one)).await.status, 204);
    assert_eq!(gw.expect_op("TYPING_START").await["d"]["channel_id"], one.as_str());
}

async fn typing_in_a_dm_reaches_the_other_participant_only(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let carol = server.login(3).await;
    let dm = admin.post("/api/v1/dms", json!({"recipient_pubkey": bob.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm_id = dm.body["channel_id"].as_str().unwrap().to_owned();
    let mut admin_gw = server.gateway(admin.token()).await;
    let mut bob_gw = server.gateway(bob.token()).await;
    let mut carol_gw = server.gateway(carol.token()).await;

    assert_eq!(admin.post_empty(&typing_url(&dm_id)).await.status, 204);
    let event = bob_gw.expect_op("TYPING_START").await;
    assert_eq!(event["d"]["channel_id"], dm_id.as_str());
    assert_eq!(event["d"]["user_id"], admin.user_id.as_str());
    carol_gw.expect_no_op("TYPING_START", Duration::from_millis(500)).await;
    admin_gw.expect_no_op("TYPING_START", Duration::from_millis(100)).await;

    // Not a participant.
    let r = carol.post_empty(&typing_url(&dm_id)).await;
    assert_eq!((r.status, r.error()), (403, "not a participant in this DM"));
}

async fn typing_errors(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let quiet = admin.create_channel("quiet").await;
    let r = admin.put(&format!("/api/v1/channels/{quiet}/overrides/everyone"), json!({"allow": 0, "deny": 1})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let r = bob.post_empty(&typing_url(&quiet)).await;
    assert_eq!((r.status, r.error()), (403, "missing send_messages permission"));
    assert_eq!(admin.post_empty(&typing_url(&quiet)).await.status, 204, "administrators bypass overrides");
    let r = bob.post_empty(&typing_url("999999")).await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));
    let r = bob.post_empty(&typing_url("general")).await;
    assert_eq!((r.status, r.error()), (400, "invalid id: channel_id"));
    let r = server.anonymous().post_empty(&typing_url(&quiet)).await;
    assert_eq!(r.status, 401);
    // A body is ignored.
    let channels = bob.get("/api/v1/channels").await;
    let general = channels.body["channels"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(bob.post(&typing_url(&general), json!({"anything": true})).await.status, 204);

    // Read-only sessions cannot type.
    let bot = server.login_bot(4).await;
    assert_eq!(bot.post_empty("/api/v1/members/join").await.status, 200);
    let r = bot.post_empty(&typing_url(&general)).await;
    assert_eq!((r.status, r.error()), (403, "read-only session: bot requires admin approval"));
}
