//! Profiles and avatars (api.md §3.14).

use std::io::Cursor;

use decentcom::config::MembershipMode;
use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::support::{Resp, TestServer, User};

api_tests!(
    update_display_name,
    get_profiles,
    avatar_upload_resizes_and_reencodes,
    avatar_upload_validation,
    delete_avatar_keeps_the_blob,
);

const BOUNDARY: &str = "decentcom-test-boundary";

/// A multipart body whose parts are `(content type, bytes)`, as a file field each.
fn multipart(parts: &[(Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (content_type, bytes)) in parts.iter().enumerate() {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"file\"; filename=\"f{i}\"\r\n").as_bytes(),
        );
        if let Some(ct) = content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(user: &User, parts: &[(Option<&str>, &[u8])]) -> Resp {
    let req = user
        .request(reqwest::Method::PUT, "/api/v1/profile/avatar")
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(multipart(parts));
    user.send(req).await
}

/// A `width`×`height` image with a gradient, encoded as `format`.
fn image_bytes(width: u32, height: u32, format: ImageFormat, alpha: bool) -> Vec<u8> {
    let image = if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 200])
        }))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 64])
        }))
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

async fn update_display_name(server: TestServer) {
    let user = server.login(1).await;
    let observer = server.login(2).await;
    let mut gateway = server.gateway(observer.token()).await;

    let resp = user.patch("/api/v1/profile", json!({"display_name": "  Alice  "})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let joined_at = resp.body["joined_at"].clone();
    assert!(joined_at.is_string());
    assert_eq!(
        resp.body,
        json!({
            "user_id": user.user_id,
            "pubkey": user.pubkey,
            "display_name": "Alice",
            "avatar_hash": null,
            "joined_at": joined_at,
            "roles": [
                {"id": "2", "name": "@admin", "color": null, "position": 1000},
                {"id": "1", "name": "@everyone", "color": null, "position": 0},
            ],
        })
    );
    let event = gateway.expect_op("MEMBER_UPDATE").await;
    assert_eq!(
        event["d"],
        json!({"user_id": user.user_id, "pubkey": user.pubkey, "display_name": "Alice", "avatar_hash": null})
    );
    let member = observer.get(&format!("/api/v1/members/{}", user.pubkey)).await;
    assert_eq!(member.body["display_name"], "Alice");

    // 32 characters (not bytes) are allowed; 33 are not.
    let long = "é".repeat(32);
    let resp = user.patch("/api/v1/profile", json!({"display_name": long})).await;
    assert_eq!((resp.status, &resp.body["display_name"]), (200, &json!(long)));
    let cases = [
        (json!({"display_name": ""}), "display name must not be empty"),
        (json!({"display_name": "   "}), "display name must not be empty"),
        (json!({"display_name": "x".repeat(33)}), "display name must be at most 32 characters"),
    ];
    for (body, message) in cases {
        let resp = user.patch("/api/v1/profile", body.clone()).await;
        assert_eq!((resp.status, resp.error()), (400, message), "{body}");
    }
    assert_eq!(user.patch("/api/v1/profile", json!({"display_name": 5})).await.status, 422);
    // Absent or null: unchanged.
    for body in [json!({}), json!({"display_name": null})] {
        let resp = user.patch("/api/v1/profile", body).await;
        assert_eq!((resp.status, &resp.body["display_name"]), (200, &json!(long)));
    }

    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let _admin = server.login(1).await;
    let outsider = server.login(2).await;
    let resp = outsider.patch("/api/v1/profile", json!({"display_name": "x"})).await;
    assert_eq!((resp.status, resp.error()), (403, "membership required"));
}

async fn get_profiles(server: TestServer) {
    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = server.login(1).await;
    let outsider = server.login(2).await;
    let own = admin.get(&format!("/api/v1/members/{}/profile", admin.pubkey)).await;
    assert_eq!(own.status, 200);
    assert!(own.body["joined_at"].is_string());
    assert_eq!(own.body["roles"].as_array().unwrap().len(), 2);

    // Non-members have a profile too.
    let other = admin.get(&format!("/api/v1/members/{}/profile", outsider.pubkey)).await;
    assert_eq!(other.status, 200);
    assert_eq!(
        other.body,
        json!({
            "user_id": outsider.user_id,
            "pubkey": outsider.pubkey,
            "display_name": null,
            "avatar_hash": null,
            "joined_at": null,
            "roles": [],
        })
    );
    let unknown = admin.get("/api/v1/members/AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9/profile").await;
    assert_eq!(unknown.status, 200, "seed 1 is the admin");
    let stranger = crate::support::pubkey_of(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    let unknown = admin.get(&format!("/api/v1/members/{stranger}/profile")).await;
    assert_eq!((unknown.status, unknown.error()), (404, "user not found"));
    let bad = admin.get("/api/v1/members/zz/profile").await;
    assert_eq!((bad.status, bad.error()), (400, "invalid public key format"));
    let refused = outsider.get(&format!("/api/v1/members/{}/profile", admin.pubkey)).await;
    assert_eq!((refused.status, refused.error()), (403, "membership required"));
}

/// Fetches a media blob and decodes it.
async fn fetch_image(user: &User, hash: &str) -> (image::DynamicImage, ImageFormat) {
    let resp = user.get(&format!("/api/v1/media/{hash}")).await;
    assert_eq!(resp.status, 200, "media {hash}");
    let format = image::guess_format(&resp.bytes).unwrap();
    (image::load_from_memory(&resp.bytes).unwrap(), format)
}

fn is_hash(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

async fn avatar_upload_resizes_and_reencodes(server: TestServer) {
    let user = server.login(1).await;
    let observer = server.login(2).await;
    let mut gateway = server.gateway(observer.token()).await;

    let cases = [
        (image_bytes(300, 200, ImageFormat::Png, true), ImageFormat::Png, "image/png"),
        (image_bytes(120, 500, ImageFormat::Jpeg, false), ImageFormat::Jpeg, "image/jpeg"),
        (image_bytes(64, 64, ImageFormat::WebP, false), ImageFormat::WebP, "image/webp"),
    ];
    let mut hashes = Vec::new();
    for (bytes, format, mime) in cases {
        // The declared type does not matter when the bytes are recognised.
        let resp = upload(&user, &[(Some("application/octet-stream"), &bytes)]).await;
        assert_eq!(resp.status, 200, "{mime}: {:?}", resp.body);
        let hash = resp.body["avatar_hash"].clone();
        assert!(is_hash(&hash), "{hash}");
        assert!(resp.body["joined_at"].is_string());
        let event = gateway.expect_op("MEMBER_UPDATE").await;
        assert_eq!(event["d"]["avatar_hash"], hash);
        let (image, got_format) = fetch_image(&user, hash.as_str().unwrap()).await;
        assert_eq!((image.width(), image.height()), (256, 256), "{mime}");
        assert_eq!(got_format, format, "{mime}");
        let media = user.get(&format!("/api/v1/media/{}", hash.as_str().unwrap())).await;
        assert_eq!(media.headers["content-type"], mime);
        hashes.push(hash);
    }
    let member = observer.get(&format!("/api/v1/members/{}", user.pubkey)).await;
    assert_eq!(member.body["avatar_hash"], hashes[2]);

    // Only the first part counts; undetectable bytes fall back to the part's Content-Type.
    let png = image_bytes(10, 10, ImageFormat::Png, false);
    let resp = upload(&user, &[(Some("image/png"), &png), (Some("text/plain"), b"ignored")]).await;
    assert_eq!(resp.status, 200);
    let (image, _) = fetch_image(&user, resp.body["avatar_hash"].as_str().unwrap()).await;
    assert_eq!((image.width(), image.height()), (256, 256));
    // The same picture gives the same hash (content addressed).
    let again = upload(&user, &[(Some("image/png"), &png)]).await;
    assert_eq!(again.body["avatar_hash"], resp.body["avatar_hash"]);
}

async fn avatar_upload_validation(server: TestServer) {
    let user = server.login(1).await;

    let resp = upload(&user, &[]).await;
    assert_eq!((resp.status, resp.error()), (400, "no files provided"));
    let resp = user.put("/api/v1/profile/avatar", json!({})).await;
    assert_eq!((resp.status, resp.error()), (415, "expected multipart/form-data"));
    let broken = user
        .request(reqwest::Method::PUT, "/api/v1/profile/avatar")
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body("--not-the-boundary\r\n\r\nxx");
    let resp = user.send(broken).await;
    assert_eq!(resp.status, 400, "{:?}", resp.body);
    assert!(resp.error().starts_with("invalid multipart body"), "{}", resp.error());

    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let resp = upload(&user, &[(Some("image/png"), gif)]).await;
    assert_eq!((resp.status, resp.error()), (415, "avatar must be PNG, JPEG or WebP"));
    let resp = upload(&user, &[(Some("text/plain"), b"hello")]).await;
    assert_eq!((resp.status, resp.error()), (415, "avatar must be PNG, JPEG or WebP"));
    let resp = upload(&user, &[(None, b"hello")]).await;
    assert_eq!(resp.status, 415);
    let resp = upload(&user, &[(Some("image/png"), b"definitely not a png")]).await;
    assert_eq!(resp.status, 422);
    assert!(resp.error().starts_with("avatar processing failed: "), "{}", resp.error());
    let truncated = &image_bytes(50, 50, ImageFormat::Png, false)[..40];
    let resp = upload(&user, &[(None, truncated)]).await;
    assert_eq!(resp.status, 422, "{:?}", resp.body);

    // Over 2 MiB: refused with the avatar message while within the request limit …
    let mut big = image_bytes(10, 10, ImageFormat::Png, false);
    big.resize(2 * 1024 * 1024 + 1024, 0);
    let resp = upload(&user, &[(Some("image/png"), &big)]).await;
    assert_eq!((resp.status, resp.error()), (413, "avatar exceeds maximum size of 2 MiB"));
    // … and far over it, by the request body limit.
    big.resize(3 * 1024 * 1024, 0);
    let resp = upload(&user, &[(Some("image/png"), &big)]).await;
    assert_eq!(resp.status, 413);
    let profile = user.get(&format!("/api/v1/members/{}/profile", user.pubkey)).await;
    assert_eq!(profile.body["avatar_hash"], Value::Null, "nothing was stored");

    // Exactly 2 MiB is accepted in size (the decoder ignores the trailing padding).
    let mut edge = image_bytes(10, 10, ImageFormat::Png, false);
    edge.resize(2 * 1024 * 1024, 0);
    let resp = upload(&user, &[(Some("image/png"), &edge)]).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);

    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let _admin = server.login(1).await;
    let outsider = server.login(2).await;
    let resp = upload(&outsider, &[(Some("image/png"), &image_bytes(10, 10, ImageFormat::Png, false))]).await;
    assert_eq!((resp.status, resp.error()), (403, "membership required"));
}

async fn delete_avatar_keeps_the_blob(server: TestServer) {
    let user = server.login(1).await;
    let observer = server.login(2).await;
    let resp = upload(&user, &[(Some("image/png"), &image_bytes(40, 40, ImageFormat::Png, false))]).await;
    let hash = resp.body["avatar_hash"].as_str().unwrap().to_owned();
    let mut gateway = server.gateway(observer.token()).await;

    let deleted = user.delete("/api/v1/profile/avatar").await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["avatar_hash"], Value::Null);
    assert_eq!(deleted.body["user_id"], user.user_id.as_str());
    let event = gateway.expect_op("MEMBER_UPDATE").await;
    assert_eq!(event["d"]["avatar_hash"], Value::Null);
    assert_eq!(user.get(&format!("/api/v1/media/{hash}")).await.status, 200);
    // Deleting again is harmless.
    assert_eq!(user.delete("/api/v1/profile/avatar").await.status, 200);
}
