//! Media on an S3-compatible store (api.md §3.5, §7): uploads land in the bucket (checked through
//! our own S3 client), `GET /media/{id}` answers 302 to a pre-signed URL that s3s-fs verifies,
//! deduplication, multipart uploads, nothing left behind on failure, 503 when the store fails, and
//! the startup checks. Every test runs on both database backends.

use std::time::Duration;

use decentcom::storage::ContentHash;
use pretty_assertions::assert_eq;
use reqwest::Method;
use serde_json::json;

use crate::attachments::{general_channel, part, png, sha256_hex, upload};
use crate::s3::S3Server;
use crate::support::{Backend, Resp, TestServer, User};

crate::backend_tests!(
    uploads_land_in_the_bucket_with_their_rows,
    media_redirects_to_a_presigned_url,
    presigned_urls_expire,
    identical_uploads_share_one_object,
    large_uploads_stream_through_multipart,
    failed_uploads_leave_nothing_in_the_bucket,
    a_failing_store_is_503_and_records_nothing,
    startup_needs_credentials_and_a_reachable_bucket,
);

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn fetch(server: &TestServer, method: Method, hash: &str) -> Resp {
    let anon = server.anonymous();
    let req = no_redirects().request(method, server.url(&format!("/api/v1/media/{hash}")));
    anon.send(req).await
}

fn header<'a>(resp: &'a Resp, name: &str) -> &'a str {
    resp.headers.get(name).unwrap_or_else(|| panic!("no {name} header in {resp:?}")).to_str().unwrap()
}

/// Follows a Location exactly as given (the Host is part of the signature).
async fn follow(location: &str) -> reqwest::Response {
    no_redirects().get(location).send().await.unwrap()
}

async fn uploaded(admin: &User, channel: &str, name: &str, content_type: &str, bytes: &[u8]) -> String {
    let resp = upload(admin, channel, &[part(name, content_type, bytes)]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    resp.body[0]["content_hash"].as_str().unwrap().to_owned()
}

async fn uploads_land_in_the_bucket_with_their_rows(backend: Backend) {
    let s3 = S3Server::start().await;
    let server = TestServer::start_s3(backend, &s3, |c| c.storage.media.prefix = "blobs/".into()).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let image = png(3, 2);
    let text = b"hello from s3".to_vec();
    let resp =
        upload(&admin, &channel, &[part("p.png", "image/png", &image), part("n.txt", "text/plain", &text)]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);

    for (bytes, mime) in [(&image, "image/png"), (&text, "text/plain")] {
        let hash = sha256_hex(bytes);
        // The row in the database names the bucket and the object key.
        let row = server.storage.get_media(&ContentHash::parse(&hash).unwrap()).await.unwrap().expect("a media row");
        assert_eq!(row.object_key, format!("blobs/{hash}"));
        assert_eq!(row.bucket.as_deref(), Some(s3.bucket.as_str()));
        assert_eq!(row.size_bytes, bytes.len() as i64);
        assert_eq!(row.mime_type, mime);
        assert_eq!(row.uploaded_by.map(|u| u.to_string()), Some(admin.user_id.clone()));
        // The object, read through the S3 API directly, has identical bytes.
        let object = s3.object(&row.object_key).await.expect("the object is in the bucket");
        assert!(object[..] == bytes[..], "identical bytes");
    }
    let mut expected = vec![format!("blobs/{}", sha256_hex(&image)), format!("blobs/{}", sha256_hex(&text))];
    expected.sort();
    assert_eq!(s3.keys().await, expected, "no temporary objects");

    // The round trip over HTTP: upload, 302, the bytes from the store.
    let got = fetch(&server, Method::GET, &sha256_hex(&text)).await;
    assert_eq!(got.status, 302);
    let back = follow(header(&got, "location")).await;
    assert_eq!(back.status(), 200);
    assert_eq!(&back.bytes().await.unwrap()[..], &text[..]);

    // Avatars go to the bucket too.
    let mut avatar = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(16, 16, image::Rgb([10, 200, 30]))
        .write_to(&mut avatar, image::ImageFormat::Png)
        .unwrap();
    let (content_type, body) = crate::attachments::multipart(&[part("me.png", "image/png", avatar.get_ref())]);
    let req = admin.request(Method::PUT, "/api/v1/profile/avatar").header("content-type", content_type).body(body);
    let resp = admin.send(req).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let id = resp.body["avatar_hash"].as_str().unwrap();
    let row = server.storage.get_media(&ContentHash::parse(id).unwrap()).await.unwrap().expect("an avatar row");
    assert_eq!(row.object_key, format!("blobs/{id}"));
    assert_eq!(row.bucket.as_deref(), Some(s3.bucket.as_str()));
    assert_eq!(sha256_hex(&s3.object(&row.object_key).await.expect("the avatar object")), id);
}

async fn media_redirects_to_a_presigned_url(backend: Backend) {
    let s3 = S3Server::start().await;
    let server = TestServer::start_s3(backend, &s3, |_| {}).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let image = png(4, 4);
    let hash = uploaded(&admin, &channel, "a.png", "image/png", &image).await;

    let resp = fetch(&server, Method::GET, &hash).await;
    assert_eq!(resp.status, 302);
    assert!(resp.bytes.is_empty(), "no body");
    assert_eq!(header(&resp, "cache-control"), "private, max-age=1800");
    let location = header(&resp, "location").to_owned();
    assert!(location.starts_with(&format!("{}/{}/{hash}?", s3.endpoint, s3.bucket)), "{location}");
    assert!(location.contains("X-Amz-Expires=3600"), "{location}");

    let got = follow(&location).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.headers()["content-disposition"], "inline");
    assert_eq!(&got.bytes().await.unwrap()[..], &image[..]);

    // HEAD redirects too.
    let head = fetch(&server, Method::HEAD, &hash).await;
    assert_eq!(head.status, 302);

    // Types that are not browser-safe download as attachments; the override is signed in.
    let html = uploaded(&admin, &channel, "x.html", "text/html", b"<h1>hi</h1>").await;
    let resp = fetch(&server, Method::GET, &html).await;
    assert_eq!(resp.status, 302);
    let location = header(&resp, "location").to_owned();
    let got = follow(&location).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "text/html");
    assert_eq!(got.headers()["content-disposition"], "attachment");
    assert_eq!(&got.bytes().await.unwrap()[..], b"<h1>hi</h1>");

    // Changing the overrides breaks the signature.
    let changed = location.replace("response-content-disposition=attachment", "response-content-disposition=inline");
    assert_ne!(changed, location);
    assert_eq!(follow(&changed).await.status(), 403);

    // One character of the signature changed: refused.
    let at = location.find("X-Amz-Signature=").expect("a signature") + "X-Amz-Signature=".len();
    let mut tampered = location.clone().into_bytes();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(follow(&tampered).await.status(), 403);
    // Without the signature at all: refused (the bucket is not public).
    let unsigned = format!("{}/{}/{html}", s3.endpoint, s3.bucket);
    assert_eq!(follow(&unsigned).await.status(), 403);

    // The row decides existence: an unknown id is 404 JSON, with no redirect.
    let unknown = "0".repeat(64);
    let resp = fetch(&server, Method::GET, &unknown).await;
    assert_eq!((resp.status, resp.error()), (404, "media not found"));
}

async fn presigned_urls_expire(backend: Backend) {
    let s3 = S3Server::start().await;
    let server = TestServer::start_s3(backend, &s3, |c| c.storage.media.presign_ttl_seconds = 1).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let hash = uploaded(&admin, &channel, "x.bin", "application/octet-stream", b"short-lived").await;
    let resp = fetch(&server, Method::GET, &hash).await;
    assert_eq!(resp.status, 302);
    assert_eq!(header(&resp, "cache-control"), "private, max-age=0");
    let location = header(&resp, "location").to_owned();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(follow(&location).await.status(), 403, "expired");
    // A fresh redirect works again.
    let resp = fetch(&server, Method::GET, &hash).await;
    let got = follow(header(&resp, "location")).await;
    assert_eq!(got.status(), 200);
    assert_eq!(&got.bytes().await.unwrap()[..], b"short-lived");
}

async fn identical_uploads_share_one_object(backend: Backend) {
    let s3 = S3Server::start().await;
    let server = TestServer::start_s3(backend, &s3, |_| {}).await;
    let admin = server.login(1).await;
    let other = server.login(2).await;
    let channel = general_channel(&server, &admin).await;
    let bytes = b"the same bytes, once in the bucket".to_vec();
    let a = upload(&admin, &channel, &[part("a.bin", "text/plain", &bytes), part("b.bin", "text/plain", &bytes)]).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let b = upload(&other, &channel, &[part("c.bin", "text/plain", &bytes)]).await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    let hash = sha256_hex(&bytes);
    assert_eq!(s3.keys().await, vec![hash.clone()], "one object, no temporary objects");
    let ids: std::collections::HashSet<String> =
        a.body.as_array().unwrap().iter().chain(b.body.as_array().unwrap()).map(|x| x["id"].to_string()).collect();
    assert_eq!(ids.len(), 3);
}

async fn large_uploads_stream_through_multipart(backend: Backend) {
    let s3 = S3Server::start().await;
    let server = TestServer::start_s3(backend, &s3, |c| c.content.max_file_size = 25 * 1024 * 1024).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let large: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect();
    let hash = uploaded(&admin, &channel, "large.bin", "application/octet-stream", &large).await;
    assert_eq!(hash, sha256_hex(&large));
    let object = s3.object(&hash).await.expect("the object");
    assert_eq!(object.len(), large.len());
    assert!(object[..] == large[..], "identical bytes");
    assert_eq!(s3.keys().await, vec![hash.clone()]);
    assert_eq!(s3.pending_multipart_files(), Vec::<String>::new(), "the multipart upload completed");
    let resp = fetch(&server, Method::GET, &hash).await;
    let got = follow(header(&resp, "location")).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-disposition"], "attachment");
    assert!(got.bytes().await.unwrap()[..] == large[..]);
}

async fn failed_uploads_leave_nothing_in_the_bucket(backend: Backend) {
    let s3 = S3Server::start().await;
    let limit = 6 * 1024 * 1024;
    let server = TestServer::start_s3(backend, &s3, |c| {
        c.content.max_file_size = limit;
        c.content.allowed_file_types = vec!["text/plain".into(), "application/octet-stream".into()];
    })
    .await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;

    // Over the limit after a whole multipart part (5 MiB) was uploaded: the upload is aborted.
    let big = vec![b'y'; limit as usize + 1];
    let resp = upload(&admin, &channel, &[part("big.bin", "application/octet-stream", &big)]).await;
    assert_eq!((resp.status, resp.error()), (413, format!("file exceeds maximum size of {limit} bytes").as_str()));
    // A good part staged before an oversized one is removed too.
    let small = b"fine on its own".to_vec();
    let resp =
        upload(&admin, &channel, &[part("small.txt", "text/plain", &small), part("big.bin", "text/plain", &big)]).await;
    assert_eq!(resp.status, 413, "{:?}", resp.body);
    // A refused type after a good part.
    let resp =
        upload(&admin, &channel, &[part("small.txt", "text/plain", &small), part("x.pdf", "text/plain", b"%PDF-1.7")])
            .await;
    assert_eq!(resp.status, 415, "{:?}", resp.body);

    assert_eq!(s3.keys().await, Vec::<String>::new(), "no object and no temporary object");
    assert_eq!(s3.pending_multipart_files(), Vec::<String>::new(), "every multipart upload was aborted");
    for bytes in [&small[..], &big[..]] {
        let resp = fetch(&server, Method::GET, &sha256_hex(bytes)).await;
        assert_eq!((resp.status, resp.error()), (404, "media not found"));
    }
}

async fn a_failing_store_is_503_and_records_nothing(backend: Backend) {
    let mut s3 = S3Server::start().await;
    let server = TestServer::start_s3(backend, &s3, |_| {}).await;
    let admin = server.login(1).await;
    let channel = general_channel(&server, &admin).await;
    let before = uploaded(&admin, &channel, "before.txt", "text/plain", b"stored while the store was up").await;

    s3.stop();
    let bytes = b"uploaded while the store is down".to_vec();
    let resp = upload(&admin, &channel, &[part("down.txt", "text/plain", &bytes)]).await;
    assert_eq!((resp.status, resp.error()), (503, "media store unavailable"));
    assert_eq!(resp.headers["content-type"], "application/json");
    let hash = ContentHash::parse(&sha256_hex(&bytes)).unwrap();
    assert!(server.storage.get_media(&hash).await.unwrap().is_none(), "no row");
    // Serving does not touch the store: the row decides, the URL is signed locally.
    assert_eq!(fetch(&server, Method::GET, &before).await.status, 302);
    assert_eq!(fetch(&server, Method::GET, hash.as_str()).await.status, 404);
}

async fn startup_needs_credentials_and_a_reachable_bucket(backend: Backend) {
    let s3 = S3Server::start().await;
    let to_s3 = |bucket: &'static str, endpoint: String| {
        move |c: &mut decentcom::config::Config| {
            let media = &mut c.storage.media;
            media.provider = decentcom::config::MediaProvider::S3;
            media.bucket = Some(bucket.into());
            media.endpoint = Some(endpoint);
            media.allow_http = true;
        }
    };
    let error = |result: eyre::Result<TestServer>| match result {
        Ok(_) => panic!("the server started"),
        Err(err) => format!("{err:#}"),
    };

    let err = error(TestServer::try_start(backend, to_s3("media", s3.endpoint.clone()), None).await);
    assert!(err.contains("missing S3 credentials"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");

    let err = error(TestServer::try_start(backend, to_s3("nope", s3.endpoint.clone()), Some(s3.credentials())).await);
    assert!(err.contains(&format!("media store unreachable: bucket \"nope\" at {}", s3.endpoint)), "{err}");

    let wrong = decentcom::media::S3Credentials::new(&s3.access_key, "not-the-secret");
    let err = error(TestServer::try_start(backend, to_s3("media", s3.endpoint.clone()), Some(wrong)).await);
    assert!(err.contains(&format!("bucket \"media\" at {}", s3.endpoint)), "{err}");
    assert!(!err.contains("not-the-secret") && !err.contains(&s3.secret_key), "no secret in {err}");

    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let started = std::time::Instant::now();
    let err = error(TestServer::try_start(backend, to_s3("media", closed.clone()), Some(s3.credentials())).await);
    assert!(err.contains(&format!("media store unreachable: bucket \"media\" at {closed}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "fails within seconds");

    // And with everything right it starts.
    let server = TestServer::try_start_s3(backend, &s3, |_| {}).await.expect("starts");
    assert_eq!(server.anonymous().get("/health").await.body, json!({"status": "ok"}));
}
