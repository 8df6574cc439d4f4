//! Challenge, verify, sessions, logout and `GET /auth/me` (api.md §2, §3.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use decentcom::config::MembershipMode;
use ed25519_dalek::{Signer, SigningKey};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::support::{Resp, TestServer, pubkey_of};

api_tests!(
    challenge_and_verify,
    challenges_are_single_use,
    verify_rejects_malformed_input,
    session_header_checks,
    logout_ends_the_session,
    first_user_is_admin_and_open_mode_makes_members,
    bot_login_is_read_only_until_approved,
);

/// Requests a challenge for `key` and returns its text.
pub async fn challenge_for(server: &TestServer, key: &SigningKey, is_bot: bool) -> String {
    let resp =
        server.anonymous().post("/api/v1/auth/challenge", json!({"pubkey": pubkey_of(key), "is_bot": is_bot})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    resp.body["challenge"].as_str().unwrap().to_owned()
}

pub fn sign(key: &SigningKey, text: &str) -> String {
    BASE64.encode(key.sign(text.as_bytes()).to_bytes())
}

/// A full login attempt: challenge, sign, verify (with an optional certificate).
pub async fn try_login(server: &TestServer, key: &SigningKey, is_bot: bool, cert: Option<Value>) -> Resp {
    let text = challenge_for(server, key, is_bot).await;
    let mut body = json!({"pubkey": pubkey_of(key), "signature": sign(key, &text)});
    if let Some(cert) = cert {
        body["delegation_certificate"] = cert;
    }
    server.anonymous().post("/api/v1/auth/verify", body).await
}

fn is_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 27 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

async fn challenge_and_verify(server: TestServer) {
    let key = SigningKey::from_bytes(&[1; 32]);
    let text = challenge_for(&server, &key, false).await;
    assert_eq!(text.len(), 44);
    assert_eq!(BASE64.decode(&text).unwrap().len(), 32);
    let bot_text = challenge_for(&server, &key, true).await;
    assert!(bot_text.ends_with("|bot") && bot_text.len() == 48, "{bot_text}");
    // The second challenge replaced the first.
    let stale = server
        .anonymous()
        .post("/api/v1/auth/verify", json!({"pubkey": pubkey_of(&key), "signature": sign(&key, &text)}))
        .await;
    assert_eq!((stale.status, stale.error()), (401, "signature verification failed"));

    let verify = try_login(&server, &key, false, None).await;
    assert_eq!(verify.status, 200, "{:?}", verify.body);
    let token = verify.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(is_timestamp(&verify.body["expires_at"]), "{:?}", verify.body);
    assert_eq!(verify.body["is_read_only"], false);
    assert_eq!(verify.body["device_pubkey"], Value::Null);
    let user_id = verify.body["user_id"].as_str().unwrap().to_owned();

    let mut client = server.anonymous();
    client.token = Some(token.to_owned());
    let me = client.get("/api/v1/auth/me").await;
    assert_eq!((me.status, me.body), (200, json!({"user_id": user_id})));

    // Logging in again gives another session of the same user.
    let again = server.login(1).await;
    assert_eq!(again.user_id, user_id);
    assert_ne!(again.token(), token);
    assert_eq!(client.get("/api/v1/auth/me").await.status, 200);
}

async fn challenges_are_single_use(server: TestServer) {
    let key = SigningKey::from_bytes(&[1; 32]);
    let anon = server.anonymous();
    let text = challenge_for(&server, &key, false).await;
    let body = json!({"pubkey": pubkey_of(&key), "signature": sign(&key, &text)});
    assert_eq!(anon.post("/api/v1/auth/verify", body.clone()).await.status, 200);
    let reused = anon.post("/api/v1/auth/verify", body).await;
    assert_eq!((reused.status, reused.error()), (401, "challenge not found or expired"));

    // A failed verification consumes the challenge too.
    let text = challenge_for(&server, &key, false).await;
    let wrong = SigningKey::from_bytes(&[9; 32]);
    let bad =
        anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey_of(&key), "signature": sign(&wrong, &text)})).await;
    assert_eq!((bad.status, bad.error()), (401, "signature verification failed"));
    let late =
        anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey_of(&key), "signature": sign(&key, &text)})).await;
    assert_eq!((late.status, late.error()), (401, "challenge not found or expired"));

    // Signing the bot text while claiming nothing fails: the suffix is part of what is signed.
    let bot_text = challenge_for(&server, &key, true).await;
    let trimmed = bot_text.trim_end_matches("|bot");
    let mismatch =
        anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey_of(&key), "signature": sign(&key, trimmed)})).await;
    assert_eq!((mismatch.status, mismatch.error()), (401, "signature verification failed"));
}

async fn verify_rejects_malformed_input(server: TestServer) {
    let anon = server.anonymous();
    let key = SigningKey::from_bytes(&[1; 32]);
    let pubkey = pubkey_of(&key);
    let good_signature = sign(&key, "x");

    let bad_key = anon.post("/api/v1/auth/challenge", json!({"pubkey": "abc"})).await;
    assert_eq!((bad_key.status, bad_key.error()), (400, "invalid public key format"));
    let missing = anon.post("/api/v1/auth/challenge", json!({})).await;
    assert_eq!(missing.status, 422);
    assert!(missing.error().starts_with("invalid request body"), "{}", missing.error());
    let not_json = anon.send(anon.request(reqwest::Method::POST, "/api/v1/auth/challenge").body("pubkey")).await;
    assert_eq!((not_json.status, not_json.error()), (415, "expected Content-Type: application/json"));
    let bool_type = anon.post("/api/v1/auth/challenge", json!({"pubkey": pubkey, "is_bot": "yes"})).await;
    assert_eq!(bool_type.status, 422);

    let cases = [
        (json!({"pubkey": "0OIl", "signature": good_signature}), 400, "invalid public key format"),
        (json!({"pubkey": pubkey, "signature": "AAAA"}), 400, "invalid signature format"),
        (json!({"pubkey": pubkey, "signature": "not base64!"}), 400, "invalid signature format"),
        (json!({"pubkey": pubkey, "signature": good_signature}), 401, "challenge not found or expired"),
    ];
    for (body, status, message) in cases {
        let resp = anon.post("/api/v1/auth/verify", body.clone()).await;
        assert_eq!((resp.status, resp.error()), (status, message), "{body}");
    }
    let missing_signature = anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey})).await;
    assert_eq!(missing_signature.status, 422);
}

async fn session_header_checks(server: TestServer) {
    let user = server.login(1).await;
    let anon = server.anonymous();
    let me = |value: Option<&str>| {
        let mut req = anon.request(reqwest::Method::GET, "/api/v1/auth/me");
        if let Some(value) = value {
            req = req.header("authorization", value);
        }
        anon.send(req)
    };
    let cases = [
        (None, "missing authorization header"),
        (Some("Basic abc"), "invalid bearer token"),
        (Some("bearer abc"), "invalid bearer token"),
        (Some("Bearer "), "invalid bearer token"),
        (Some("Bearer 00000000000000000000000000000000"), "invalid session token"),
    ];
    for (header, message) in cases {
        let resp = me(header).await;
        assert_eq!((resp.status, resp.error()), (401, message), "{header:?}");
    }
    let ok = me(Some(&format!("Bearer {}", user.token()))).await;
    assert_eq!(ok.status, 200);
}

async fn logout_ends_the_session(server: TestServer) {
    let user = server.login(1).await;
    let other_session = server.login(1).await;
    let mut gateway = server.gateway(user.token()).await;
    let mut other_gateway = server.gateway(other_session.token()).await;

    let anon = server.anonymous();
    assert_eq!(anon.post_empty("/api/v1/auth/logout").await.status, 401);
    let logout = user.post_empty("/api/v1/auth/logout").await;
    assert_eq!(logout.status, 204);
    assert!(logout.bytes.is_empty());
    assert_eq!(gateway.expect_close().await, 4003);
    let after = user.get("/api/v1/auth/me").await;
    assert_eq!((after.status, after.error()), (401, "invalid session token"));
    // Only that session ended.
    assert_eq!(other_session.get("/api/v1/auth/me").await.status, 200);
    let still_open = other_session.post_empty("/api/v1/auth/logout").await;
    assert_eq!(still_open.status, 204);
    assert_eq!(other_gateway.expect_close().await, 4003);
}

async fn first_user_is_admin_and_open_mode_makes_members(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let me = admin.get(&format!("/api/v1/members/{}", admin.pubkey)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    let roles: Vec<&str> = me.body["roles"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(roles, ["2", "1"]);
    let member = admin.get(&format!("/api/v1/members/{}", user.pubkey)).await;
    assert_eq!(member.status, 200);
    let roles: Vec<&str> = member.body["roles"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(roles, ["1"]);

    // Other modes: the first user is still an admin member, later users are not members.
    for mode in [MembershipMode::InviteOnly, MembershipMode::Allowlist] {
        let server = TestServer::start_with(server.backend, |c| c.membership.mode = mode).await;
        let admin = server.login(1).await;
        assert_eq!(admin.get("/api/v1/members").await.status, 200);
        let user = server.login(2).await;
        let refused = user.get("/api/v1/members").await;
        assert_eq!((refused.status, refused.error()), (403, "membership required"), "{mode:?}");
    }

    // Closed mode: only the very first user may register (and becomes the admin); no later key
    // can. `server.membership_mode` overrides `membership.mode`.
    let closed =
        TestServer::start_with(server.backend, |c| c.server.membership_mode = Some(MembershipMode::Closed)).await;
    let first = closed.login(1).await;
    assert_eq!(first.get("/api/v1/members").await.status, 200);
    let refused = try_login(&closed, &SigningKey::from_bytes(&[2; 32]), false, None).await;
    assert_eq!((refused.status, refused.error()), (403, "registration is disabled while membership mode is closed"));
    let returning = try_login(&closed, &SigningKey::from_bytes(&[1; 32]), false, None).await;
    assert_eq!(returning.status, 200, "an existing user still logs in");
}

async fn bot_login_is_read_only_until_approved(server: TestServer) {
    let admin = server.login(1).await;
    let bot_key = SigningKey::from_bytes(&[7; 32]);
    let first = try_login(&server, &bot_key, true, None).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["is_read_only"], true);
    let bot_pubkey = pubkey_of(&bot_key);
    let mut bot = server.anonymous();
    bot.token = Some(first.body["token"].as_str().unwrap().to_owned());

    // A bot is not made a member at registration, even in open mode: it waits for approval.
    let refused = bot.get("/api/v1/members").await;
    assert_eq!((refused.status, refused.error()), (403, "membership required"));
    let pending = admin.get("/api/v1/admin/bots/pending").await;
    assert_eq!(pending.status, 200);
    assert_eq!(pending.body["bots"].as_array().unwrap().len(), 1);
    assert_eq!(pending.body["bots"][0]["pubkey"], bot_pubkey.as_str());

    let approved = admin.post_empty(&format!("/api/v1/admin/bots/{bot_pubkey}/approve")).await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    // The old session stays read-only, but the bot is now a member.
    assert_eq!(bot.get("/api/v1/members").await.status, 200);
    let second = try_login(&server, &bot_key, true, None).await;
    assert_eq!(second.body["is_read_only"], false);
    // The is_bot claim of a later login does not matter: the user is a bot.
    let third = try_login(&server, &bot_key, false, None).await;
    assert_eq!(third.body["is_read_only"], false);

    let revoked = admin.post_empty(&format!("/api/v1/admin/bots/{bot_pubkey}/revoke")).await;
    assert_eq!(revoked.status, 200);
    let fourth = try_login(&server, &bot_key, true, None).await;
    assert_eq!(fourth.body["is_read_only"], true);
}
