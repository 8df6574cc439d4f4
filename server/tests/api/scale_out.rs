//! Scale-out (api.md §6.5): two `decentcom serve` child processes sharing one PostgreSQL database
//! and one s3s-fs bucket behave as one server — logins, gateway events, DMs, media and "close
//! these connections" instructions cross from one process to the other, and killing one process
//! loses nothing it accepted.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use decentcom::testing::ScratchPg;
use ed25519_dalek::{Signer, SigningKey};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::attachments::{part, png, upload};
use crate::s3::S3Server;
use crate::server_process::{self, ServerProcess};
use crate::support::{Client, Gateway, User, log_in, pubkey_of};

/// Talking to one of the processes.
impl ServerProcess {
    fn client(&self) -> Client {
        Client { http: reqwest::Client::new(), base: self.base.clone(), token: None }
    }

    async fn login(&self, seed: u8) -> User {
        log_in(&self.client(), SigningKey::from_bytes(&[seed; 32]), false).await
    }

    /// The same user, talking to this process.
    fn as_user(&self, user: &User) -> User {
        User {
            user_id: user.user_id.clone(),
            pubkey: user.pubkey.clone(),
            key: user.key.clone(),
            client: Client { token: user.client.token.clone(), ..self.client() },
        }
    }

    async fn gateway(&self, user: &User) -> Gateway {
        Gateway::connect(&self.base, user.token()).await
    }

    /// SIGKILL: no shutdown, no flushing, connections just drop.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Two processes, A and B, over one PostgreSQL database and one S3 bucket.
struct Cluster {
    a: ServerProcess,
    b: ServerProcess,
    s3: S3Server,
    pg: ScratchPg,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// With `env` added to both processes' environment (another event bus, say).
    async fn start_with(env: &[(&str, String)]) -> Cluster {
        let pg = ScratchPg::create("scale").await;
        let s3 = S3Server::start().await;
        let dir = tempfile::tempdir().unwrap();
        let a = spawn(dir.path(), "a", pg.url(), &s3, env).await;
        let b = spawn(dir.path(), "b", pg.url(), &s3, env).await;
        Cluster { a, b, s3, pg, _dir: dir }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in [&mut self.a, &mut self.b] {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

/// Starts a process configured only through the environment, as an operator would run it
/// behind a load balancer.
async fn spawn(dir: &Path, name: &str, database_url: &str, s3: &S3Server, extra: &[(&str, String)]) -> ServerProcess {
    let workdir = dir.join(name);
    std::fs::create_dir_all(&workdir).unwrap();
    let mut env = vec![
        ("DECENTCOM_STORAGE__BACKEND", "postgres".to_owned()),
        ("DECENTCOM_STORAGE__DATABASE_URL", database_url.to_owned()),
        ("DECENTCOM_STORAGE__MEDIA__PROVIDER", "s3".to_owned()),
        ("DECENTCOM_STORAGE__MEDIA__BUCKET", s3.bucket.clone()),
        ("DECENTCOM_STORAGE__MEDIA__ENDPOINT", s3.endpoint.clone()),
        ("DECENTCOM_STORAGE__MEDIA__ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("RUST_LOG", "info".to_owned()),
        // Clients post as fast as they can (a flood to the rate limits).
        ("DECENTCOM_LIMITS__MESSAGES_PER_MINUTE", "0".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    server_process::start(&workdir, &env).await
}

async fn general_channel(user: &User) -> String {
    let r = user.get("/api/v1/channels").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let channels = r.body["channels"].as_array().unwrap_or_else(|| panic!("a channel list: {:?}", r.body));
    let general = channels.iter().find(|c| c["name"] == "general").expect("a general channel");
    general["id"].as_str().unwrap().to_owned()
}

/// SUBSCRIBE, then wait for the ERROR of a SUBSCRIBE to a missing channel: commands are handled
/// in order, so the subscription is in place when it arrives.
async fn subscribe(gateway: &mut Gateway, channel: &str) {
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": channel}})).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": "987654321"}})).await;
    assert_eq!(gateway.expect_op("ERROR").await["d"]["channel_id"], "987654321");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_issued_by_one_process_is_verified_by_the_other() {
    let cluster = Cluster::start().await;
    let key = SigningKey::from_bytes(&[7; 32]);
    let pubkey = pubkey_of(&key);
    let challenge = cluster.a.client().post("/api/v1/auth/challenge", json!({"pubkey": pubkey})).await;
    assert_eq!(challenge.status, 200, "{:?}", challenge.body);
    let text = challenge.body["challenge"].as_str().unwrap();
    let signature = BASE64.encode(key.sign(text.as_bytes()).to_bytes());
    let verify =
        cluster.b.client().post("/api/v1/auth/verify", json!({"pubkey": pubkey, "signature": signature})).await;
    assert_eq!(verify.status, 200, "{:?}", verify.body);

    // The session is shared too: the token works on both processes, and so does logging out.
    let token = verify.body["token"].as_str().unwrap().to_owned();
    let on = |process: &ServerProcess| Client { token: Some(token.clone()), ..process.client() };
    let user_id = &verify.body["user_id"];
    assert_eq!(&on(&cluster.a).get("/api/v1/auth/me").await.body["user_id"], user_id);
    assert_eq!(&on(&cluster.b).get("/api/v1/auth/me").await.body["user_id"], user_id);
    assert_eq!(on(&cluster.b).post_empty("/api/v1/auth/logout").await.status, 204);
    assert_eq!(on(&cluster.a).get("/api/v1/auth/me").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_posted_through_one_process_reach_gateways_on_the_other_in_order() {
    let cluster = Cluster::start().await;
    let admin = cluster.a.login(1).await;
    let channel = general_channel(&admin).await;
    let mut on_b = cluster.b.gateway(&cluster.b.as_user(&admin)).await;
    subscribe(&mut on_b, &channel).await;

    // Small messages travel inline in the notification; a message of 2000 four-byte characters
    // is larger than a NOTIFY payload may be and travels by reference. Both arrive, in order.
    let big = "🦀".repeat(2000);
    let mut posted = Vec::new();
    for i in 0..20 {
        let content = if i == 10 { big.clone() } else { format!("message {i}") };
        posted.push(admin.post_message(&channel, &content).await);
    }
    for message in &posted {
        let event = on_b.expect_op("MESSAGE_CREATE").await;
        assert_eq!(&event["d"], message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_through_one_process_reaches_only_its_two_participants_on_both() {
    let cluster = Cluster::start().await;
    let alice = cluster.a.login(1).await;
    let bob = cluster.a.login(2).await;
    let carol = cluster.a.login(3).await;
    let mut alice_on_a = cluster.a.gateway(&alice).await;
    let mut bob_on_b = cluster.b.gateway(&cluster.b.as_user(&bob)).await;
    let mut carol_on_a = cluster.a.gateway(&carol).await;
    let mut carol_on_b = cluster.b.gateway(&cluster.b.as_user(&carol)).await;

    let alice_via_b = cluster.b.as_user(&alice);
    let dm = alice_via_b.post("/api/v1/dms", json!({"recipient_pubkey": bob.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm = dm.body["channel_id"].as_str().unwrap().to_owned();
    let sent = alice_via_b.post(&format!("/api/v1/dms/{dm}/messages"), json!({"content": "just us"})).await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);

    for gateway in [&mut alice_on_a, &mut bob_on_b] {
        assert_eq!(gateway.expect_op("DM_MESSAGE_CREATE").await["d"], sent.body);
    }
    for gateway in [&mut carol_on_a, &mut carol_on_b] {
        gateway.expect_no_op("DM_MESSAGE_CREATE", Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_on_one_process_closes_the_sessions_gateway_on_the_other() {
    let cluster = Cluster::start().await;
    let admin = cluster.a.login(1).await;
    let mut on_b = cluster.b.gateway(&cluster.b.as_user(&admin)).await;
    assert_eq!(admin.post_empty("/api/v1/auth/logout").await.status, 204);
    assert_eq!(on_b.expect_close().await, 4003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_uploaded_through_one_process_is_redirected_to_by_the_other() {
    let cluster = Cluster::start().await;
    let admin = cluster.a.login(1).await;
    let channel = general_channel(&admin).await;
    let image = png(4, 4);
    let uploaded = upload(&admin, &channel, &[part("pixel.png", "image/png", &image)]).await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let hash = uploaded.body[0]["content_hash"].as_str().unwrap();

    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirects.get(format!("{}/api/v1/media/{hash}", cluster.b.base)).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&cluster.s3.endpoint), "{location}");
    let fetched = no_redirects.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_process_mid_traffic_loses_no_accepted_message_and_the_other_keeps_serving() {
    let mut cluster = Cluster::start().await;
    let admin = cluster.a.login(1).await;
    let channel = general_channel(&admin).await;

    // Four clients post through A as fast as they can, each keeping what A accepted, until A
    // stops answering.
    let posters: Vec<_> = (0..4)
        .map(|poster| {
            let client = admin.client.clone();
            let path = format!("/api/v1/channels/{channel}/messages");
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0.. {
                    let content = format!("poster {poster} message {i}");
                    let req = client.request(reqwest::Method::POST, &path).json(&json!({ "content": content }));
                    match req.send().await {
                        Ok(resp) if resp.status() == 200 => {
                            let message: Value = resp.json().await.unwrap();
                            accepted.push((message["id"].as_str().unwrap().to_owned(), content));
                        }
                        Ok(resp) => panic!("A refused a message before it was killed: {}", resp.status()),
                        Err(_) => return accepted,
                    }
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.a.kill();
    let mut accepted = Vec::new();
    for poster in posters {
        accepted.extend(poster.await.unwrap());
    }
    assert!(accepted.len() >= 4, "A accepted only {} messages before it was killed", accepted.len());

    // Every message A accepted is there, through B.
    let via_b = cluster.b.as_user(&admin);
    for (id, content) in &accepted {
        let r = via_b.get(&format!("/api/v1/channels/{channel}/messages/{id}")).await;
        assert_eq!(r.status, 200, "message {id} ({content}) accepted by A is missing: {:?}", r.body);
        assert_eq!(r.body["content"], content.as_str());
    }
    // And B keeps serving: reads, writes and the gateway.
    let mut gateway = cluster.b.gateway(&via_b).await;
    subscribe(&mut gateway, &channel).await;
    let after = via_b.post_message(&channel, "after the crash").await;
    assert_eq!(gateway.expect_op("MESSAGE_CREATE").await["d"], after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_loses_its_listen_connection_reconnects_and_says_so() {
    let cluster = Cluster::start().await;
    let admin = cluster.a.login(1).await;
    let channel = general_channel(&admin).await;
    let mut on_b = cluster.b.gateway(&cluster.b.as_user(&admin)).await;
    subscribe(&mut on_b, &channel).await;

    let cut = cluster.pg.cut_listen_connections().await;
    assert_eq!(cut, [true, true], "one listen connection per process");

    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&cluster.b.log).unwrap().contains("event bus: listening again") {
        assert!(
            Instant::now() < deadline,
            "B did not log its reconnection:\n{}",
            std::fs::read_to_string(&cluster.b.log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&cluster.b.log).unwrap();
    assert!(log.contains("event bus: lost the LISTEN connection to PostgreSQL; reconnecting"), "{log}");

    let message = admin.post_message(&channel, "after the reconnection").await;
    assert_eq!(on_b.expect_op("MESSAGE_CREATE").await["d"], message);
}

/// What one gateway client saw while messages flowed: the MESSAGE_CREATEs (id, s) in arrival
/// order, and the close code if the server closed it.
struct Seen {
    messages: Vec<(String, u64)>,
    closed: Option<u16>,
}

/// Six gateway clients (three on each process) watch a channel while two posters (one through
/// each process) post 150 messages each, and `cut` breaks the bus half a second in. Every client
/// must end with every accepted message exactly once, in the bus's order (`s` increasing, each
/// poster's messages in its order) — or closed with 4005 having seen no message twice.
async fn every_client_gets_every_event_once_in_order_or_4005(
    cluster: &Cluster,
    cut: impl std::future::Future<Output = ()>,
) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let admin = cluster.a.login(1).await;
    let channel = general_channel(&admin).await;
    let mut watchers = Vec::new();
    for seed in 2..8u8 {
        let process = if seed % 2 == 0 { &cluster.a } else { &cluster.b };
        let user = process.login(seed).await;
        let mut gateway = process.gateway(&user).await;
        subscribe(&mut gateway, &channel).await;
        watchers.push(tokio::spawn(async move {
            let mut seen = Seen { messages: Vec::new(), closed: None };
            // Reads until the socket closes or falls quiet for 8 s after the last message.
            while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(8), gateway.socket.next()).await {
                match frame {
                    Ok(WsMessage::Text(text)) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        if frame["op"] == "MESSAGE_CREATE" {
                            let id = frame["d"]["id"].as_str().unwrap().to_owned();
                            seen.messages.push((id, frame["s"].as_u64().expect("s on every dispatch")));
                        } else if frame["op"] == "HEARTBEAT" {
                            gateway.send(json!({"op": "HEARTBEAT_ACK"})).await;
                        }
                    }
                    Ok(WsMessage::Close(close)) => {
                        seen.closed = Some(close.map_or(1005, |c| u16::from(c.code)));
                        break;
                    }
                    Ok(_) => {}
                    Err(err) => panic!("gateway error: {err}"),
                }
            }
            seen
        }));
    }

    let posters: Vec<_> = [&cluster.a, &cluster.b]
        .into_iter()
        .enumerate()
        .map(|(poster, process)| {
            let client = process.as_user(&admin).client;
            let path = format!("/api/v1/channels/{channel}/messages");
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0..150 {
                    let body = json!({ "content": format!("poster {poster} message {i}") });
                    let r = client.post(&path, body).await;
                    assert_eq!(r.status, 200, "poster {poster} message {i}: {:?}", r.body);
                    accepted.push(r.body["id"].as_str().unwrap().to_owned());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cut.await;
    let mut accepted = Vec::new();
    for poster in posters {
        accepted.push(poster.await.unwrap());
    }
    let every: std::collections::BTreeSet<&String> = accepted.iter().flatten().collect();

    let mut resynced = 0;
    for (n, watcher) in watchers.into_iter().enumerate() {
        let seen = watcher.await.unwrap();
        let numbers: Vec<u64> = seen.messages.iter().map(|(_, s)| *s).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "client {n}: s must increase, nothing twice: {numbers:?}");
        let ids: Vec<&String> = seen.messages.iter().map(|(id, _)| id).collect();
        assert!(ids.iter().all(|id| every.contains(id)), "client {n} got a message nobody posted");
        match seen.closed {
            Some(4005) => resynced += 1,
            closed => {
                assert_eq!(closed, None, "client {n} was closed otherwise than with 4005");
                let missed: Vec<usize> = accepted
                    .iter()
                    .flat_map(|posted| posted.iter().enumerate())
                    .filter(|(_, id)| !ids.contains(id))
                    .map(|(i, _)| i)
                    .collect();
                assert!(
                    missed.is_empty(),
                    "client {n} missed messages (by poster order: {missed:?}) and was not told (4005); logs:\n{}\n{}",
                    std::fs::read_to_string(&cluster.a.log).unwrap_or_default(),
                    std::fs::read_to_string(&cluster.b.log).unwrap_or_default()
                );
                assert_eq!(ids.len(), every.len(), "client {n} got a message twice");
                for (poster, posted) in accepted.iter().enumerate() {
                    let order: Vec<&String> = ids.iter().copied().filter(|id| posted.contains(id)).collect();
                    assert_eq!(order, posted.iter().collect::<Vec<_>>(), "client {n}: poster {poster}'s order");
                }
            }
        }
    }
    // The logs hold a catch-up, not a loss: nobody needed a resync.
    assert_eq!(resynced, 0, "the log held every missed event: a catch-up, not a resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_listen_connections_loses_no_event_for_any_gateway_client() {
    let cluster = Cluster::start().await;
    let cut = async {
        assert_eq!(cluster.pg.cut_listen_connections().await, [true, true], "one LISTEN connection per process");
    };
    every_client_gets_every_event_once_in_order_or_4005(&cluster, cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_loses_no_event_for_any_gateway_client() {
    let mut nats = crate::nats_server::OwnNatsServer::start().await;
    let cluster =
        Cluster::start_with(&[("DECENTCOM_BUS__PROVIDER", "nats".to_owned()), ("DECENTCOM_BUS__NATS_URL", nats.url())])
            .await;
    every_client_gets_every_event_once_in_order_or_4005(&cluster, nats.restart(Duration::from_secs(1))).await;
}
