//! Gateway resume (api.md §6.2, an extension beyond v1): a client that reconnects with
//! `?resume=<s>` gets exactly the events it missed that it may see now, then RESUMED, then live
//! events with no gap and no duplicate; a point the server cannot honour closes with 4005.

use std::time::Duration;

use decentcom::config::Config;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::attachments::general_channel;
use crate::gateway::{connect, subscribe};
use crate::support::{Backend, Gateway, TestServer};

crate::backend_tests!(
    a_client_back_after_ten_seconds_gets_exactly_what_it_missed,
    permissions_are_checked_when_events_are_replayed,
    resume_points_the_server_cannot_honour_are_refused,
);

/// Reconnects as a browser would: token, resume point and subscriptions in the query. Returns
/// after HELLO.
async fn resume(server: &TestServer, token: &str, s: u64, channels: &[&str]) -> Gateway {
    let query = format!("?token={token}&resume={s}&subscribe={}", channels.join(","));
    let mut gateway = connect(&server.url(""), &query, None).await;
    assert_eq!(gateway.next_frame().await["op"], "HELLO");
    gateway
}

/// Every frame up to and including RESUMED.
async fn until_resumed(gateway: &mut Gateway) -> (Vec<Value>, Value) {
    let mut frames = Vec::new();
    loop {
        let frame = gateway.next_frame().await;
        if frame["op"] == "RESUMED" {
            return (frames, frame);
        }
        if frame["op"] != "HEARTBEAT" {
            frames.push(frame);
        }
    }
}

fn s_of(frame: &Value) -> u64 {
    frame["s"].as_u64().unwrap_or_else(|| panic!("a dispatched event carries s: {frame}"))
}

/// The op and the message content (or channel name) of each event, to compare as a list.
fn summary(frames: &[Value]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|f| {
            let what = f["d"]["content"].as_str().or(f["d"]["name"].as_str()).or(f["d"]["error"].as_str());
            (f["op"].as_str().unwrap().to_owned(), what.unwrap_or_default().to_owned())
        })
        .collect()
}

async fn a_client_back_after_ten_seconds_gets_exactly_what_it_missed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let member = server.login(2).await;
    let general = general_channel(&server, &admin).await;
    let mut before = server.gateway(member.token()).await;
    subscribe(&mut before, &general).await;
    let first = admin.post_message(&general, "seen live").await;
    let seen = before.expect_op("MESSAGE_CREATE").await;
    assert_eq!(seen["d"], first);
    let last_seen = s_of(&seen);
    drop(before);

    // Missed while away: messages, an edit, a new channel (sent to every connection).
    admin.post_message(&general, "missed 1").await;
    let id = first["id"].as_str().unwrap();
    let edit = admin.patch(&format!("/api/v1/channels/{general}/messages/{id}"), json!({"content": "edited"})).await;
    assert_eq!(edit.status, 200, "{:?}", edit.body);
    admin.create_channel("new-room").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    admin.post_message(&general, "missed 2").await;

    let mut back = resume(&server, member.token(), last_seen, &[&general]).await;
    let (replayed, resumed) = until_resumed(&mut back).await;
    assert_eq!(
        summary(&replayed),
        [
            ("MESSAGE_CREATE".to_owned(), "missed 1".to_owned()),
            ("MESSAGE_UPDATE".to_owned(), "edited".to_owned()),
            ("CHANNEL_CREATE".to_owned(), "new-room".to_owned()),
            ("MESSAGE_CREATE".to_owned(), "missed 2".to_owned()),
        ]
    );
    let numbers: Vec<u64> = replayed.iter().map(s_of).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]) && numbers[0] > last_seen, "s increases: {numbers:?}");
    assert_eq!(resumed["d"], json!({"s": numbers[3]}));

    // Then live, with no gap and nothing twice.
    let live = admin.post_message(&general, "live again").await;
    let frame = back.expect_op("MESSAGE_CREATE").await;
    assert_eq!(frame["d"], live);
    assert!(s_of(&frame) > numbers[3]);
    back.expect_no_op("MESSAGE_CREATE", Duration::from_millis(300)).await;

    // Resuming from where it stands replays nothing.
    let mut again = resume(&server, member.token(), s_of(&frame), &[&general]).await;
    let (replayed, resumed) = until_resumed(&mut again).await;
    assert_eq!((replayed, resumed["d"].clone()), (vec![], json!({"s": s_of(&frame)})));
}

async fn permissions_are_checked_when_events_are_replayed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let member = server.login(2).await;
    let general = general_channel(&server, &admin).await;
    let secret = admin.create_channel("secret").await;
    let mut before = server.gateway(member.token()).await;
    subscribe(&mut before, &general).await;
    subscribe(&mut before, &secret).await;
    let seen = admin.post_message(&secret, "readable then").await;
    let frame = before.expect_op("MESSAGE_CREATE").await;
    assert_eq!(frame["d"], seen);
    drop(before);

    admin.post_message(&secret, "posted before the change").await;
    admin.post_message(&general, "in general").await;
    let denied =
        admin.put(&format!("/api/v1/channels/{secret}/overrides/everyone"), json!({"allow": 0, "deny": 2})).await;
    assert_eq!(denied.status, 200, "{:?}", denied.body);
    admin.post_message(&secret, "posted after the change").await;

    let mut back = resume(&server, member.token(), s_of(&frame), &[&general, &secret]).await;
    let (replayed, _) = until_resumed(&mut back).await;
    let messages: Vec<(String, String)> =
        summary(&replayed).into_iter().filter(|(op, _)| op == "MESSAGE_CREATE" || op == "ERROR").collect();
    assert_eq!(
        messages,
        [
            ("ERROR".to_owned(), "missing read_messages permission".to_owned()),
            ("MESSAGE_CREATE".to_owned(), "in general".to_owned()),
        ],
        "the secret channel's messages are not replayed to a member who may no longer read it"
    );
}

async fn resume_points_the_server_cannot_honour_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |c: &mut Config| c.gateway.resume_window_seconds = 1).await;
    let admin = server.login(1).await;
    let general = general_channel(&server, &admin).await;
    // Malformed: a plain HTTP 400 answers the upgrade request.
    for (query, error) in [
        ("&resume=abc", "invalid resume point"),
        ("&resume=-1", "invalid resume point"),
        ("&resume=1&subscribe=general", "invalid subscribe list"),
    ] {
        let url = format!("{}?token={}{query}", server.url("/api/v1/gateway").replacen("http", "ws", 1), admin.token());
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!((response.status().as_u16(), body), (400, json!({"error": error})), "{query}");
            }
            other => panic!("{query}: expected an HTTP 400, got {other:?}"),
        }
    }

    let mut live = server.gateway(admin.token()).await;
    subscribe(&mut live, &general).await;
    admin.post_message(&general, "one").await;
    let s = s_of(&live.expect_op("MESSAGE_CREATE").await);

    // From the future: HELLO, then 4005.
    let mut future = resume(&server, admin.token(), s + 1_000_000, &[]).await;
    assert_eq!(future.expect_close().await, 4005);

    // Older than the window: the first event after it is more than a second old.
    admin.post_message(&general, "two").await;
    live.expect_op("MESSAGE_CREATE").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut expired = resume(&server, admin.token(), s, &[]).await;
    assert_eq!(expired.expect_close().await, 4005);
}
