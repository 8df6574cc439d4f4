//! Attachment uploads (api.md §3.5): streamed multipart, hashed, deduplicated, size and type
//! limits, nothing left behind on failure. Also the helpers the media and gateway suites share.

use std::path::{Path, PathBuf};

use decentcom::config::Config;
use futures::StreamExt;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Backend, Client, Resp, TestServer, User};

/// Like `api_tests!`, for suites whose tests start their own server (own configuration or media
/// directory): generates one test per backend for each `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

crate::backend_tests!(
    uploads_record_rows_and_store_identical_bytes,
    identical_uploads_share_one_blob,
    oversized_files_are_refused_and_leave_nothing_behind,
    file_types_outside_the_allowlist_are_refused,
    malformed_uploads_are_refused,
    uploads_need_the_feature_and_permissions,
);

/// One multipart part: filename, declared Content-Type, bytes.
pub struct Part<'a> {
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub bytes: &'a [u8],
}

pub fn part<'a>(filename: &'a str, content_type: &'a str, bytes: &'a [u8]) -> Part<'a> {
    Part { filename: Some(filename), content_type: Some(content_type), bytes }
}

const BOUNDARY: &str = "decentcom-test-boundary-7d1e";

/// A `multipart/form-data` body built by hand (every part named `file`).
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match p.filename {
            Some(name) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(b"Content-Disposition: form-data; name=\"file\"\r\n"),
        }
        if let Some(ct) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// POST the parts to the channel's upload route.
pub async fn upload(client: &Client, channel: &str, parts: &[Part<'_>]) -> Resp {
    let (content_type, body) = multipart(parts);
    let path = format!("/api/v1/channels/{channel}/attachments");
    client.send(client.request(reqwest::Method::POST, &path).header("content-type", content_type).body(body)).await
}

/// The start of a PNG whose header says `width` × `height` (enough for sniffing and dimensions).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(b"rest of the image data");
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The HELLO frame of a gateway connection (independent of the REST channel routes).
pub async fn hello(server: &TestServer, token: &str) -> Value {
    let url = format!("{}/api/v1/gateway?token={token}", server.base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("gateway connects");
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("HELLO within 5 s")
            .expect("open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let _ = socket.close(None).await;
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The id of the default channel `general`.
pub async fn general_channel(server: &TestServer, user: &User) -> String {
    let hello = hello(server, user.token()).await;
    let channels = hello["d"]["channels"].as_array().unwrap();
    let general = channels.iter().find(|c| c["name"] == "general").expect("a general channel");
    general["id"].as_str().unwrap().to_owned()
}

/// A server whose media directory is `media` (so a test can look inside it).
pub async fn server_with_media(backend: Backend, media: &Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let media = media.to_owned();
    TestServer::start_with(backend, move |config| {
        config.storage.media.path = media;
        tweak(config);
    })
    .await
}

/// Every file under `dir`, recursively (temporary objects included).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(files_under(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

async fn uploads_record_rows_and_store_identical_bytes(backend: Backend) {
    let media = tempfile::tempdir().unwrap();
    let server = server_with_media(backend, media.path(), |_| {}).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let image = png(3, 2);
    let text = b"hello attachments".to_vec();
    let resp = upload(
        &admin,
        &channel,
        &[
            part("../../secret/picture.png", "application/octet-stream", &image),
            part("notes.TXT", "Text/Plain; charset=utf-8", &text),
            Part { filename: None, content_type: None, bytes: b"no name, no type" },
        ],
    )
    .await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    assert_eq!(resp.headers["content-type"], "application/json");
    let list = resp.body.as_array().unwrap();
    assert_eq!(list.len(), 3);

    let first = &list[0];
    assert_eq!(first["filename"], "picture.png");
    assert_eq!(first["mime_type"], "image/png");
    assert_eq!((first["width"].clone(), first["height"].clone()), (json!(3), json!(2)));
    assert_eq!(first["size"], json!(image.len()));
    assert_eq!(first["content_hash"], sha256_hex(&image));
    assert_eq!(first["message_id"], Value::Null);
    assert_eq!(first["channel_id"], channel.as_str());
    assert_eq!(first["uploader_id"], admin.user_id.as_str());
    assert!(first["id"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));

    let second = &list[1];
    assert_eq!(second["filename"], "notes.TXT");
    assert_eq!(second["mime_type"], "text/plain");
    assert_eq!((second["width"].clone(), second["height"].clone()), (Value::Null, Value::Null));
    let third = &list[2];
    assert_eq!(third["filename"], "unnamed");
    assert_eq!(third["mime_type"], "application/octet-stream");
    let ids: Vec<i64> = list.iter().map(|a| a["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "part order: {ids:?}");

    // The blobs are at their content keys and served back byte for byte.
    for (attachment, bytes) in [(first, &image), (second, &text)] {
        let hash = attachment["content_hash"].as_str().unwrap();
        assert_eq!(std::fs::read(media.path().join(hash)).unwrap(), *bytes);
        let got = server.anonymous().get(&format!("/api/v1/media/{hash}")).await;
        assert_eq!(got.status, 200);
        assert_eq!(&got.bytes[..], &bytes[..]);
        assert_eq!(got.headers["content-type"], attachment["mime_type"].as_str().unwrap());
    }
    assert!(files_under(&media.path().join("tmp")).is_empty());

    // A file far above the JSON body limit streams through (the upload route has its own cap).
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let resp = upload(&admin, &channel, &[part("large.bin", "application/octet-stream", &large)]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    assert_eq!(resp.body[0]["size"], json!(large.len()));
    let got = server.anonymous().get(&format!("/api/v1/media/{}", sha256_hex(&large))).await;
    assert_eq!(got.status, 200);
    assert!(got.bytes[..] == large[..], "identical bytes");
}

async fn identical_uploads_share_one_blob(backend: Backend) {
    let media = tempfile::tempdir().unwrap();
    let server = server_with_media(backend, media.path(), |_| {}).await;
    let admin = server.login(1).await;
    let other = server.login(2).await;
    let channel = general_channel(&server, &admin).await;
    let bytes = b"the same bytes, uploaded again and again".to_vec();
    let a =
        upload(&admin, &channel, &[part("a.bin", "application/x-a", &bytes), part("b.bin", "text/x-b", &bytes)]).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let b = upload(&other, &channel, &[part("c.bin", "text/plain", &bytes)]).await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    let hash = sha256_hex(&bytes);
    let all: Vec<&Value> = a.body.as_array().unwrap().iter().chain(b.body.as_array().unwrap()).collect();
    assert!(all.iter().all(|att| att["content_hash"] == hash.as_str()));
    // Three attachments, one blob file, no temporary objects.
    assert_eq!(files_under(media.path()), vec![media.path().join(&hash)]);
    let ids: std::collections::HashSet<&str> = all.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    // Every attachment keeps the type decided for its own part.
    assert_eq!(
        all.iter().map(|a| a["mime_type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["application/x-a", "text/x-b", "text/plain"]
    );
    // The media row keeps the first uploader's type.
    let served = server.anonymous().get(&format!("/api/v1/media/{hash}")).await;
    assert_eq!(served.headers["content-type"], "application/x-a");
}

async fn oversized_files_are_refused_and_leave_nothing_behind(backend: Backend) {
    let media = tempfile::tempdir().unwrap();
    let server = server_with_media(backend, media.path(), |c| c.content.max_file_size = 1000).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let exact = vec![b'x'; 1000];
    let big = vec![b'y'; 5000];

    let ok = upload(&admin, &channel, &[part("exact.txt", "text/plain", &exact)]).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body[0]["size"], 1000);
    let before = files_under(media.path());

    let resp = upload(&admin, &channel, &[part("big.txt", "text/plain", &big)]).await;
    assert_eq!((resp.status, resp.error()), (413, "file exceeds maximum size of 1000 bytes"));
    // A good part staged before the oversized one is removed too.
    let small = b"fine on its own".to_vec();
    let resp =
        upload(&admin, &channel, &[part("small.txt", "text/plain", &small), part("big.txt", "text/plain", &big)]).await;
    assert_eq!((resp.status, resp.error()), (413, "file exceeds maximum size of 1000 bytes"));
    assert_eq!(files_under(media.path()), before, "no blob or temporary object left behind");
    let missing = server.anonymous().get(&format!("/api/v1/media/{}", sha256_hex(&small))).await;
    assert_eq!((missing.status, missing.error()), (404, "media not found"));
}

async fn file_types_outside_the_allowlist_are_refused(backend: Backend) {
    let media = tempfile::tempdir().unwrap();
    let server = server_with_media(backend, media.path(), |c| {
        c.content.allowed_file_types = vec!["image/png".into(), "text/plain".into()];
    })
    .await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;

    let resp = upload(&admin, &channel, &[part("x.html", "text/html", b"<script>alert(1)</script>")]).await;
    assert_eq!((resp.status, resp.error()), (415, "file type text/html is not allowed"));
    // The bytes decide over the declared type.
    let resp = upload(&admin, &channel, &[part("fake.png", "image/png", b"%PDF-1.7 not really a png")]).await;
    assert_eq!((resp.status, resp.error()), (415, "file type application/pdf is not allowed"));
    let resp =
        upload(&admin, &channel, &[Part { filename: Some("noext"), content_type: None, bytes: b"some bytes" }]).await;
    assert_eq!((resp.status, resp.error()), (415, "file type application/octet-stream is not allowed"));
    // One refused part refuses the request.
    let image = png(1, 1);
    let resp =
        upload(&admin, &channel, &[part("ok.png", "image/png", &image), part("x.gif", "image/gif", b"GIF89a....")])
            .await;
    assert_eq!((resp.status, resp.error()), (415, "file type image/gif is not allowed"));
    assert!(files_under(media.path()).is_empty(), "{:?}", files_under(media.path()));

    let resp =
        upload(&admin, &channel, &[part("ok.png", "text/plain", &image), part("t.txt", "TEXT/PLAIN", b"hi")]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    assert_eq!(resp.body[0]["mime_type"], "image/png");
    assert_eq!(resp.body[1]["mime_type"], "text/plain");
}

async fn malformed_uploads_are_refused(backend: Backend) {
    let media = tempfile::tempdir().unwrap();
    let server = server_with_media(backend, media.path(), |_| {}).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;

    let resp = upload(&admin, &channel, &[part("empty.txt", "text/plain", b"")]).await;
    assert_eq!((resp.status, resp.error()), (422, "file must not be empty"));
    let resp =
        upload(&admin, &channel, &[part("a.txt", "text/plain", b"a"), part("empty.txt", "text/plain", b"")]).await;
    assert_eq!((resp.status, resp.error()), (422, "file must not be empty"));

    let eleven: Vec<Vec<u8>> = (0..11).map(|i| format!("file number {i}").into_bytes()).collect();
    let parts: Vec<Part<'_>> = eleven.iter().map(|b| part("f.txt", "text/plain", b)).collect();
    let resp = upload(&admin, &channel, &parts).await;
    assert_eq!((resp.status, resp.error()), (400, "at most 10 files per request"));
    let resp = upload(&admin, &channel, &parts[..10]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    assert_eq!(resp.body.as_array().unwrap().len(), 10);
    let stored = files_under(media.path()).len();
    assert_eq!(stored, 10);

    let resp = upload(&admin, &channel, &[]).await;
    assert_eq!((resp.status, resp.error()), (400, "no files provided"));

    let path = format!("/api/v1/channels/{channel}/attachments");
    let resp = admin.post(&path, json!({"file": "x"})).await;
    assert_eq!((resp.status, resp.error()), (415, "expected multipart/form-data"));
    let resp = admin
        .send(admin.request(reqwest::Method::POST, &path).header("content-type", "multipart/form-data").body("x"))
        .await;
    assert_eq!(resp.status, 400);
    assert!(resp.error().starts_with("invalid multipart body: "), "{}", resp.error());
    let resp = admin
        .send(
            admin
                .request(reqwest::Method::POST, &path)
                .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
                .body(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ntruncated")),
        )
        .await;
    assert_eq!(resp.status, 400);
    assert!(resp.error().starts_with("invalid multipart body: "), "{}", resp.error());

    let resp = upload(&admin, "999999", &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    let resp = upload(&admin, "abc", &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: channel_id"));
    let resp = upload(&server.anonymous(), &channel, &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(files_under(media.path()).len(), stored, "failed requests store nothing");
}

async fn uploads_need_the_feature_and_permissions(backend: Backend) {
    let media = tempfile::tempdir().unwrap();
    let disabled = server_with_media(backend, media.path(), |c| c.features.file_uploads = false).await;
    let admin = disabled.login(1).await;
    let channel = general_channel(&disabled, &admin).await;
    let resp = upload(&admin, &channel, &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!((resp.status, resp.error()), (403, "file uploads are disabled on this server"));
    drop(disabled);

    let server = TestServer::start(backend).await;
    let admin = server.login(1).await;
    let member = server.login(2).await;
    let channel = general_channel(&server, &admin).await;
    let overrides = format!("/api/v1/channels/{channel}/overrides/everyone");
    let put = admin.put(&overrides, json!({"allow": 0, "deny": 512})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let resp = upload(&member, &channel, &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!((resp.status, resp.error()), (403, "missing attach_files permission"));
    let put = admin.put(&overrides, json!({"allow": 0, "deny": 1})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let resp = upload(&member, &channel, &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!((resp.status, resp.error()), (403, "missing send_messages permission"));
    // Administrators bypass overrides.
    let resp = upload(&admin, &channel, &[part("a.txt", "text/plain", b"a")]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
}
