//! The harness of the HTTP integration suite: a real server on an ephemeral port over a fresh
//! database (SQLite file or PostgreSQL scratch database), an HTTP client, real Ed25519 logins and a
//! WebSocket client for the gateway.

// Not every suite module uses every helper.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use decentcom::config::Config;
use decentcom::testing::ScratchPg;
use ed25519_dalek::{Signer, SigningKey};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generates one `#[tokio::test]` per backend for each listed suite function
/// (`async fn name(server: TestServer)`).
#[macro_export]
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestServer::start($crate::support::Backend::Sqlite).await).await
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestServer::start($crate::support::Backend::Postgres).await).await
                }
            )*
        }
    };
}

pub use decentcom::config::Backend;

/// A running server. Dropping it stops the server and removes its database and files.
pub struct TestServer {
    pub base: String,
    pub backend: Backend,
    /// The server's storage, for checks of what the database holds.
    pub storage: std::sync::Arc<dyn decentcom::storage::Storage>,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    _pg: Option<ScratchPg>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server whose configuration `tweak` may change (features, limits, membership …).
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::try_start(backend, tweak, None).await.expect("server prepares")
    }

    /// Starts a server whose media provider is S3 on `s3` (path style, plain HTTP, the keys of
    /// `s3`); `tweak` may change the configuration further.
    pub async fn start_s3(backend: Backend, s3: &crate::s3::S3Server, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::try_start_s3(backend, s3, tweak).await.expect("server prepares")
    }

    pub async fn try_start_s3(
        backend: Backend,
        s3: &crate::s3::S3Server,
        tweak: impl FnOnce(&mut Config),
    ) -> eyre::Result<TestServer> {
        let (endpoint, bucket) = (s3.endpoint.clone(), s3.bucket.clone());
        let configure = move |config: &mut Config| {
            let media = &mut config.storage.media;
            media.provider = decentcom::config::MediaProvider::S3;
            media.endpoint = Some(endpoint);
            media.bucket = Some(bucket);
            media.allow_http = true;
            media.region = "us-east-1".into();
            tweak(config);
        };
        Self::try_start(backend, configure, Some(s3.credentials())).await
    }

    /// Starts a server, or returns the startup error; S3 credentials are passed, never read from
    /// the environment.
    pub async fn try_start(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        s3_credentials: Option<decentcom::media::S3Credentials>,
    ) -> eyre::Result<TestServer> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.database_path = dir.path().join("decentcom.db");
        config.storage.media.path = dir.path().join("media");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let pg = ScratchPg::create("api").await;
                config.storage.backend = Backend::Postgres;
                config.storage.database_url = Some(pg.url().to_owned());
                Some(pg)
            }
        };
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = decentcom::http::prepare_with_credentials(config, s3_credentials).await?;
        let storage = state.storage.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            decentcom::http::serve_on(listener, state, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Ok(TestServer {
            base: format!("http://{addr}"),
            backend,
            storage,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
            _pg: pg,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The name of the server's PostgreSQL scratch database (PostgreSQL servers only).
    pub fn database_name(&self) -> &str {
        self._pg.as_ref().expect("a PostgreSQL server").name()
    }

    /// An anonymous client.
    pub fn anonymous(&self) -> Client {
        Client { http: self.http.clone(), base: self.base.clone(), token: None }
    }

    /// Logs in with the key derived from `seed` (challenge, sign, verify) and returns the user.
    pub async fn login(&self, seed: u8) -> User {
        self.login_key(SigningKey::from_bytes(&[seed; 32]), false).await
    }

    pub async fn login_bot(&self, seed: u8) -> User {
        self.login_key(SigningKey::from_bytes(&[seed; 32]), true).await
    }

    pub async fn login_key(&self, key: SigningKey, is_bot: bool) -> User {
        log_in(&self.anonymous(), key, is_bot).await
    }

    /// Connects to the gateway with `token` and returns the socket after HELLO and READY.
    pub async fn gateway(&self, token: &str) -> Gateway {
        Gateway::connect(&self.base, token).await
    }
}

/// Logs in with `key` through the server behind `anon` and returns the user.
pub async fn log_in(anon: &Client, key: SigningKey, is_bot: bool) -> User {
    let (token, user_id) = sign_in(anon, &key, is_bot).await;
    User { user_id, pubkey: pubkey_of(&key), key, client: Client { token: Some(token), ..anon.clone() } }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The real login flow against the server behind `anon`: challenge, sign the challenge text,
/// verify. Returns the session token and the user id.
pub async fn sign_in(anon: &Client, key: &SigningKey, is_bot: bool) -> (String, String) {
    let pubkey = pubkey_of(key);
    let challenge = anon.post("/api/v1/auth/challenge", json!({"pubkey": pubkey, "is_bot": is_bot})).await;
    assert_eq!(challenge.status, 200, "challenge: {:?}", challenge.body);
    let text = challenge.body["challenge"].as_str().unwrap().to_owned();
    let signature = BASE64.encode(key.sign(text.as_bytes()).to_bytes());
    let verify = anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey, "signature": signature})).await;
    assert_eq!(verify.status, 200, "verify: {:?}", verify.body);
    (verify.body["token"].as_str().unwrap().to_owned(), verify.body["user_id"].as_str().unwrap().to_owned())
}

pub fn pubkey_of(key: &SigningKey) -> String {
    bs58::encode(key.verifying_key().to_bytes()).into_string()
}

/// A logged-in user.
pub struct User {
    pub user_id: String,
    pub pubkey: String,
    pub key: SigningKey,
    pub client: Client,
}

impl User {
    pub fn token(&self) -> &str {
        self.client.token.as_deref().unwrap()
    }
}

impl std::ops::Deref for User {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A response: status, headers, and the body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub bytes: bytes::Bytes,
}

impl Resp {
    /// The `error` message of a JSON error body.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| panic!("not an error body: {:?}", self.body))
    }
}

/// An HTTP client, authenticated when it has a token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, headers, body, bytes }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    /// POST with no body at all.
    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::POST, path)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path).json(&body)).await
    }

    pub async fn put_empty(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::PATCH, path).json(&body)).await
    }
}

/// A gateway connection.
pub struct Gateway {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Gateway {
    /// Connects to the gateway of the server at `base` with `token`; returns after HELLO and READY.
    pub async fn connect(base: &str, token: &str) -> Gateway {
        let url = format!("{}/api/v1/gateway?token={token}", base.replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("gateway connects");
        let mut gateway = Gateway { socket };
        let hello = gateway.next_frame().await;
        assert_eq!(hello["op"], "HELLO", "{hello}");
        let ready = gateway.next_frame().await;
        assert_eq!(ready["op"], "READY", "{ready}");
        gateway
    }

    /// The next text frame as JSON (fails after 5 s).
    pub async fn next_frame(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("a gateway frame within 5 s")
                .expect("the gateway is open")
                .expect("a valid frame");
            match msg {
                WsMessage::Text(text) => return serde_json::from_str(&text).unwrap(),
                WsMessage::Close(frame) => panic!("gateway closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next event with `op`, skipping heartbeats and others (fails after 5 s).
    pub async fn expect_op(&mut self, op: &str) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["op"] == op {
                return frame;
            }
        }
    }

    /// Asserts that no event with `op` arrives within `wait`.
    pub async fn expect_no_op(&mut self, op: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            if let WsMessage::Text(text) = msg {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(frame["op"], op, "unexpected {frame}");
            }
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.socket.send(WsMessage::Text(value.to_string().into())).await.unwrap();
    }

    /// Waits for the server to close the connection and returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("the gateway closes within 5 s");
            match msg {
                Some(Ok(WsMessage::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(WsMessage::Close(None))) | None => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("gateway error before close: {e}"),
            }
        }
    }
}

impl User {
    /// Creates a text channel (the user needs MANAGE_CHANNELS) and returns its id.
    pub async fn create_channel(&self, name: &str) -> String {
        let r = self.post("/api/v1/channels", json!({ "name": name })).await;
        assert_eq!(r.status, 200, "create channel: {:?}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Posts a message to a channel and returns it.
    pub async fn post_message(&self, channel: &str, content: &str) -> Value {
        let r = self.post(&format!("/api/v1/channels/{channel}/messages"), json!({ "content": content })).await;
        assert_eq!(r.status, 200, "post message: {:?}", r.body);
        r.body
    }
}
