//! Media stores failing under uploads: s3s-fs killed and restarted while files stream in, and a
//! server SIGKILLed mid-upload on local disk and on S3 — afterwards nothing refers to a missing
//! blob and, once stale, every temporary the failures left is gone.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use decentcom::media::{Blobs, check};
use futures::StreamExt;
use pretty_assertions::assert_eq;

use crate::s3::S3Server;
use crate::server_process::{self, ServerProcess};
use crate::support::{Backend, Client, TestServer, User, log_in};

const BOUNDARY: &str = "fault-boundary-7d1f";

/// A multipart upload of `total` bytes of `fill`, sent in 256 KiB chunks `gap` apart (a slow
/// client), to `channel`.
fn slow_upload(user: &Client, channel: &str, total: usize, gap: Duration) -> reqwest::RequestBuilder {
    let head = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let chunk = 256 * 1024;
    let pieces = total.div_ceil(chunk);
    let body = futures::stream::iter(std::iter::once(Bytes::from(head)))
        .chain(futures::stream::iter(0..pieces).then(move |i| async move {
            tokio::time::sleep(gap).await;
            Bytes::from(vec![(i % 251) as u8; chunk.min(total - i * chunk)])
        }))
        .chain(futures::stream::iter(std::iter::once(Bytes::from(tail))))
        .map(Ok::<_, std::io::Error>);
    user.request(reqwest::Method::POST, &format!("/api/v1/channels/{channel}/attachments"))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(reqwest::Body::wrap_stream(body))
}

async fn general_channel(user: &Client) -> String {
    let r = user.get("/api/v1/channels").await;
    r.body["channels"][0]["id"].as_str().unwrap().to_owned()
}

/// Bytes of the files under `dir` whose names start with `prefix` (recursively).
fn bytes_under(dir: &Path, matches: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                bytes_under(&e.path(), matches)
            } else if matches(&e.file_name().to_string_lossy()) {
                meta.len()
            } else {
                0
            }
        })
        .sum()
}

/// What failed uploads leave in an s3s-fs data directory: multipart parts, and objects under
/// the temporary prefix (with their markers).
fn s3_leftovers(s3: &S3Server) -> u64 {
    bytes_under(&s3.data_dir(), &|name| name.starts_with(".upload_id-"))
        + bytes_under(&s3.data_dir().join(&s3.bucket).join("tmp"), &|_| true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_during_uploads_answers_503_and_leaves_nothing_after_the_sweep() {
    let mut s3 = S3Server::start().await;
    let server = TestServer::start_s3(Backend::Sqlite, &s3, |config| {
        config.storage.media.stale_upload_seconds = 1;
    })
    .await;
    let admin = server.login(1).await;
    let channel = general_channel(&admin).await;

    // An upload streaming when the store dies: 503, not a hang.
    let client = admin.client.clone();
    let request = slow_upload(&admin, &channel, 24 << 20, Duration::from_millis(50));
    let upload = tokio::spawn(async move { client.send(request).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s3.stop();
    let started = Instant::now();
    let r = upload.await.unwrap();
    println!("upload cut by the S3 outage: {} {:?} after {:?}", r.status, r.body, started.elapsed());
    assert_eq!((r.status, r.error()), (503, "media store unavailable"));

    // While it is down: uploads and /health say so, quickly.
    let started = Instant::now();
    let r = upload_small(&admin, &channel, b"while down").await;
    assert_eq!((r.status, r.error()), (503, "media store unavailable"));
    let health = server.anonymous().get("/health").await;
    assert_eq!((health.status, health.error()), (503, "media store unavailable"));
    let took = started.elapsed();
    println!("while S3 is down: small upload and /health answered 503 in {took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");

    s3.restart().await;
    let r = upload_small(&admin, &channel, b"after the restart").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(server.anonymous().get("/health").await.status, 200);

    let left = s3_leftovers(&s3);
    println!("left in the store by the outage: {left} bytes");
    // The periodic sweep (every second here) removes what is older than a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    while s3_leftovers(&s3) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(s3_leftovers(&s3), 0, "stale temporaries left: {:?}", s3.pending_multipart_files());

    let blobs = Blobs::from_config(&s3_media_config(&s3), Some(&s3.credentials())).await.unwrap();
    let report = check::run(server.storage.as_ref(), &blobs, check::Options::default()).await.unwrap();
    assert_eq!(report.broken, vec![], "rows referring to missing blobs");
    assert_eq!(report.exit_code(check::Options::default()), check::EXIT_CLEAN, "{report:?}");
}

async fn upload_small(user: &User, channel: &str, bytes: &'static [u8]) -> crate::support::Resp {
    let body = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
         content-type: text/plain\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
        String::from_utf8_lossy(bytes)
    );
    user.send(
        user.request(reqwest::Method::POST, &format!("/api/v1/channels/{channel}/attachments"))
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body),
    )
    .await
}

fn s3_media_config(s3: &S3Server) -> decentcom::config::MediaConfig {
    decentcom::config::MediaConfig {
        provider: decentcom::config::MediaProvider::S3,
        bucket: Some(s3.bucket.clone()),
        endpoint: Some(s3.endpoint.clone()),
        allow_http: true,
        stale_upload_seconds: 1,
        ..Default::default()
    }
}

/// The environment of a server child on SQLite in `dir`, its media on `s3` or local disk.
fn child_env(s3: Option<&S3Server>) -> Vec<(&'static str, String)> {
    let mut env = vec![("DECENTCOM_STORAGE__MEDIA__STALE_UPLOAD_SECONDS", "1".to_owned())];
    if let Some(s3) = s3 {
        env.extend([
            ("DECENTCOM_STORAGE__MEDIA__PROVIDER", "s3".to_owned()),
            ("DECENTCOM_STORAGE__MEDIA__BUCKET", s3.bucket.clone()),
            ("DECENTCOM_STORAGE__MEDIA__ENDPOINT", s3.endpoint.clone()),
            ("DECENTCOM_STORAGE__MEDIA__ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ]);
    }
    env
}

/// `decentcom media check` in `dir` with `env`: exit code and output.
fn media_check(dir: &Path, env: &[(&str, String)], args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_decentcom"))
        .args(["media", "check"])
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), text)
}

async fn killed_mid_upload_then_restarted(s3: Option<&S3Server>) {
    let dir = tempfile::tempdir().unwrap();
    let env = child_env(s3);
    let mut server: ServerProcess = server_process::start(dir.path(), &env).await;
    let anon = Client { http: reqwest::Client::new(), base: server.base.clone(), token: None };
    let admin = log_in(&anon, ed25519_dalek::SigningKey::from_bytes(&[1; 32]), false).await;
    let channel = general_channel(&admin).await;

    let upload = tokio::spawn(
        admin.client.http.execute(slow_upload(&admin, &channel, 20 << 20, Duration::from_millis(50)).build().unwrap()),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let _ = upload.await; // the connection dropped with the server

    let left = match s3 {
        Some(s3) => s3_leftovers(s3),
        None => bytes_under(&dir.path().join("media").join("tmp"), &|_| true),
    };
    println!("SIGKILL mid-upload ({}): {left} bytes left behind", if s3.is_some() { "S3" } else { "local" });
    assert!(left > 0, "the killed upload left its temporary bytes (else this test proves nothing)");
    // Once older than stale_upload_seconds (1 s), `media check` reports them...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, report) = media_check(dir.path(), &env, &[]);
    assert_eq!(code, i32::from(check::EXIT_LEFTOVERS), "{report}");
    // ...and the restart's startup sweep removes them.
    let _server = server_process::start(dir.path(), &env).await;
    let left = match s3 {
        Some(s3) => s3_leftovers(s3),
        None => bytes_under(&dir.path().join("media").join("tmp"), &|_| true),
    };
    assert_eq!(left, 0, "left after the restart's sweep");
    let (code, report) = media_check(dir.path(), &env, &["--verify-hashes"]);
    assert_eq!(code, i32::from(check::EXIT_CLEAN), "{report}");
    assert!(report.contains("result: clean"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_upload_on_local_disk_leaves_nothing_after_its_restart() {
    killed_mid_upload_then_restarted(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_upload_on_s3_leaves_nothing_after_its_restart() {
    let s3 = S3Server::start().await;
    killed_mid_upload_then_restarted(Some(&s3)).await;
}
