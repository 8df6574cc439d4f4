//! The gateway (api.md §6): handshake and authentication, HELLO/READY, heartbeats, SUBSCRIBE and
//! event scopes, close codes.

use std::time::Duration;

use decentcom::config::Config;
use ed25519_dalek::SigningKey;
use futures::SinkExt;
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::attachments::general_channel;
use crate::support::{Backend, Gateway, TestServer};

crate::backend_tests!(
    hello_and_ready_describe_the_server,
    the_token_comes_from_the_header_or_the_query,
    handshake_errors_are_plain_http,
    bad_tokens_and_non_members_are_closed_with_4001,
    channel_events_reach_subscribers_only,
    subscribe_is_refused_without_read_messages,
    heartbeats_must_be_acknowledged,
    oversized_frames_close_with_1009,
    a_client_close_is_answered_with_its_code,
    logout_closes_that_sessions_connections,
    shutdown_closes_connections_with_1001,
);

fn ws_url(base: &str, query: &str) -> String {
    format!("{}/api/v1/gateway{query}", base.replacen("http", "ws", 1))
}

/// Connects without reading anything.
pub async fn connect(base: &str, query: &str, bearer: Option<&str>) -> Gateway {
    let mut request = ws_url(base, query).into_client_request().unwrap();
    if let Some(token) = bearer {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("gateway connects");
    Gateway { socket }
}

/// Sends SUBSCRIBE for a channel that does not exist and waits for its ERROR: commands are
/// handled in order, so every earlier command has taken effect.
async fn sync(gateway: &mut Gateway) {
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": "987654321"}})).await;
    let error = gateway.expect_op("ERROR").await;
    assert_eq!(error["d"]["channel_id"], "987654321");
}

pub async fn subscribe(gateway: &mut Gateway, channel: &str) {
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": channel}})).await;
    sync(gateway).await;
}

async fn hello_and_ready_describe_the_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let mut gateway = connect(&server.base, &format!("?token={}", admin.token()), None).await;
    let hello = gateway.next_frame().await;
    assert_eq!(hello["op"], "HELLO");
    assert!(hello["t"].is_i64(), "{hello}");
    let now = chrono::Utc::now().timestamp();
    assert!((hello["t"].as_i64().unwrap() - now).abs() < 60);
    let channels = hello["d"]["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1);
    let general = channels[0]["id"].as_str().unwrap();
    assert_eq!(
        hello["d"],
        json!({
            "server_name": "decentcom",
            "user": {"id": admin.user_id, "pubkey": admin.pubkey, "display_name": null},
            "channels": [{"id": general, "name": "general"}],
            "heartbeat_interval_ms": 30000,
        })
    );
    let ready = gateway.next_frame().await;
    assert_eq!(ready["op"], "READY");
    assert_eq!(ready["d"], json!({}));
    assert!(ready["t"].is_i64());

    // Unknown ops and unparsable frames are ignored; the connection stays usable.
    gateway.send(json!({"op": "DANCE", "d": {}})).await;
    gateway.socket.send(WsMessage::Text("not json".into())).await.unwrap();
    gateway.send(json!({"op": "SUBSCRIBE"})).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": "abc"}})).await;
    let error = gateway.expect_op("ERROR").await;
    assert_eq!(error["d"], json!({"command": "SUBSCRIBE", "channel_id": "abc", "error": "channel not found"}));
    sync(&mut gateway).await;
}

async fn the_token_comes_from_the_header_or_the_query(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let mut by_header = connect(&server.base, "", Some(admin.token())).await;
    assert_eq!(by_header.next_frame().await["op"], "HELLO");
    // The header wins over the query parameter, both ways.
    let mut header_wins = connect(&server.base, "?token=0123456789abcdef0123456789abcdef", Some(admin.token())).await;
    assert_eq!(header_wins.next_frame().await["op"], "HELLO");
    let mut bad_header =
        connect(&server.base, &format!("?token={}", admin.token()), Some("0123456789abcdef0123456789abcdef")).await;
    assert_eq!(bad_header.expect_close().await, 4001);
}

async fn handshake_errors_are_plain_http(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let anon = server.anonymous();
    let resp = anon.get("/api/v1/gateway").await;
    assert_eq!((resp.status, resp.error()), (401, "missing session token"));
    let resp = admin.get("/api/v1/gateway").await;
    assert_eq!((resp.status, resp.error()), (400, "expected websocket upgrade"));
    let resp = anon.get(&format!("/api/v1/gateway?token={}", admin.token())).await;
    assert_eq!((resp.status, resp.error()), (400, "expected websocket upgrade"));
}

async fn bad_tokens_and_non_members_are_closed_with_4001(backend: Backend) {
    let server =
        TestServer::start_with(backend, |c| c.membership.mode = decentcom::config::MembershipMode::InviteOnly).await;
    let _admin = server.login(1).await;
    let outsider = server.login(2).await;
    let mut bad = connect(&server.base, "?token=0123456789abcdef0123456789abcdef", None).await;
    assert_eq!(bad.expect_close().await, 4001);
    let mut not_member = connect(&server.base, &format!("?token={}", outsider.token()), None).await;
    assert_eq!(not_member.expect_close().await, 4001);
}

async fn channel_events_reach_subscribers_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let member = server.login(2).await;
    let general = general_channel(&server, &admin).await;
    let mut a = server.gateway(admin.token()).await;
    let mut m = server.gateway(member.token()).await;
    subscribe(&mut a, &general).await;
    // Subscribing twice is harmless.
    subscribe(&mut a, &general).await;

    let path = format!("/api/v1/channels/{general}/messages");
    let sent = member.post(&path, json!({"content": "hello subscribers"})).await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    let event = a.expect_op("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["content"], "hello subscribers");
    assert_eq!(event["d"]["id"], sent.body["id"]);
    assert_eq!(event["d"]["channel_id"], general.as_str());
    assert!(event["t"].is_i64());
    m.expect_no_op("MESSAGE_CREATE", Duration::from_millis(300)).await;

    // Per-channel order is commit order.
    for i in 0..5 {
        let sent = admin.post(&path, json!({"content": format!("n{i}")})).await;
        assert_eq!(sent.status, 200, "{:?}", sent.body);
    }
    for i in 0..5 {
        let event = a.expect_op("MESSAGE_CREATE").await;
        assert_eq!(event["d"]["content"], format!("n{i}"));
    }

    subscribe(&mut m, &general).await;
    a.send(json!({"op": "UNSUBSCRIBE", "d": {"channel_id": general}})).await;
    sync(&mut a).await;
    // Unsubscribing from a channel one is not subscribed to is a no-op.
    m.send(json!({"op": "UNSUBSCRIBE", "d": {"channel_id": "424242"}})).await;
    let sent = admin.post(&path, json!({"content": "second"})).await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    assert_eq!(m.expect_op("MESSAGE_CREATE").await["d"]["content"], "second");
    a.expect_no_op("MESSAGE_CREATE", Duration::from_millis(300)).await;
}

async fn subscribe_is_refused_without_read_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let member = server.login(2).await;
    let mut m = server.gateway(member.token()).await;
    let mut a = server.gateway(admin.token()).await;
    let created = admin.post("/api/v1/channels", json!({"name": "secret"})).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let secret = created.body["id"].as_str().unwrap().to_owned();
    // CHANNEL_CREATE goes to every connection, subscribed or not.
    assert_eq!(m.expect_op("CHANNEL_CREATE").await["d"]["id"], secret.as_str());
    let put = admin.put(&format!("/api/v1/channels/{secret}/overrides/everyone"), json!({"allow": 0, "deny": 2})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);

    m.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": secret}})).await;
    let error = m.expect_op("ERROR").await;
    assert_eq!(
        error["d"],
        json!({"command": "SUBSCRIBE", "channel_id": secret, "error": "missing read_messages permission"})
    );
    let sent = admin.post(&format!("/api/v1/channels/{secret}/messages"), json!({"content": "psst"})).await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    m.expect_no_op("MESSAGE_CREATE", Duration::from_millis(300)).await;

    // The administrator may subscribe; deleting the channel drops the subscription.
    subscribe(&mut a, &secret).await;
    let deleted = admin.delete(&format!("/api/v1/channels/{secret}")).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(a.expect_op("CHANNEL_DELETE").await["d"], json!({"id": secret}));
    a.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": secret}})).await;
    let error = a.expect_op("ERROR").await;
    assert_eq!(error["d"]["error"], "channel not found");
}

async fn heartbeats_must_be_acknowledged(backend: Backend) {
    let server = TestServer::start_with(backend, |c: &mut Config| {
        c.gateway.heartbeat_interval_ms = 200;
        c.gateway.heartbeat_ack_timeout_ms = 600;
    })
    .await;
    let admin = server.login(1).await;
    let mut gateway = connect(&server.base, &format!("?token={}", admin.token()), None).await;
    let hello = gateway.next_frame().await;
    assert_eq!(hello["d"]["heartbeat_interval_ms"], 200);
    assert_eq!(gateway.next_frame().await["op"], "READY");
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        let beat = gateway.next_frame().await;
        assert_eq!(beat["op"], "HEARTBEAT");
        assert_eq!(beat["d"], json!({}));
        gateway.send(json!({"op": "HEARTBEAT_ACK", "d": {}})).await;
    }
    // Acknowledged heartbeats keep the connection open well past the ack timeout.
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Stop answering: closed with 4002.
    assert_eq!(gateway.expect_close().await, 4002);
}

async fn oversized_frames_close_with_1009(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let mut gateway = server.gateway(admin.token()).await;
    // 16 KiB is fine.
    let padding = "x".repeat(16 * 1024 - 60);
    let fits = json!({"op": "NOOP", "d": {"pad": padding}}).to_string();
    assert!(fits.len() <= 16 * 1024);
    gateway.socket.send(WsMessage::Text(fits.into())).await.unwrap();
    sync(&mut gateway).await;
    let big = json!({"op": "SUBSCRIBE", "d": {"channel_id": "1", "pad": "y".repeat(17 * 1024)}}).to_string();
    gateway.socket.send(WsMessage::Text(big.into())).await.unwrap();
    assert_eq!(gateway.expect_close().await, 1009);
}

async fn a_client_close_is_answered_with_its_code(backend: Backend) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let mut gateway = server.gateway(admin.token()).await;
    let frame = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
    gateway.socket.send(WsMessage::Close(Some(frame))).await.unwrap();
    // The closing handshake completes: the server's Close frame comes back with code 1000.
    assert_eq!(gateway.expect_close().await, 1000);
}

async fn logout_closes_that_sessions_connections(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.login(1).await;
    let second = server.login(1).await;
    let mut g1 = server.gateway(first.token()).await;
    let mut g2 = server.gateway(second.token()).await;
    let resp = first.post_empty("/api/v1/auth/logout").await;
    assert_eq!(resp.status, 204, "{:?}", resp.body);
    assert_eq!(g1.expect_close().await, 4003);
    // The user's other session keeps its connection.
    sync(&mut g2).await;
}

/// A server this test can shut down gracefully (the harness's servers stop when dropped).
async fn shutdown_closes_connections_with_1001(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.database_path = dir.path().join("decentcom.db");
    config.storage.media.path = dir.path().join("media");
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let pg = decentcom::testing::ScratchPg::create("api").await;
            config.storage.backend = Backend::Postgres;
            config.storage.database_url = Some(pg.url().to_owned());
            Some(pg)
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = decentcom::http::prepare(config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(decentcom::http::serve_on(listener, state, async {
        let _ = rx.await;
    }));

    let token = login(&base, 7).await;
    let mut gateway = connect(&base, &format!("?token={token}"), None).await;
    assert_eq!(gateway.next_frame().await["op"], "HELLO");
    assert_eq!(gateway.next_frame().await["op"], "READY");
    tx.send(()).unwrap();
    assert_eq!(gateway.expect_close().await, 1001);
    let stopped = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "the server stops: {stopped:?}");
    drop(pg);
}

/// Logs in against a server that is not a `TestServer`; returns the session token.
async fn login(base: &str, seed: u8) -> String {
    let anon = crate::support::Client { http: reqwest::Client::new(), base: base.to_owned(), token: None };
    crate::support::sign_in(&anon, &SigningKey::from_bytes(&[seed; 32]), false).await.0
}
