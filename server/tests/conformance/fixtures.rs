//! Small constructors and assertions shared by every suite function. Everything goes through the
//! public `Storage` contract, so the fixtures themselves are backend-agnostic.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use decentcom::storage::search::parse_query;
use decentcom::storage::*;

/// Text exercising the awkward corners of Unicode: emoji (with a ZWJ sequence and a skin tone),
/// right-to-left Hebrew and Arabic, and a decomposed `é` (e + U+0301 COMBINING ACUTE ACCENT).
pub const UNICODE_TEXT: &str =
    "héllo 🎉 👩\u{200d}👩\u{200d}👧 👍🏽 — שלום עולם مرحبا — e\u{301}cole Z\u{0335}\u{0321}algo\n\ttabs";

/// A distinct, deterministic public key per `n` (never all-0x00 or all-0xFF).
pub fn key(n: u32) -> PublicKey {
    let mut bytes = [0x5a_u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[31] = 0x01;
    PublicKey(bytes)
}

/// A fresh key from a process-wide counter, for tests that just need "another user".
pub fn fresh_key() -> PublicKey {
    static NEXT: AtomicU32 = AtomicU32::new(1_000_000);
    key(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A content hash made of one repeated hex digit pattern per `n`.
pub fn hash(n: u32) -> ContentHash {
    ContentHash::parse(&format!("{n:08x}{}", "ab".repeat(28))).expect("valid content hash")
}

/// An 8-character invite code (the schema requires exactly 8).
pub fn code(n: u32) -> String {
    format!("c{n:07}")
}

pub fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).expect("valid RFC 3339 timestamp")
}

/// Waits long enough that the next backend timestamp is strictly later than the previous one
/// (timestamps have microsecond precision; a couple of milliseconds is plenty).
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

pub async fn register(s: &dyn Storage, pubkey: PublicKey, is_bot: bool, open_membership: bool) -> Registration {
    s.register_user(NewUser { pubkey, is_bot, open_membership }).await.expect("register_user")
}

/// The first user of a fresh server: a member with @everyone and @admin.
pub async fn admin(s: &dyn Storage) -> User {
    let reg = register(s, key(1), false, false).await;
    assert!(reg.is_first_user, "fixture `admin` must be the first registered user");
    reg.user
}

/// A member with @everyone (registered in open mode).
pub async fn member(s: &dyn Storage) -> User {
    let reg = register(s, fresh_key(), false, true).await;
    assert!(reg.member.is_some(), "fixture `member` must become a member");
    reg.user
}

/// A registered user who is not a member (invite-only mode).
pub async fn outsider(s: &dyn Storage) -> User {
    let reg = register(s, fresh_key(), false, false).await;
    assert!(reg.member.is_none(), "fixture `outsider` must not be a member");
    reg.user
}

pub async fn channel(s: &dyn Storage, name: &str) -> Channel {
    s.create_channel(NewChannel { name: name.to_owned(), topic: None, category: None, position: 0 })
        .await
        .expect("create_channel")
}

pub async fn post(s: &dyn Storage, channel: ChannelId, author: UserId, content: &str) -> Message {
    s.create_message(NewMessage {
        channel_id: channel,
        thread_id: None,
        author_id: author,
        content: content.to_owned(),
        attachment_ids: vec![],
    })
    .await
    .expect("create_message")
}

pub async fn post_with(
    s: &dyn Storage,
    channel: ChannelId,
    author: UserId,
    content: &str,
    attachments: Vec<AttachmentId>,
) -> StorageResult<Message> {
    s.create_message(NewMessage {
        channel_id: channel,
        thread_id: None,
        author_id: author,
        content: content.to_owned(),
        attachment_ids: attachments,
    })
    .await
}

pub async fn reply(s: &dyn Storage, thread: &Thread, author: UserId, content: &str) -> Message {
    s.create_message(NewMessage {
        channel_id: thread.channel_id,
        thread_id: Some(thread.id),
        author_id: author,
        content: content.to_owned(),
        attachment_ids: vec![],
    })
    .await
    .expect("create_message (thread reply)")
}

/// Posts `n` messages `m1`..`mn` and returns them oldest first.
pub async fn post_many(s: &dyn Storage, channel: ChannelId, author: UserId, n: usize) -> Vec<Message> {
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        out.push(post(s, channel, author, &format!("m{i}")).await);
    }
    out
}

pub fn new_media(n: u32, uploader: Option<UserId>) -> NewMedia {
    NewMedia {
        content_hash: hash(n),
        object_key: hash(n).to_string(),
        bucket: None,
        size_bytes: 1000 + i64::from(n),
        mime_type: "image/png".to_owned(),
        uploaded_by: uploader,
    }
}

pub async fn media(s: &dyn Storage, n: u32, uploader: Option<UserId>) -> Media {
    s.put_media(new_media(n, uploader)).await.expect("put_media")
}

pub fn new_attachment(channel: ChannelId, uploader: UserId, n: u32, filename: &str) -> NewAttachment {
    NewAttachment {
        channel_id: channel,
        uploader_id: uploader,
        filename: filename.to_owned(),
        content_hash: hash(n),
        size: 1000 + i64::from(n),
        mime_type: "image/png".to_owned(),
        width: Some(640),
        height: Some(480),
    }
}

/// Records one uploaded file (media `n`) in `channel` by `uploader`: an unlinked attachment.
pub async fn upload(s: &dyn Storage, channel: ChannelId, uploader: UserId, n: u32) -> Attachment {
    let mut got = s
        .record_uploads(
            vec![new_media(n, Some(uploader))],
            vec![new_attachment(channel, uploader, n, &format!("file{n}.png"))],
        )
        .await
        .expect("record_uploads");
    assert_eq!(got.len(), 1);
    got.remove(0)
}

pub fn new_session(token: u8, user: UserId, expires_at: Timestamp) -> NewSession {
    NewSession {
        token_hash: TokenHash([token; 32]),
        user_id: user,
        device_key_id: None,
        is_read_only: false,
        expires_at,
    }
}

pub async fn session(s: &dyn Storage, token: u8, user: UserId) -> Session {
    s.create_session(new_session(token, user, Timestamp::now().plus_seconds(3600))).await.expect("create_session")
}

pub fn new_invite(
    code: &str,
    by: UserId,
    max_uses: i64,
    expires_at: Option<Timestamp>,
    grant: Option<RoleId>,
) -> NewInvite {
    NewInvite { code: code.to_owned(), created_by: by, grant_role_id: grant, max_uses, expires_at }
}

pub fn new_role(name: &str, position: i64, permissions: Permissions) -> NewRole {
    NewRole { name: name.to_owned(), color: None, permissions, position }
}

pub async fn role(s: &dyn Storage, name: &str, position: i64) -> Role {
    s.create_role(new_role(name, position, Permissions::SEND_MESSAGES)).await.expect("create_role")
}

pub async fn thread(s: &dyn Storage, parent: MessageId, creator: UserId) -> Thread {
    let (thread, created) = s.create_thread(parent, creator).await.expect("create_thread");
    assert!(created, "fixture `thread` expects a new thread");
    thread
}

/// A search over `channels` for the query text `q` with default filters.
pub fn query(q: &str, channels: &[ChannelId]) -> SearchQuery {
    SearchQuery {
        terms: parse_query(q).expect("valid query"),
        channel_ids: channels.to_vec(),
        author_id: None,
        created_before: None,
        created_after: None,
        cursor: None,
        limit: 50,
        viewer: None,
    }
}

/// The ids of a search's results.
pub async fn search_ids(s: &dyn Storage, q: SearchQuery) -> Vec<MessageId> {
    s.search_messages(q).await.expect("search_messages").messages.iter().map(|m| m.id).collect()
}

pub fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

pub fn role_ref(role: &Role) -> RoleRef {
    RoleRef { id: role.id, name: role.name.clone(), color: role.color.clone(), position: role.position }
}

pub fn everyone_ref() -> RoleRef {
    RoleRef { id: RoleId::EVERYONE, name: "@everyone".into(), color: None, position: 0 }
}

pub fn admin_ref() -> RoleRef {
    RoleRef { id: RoleId::ADMIN, name: "@admin".into(), color: None, position: 1000 }
}

/// @everyone's seeded permissions (1539).
pub fn everyone_permissions() -> Permissions {
    Permissions::SEND_MESSAGES | Permissions::READ_MESSAGES | Permissions::ATTACH_FILES | Permissions::ADD_REACTIONS
}

pub fn role_ids(roles: &[RoleRef]) -> Vec<RoleId> {
    roles.iter().map(|r| r.id).collect()
}

#[track_caller]
pub fn expect_not_found<T: Debug>(result: StorageResult<T>, entity: Entity) {
    match result {
        Err(StorageError::NotFound(got)) if got == entity => {}
        other => panic!("expected NotFound({entity:?}), got {other:?}"),
    }
}

#[track_caller]
pub fn expect_conflict<T: Debug>(result: StorageResult<T>, conflict: Conflict) {
    match result {
        Err(StorageError::Conflict(got)) if got == conflict => {}
        other => panic!("expected Conflict({conflict:?}), got {other:?}"),
    }
}

#[track_caller]
pub fn expect_invalid_reference<T: Debug>(result: StorageResult<T>) {
    match result {
        Err(StorageError::InvalidReference(_)) => {}
        other => panic!("expected InvalidReference, got {other:?}"),
    }
}

#[track_caller]
pub fn expect_invalid_input<T: Debug>(result: StorageResult<T>) {
    match result {
        Err(StorageError::InvalidInput(_)) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

/// Asserts `earlier <= t <= later`: a timestamp the backend set with `Timestamp::now()` during a
/// call made between the two instants.
#[track_caller]
pub fn assert_between(t: Timestamp, earlier: Timestamp, later: Timestamp) {
    assert!(earlier <= t && t <= later, "timestamp {t} not within [{earlier}, {later}]");
}
