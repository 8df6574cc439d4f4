//! U+0000 on every route that takes text, on both backends (api.md §1.1): PostgreSQL cannot store
//! it, so both answer 422 `<field> must not contain NUL characters` and store nothing. Bodies that
//! are not JSON objects are refused the same way, never matched by position.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::support::{TestServer, User};

crate::api_tests!(nul_in_any_text_input_is_refused_and_nothing_is_stored, bodies_must_be_json_objects);

const NUL: &str = "a\u{0}b";

/// Everything a refused request could have changed.
async fn state(admin: &User, channel: &str, thread: &str, dm: &str) -> Value {
    json!({
        "messages": admin.get(&format!("/api/v1/channels/{channel}/messages")).await.body,
        "replies": admin.get(&format!("/api/v1/threads/{thread}/messages")).await.body,
        "pending bots": admin.get("/api/v1/admin/bots/pending").await.body,
        "devices": admin.get("/api/v1/devices").await.body,
        "dm": admin.get(&format!("/api/v1/dms/{dm}/messages")).await.body,
        "channels": admin.get("/api/v1/channels").await.body,
        "roles": admin.get("/api/v1/roles").await.body,
        "bans": admin.get("/api/v1/bans").await.body,
        "members": admin.get("/api/v1/members").await.body,
    })
}

async fn nul_in_any_text_input_is_refused_and_nothing_is_stored(server: TestServer) {
    let admin = server.login(1).await;
    let other = server.login(2).await;
    let bot = server.login_bot(3).await;
    let channel = admin.create_channel("nul").await;
    let message = admin.post_message(&channel, "parent").await["id"].as_str().unwrap().to_owned();
    let thread = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{message}/threads")).await;
    let thread = thread.body["thread_id"].as_str().unwrap().to_owned();
    let dm = admin.post("/api/v1/dms", json!({"recipient_pubkey": other.pubkey})).await;
    let dm = dm.body["channel_id"].as_str().unwrap().to_owned();
    let role = admin.post("/api/v1/roles", json!({"name": "mods", "permissions": 0})).await;
    let role = role.body["id"].as_str().unwrap().to_owned();
    let before = state(&admin, &channel, &thread, &dm).await;

    let json_cases: Vec<(reqwest::Method, String, Value, &str)> = vec![
        (reqwest::Method::POST, format!("/api/v1/channels/{channel}/messages"), json!({"content": NUL}), "content"),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/channels/{channel}/messages/{message}"),
            json!({"content": NUL}),
            "content",
        ),
        (reqwest::Method::POST, format!("/api/v1/threads/{thread}/messages"), json!({"content": NUL}), "content"),
        (reqwest::Method::POST, format!("/api/v1/dms/{dm}/messages"), json!({"content": NUL}), "content"),
        (reqwest::Method::PATCH, "/api/v1/profile".into(), json!({"display_name": NUL}), "display_name"),
        (reqwest::Method::POST, "/api/v1/roles".into(), json!({"name": NUL, "permissions": 0}), "name"),
        (reqwest::Method::POST, "/api/v1/roles".into(), json!({"name": "ok", "color": NUL, "permissions": 0}), "color"),
        (reqwest::Method::PATCH, format!("/api/v1/roles/{role}"), json!({"name": NUL}), "name"),
        (reqwest::Method::PATCH, format!("/api/v1/roles/{role}"), json!({"color": NUL}), "color"),
        (reqwest::Method::PATCH, format!("/api/v1/channels/{channel}"), json!({"topic": NUL}), "topic"),
        (reqwest::Method::PATCH, format!("/api/v1/channels/{channel}"), json!({"category": NUL}), "category"),
        (reqwest::Method::POST, "/api/v1/channels".into(), json!({"name": "fresh", "category": NUL}), "category"),
        (reqwest::Method::POST, format!("/api/v1/members/{}/ban", other.pubkey), json!({"reason": NUL}), "reason"),
        (reqwest::Method::POST, format!("/api/v1/admin/bots/{}/approve", bot.pubkey), json!({"note": NUL}), "note"),
        (
            reqwest::Method::POST,
            "/api/v1/devices".into(),
            // Well-formed but for the NUL: a certificate missing fields is refused for those first.
            json!({"delegation_certificate": {
                "device_pubkey": other.pubkey, "device_name": NUL, "issued_at": "2026-01-01T00:00:00Z",
                "permissions": [], "master_pubkey": admin.pubkey, "signature": "x",
            }}),
            "delegation_certificate.device_name",
        ),
    ];
    for (method, path, body, field) in json_cases {
        let r = admin.send(admin.request(method.clone(), &path).json(&body)).await;
        assert_eq!(
            (r.status, r.error()),
            (422, format!("{field} must not contain NUL characters").as_str()),
            "{method} {path} {body}"
        );
    }
    // An id is not text: one holding a NUL is just not an id.
    let r = admin
        .post(&format!("/api/v1/channels/{channel}/messages"), json!({"content": "fine", "attachment_ids": [NUL]}))
        .await;
    assert_eq!((r.status, r.error()), (400, "invalid id: attachment_ids"));
    // Query and path parameters too.
    let r = admin.get("/api/v1/search?q=a%00b").await;
    assert_eq!((r.status, r.error()), (422, "q must not contain NUL characters"));
    let r = admin.put_empty(&format!("/api/v1/channels/{channel}/messages/{message}/reactions/a%00b")).await;
    assert_eq!((r.status, r.error()), (422, "emoji must not contain NUL characters"));
    // A filename cannot carry one: multipart part headers refuse control bytes.
    let body =
        format!("--b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{NUL}\"\r\n\r\nx\r\n--b--\r\n");
    let r = admin
        .send(
            admin
                .request(reqwest::Method::POST, &format!("/api/v1/channels/{channel}/attachments"))
                .header("content-type", "multipart/form-data; boundary=b")
                .body(body),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    assert_eq!(state(&admin, &channel, &thread, &dm).await, before, "a refused request changed something");
    // A NUL escaped as text (`\\u0000`) is six ordinary characters, not a NUL.
    let r = admin.post(&format!("/api/v1/channels/{channel}/messages"), json!({"content": "\\u0000"})).await;
    assert_eq!((r.status, r.body["content"].as_str()), (200, Some("\\u0000")));
}

async fn bodies_must_be_json_objects(server: TestServer) {
    let admin = server.login(1).await;
    let channels_before = admin.get("/api/v1/channels").await.body;
    for body in [json!(["x", null, 5]), json!("x"), json!(5), json!(null), json!([])] {
        let r = admin.post("/api/v1/channels", body.clone()).await;
        assert_eq!(
            (r.status, r.error()),
            (422, "invalid request body: expected a JSON object"),
            "POST /channels {body}"
        );
    }
    // An optional body too: empty is `{}`, but an array is not an object.
    let other = server.login(2).await;
    let r = admin.post(&format!("/api/v1/members/{}/ban", other.pubkey), json!(["spam"])).await;
    assert_eq!((r.status, r.error()), (422, "invalid request body: expected a JSON object"));
    assert_eq!(admin.get("/api/v1/channels").await.body, channels_before);
    assert_eq!(admin.get("/api/v1/bans").await.body, json!({"bans": []}));
    // Broken JSON stays a syntax error (400), whatever its first character.
    let r = admin
        .send(
            admin
                .request(reqwest::Method::POST, "/api/v1/channels")
                .header("content-type", "application/json")
                .body("[1,"),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}
