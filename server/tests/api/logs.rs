//! Logs (README "Logs"): the real binary at debug level with `logging.format = "json"`, on
//! PostgreSQL with a password in its URL and S3 media on s3s-fs, driven through login, a message,
//! an upload and a media download (a pre-signed URL). Every line is one JSON object, a request's
//! lines carry its request id, and no line at any level holds the session token, the database
//! password, the S3 secret key or the pre-signed URL's signature.

use ed25519_dalek::SigningKey;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::attachments::{part, upload};
use crate::s3::S3Server;
use crate::server_process;
use crate::support::{Client, log_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids_and_no_secrets() {
    let s3 = S3Server::start().await;
    let pg = decentcom::testing::ScratchPg::create("logs").await;
    // The URL's own password when it has one (it is then a real secret), else one that trust
    // authentication ignores: either way it must never be logged.
    let mut url = url::Url::parse(pg.url()).unwrap();
    let password = match url.password() {
        Some(password) => password.to_owned(),
        None => {
            let password = format!("pw-{}", hex::encode(rand::random::<[u8; 8]>()));
            url.set_password(Some(&password)).unwrap();
            password
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DECENTCOM_LOGGING__FORMAT", "json".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
        ("DECENTCOM_STORAGE__BACKEND", "postgres".to_owned()),
        ("DECENTCOM_STORAGE__DATABASE_URL", url.to_string()),
        ("DECENTCOM_STORAGE__MEDIA__PROVIDER", "s3".to_owned()),
        ("DECENTCOM_STORAGE__MEDIA__BUCKET", s3.bucket.clone()),
        ("DECENTCOM_STORAGE__MEDIA__ENDPOINT", s3.endpoint.clone()),
        ("DECENTCOM_STORAGE__MEDIA__ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
    ];
    let mut server = server_process::start(dir.path(), &env).await;

    let anon = Client { http: reqwest::Client::new(), base: server.base.clone(), token: None };
    let user = log_in(&anon, SigningKey::from_bytes(&[1; 32]), false).await;
    let token = user.token().to_owned();
    let channels = user.get("/api/v1/channels").await;
    let channel = channels.body["channels"][0]["id"].as_str().unwrap().to_owned();
    let post = user
        .send(
            user.request(reqwest::Method::POST, &format!("/api/v1/channels/{channel}/messages"))
                .header("x-request-id", "logs-test-post")
                .json(&json!({"content": "hello logs"})),
        )
        .await;
    assert_eq!(post.status, 200, "{:?}", post.body);
    let uploaded = upload(&user.client, &channel, &[part("notes.txt", "text/plain", b"some notes")]).await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let media_id = uploaded.body[0]["content_hash"].as_str().unwrap().to_owned();
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let media = no_redirects
        .get(format!("{}/api/v1/media/{media_id}", server.base))
        .bearer_auth(&token)
        .header("x-request-id", "logs-test-media")
        .send()
        .await
        .unwrap();
    assert_eq!(media.status(), 302);
    let location = media.headers()["location"].to_str().unwrap().to_owned();
    let signature = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned())
        .expect("a pre-signed URL");
    // A request that fails authentication logs too.
    let bad = anon.send(anon.request(reqwest::Method::GET, "/api/v1/auth/me").bearer_auth(format!("{token}x"))).await;
    assert_eq!(bad.status, 401);

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let log = std::fs::read_to_string(&server.log).unwrap();

    for (name, secret) in [
        ("the session token", token.as_str()),
        ("the database password", password.as_str()),
        ("the S3 secret key", s3.secret_key.as_str()),
        ("the pre-signed URL's signature", signature.as_str()),
    ] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{name} is in {} log lines, e.g.:\n{}", leaks.len(), leaks[0]);
    }

    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() > 20, "a debug-level run logs plenty: {}", lines.len());
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["target"].is_string(), "{line}");
    }
    let request_id = |line: &Value| -> Option<String> {
        line["spans"].as_array()?.iter().find(|s| s["name"] == "request")?["request_id"].as_str().map(str::to_owned)
    };
    let of = |id: &str| lines.iter().filter(|l| request_id(l).as_deref() == Some(id)).collect::<Vec<_>>();
    let post_lines = of("logs-test-post");
    let messages: Vec<&str> = post_lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"started") && messages.contains(&"finished"), "{post_lines:#?}");
    assert!(
        post_lines.iter().any(|l| l["target"].as_str().is_some_and(|t| t.starts_with("sqlx"))),
        "the database driver's lines carry the request id too: {post_lines:#?}"
    );
    let finished = post_lines.iter().find(|l| l["message"] == "finished").unwrap();
    assert_eq!(finished["status"], 200);
    assert!(!of("logs-test-media").is_empty());
    let started: Vec<&Value> = lines.iter().filter(|l| l["message"] == "listening").collect();
    assert_eq!(started.len(), 1, "one listening line");
}
