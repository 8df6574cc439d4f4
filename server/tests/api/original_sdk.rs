//! Compatibility with the original project's clients (issue #17): its Rust SDK (`sdk/rust` with
//! the `shared` crate) and its web client (`client/src/api`, `client/src/stores`).
//!
//! Every response type those clients decode is mirrored in [`original`] from its definition —
//! the same field names and the same Rust types, unknown fields ignored as serde does by default —
//! and every call they make is made here against the real server, with the request bodies they
//! send written out as JSON fixtures. Every answer must decode into its mirror, so a change that
//! would break an original client fails here. Where the clients left off the route, or kept no
//! shape of their own, nothing is pinned; the differences that remain are listed, with their
//! reasons, in `docs/api-decisions.md` ("The original clients").

use std::time::Duration;

use decentcom::config::MembershipMode;
use pretty_assertions::assert_eq;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api_tests;
use crate::messages::{general, subscribed};
use crate::support::{Gateway, Resp, TestServer, User, pubkey_of};

api_tests!(
    auth_meta_and_the_gateway_handshake_decode,
    channels_messages_and_attachments_decode,
    threads_and_reactions_decode,
    members_roles_and_profiles_decode,
    moderation_allowlist_and_bots_decode,
    invites_decode_and_the_invite_join_answers_a_joined_member,
    gateway_events_carry_the_original_ops_and_payloads,
    positions_stay_within_what_the_original_sdk_decodes,
);

// Fields exist to be decoded; most are never read back.
#[allow(dead_code)]
pub mod original;

/// What the SDK does with an answer it decodes: a 2xx status, then the body into `T`.
fn decode<T: DeserializeOwned>(what: &str, resp: &Resp) -> T {
    assert!((200..300).contains(&resp.status), "{what}: {} {:?}", resp.status, resp.body);
    serde_json::from_slice(&resp.bytes).unwrap_or_else(|err| {
        panic!("{what}: the original SDK cannot decode {}: {err}", String::from_utf8_lossy(&resp.bytes))
    })
}

/// What the SDK does with an answer it does not decode (`send_empty`): a 2xx status.
fn succeeds(what: &str, resp: &Resp) {
    assert!((200..300).contains(&resp.status), "{what}: {} {:?}", resp.status, resp.body);
}

/// A call as the original web client's `apiRequest` makes it: `Content-Type: application/json` on
/// every request, bodiless ones included, and the body (when there is one) as JSON text.
async fn web(user: &User, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut req = user.request(method, path).header("content-type", "application/json");
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    user.send(req).await
}

/// The next event with `op`, decoded as the SDK decodes envelopes; returns its `d`.
async fn next_event<T: DeserializeOwned>(gateway: &mut Gateway, op: &str, expected: original::Op) -> T {
    let frame = gateway.expect_op(op).await;
    let envelope: original::Envelope =
        serde_json::from_value(frame.clone()).unwrap_or_else(|err| panic!("envelope {frame}: {err}"));
    assert_eq!(envelope.op, expected);
    serde_json::from_value(envelope.d).unwrap_or_else(|err| panic!("{op} payload {frame}: {err}"))
}

async fn auth_meta_and_the_gateway_handshake_decode(server: TestServer) {
    let anon = server.anonymous();
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let pubkey = pubkey_of(&key);

    // The web client's challenge carries no `is_bot`; the SDK's always does.
    let challenge: original::Challenge =
        decode("challenge (web)", &anon.post("/api/v1/auth/challenge", json!({"pubkey": pubkey})).await);
    let signature = crate::auth::sign(&key, &challenge.challenge);
    let verified: original::Verified =
        decode("verify", &anon.post("/api/v1/auth/verify", json!({"pubkey": pubkey, "signature": signature})).await);
    assert!(!verified.is_read_only);
    assert!(chrono::DateTime::parse_from_rfc3339(&verified.expires_at).is_ok(), "{}", verified.expires_at);
    let admin = User {
        user_id: verified.user_id.clone(),
        pubkey: pubkey.clone(),
        key,
        client: crate::support::Client { token: Some(verified.token), ..anon.clone() },
    };
    let me: original::Me = decode("auth me", &admin.get("/api/v1/auth/me").await);
    assert_eq!(me.user_id, verified.user_id);

    let bot = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let bot_pubkey = pubkey_of(&bot);
    let challenge: original::Challenge = decode(
        "challenge (SDK, bot)",
        &anon.post("/api/v1/auth/challenge", json!({"pubkey": bot_pubkey, "is_bot": true})).await,
    );
    let signature = crate::auth::sign(&bot, &challenge.challenge);
    let verified: original::Verified = decode(
        "verify (bot)",
        &anon.post("/api/v1/auth/verify", json!({"pubkey": bot_pubkey, "signature": signature})).await,
    );
    assert!(verified.is_read_only);

    let info: original::ServerInfo = decode("server info", &anon.get("/api/v1/server/info").await);
    assert_eq!((info.name.as_str(), info.membership_mode.as_str()), ("decentcom", "open"));
    let health: original::Health = decode("health", &anon.get("/health").await);
    assert_eq!(health.status, "ok");

    // The SDK's gateway: the token in the query, HELLO decoded, HEARTBEAT_ACK and SUBSCRIBE sent
    // in its shapes (an unparsable command would be ignored, and SUBSCRIBE's ERROR would not come).
    let url = format!("{}/api/v1/gateway?token={}", server.base.replacen("http", "ws", 1), admin.token());
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("gateway connects");
    let mut gateway = Gateway { socket };
    let envelope: original::Envelope = serde_json::from_value(gateway.next_frame().await).unwrap();
    assert_eq!(envelope.op, original::Op::Hello);
    let hello: original::Hello = serde_json::from_value(envelope.d).unwrap();
    assert_eq!(hello.user.id, admin.user_id);
    assert_eq!(hello.user.pubkey, admin.pubkey);
    assert_eq!(hello.heartbeat_interval_ms, 30_000);
    assert_eq!(hello.channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["general"]);
    let ready: original::Envelope = serde_json::from_value(gateway.next_frame().await).unwrap();
    assert_eq!(ready.op, original::Op::Ready);
    gateway.send(json!({"op": "HEARTBEAT_ACK", "d": {}})).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": "987654321"}})).await;
    let error = gateway.expect_op("ERROR").await;
    assert_eq!(error["d"]["channel_id"], "987654321");
}

async fn channels_messages_and_attachments_decode(server: TestServer) {
    let admin = server.login(1).await;
    let general = general(&admin).await;

    let list: original::ChannelList = decode("list channels", &admin.get("/api/v1/channels").await);
    assert_eq!(list.channels.len(), 1);
    // SDK create: `position` omitted; web client create: `category: null` and a position.
    let lobby: original::Channel = decode(
        "create channel",
        &admin.post("/api/v1/channels", json!({"name": "lobby", "category": "General"})).await,
    );
    assert_eq!((lobby.category.as_deref(), lobby.position, lobby.kind.as_str()), (Some("General"), 0, "text"));
    let news: original::Channel = decode(
        "create channel (web)",
        &web(&admin, Method::POST, "/api/v1/channels", Some(json!({"name": "news", "category": null, "position": 2})))
            .await,
    );
    assert_eq!((news.category, news.position), (None, 2));
    let path = format!("/api/v1/channels/{}", lobby.id);
    let got: original::Channel = decode("get channel", &admin.get(&path).await);
    assert_eq!(got.name, "lobby");
    // SDK PATCH bodies: only the fields set; `category: null` is its explicit clear.
    let topic: original::Channel = decode("update topic", &admin.patch(&path, json!({"topic": "hello"})).await);
    assert_eq!(topic.topic.as_deref(), Some("hello"));
    let cleared: original::Channel = decode("clear category", &admin.patch(&path, json!({"category": null})).await);
    assert_eq!((cleared.category, cleared.topic.as_deref()), (None, Some("hello")));
    let moved: original::Channel =
        decode("rename and move", &admin.patch(&path, json!({"name": "lobby-2", "position": 1})).await);
    assert_eq!((moved.name.as_str(), moved.position), ("lobby-2", 1));
    let web_patch: original::Channel = decode(
        "update channel (web)",
        &web(&admin, Method::PATCH, &path, Some(json!({"topic": null, "category": "Archive"}))).await,
    );
    assert_eq!((web_patch.topic, web_patch.category.as_deref()), (None, Some("Archive")));
    succeeds("delete channel (web)", &web(&admin, Method::DELETE, &path, None).await);
    succeeds("delete channel", &admin.delete(&format!("/api/v1/channels/{}", news.id)).await);

    // Messages: the SDK leaves out an empty `attachment_ids`.
    let messages = format!("/api/v1/channels/{general}/messages");
    let first: original::Message = decode("send", &admin.post(&messages, json!({"content": "hi"})).await);
    assert_eq!((first.content.as_str(), first.thread.is_none()), ("hi", true));
    let second: original::Message =
        decode("send (web)", &web(&admin, Method::POST, &messages, Some(json!({"content": "there"}))).await);

    // The web client uploads one part named `file` and reads an array of Attachments.
    let upload = {
        let boundary = "original-client-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n\
             Content-Type: text/plain\r\n\r\nsome notes\r\n--{boundary}--\r\n"
        );
        let req = admin
            .request(Method::POST, &format!("/api/v1/channels/{general}/attachments"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        admin.send(req).await
    };
    let uploaded: Vec<original::Attachment> = decode("upload", &upload);
    assert_eq!(uploaded.len(), 1);
    let attachment = &uploaded[0];
    assert_eq!((attachment.message_id.as_deref(), attachment.width), (None, None));
    let with_file: original::Message = decode(
        "send with attachment",
        &admin.post(&messages, json!({"content": "see file", "attachment_ids": [attachment.id]})).await,
    );
    assert_eq!(with_file.attachments[0].message_id.as_deref(), Some(with_file.id.as_str()));

    // Dimensions are i32 in the SDK: a PNG header claiming more is not an image size at all.
    for (width, expected) in [(i32::MAX as u32, Some(i32::MAX)), (1 << 31, None)] {
        let bytes = crate::attachments::png(width, 1);
        let parts = [crate::attachments::part("big.png", "image/png", &bytes)];
        let uploaded: Vec<original::Attachment> =
            decode("upload png", &crate::attachments::upload(&admin, &general, &parts).await);
        assert_eq!((uploaded[0].width, uploaded[0].mime_type.as_str()), (expected, "image/png"), "{width}");
        let sent: original::Message = decode(
            "send png",
            &admin.post(&messages, json!({"content": "", "attachment_ids": [uploaded[0].id]})).await,
        );
        assert_eq!(sent.attachments[0].width, expected);
    }

    // The SDK's media fetch: anonymous, bytes and Content-Type.
    let media = server.anonymous().get(&format!("/api/v1/media/{}", attachment.content_hash)).await;
    assert_eq!(media.status, 200);
    assert_eq!(media.headers["content-type"], "text/plain");
    assert_eq!(&media.bytes[..], b"some notes");

    let page: original::MessagePage =
        decode("list before", &admin.get(&format!("{messages}?before={}&limit=10", with_file.id)).await);
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!((ids, page.has_more), (vec![second.id.as_str(), first.id.as_str()], false));
    let page: original::MessagePage = decode("list after", &admin.get(&format!("{messages}?after={}", first.id)).await);
    assert_eq!(page.messages.len(), 4);
    let page: original::MessagePage =
        decode("list (web)", &web(&admin, Method::GET, &format!("{messages}?limit=50"), None).await);
    assert_eq!(page.messages.len(), 5);

    let one = format!("{messages}/{}", first.id);
    let got: original::Message = decode("get message", &admin.get(&one).await);
    assert_eq!(got.id, first.id);
    let edited: original::Message = decode("edit", &admin.patch(&one, json!({"content": "hi!"})).await);
    assert!(edited.edited_at.is_some());
    succeeds("delete message", &admin.delete(&one).await);
    let deleted: original::Message = decode("get deleted", &admin.get(&one).await);
    assert_eq!((deleted.deleted, deleted.content.as_str()), (true, ""));
}

async fn threads_and_reactions_decode(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let general = general(&admin).await;
    let parent = crate::messages::post(&admin, &general, "a topic").await;
    let parent_id = parent["id"].as_str().unwrap();

    // Threads: created with no body (SDK) — and with the web client's bodiless JSON request.
    let created: original::ThreadCreated = decode(
        "create thread",
        &admin.post_empty(&format!("/api/v1/channels/{general}/messages/{parent_id}/threads")).await,
    );
    assert_eq!((created.parent_message_id.as_str(), created.reply_count), (parent_id, 0));
    let again: original::ThreadCreated = decode(
        "create thread (web)",
        &web(&admin, Method::POST, &format!("/api/v1/channels/{general}/messages/{parent_id}/threads"), None).await,
    );
    assert_eq!(again.thread_id, created.thread_id);
    let thread_path = format!("/api/v1/threads/{}", created.thread_id);
    let thread: original::Thread = decode("get thread", &admin.get(&thread_path).await);
    assert_eq!((thread.creator_id.as_str(), thread.last_reply_at), (admin.user_id.as_str(), None));
    let reply: original::Message =
        decode("reply", &user.post(&format!("{thread_path}/messages"), json!({"content": "first reply"})).await);
    let web_reply: original::Message = decode(
        "reply (web)",
        &web(
            &user,
            Method::POST,
            &format!("{thread_path}/messages"),
            Some(json!({"content": "second reply", "attachment_ids": []})),
        )
        .await,
    );
    let page: original::MessagePage = decode("thread messages", &user.get(&format!("{thread_path}/messages")).await);
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [web_reply.id.as_str(), reply.id.as_str()]);
    let page: original::MessagePage = decode(
        "thread messages (web)",
        &web(&user, Method::GET, &format!("{thread_path}/messages?after={}&limit=10", reply.id), None).await,
    );
    assert_eq!(page.messages.len(), 1);
    succeeds("follow", &admin.put_empty(&format!("{thread_path}/follow")).await);
    succeeds("mark read", &admin.put_empty(&format!("{thread_path}/read")).await);
    succeeds("unfollow", &admin.delete(&format!("{thread_path}/follow")).await);
    succeeds("follow (web)", &web(&admin, Method::PUT, &format!("{thread_path}/follow"), None).await);
    succeeds("mark read (web)", &web(&admin, Method::PUT, &format!("{thread_path}/read"), None).await);
    let thread: original::Thread = decode("get thread again", &admin.get(&thread_path).await);
    assert_eq!((thread.reply_count, thread.is_following), (2, true));
    let parent: original::Message =
        decode("thread parent", &admin.get(&format!("/api/v1/channels/{general}/messages/{parent_id}")).await);
    let summary = parent.thread.expect("the parent's thread summary");
    assert_eq!((summary.reply_count, summary.last_reply_author_id.as_deref()), (2, Some(user.user_id.as_str())));

    // Reactions: the SDK puts the emoji in the path as is, the web client percent-encodes it.
    let reactions = format!("/api/v1/channels/{general}/messages/{parent_id}/reactions");
    succeeds("react", &admin.put_empty(&format!("{reactions}/👍")).await);
    succeeds("react (web)", &web(&user, Method::PUT, &format!("{reactions}/%F0%9F%91%8D"), None).await);
    let reactors: original::ReactorList = decode("reactors", &admin.get(&format!("{reactions}/👍?limit=10")).await);
    assert_eq!(reactors.total, 2);
    let reactors: original::ReactorList =
        decode("reactors (web)", &web(&user, Method::GET, &format!("{reactions}/%F0%9F%91%8D"), None).await);
    assert_eq!(reactors.users.len(), 2);
    let message: original::Message =
        decode("reacted message", &admin.get(&format!("/api/v1/channels/{general}/messages/{parent_id}")).await);
    assert_eq!((message.reactions[0].count, message.reactions[0].me), (2, true));
    succeeds("remove own reaction", &admin.delete(&reactions).await);
    succeeds("remove user's reaction", &admin.delete(&format!("{reactions}/users/{}", user.user_id)).await);
    let reactors: original::ReactorList = decode("no reactors", &admin.get(&format!("{reactions}/👍")).await);
    assert_eq!(reactors.total, 0);
}

async fn members_roles_and_profiles_decode(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let general = general(&admin).await;

    let list: original::MemberList = decode("list members", &admin.get("/api/v1/members").await);
    assert_eq!(list.members.len(), 2);
    let member: original::Member = decode("get member", &admin.get(&format!("/api/v1/members/{}", user.pubkey)).await);
    assert_eq!(member.roles.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1"]);
    let joined: original::MemberJoined =
        decode("join (member already)", &admin.post_empty("/api/v1/members/join").await);
    assert_eq!(joined.member.roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["@admin", "@everyone"]);
    let joined: original::MemberJoined =
        decode("join (web)", &web(&user, Method::POST, "/api/v1/members/join", None).await);
    assert_eq!(joined.member.user_id, user.user_id);

    // Roles: the SDK leaves out unset fields and clears a colour with `null`; the web client
    // sends `color: null` on create.
    let roles: original::RoleList = decode("list roles", &admin.get("/api/v1/roles").await);
    assert_eq!(roles.roles.len(), 2);
    let mods: original::Role =
        decode("create role", &admin.post("/api/v1/roles", json!({"name": "mods", "permissions": 32})).await);
    assert_eq!((mods.position, mods.color), (999, None));
    let helpers: original::Role = decode(
        "create role (web)",
        &web(
            &admin,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "helpers", "color": null, "permissions": 0, "position": 3})),
        )
        .await,
    );
    let role_path = format!("/api/v1/roles/{}", mods.id);
    let coloured: original::Role = decode("colour", &admin.patch(&role_path, json!({"color": "#00ff00"})).await);
    assert_eq!(coloured.color.as_deref(), Some("#00ff00"));
    let plain: original::Role = decode("clear colour", &admin.patch(&role_path, json!({"color": null})).await);
    assert_eq!(plain.color, None);
    let renamed: original::Role = decode(
        "update role (web)",
        &web(&admin, Method::PATCH, &role_path, Some(json!({"name": "moderators", "permissions": 32, "position": 4})))
            .await,
    );
    assert_eq!((renamed.name.as_str(), renamed.position), ("moderators", 4));

    let assign = format!("/api/v1/members/{}/roles/{}", user.pubkey, mods.id);
    succeeds("assign role", &admin.put_empty(&assign).await);
    let web_assign = format!("/api/v1/members/{}/roles/{}", user.pubkey, helpers.id);
    succeeds("assign role (web)", &web(&admin, Method::PUT, &web_assign, None).await);
    let member: original::Member =
        decode("member with roles", &admin.get(&format!("/api/v1/members/{}", user.pubkey)).await);
    assert_eq!(member.roles.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [mods.id.as_str(), &helpers.id, "1"]);
    succeeds("unassign role", &admin.delete(&assign).await);
    succeeds("unassign role (web)", &web(&admin, Method::DELETE, &web_assign, None).await);

    let overrides = format!("/api/v1/channels/{general}/overrides");
    let set: original::Override =
        decode("set override", &admin.put(&format!("{overrides}/{}", mods.id), json!({"allow": 1, "deny": 2})).await);
    assert_eq!((set.allow, set.deny), (1, 2));
    let list: original::OverrideList = decode("list overrides", &admin.get(&overrides).await);
    assert_eq!(list.overrides.len(), 1);
    succeeds("delete override", &admin.delete(&format!("{overrides}/{}", mods.id)).await);
    succeeds("delete role", &admin.delete(&role_path).await);
    succeeds("delete role (web)", &web(&admin, Method::DELETE, &format!("/api/v1/roles/{}", helpers.id), None).await);

    // Profiles.
    let profile: original::Profile =
        decode("update profile", &user.patch("/api/v1/profile", json!({"display_name": "Ada"})).await);
    assert_eq!(profile.display_name.as_deref(), Some("Ada"));
    assert!(profile.joined_at.is_some());
    let avatar = {
        let mut png = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::new(8, 8)).write_to(&mut png, image::ImageFormat::Png).unwrap();
        let boundary = "original-avatar-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"me.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(png.get_ref());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = user
            .request(Method::PUT, "/api/v1/profile/avatar")
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        user.send(req).await
    };
    let with_avatar: original::Profile = decode("upload avatar (web)", &avatar);
    assert!(with_avatar.avatar_hash.is_some());
    let viewed: original::Profile =
        decode("member profile", &admin.get(&format!("/api/v1/members/{}/profile", user.pubkey)).await);
    assert_eq!(viewed.avatar_hash, with_avatar.avatar_hash);
    let removed: original::Profile = decode("delete avatar", &user.delete("/api/v1/profile/avatar").await);
    assert_eq!(removed.avatar_hash, None);
    let bot = server.login_bot(3).await;
    let outsider: original::Profile =
        decode("non-member profile", &admin.get(&format!("/api/v1/members/{}/profile", bot.pubkey)).await);
    assert_eq!((outsider.joined_at, outsider.roles.len()), (None, 0));

    succeeds("leave (web)", &web(&user, Method::DELETE, "/api/v1/members/me", None).await);
}

async fn moderation_allowlist_and_bots_decode(server: TestServer) {
    let admin = server.login(1).await;
    let kicked = server.login(2).await;
    let banned = server.login(3).await;
    let stranger = pubkey_of(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]));

    // Kick: the SDK posts no body; the web client posts a bodiless JSON request.
    succeeds("kick (web)", &web(&admin, Method::POST, &format!("/api/v1/members/{}/kick", kicked.pubkey), None).await);
    let kicked = server.login(2).await;
    succeeds("rejoin", &kicked.post_empty("/api/v1/members/join").await);
    succeeds("kick", &admin.post_empty(&format!("/api/v1/members/{}/kick", kicked.pubkey)).await);

    // Ban: the web client sends `{}` when no reason is given.
    let ban: original::Ban =
        decode("ban", &admin.post(&format!("/api/v1/members/{}/ban", banned.pubkey), json!({"reason": "spam"})).await);
    assert_eq!((ban.banned_by.as_str(), ban.reason.as_deref()), (admin.user_id.as_str(), Some("spam")));
    let ban: original::Ban = decode(
        "ban (web)",
        &web(&admin, Method::POST, &format!("/api/v1/members/{stranger}/ban"), Some(json!({}))).await,
    );
    assert_eq!(ban.reason, None);
    let bans: original::BanList = decode("list bans", &admin.get("/api/v1/bans").await);
    assert_eq!(bans.bans.len(), 2);
    succeeds("unban", &admin.delete(&format!("/api/v1/bans/{}", banned.pubkey)).await);
    succeeds("unban (web)", &web(&admin, Method::DELETE, &format!("/api/v1/bans/{stranger}"), None).await);

    let entry: original::AllowlistEntry =
        decode("allowlist add", &admin.post("/api/v1/allowlist", json!({"pubkey": stranger})).await);
    assert_eq!(entry.added_by, admin.user_id);
    let allowlist: original::Allowlist = decode("allowlist", &admin.get("/api/v1/allowlist").await);
    assert_eq!(allowlist.entries.len(), 1);
    succeeds("allowlist remove", &admin.delete(&format!("/api/v1/allowlist/{stranger}")).await);

    // Bots: pending list, approval with the web client's `{}` and the SDK's note, revocation
    // with no body.
    let bot = server.login_bot(4).await;
    let other_bot = server.login_bot(5).await;
    let pending: original::PendingBots = decode("pending bots", &admin.get("/api/v1/admin/bots/pending").await);
    assert_eq!(pending.bots.len(), 2);
    let approved: original::BotApproval = decode(
        "approve (web)",
        &web(&admin, Method::POST, &format!("/api/v1/admin/bots/{}/approve", bot.pubkey), Some(json!({}))).await,
    );
    assert_eq!((approved.approved_by.as_deref(), approved.note), (Some(admin.user_id.as_str()), None));
    let approved: original::BotApproval = decode(
        "approve",
        &admin.post(&format!("/api/v1/admin/bots/{}/approve", other_bot.pubkey), json!({"note": "ci"})).await,
    );
    assert_eq!(approved.note.as_deref(), Some("ci"));
    let revoked: original::BotApproval =
        decode("revoke", &admin.post_empty(&format!("/api/v1/admin/bots/{}/revoke", bot.pubkey)).await);
    assert!(revoked.revoked_at.is_some());
    let revoked: original::BotApproval = decode(
        "revoke (web)",
        &web(&admin, Method::POST, &format!("/api/v1/admin/bots/{}/revoke", other_bot.pubkey), None).await,
    );
    assert!(revoked.revoked_at.is_some());
}

async fn invites_decode_and_the_invite_join_answers_a_joined_member(server: TestServer) {
    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = server.login(1).await;
    let first = server.login(2).await;
    let second = server.login(3).await;
    let mut gateway = server.gateway(admin.token()).await;
    let role = admin.post("/api/v1/roles", json!({"name": "guests", "permissions": 0, "position": 5})).await;
    let role_id = role.body["id"].as_str().unwrap().to_owned();

    let plain: original::Invite = decode("create invite", &admin.post("/api/v1/invites", json!({})).await);
    assert_eq!((plain.max_uses, plain.grant_role_id), (0, None));
    let granting: original::Invite = decode(
        "create invite (web)",
        &web(
            &admin,
            Method::POST,
            "/api/v1/invites",
            Some(json!({"max_uses": 2, "expires_in_seconds": 3600, "grant_role_id": role_id})),
        )
        .await,
    );
    assert_eq!(granting.grant_role_id.as_deref(), Some(role_id.as_str()));
    assert!(granting.expires_at.is_some());
    let list: original::InviteList = decode("list invites", &admin.get("/api/v1/invites").await);
    assert_eq!(list.invites.len(), 2);
    let preview: original::InvitePreview =
        decode("preview", &server.anonymous().get(&format!("/api/v1/invites/{}", granting.code)).await);
    assert_eq!((preview.member_count, preview.server_icon), (1, None));

    // The break issue #17 reports: the SDK decodes `member.roles` as strings.
    let joined: original::InviteJoined =
        decode("join invite", &first.post_empty(&format!("/api/v1/invites/{}/join", granting.code)).await);
    assert_eq!(joined.member.pubkey, first.pubkey);
    assert_eq!(joined.member.roles, [role_id.as_str(), "1"]);
    let event: original::MemberJoinEvent = next_event(&mut gateway, "MEMBER_JOIN", original::Op::MemberJoin).await;
    assert_eq!(
        (event.user_id.as_str(), event.pubkey.as_str(), event.is_bot, &event.roles),
        (first.user_id.as_str(), first.pubkey.as_str(), false, &joined.member.roles)
    );
    assert_eq!(event.joined_at, joined.member.joined_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    // Already a member: the same shape.
    let again: original::InviteJoined =
        decode("join invite again", &first.post_empty(&format!("/api/v1/invites/{}/join", granting.code)).await);
    assert_eq!((again.member.roles, again.member.joined_at), (joined.member.roles, joined.member.joined_at));

    let web_joined: original::InviteJoined = decode(
        "join invite (web)",
        &web(&second, Method::POST, &format!("/api/v1/invites/{}/join", plain.code), None).await,
    );
    assert_eq!(web_joined.member.roles, ["1"]);
    let event: original::MemberJoinEvent = next_event(&mut gateway, "MEMBER_JOIN", original::Op::MemberJoin).await;
    assert_eq!(event.roles, ["1"]);

    succeeds("revoke invite", &admin.delete(&format!("/api/v1/invites/{}", plain.code)).await);
    succeeds(
        "revoke invite (web)",
        &web(&admin, Method::DELETE, &format!("/api/v1/invites/{}", granting.code), None).await,
    );
}

async fn gateway_events_carry_the_original_ops_and_payloads(server: TestServer) {
    use original::Op;

    let admin = server.login(1).await;
    let user = server.login(2).await;
    let general = general(&admin).await;
    let mut gateway = subscribed(&server, &admin, &general).await;

    let created: original::Channel = decode("create", &admin.post("/api/v1/channels", json!({"name": "ops"})).await);
    let payload: original::Channel = next_event(&mut gateway, "CHANNEL_CREATE", Op::ChannelCreate).await;
    assert_eq!(payload.id, created.id);
    admin.patch(&format!("/api/v1/channels/{}", created.id), json!({"topic": "t"})).await;
    let payload: original::Channel = next_event(&mut gateway, "CHANNEL_UPDATE", Op::ChannelUpdate).await;
    assert_eq!(payload.topic.as_deref(), Some("t"));
    admin.delete(&format!("/api/v1/channels/{}", created.id)).await;
    let payload: original::IdEvent = next_event(&mut gateway, "CHANNEL_DELETE", Op::ChannelDelete).await;
    assert_eq!(payload.id, created.id);

    let message = crate::messages::post(&user, &general, "hello").await;
    let message_id = message["id"].as_str().unwrap();
    let payload: original::Message = next_event(&mut gateway, "MESSAGE_CREATE", Op::MessageCreate).await;
    assert_eq!(payload.id, message_id);
    let path = format!("/api/v1/channels/{general}/messages/{message_id}");
    user.patch(&path, json!({"content": "hello!"})).await;
    let payload: original::Message = next_event(&mut gateway, "MESSAGE_UPDATE", Op::MessageUpdate).await;
    assert_eq!(payload.content, "hello!");
    user.delete(&path).await;
    let payload: original::MessageDeleteEvent = next_event(&mut gateway, "MESSAGE_DELETE", Op::MessageDelete).await;
    assert_eq!((payload.id.as_str(), payload.channel_id.as_str()), (message_id, general.as_str()));

    let role: original::Role =
        decode("role", &admin.post("/api/v1/roles", json!({"name": "crew", "permissions": 0})).await);
    let payload: original::Role = next_event(&mut gateway, "ROLE_CREATE", Op::RoleCreate).await;
    assert_eq!(payload.id, role.id);
    admin.patch(&format!("/api/v1/roles/{}", role.id), json!({"name": "crew-2"})).await;
    let payload: original::Role = next_event(&mut gateway, "ROLE_UPDATE", Op::RoleUpdate).await;
    assert_eq!(payload.name, "crew-2");
    let assignment = format!("/api/v1/members/{}/roles/{}", user.pubkey, role.id);
    admin.put_empty(&assignment).await;
    let payload: original::MemberRoleEvent = next_event(&mut gateway, "MEMBER_ROLE_ADD", Op::MemberRoleAdd).await;
    assert_eq!((payload.user_id.as_str(), payload.role_id.as_str()), (user.user_id.as_str(), role.id.as_str()));
    admin.delete(&assignment).await;
    let payload: original::MemberRoleEvent = next_event(&mut gateway, "MEMBER_ROLE_REMOVE", Op::MemberRoleRemove).await;
    assert_eq!(payload.role_id, role.id);
    admin.delete(&format!("/api/v1/roles/{}", role.id)).await;
    let payload: original::IdEvent = next_event(&mut gateway, "ROLE_DELETE", Op::RoleDelete).await;
    assert_eq!(payload.id, role.id);

    user.patch("/api/v1/profile", json!({"display_name": "Bo"})).await;
    let payload: original::MemberUpdateEvent = next_event(&mut gateway, "MEMBER_UPDATE", Op::MemberUpdate).await;
    assert_eq!((payload.user_id.as_str(), payload.display_name.as_deref()), (user.user_id.as_str(), Some("Bo")));
    user.delete("/api/v1/members/me").await;
    let payload: original::MemberLeaveEvent = next_event(&mut gateway, "MEMBER_LEAVE", Op::MemberLeave).await;
    assert_eq!(payload.pubkey, user.pubkey);
    // MEMBER_JOIN from `/members/join` is a JoinedMember too, not the Member its answer carries.
    user.post_empty("/api/v1/members/join").await;
    let payload: original::MemberJoinEvent = next_event(&mut gateway, "MEMBER_JOIN", Op::MemberJoin).await;
    assert_eq!((payload.display_name.as_deref(), payload.roles), (Some("Bo"), vec!["1".to_owned()]));
    admin.post_empty(&format!("/api/v1/members/{}/kick", user.pubkey)).await;
    let payload: original::MemberKickEvent = next_event(&mut gateway, "MEMBER_KICK", Op::MemberKick).await;
    assert_eq!((payload.user_id.as_str(), payload.kicked_by.as_str()), (user.user_id.as_str(), admin.user_id.as_str()));
    admin.post(&format!("/api/v1/members/{}/ban", user.pubkey), json!({})).await;
    let payload: original::MemberBanEvent = next_event(&mut gateway, "MEMBER_BAN", Op::MemberBan).await;
    assert_eq!((payload.pubkey.as_str(), payload.reason), (user.pubkey.as_str(), None));

    // A first login that makes someone a member announces a JoinedMember as well.
    let newcomer = server.login(3).await;
    let payload: original::MemberJoinEvent = next_event(&mut gateway, "MEMBER_JOIN", Op::MemberJoin).await;
    assert_eq!((payload.user_id, payload.roles), (newcomer.user_id.clone(), vec!["1".to_owned()]));
    gateway.expect_no_op("MEMBER_JOIN", Duration::from_millis(200)).await;
}

/// The SDK decodes every position (channel, role, a member's role) as i32: a larger one stored
/// anywhere would make channel, role and member lists undecodable for it, so none is accepted.
async fn positions_stay_within_what_the_original_sdk_decodes(server: TestServer) {
    let admin = server.login(1).await;
    let general = general(&admin).await;
    let too_far = i64::from(i32::MAX) + 1;
    let too_low = i64::from(i32::MIN) - 1;
    let role = admin.post("/api/v1/roles", json!({"name": "edge", "permissions": 0})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for position in [too_far, too_low] {
        for resp in [
            admin.post("/api/v1/channels", json!({"name": "far", "position": position})).await,
            admin.patch(&format!("/api/v1/channels/{general}"), json!({"position": position})).await,
            admin.post("/api/v1/roles", json!({"name": "far", "permissions": 0, "position": position})).await,
            admin.patch(&format!("/api/v1/roles/{role}"), json!({"position": position})).await,
        ] {
            assert_eq!(resp.status, 422, "{position}: {:?}", resp.body);
            assert!(resp.error().starts_with("invalid request body: "), "{:?}", resp.body);
        }
    }
    // The edges themselves are accepted and decode.
    let top: original::Channel =
        decode("i32::MAX", &admin.post("/api/v1/channels", json!({"name": "top", "position": i32::MAX})).await);
    let bottom: original::Channel =
        decode("i32::MIN", &admin.patch(&format!("/api/v1/channels/{general}"), json!({"position": i32::MIN})).await);
    assert_eq!((top.position, bottom.position), (i32::MAX, i32::MIN));
    let role: original::Role =
        decode("role at i32::MAX", &admin.patch(&format!("/api/v1/roles/{role}"), json!({"position": i32::MAX})).await);
    assert_eq!(role.position, i32::MAX);
    let _: original::ChannelList = decode("channels", &admin.get("/api/v1/channels").await);
    let _: original::RoleList = decode("roles", &admin.get("/api/v1/roles").await);
    let _: original::MemberList = decode("members", &admin.get("/api/v1/members").await);
}

/// The mirrors are only worth something if they refuse what the originals could not read; these
/// are the shapes issue #17 and its neighbours would have produced.
#[test]
fn the_mirrors_refuse_what_the_originals_cannot_read() {
    let joined_at = "2026-04-10T08:15:30.123456Z";
    // The invite join before issue #17: RoleRef objects where the SDK expects role ids.
    let member_shape = json!({"member": {"user_id": "5", "pubkey": "k", "joined_at": joined_at,
        "roles": [{"id": "1", "name": "@everyone", "color": null, "position": 0}]}});
    let err = serde_json::from_value::<original::InviteJoined>(member_shape).unwrap_err();
    assert!(err.to_string().contains("expected a string"), "{err}");
    let joined = json!({"member": {"pubkey": "k", "joined_at": joined_at, "roles": ["1"]}});
    assert_eq!(serde_json::from_value::<original::InviteJoined>(joined).unwrap().member.roles, ["1"]);

    // A nullable key that disappears (serde alone would read None).
    let role = json!({"id": "1", "name": "@everyone", "color": null, "position": 0});
    assert!(serde_json::from_value::<original::RoleRef>(role.clone()).is_ok());
    let mut without_color = role.clone();
    without_color.as_object_mut().unwrap().remove("color");
    let err = serde_json::from_value::<original::RoleRef>(without_color).unwrap_err();
    assert!(err.to_string().contains("missing field `color`"), "{err}");

    // A position beyond i32, an id as a number, a count below zero, a renamed op.
    let mut far = role.clone();
    far["position"] = json!(i64::from(i32::MAX) + 1);
    assert!(serde_json::from_value::<original::RoleRef>(far).is_err());
    let mut numeric = role;
    numeric["id"] = json!(1);
    assert!(serde_json::from_value::<original::RoleRef>(numeric).is_err());
    let preview = json!({"code": "c", "server_name": "s", "server_icon": null, "member_count": -1, "expires_at": null});
    assert!(serde_json::from_value::<original::InvitePreview>(preview).is_err());
    assert!(serde_json::from_value::<original::Envelope>(json!({"op": "MEMBER_JOINED", "d": {}, "t": 1})).is_err());
}
