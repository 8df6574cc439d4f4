//! Rate limits (api.md §1.8): per-user buckets for messages (channel, thread reply, DM), uploads
//! and reactions, per-address buckets for the login steps; 429 `rate limited` with a
//! `Retry-After` that is honest, nothing stored for a refused request, and `X-Forwarded-For`
//! believed only from `network.trusted_proxies`.

use std::time::Duration;

use decentcom::config::Config;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::attachments::{part, upload};
use crate::messages::general;
use crate::support::{Backend, Resp, TestServer};

crate::backend_tests!(
    a_flood_from_one_user_is_refused_while_others_post,
    every_limited_operation_draws_on_its_bucket,
    login_steps_are_limited_per_address,
    forwarded_for_counts_only_from_trusted_proxies,
    zero_turns_a_bucket_off,
);

/// Whole seconds of `Retry-After`.
fn retry_after(r: &Resp) -> u64 {
    let value = r.headers.get("retry-after").unwrap_or_else(|| panic!("no Retry-After on {} {:?}", r.status, r.body));
    value.to_str().unwrap().parse().unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {value:?}"))
}

fn assert_limited(r: &Resp, what: &str) -> u64 {
    assert_eq!((r.status, &r.body), (429, &json!({"error": "rate limited"})), "{what}");
    retry_after(r)
}

fn contents(page: &Value) -> Vec<String> {
    page["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

async fn a_flood_from_one_user_is_refused_while_others_post(backend: Backend) {
    // One token every 3 s, 3 at once.
    let server = TestServer::start_with(backend, |c: &mut Config| {
        c.limits.messages_per_minute = 20;
        c.limits.messages_burst = 3;
    })
    .await;
    let flooder = server.login(1).await;
    let other = server.login(2).await;
    let channel = general(&flooder).await;
    let path = format!("/api/v1/channels/{channel}/messages");

    for i in 0..3 {
        flooder.post_message(&channel, &format!("allowed {i}")).await;
    }
    let mut waits = Vec::new();
    for i in 0..10 {
        let r = flooder.post(&path, json!({"content": format!("refused {i}")})).await;
        waits.push(assert_limited(&r, "past the burst"));
        // The other user (with a bucket of 3 of their own) is not held back by the flood.
        if i % 4 == 0 {
            other.post_message(&channel, &format!("other {i}")).await;
        }
    }
    assert!(waits.iter().all(|w| (1..=3).contains(w)), "Retry-After within one token's period: {waits:?}");

    // Nothing of the refused requests was stored, and no event went out for them.
    let page = other.get(&format!("{path}?limit=100")).await;
    let mut stored = contents(&page.body);
    stored.sort();
    assert_eq!(stored, ["allowed 0", "allowed 1", "allowed 2", "other 0", "other 4", "other 8"]);

    // Retry-After is honest: after waiting it, the next message goes through.
    let last = flooder.post(&path, json!({"content": "still refused"})).await;
    let wait = assert_limited(&last, "still flooding");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    flooder.post_message(&channel, "after the wait").await;
}

async fn every_limited_operation_draws_on_its_bucket(backend: Backend) {
    // One of each per minute: the second request of a kind is refused, with Retry-After ≈ 60.
    let server = TestServer::start_with(backend, |c: &mut Config| {
        for (rate, burst) in [
            (&mut c.limits.messages_per_minute, &mut c.limits.messages_burst),
            (&mut c.limits.uploads_per_minute, &mut c.limits.uploads_burst),
            (&mut c.limits.reactions_per_minute, &mut c.limits.reactions_burst),
        ] {
            (*rate, *burst) = (1, 1);
        }
    })
    .await;
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let carol = server.login(3).await;
    let channel = general(&admin).await;
    let message = admin.post_message(&channel, "parent").await;
    let message_id = message["id"].as_str().unwrap();

    // Messages: a channel message, a thread reply and a DM share one bucket per user.
    let thread = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{message_id}/threads")).await;
    assert_eq!(thread.status, 200, "{:?}", thread.body);
    let thread_id = thread.body["thread_id"].as_str().unwrap().to_owned();
    let reply = admin.post(&format!("/api/v1/threads/{thread_id}/messages"), json!({"content": "reply"})).await;
    let wait = assert_limited(&reply, "thread reply after a channel message");
    assert!((55..=60).contains(&wait), "{wait}");
    let dm = bob.post("/api/v1/dms", json!({"recipient_pubkey": carol.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm_path = format!("/api/v1/dms/{}/messages", dm.body["channel_id"].as_str().unwrap());
    let sent = bob.post(&dm_path, json!({"content": "hi"})).await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    assert_limited(&bob.post(&dm_path, json!({"content": "again"})).await, "second DM");
    assert_limited(
        &bob.post(&format!("/api/v1/channels/{channel}/messages"), json!({"content": "x"})).await,
        "channel message after a DM",
    );
    let replies = admin.get(&format!("/api/v1/threads/{thread_id}/messages")).await;
    assert_eq!(contents(&replies.body), Vec::<String>::new(), "the refused reply is not stored");

    // Uploads: attachments and avatars share one bucket; the refused upload leaves no row.
    let first = upload(&carol.client, &channel, &[part("a.txt", "text/plain", b"first file")]).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let second = upload(&carol.client, &channel, &[part("b.txt", "text/plain", b"second file")]).await;
    assert_limited(&second, "second upload");
    let avatar = carol
        .send(
            carol
                .request(reqwest::Method::PUT, "/api/v1/profile/avatar")
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x--\r\n"),
        )
        .await;
    assert_limited(&avatar, "avatar after an attachment");
    use sha2::Digest;
    let hash = decentcom::storage::ContentHash::parse(&hex::encode(sha2::Sha256::digest(b"second file"))).unwrap();
    assert!(server.storage.get_media(&hash).await.unwrap().is_none(), "no media row for the refused upload");

    // Reactions: adding and removing one's own share one bucket.
    let react = format!("/api/v1/channels/{channel}/messages/{message_id}/reactions/%F0%9F%91%8D");
    assert_eq!(bob.put_empty(&react).await.status, 204);
    assert_limited(&bob.put_empty(&react).await, "second reaction");
    assert_limited(
        &bob.delete(&format!("/api/v1/channels/{channel}/messages/{message_id}/reactions")).await,
        "removing after adding",
    );

    // Reads are never limited, and another user's buckets are their own.
    for _ in 0..5 {
        assert_eq!(admin.get(&format!("/api/v1/channels/{channel}/messages")).await.status, 200);
    }
    assert_eq!(carol.put_empty(&react).await.status, 204);
}

async fn login_steps_are_limited_per_address(backend: Backend) {
    // Challenge and verify draw on one bucket per address: 4 at once, then one a minute.
    let server = TestServer::start_with(backend, |c: &mut Config| {
        c.limits.auth_per_minute = 1;
        c.limits.auth_burst = 4;
    })
    .await;
    server.login(1).await;
    server.login(2).await;
    let anon = server.anonymous();
    let pubkey = crate::support::pubkey_of(&ed25519_dalek::SigningKey::from_bytes(&[3; 32]));
    let r = anon.post("/api/v1/auth/challenge", json!({"pubkey": pubkey})).await;
    let wait = assert_limited(&r, "a fifth login step");
    assert!((55..=60).contains(&wait), "one token a minute: {wait}");
    let r = anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey, "signature": "AAAA"})).await;
    assert_limited(&r, "verify shares the bucket");
    let key = decentcom::storage::PublicKey::from_base58(&pubkey).unwrap();
    assert!(server.storage.get_user_by_pubkey(&key).await.unwrap().is_none(), "the refused login registered nobody");
}

async fn forwarded_for_counts_only_from_trusted_proxies(backend: Backend) {
    let challenge = |server: &TestServer, forwarded: Option<&str>| {
        let anon = server.anonymous();
        let forwarded = forwarded.map(str::to_owned);
        async move {
            let pubkey = crate::support::pubkey_of(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
            let mut req =
                anon.request(reqwest::Method::POST, "/api/v1/auth/challenge").json(&json!({"pubkey": pubkey}));
            if let Some(value) = forwarded {
                req = req.header("x-forwarded-for", value);
            }
            anon.send(req).await.status
        }
    };
    let limits = |c: &mut Config| {
        c.limits.auth_per_minute = 1;
        c.limits.auth_burst = 2;
    };

    // The peer (127.0.0.1) is not a trusted proxy: whatever it claims, it is one client.
    let server = TestServer::start_with(backend, limits).await;
    assert_eq!(challenge(&server, Some("203.0.113.1")).await, 200);
    assert_eq!(challenge(&server, Some("203.0.113.2")).await, 200);
    assert_eq!(challenge(&server, Some("203.0.113.3")).await, 429, "a spoofed X-Forwarded-For is ignored");
    assert_eq!(challenge(&server, None).await, 429);
    drop(server);

    // Behind a trusted proxy the forwarded address is the client: each has its own bucket.
    let server = TestServer::start_with(backend, |c: &mut Config| {
        limits(c);
        c.network.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "2001:db8::1"] {
        assert_eq!(challenge(&server, Some(client)).await, 200, "{client}");
    }
    assert_eq!(challenge(&server, Some("203.0.113.1")).await, 200);
    assert_eq!(challenge(&server, Some("203.0.113.1")).await, 429, "203.0.113.1 used its burst");
    // The client named by the nearest untrusted hop; what it put further left is its own claim.
    assert_eq!(challenge(&server, Some("198.51.100.7, 203.0.113.1")).await, 429);
    assert_eq!(challenge(&server, Some("203.0.113.1, 198.51.100.7")).await, 200);
    // Same /64, same bucket.
    assert_eq!(challenge(&server, Some("2001:db8::2")).await, 200);
    assert_eq!(challenge(&server, Some("2001:db8::3")).await, 429);
    // The proxy's own requests (no header) count for the proxy.
    assert_eq!(challenge(&server, None).await, 200);
}

async fn zero_turns_a_bucket_off(backend: Backend) {
    let server = TestServer::start_with(backend, |c: &mut Config| {
        c.limits.messages_per_minute = 0;
        c.limits.messages_burst = 1;
        c.limits.auth_per_minute = 1;
        c.limits.auth_burst = 0;
    })
    .await;
    let user = server.login(1).await;
    let channel = general(&user).await;
    for i in 0..40 {
        user.post_message(&channel, &format!("m{i}")).await;
    }
    for seed in 2..20 {
        server.login(seed).await;
    }
}
