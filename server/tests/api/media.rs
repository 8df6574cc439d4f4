//! Serving media (api.md §3.5 "Serving"): headers, conditional requests, ranges, HEAD, 404s.

use pretty_assertions::assert_eq;
use reqwest::Method;

use crate::attachments::{general_channel, part, png, sha256_hex, upload};
use crate::support::{Backend, Resp, TestServer};

crate::backend_tests!(
    media_is_served_with_its_headers,
    conditional_and_range_requests,
    unknown_or_malformed_media_ids_are_not_found,
);

/// Uploads `bytes` and returns the media id.
async fn uploaded(server: &TestServer, name: &str, content_type: &str, bytes: &[u8]) -> String {
    let admin = server.login(1).await;
    let channel = general_channel(server, &admin).await;
    let resp = upload(&admin, &channel, &[part(name, content_type, bytes)]).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    resp.body[0]["content_hash"].as_str().unwrap().to_owned()
}

async fn fetch(server: &TestServer, method: Method, hash: &str, headers: &[(&str, &str)]) -> Resp {
    let anon = server.anonymous();
    let mut req = anon.request(method, &format!("/api/v1/media/{hash}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    anon.send(req).await
}

fn header<'a>(resp: &'a Resp, name: &str) -> &'a str {
    resp.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

async fn media_is_served_with_its_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let image = png(4, 4);
    let hash = uploaded(&server, "a.png", "image/png", &image).await;
    assert_eq!(hash, sha256_hex(&image));

    let resp = fetch(&server, Method::GET, &hash, &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(&resp.bytes[..], &image[..]);
    assert_eq!(header(&resp, "content-type"), "image/png");
    assert_eq!(header(&resp, "content-length"), image.len().to_string());
    assert_eq!(header(&resp, "etag"), format!("\"{hash}\""));
    assert_eq!(header(&resp, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
    assert_eq!(header(&resp, "content-security-policy"), "sandbox");
    assert_eq!(header(&resp, "content-disposition"), "inline");

    let head = fetch(&server, Method::HEAD, &hash, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.bytes.is_empty());
    assert_eq!(header(&head, "content-length"), image.len().to_string());
    assert_eq!(header(&head, "etag"), format!("\"{hash}\""));
    assert_eq!(header(&head, "content-type"), "image/png");

    // Anything that is not a browser-safe media type downloads as an attachment.
    let html = uploaded(&server, "x.html", "text/html", b"<h1>hi</h1>").await;
    let resp = fetch(&server, Method::GET, &html, &[]).await;
    assert_eq!(header(&resp, "content-type"), "text/html");
    assert_eq!(header(&resp, "content-disposition"), "attachment");
    assert_eq!(header(&resp, "content-security-policy"), "sandbox");
}

async fn conditional_and_range_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let bytes: Vec<u8> = (0..100u8).collect();
    let hash = uploaded(&server, "data.bin", "application/octet-stream", &bytes).await;
    let etag = format!("\"{hash}\"");

    let resp = fetch(&server, Method::GET, &hash, &[("if-none-match", &etag)]).await;
    assert_eq!(resp.status, 304);
    assert!(resp.bytes.is_empty());
    assert_eq!(header(&resp, "etag"), etag);
    let resp = fetch(&server, Method::GET, &hash, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(resp.status, 200);

    for (range, start, end) in
        [("bytes=10-19", 10, 19), ("bytes=90-", 90, 99), ("bytes=-5", 95, 99), ("bytes=95-500", 95, 99)]
    {
        let resp = fetch(&server, Method::GET, &hash, &[("range", range)]).await;
        assert_eq!(resp.status, 206, "{range}");
        assert_eq!(&resp.bytes[..], &bytes[start..=end], "{range}");
        assert_eq!(header(&resp, "content-range"), format!("bytes {start}-{end}/100"));
        assert_eq!(header(&resp, "content-length"), (end - start + 1).to_string());
    }
    let head = fetch(&server, Method::HEAD, &hash, &[("range", "bytes=0-9")]).await;
    assert_eq!(head.status, 206);
    assert!(head.bytes.is_empty());
    assert_eq!(header(&head, "content-range"), "bytes 0-9/100");

    for range in ["bytes=100-", "bytes=200-300", "bytes=-0"] {
        let resp = fetch(&server, Method::GET, &hash, &[("range", range)]).await;
        assert_eq!((resp.status, resp.error()), (416, "range not satisfiable"), "{range}");
        assert_eq!(header(&resp, "content-range"), "bytes */100");
    }
    // Several ranges or a malformed header: the whole file.
    for range in ["bytes=0-1,5-6", "bytes=9-2", "pages=1-2", "bytes=abc"] {
        let resp = fetch(&server, Method::GET, &hash, &[("range", range)]).await;
        assert_eq!(resp.status, 200, "{range}");
        assert_eq!(&resp.bytes[..], &bytes[..]);
        assert!(resp.headers.get("content-range").is_none());
    }
    // If-None-Match wins over Range.
    let resp = fetch(&server, Method::GET, &hash, &[("if-none-match", &etag), ("range", "bytes=0-1")]).await;
    assert_eq!(resp.status, 304);
}

async fn unknown_or_malformed_media_ids_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    for id in [
        "0000000000000000000000000000000000000000000000000000000000000000".to_owned(),
        sha256_hex(b"never uploaded"),
        "not-a-hash".to_owned(),
        sha256_hex(b"x").to_uppercase(),
        format!("{}0", sha256_hex(b"x")),
    ] {
        let resp = fetch(&server, Method::GET, &id, &[]).await;
        assert_eq!((resp.status, resp.error()), (404, "media not found"), "{id}");
        let head = fetch(&server, Method::HEAD, &id, &[]).await;
        assert_eq!(head.status, 404, "{id}");
    }
}
