//! The JSON objects of api.md §4, built from storage records. Ids serialise as decimal strings,
//! timestamps as RFC 3339 with six fractional digits, keys as base58 — all through the storage
//! types' own `Serialize` impls — and every key is always present (`null`, never omitted).

use serde::Serialize;
use utoipa::ToSchema;

use crate::storage::{self, ContentHash, DevicePermissions, PublicKey, Timestamp};

/// Schema helpers: ids, timestamps and keys are strings on the wire.
type Id = String;

#[derive(Serialize, ToSchema)]
pub struct Channel {
    #[schema(value_type = Id)]
    pub id: storage::ChannelId,
    pub name: String,
    pub topic: Option<String>,
    pub category: Option<String>,
    pub position: i64,
    /// Always `"text"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<storage::Channel> for Channel {
    fn from(c: storage::Channel) -> Self {
        Channel {
            id: c.id,
            name: c.name,
            topic: c.topic,
            category: c.category,
            position: c.position,
            kind: "text",
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Attachment {
    #[schema(value_type = Id)]
    pub id: storage::AttachmentId,
    #[schema(value_type = Option<Id>)]
    pub message_id: Option<storage::MessageId>,
    #[schema(value_type = Id)]
    pub channel_id: storage::ChannelId,
    #[schema(value_type = Id)]
    pub uploader_id: storage::UserId,
    pub filename: String,
    /// The media id.
    #[schema(value_type = String)]
    pub content_hash: ContentHash,
    pub size: i64,
    pub mime_type: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<storage::Attachment> for Attachment {
    fn from(a: storage::Attachment) -> Self {
        Attachment {
            id: a.id,
            message_id: a.message_id,
            channel_id: a.channel_id,
            uploader_id: a.uploader_id,
            filename: a.filename,
            content_hash: a.content_hash,
            size: a.size,
            mime_type: a.mime_type,
            width: a.width,
            height: a.height,
            created_at: a.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ThreadSummary {
    #[schema(value_type = Id)]
    pub thread_id: storage::ThreadId,
    pub reply_count: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_reply_at: Option<Timestamp>,
    #[schema(value_type = Option<Id>)]
    pub last_reply_author_id: Option<storage::UserId>,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    #[schema(value_type = Id)]
    pub id: storage::MessageId,
    #[schema(value_type = Id)]
    pub channel_id: storage::ChannelId,
    #[schema(value_type = Id)]
    pub author_id: storage::UserId,
    pub content: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    #[schema(value_type = Option<Id>)]
    pub thread_id: Option<storage::ThreadId>,
    pub attachments: Vec<Attachment>,
    pub reactions: Vec<ReactionSummary>,
    pub thread: Option<ThreadSummary>,
}

impl From<storage::Message> for Message {
    fn from(m: storage::Message) -> Self {
        Message {
            id: m.id,
            channel_id: m.channel_id,
            author_id: m.author_id,
            content: m.content,
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted: m.deleted,
            thread_id: m.thread_id,
            attachments: m.attachments.into_iter().map(Into::into).collect(),
            reactions: m
                .reactions
                .into_iter()
                .map(|r| ReactionSummary { emoji: r.emoji, count: r.count, me: r.me })
                .collect(),
            thread: m.thread.map(|t| ThreadSummary {
                thread_id: t.thread_id,
                reply_count: t.reply_count,
                last_reply_at: t.last_reply_at,
                last_reply_author_id: t.last_reply_author_id,
            }),
        }
    }
}

impl Message {
    /// For gateway payloads, where `me` is always false.
    pub fn for_broadcast(m: storage::Message) -> Self {
        let mut message = Message::from(m);
        for r in &mut message.reactions {
            r.me = false;
        }
        message
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

impl From<storage::MessagePage> for MessagePage {
    fn from(p: storage::MessagePage) -> Self {
        MessagePage { messages: p.messages.into_iter().map(Into::into).collect(), has_more: p.has_more }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RoleRef {
    #[schema(value_type = Id)]
    pub id: storage::RoleId,
    pub name: String,
    pub color: Option<String>,
    pub position: i64,
}

impl From<storage::RoleRef> for RoleRef {
    fn from(r: storage::RoleRef) -> Self {
        RoleRef { id: r.id, name: r.name, color: r.color, position: r.position }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Role {
    #[schema(value_type = Id)]
    pub id: storage::RoleId,
    pub name: String,
    pub color: Option<String>,
    pub permissions: i64,
    pub position: i64,
    pub is_builtin: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<storage::Role> for Role {
    fn from(r: storage::Role) -> Self {
        Role {
            id: r.id,
            name: r.name,
            color: r.color,
            permissions: r.permissions.bits(),
            position: r.position,
            is_builtin: r.is_builtin,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Override {
    #[schema(value_type = Id)]
    pub channel_id: storage::ChannelId,
    #[schema(value_type = Id)]
    pub role_id: storage::RoleId,
    pub allow: i64,
    pub deny: i64,
}

impl From<storage::Override> for Override {
    fn from(o: storage::Override) -> Self {
        Override { channel_id: o.channel_id, role_id: o.role_id, allow: o.allow.bits(), deny: o.deny.bits() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    #[schema(value_type = Id)]
    pub user_id: storage::UserId,
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub avatar_hash: Option<ContentHash>,
    pub is_bot: bool,
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: Timestamp,
    pub roles: Vec<RoleRef>,
}

impl From<storage::Member> for Member {
    fn from(m: storage::Member) -> Self {
        Member {
            user_id: m.user.id,
            pubkey: m.user.pubkey,
            display_name: m.user.display_name,
            avatar_hash: m.user.avatar_hash,
            is_bot: m.user.is_bot,
            joined_at: m.joined_at,
            roles: m.roles.into_iter().map(Into::into).collect(),
        }
    }
}

/// A member as the invite join and MEMBER_JOIN carry it: the Member's fields with
/// `roles` as bare role ids, by position descending. The original server sent this shape and the
/// original SDK decodes `roles` as strings, so RoleRef objects here break every original client's
/// invite join; `/members/join` keeps answering the full Member.
#[derive(Serialize, ToSchema)]
pub struct JoinedMember {
    #[schema(value_type = Id)]
    pub user_id: storage::UserId,
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub avatar_hash: Option<ContentHash>,
    pub is_bot: bool,
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: Timestamp,
    #[schema(value_type = Vec<Id>)]
    pub roles: Vec<storage::RoleId>,
}

impl From<storage::Member> for JoinedMember {
    fn from(m: storage::Member) -> Self {
        JoinedMember {
            user_id: m.user.id,
            pubkey: m.user.pubkey,
            display_name: m.user.display_name,
            avatar_hash: m.user.avatar_hash,
            is_bot: m.user.is_bot,
            joined_at: m.joined_at,
            // Storage already orders a member's roles by position descending, then id.
            roles: m.roles.into_iter().map(|r| r.id).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Profile {
    #[schema(value_type = Id)]
    pub user_id: storage::UserId,
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub avatar_hash: Option<ContentHash>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub joined_at: Option<Timestamp>,
    pub roles: Vec<RoleRef>,
}

impl Profile {
    /// A user's profile; `member` is None for non-members (`joined_at` null, no roles).
    pub fn new(user: storage::User, member: Option<storage::Member>) -> Self {
        let (joined_at, roles) = match member {
            Some(m) => (Some(m.joined_at), m.roles.into_iter().map(Into::into).collect()),
            None => (None, Vec::new()),
        };
        Profile {
            user_id: user.id,
            pubkey: user.pubkey,
            display_name: user.display_name,
            avatar_hash: user.avatar_hash,
            joined_at,
            roles,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Ban {
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    #[schema(value_type = Id)]
    pub banned_by: storage::UserId,
    pub reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub banned_at: Timestamp,
}

impl From<storage::Ban> for Ban {
    fn from(b: storage::Ban) -> Self {
        Ban { pubkey: b.pubkey, banned_by: b.banned_by, reason: b.reason, banned_at: b.banned_at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AllowlistEntry {
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    #[schema(value_type = Id)]
    pub added_by: storage::UserId,
    #[schema(value_type = String, format = DateTime)]
    pub added_at: Timestamp,
}

impl From<storage::AllowlistEntry> for AllowlistEntry {
    fn from(e: storage::AllowlistEntry) -> Self {
        AllowlistEntry { pubkey: e.pubkey, added_by: e.added_by, added_at: e.added_at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BotApproval {
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    #[schema(value_type = Option<Id>)]
    pub approved_by: Option<storage::UserId>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub approved_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    pub note: Option<String>,
}

impl From<storage::BotApproval> for BotApproval {
    fn from(b: storage::BotApproval) -> Self {
        BotApproval {
            pubkey: b.pubkey,
            approved_by: b.approved_by,
            approved_at: b.approved_at,
            revoked_at: b.revoked_at,
            note: b.note,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Invite {
    pub code: String,
    #[schema(value_type = Id)]
    pub created_by: storage::UserId,
    #[schema(value_type = Option<Id>)]
    pub grant_role_id: Option<storage::RoleId>,
    pub max_uses: i64,
    pub use_count: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub invite_link: String,
}

impl Invite {
    pub fn new(i: storage::Invite, public_url: &str) -> Self {
        Invite {
            invite_link: invite_link(public_url, &i.code),
            code: i.code,
            created_by: i.created_by,
            grant_role_id: i.grant_role_id,
            max_uses: i.max_uses,
            use_count: i.use_count,
            expires_at: i.expires_at,
            created_at: i.created_at,
        }
    }
}

/// `<server.public_url>/invite/<code>`.
pub fn invite_link(public_url: &str, code: &str) -> String {
    format!("{public_url}/invite/{code}")
}

#[derive(Serialize, ToSchema)]
pub struct InvitePreview {
    pub code: String,
    pub server_name: String,
    pub server_icon: Option<String>,
    pub member_count: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    pub invite_link: String,
}

#[derive(Serialize, ToSchema)]
pub struct DmUser {
    #[schema(value_type = Id)]
    pub user_id: storage::UserId,
    #[schema(value_type = String)]
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub avatar_hash: Option<ContentHash>,
}

#[derive(Serialize, ToSchema)]
pub struct DmChannel {
    #[schema(value_type = Id)]
    pub channel_id: storage::ChannelId,
    pub recipient: DmUser,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_message_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_read_at: Option<Timestamp>,
}

impl From<storage::DmChannel> for DmChannel {
    fn from(d: storage::DmChannel) -> Self {
        DmChannel {
            channel_id: d.channel_id,
            recipient: DmUser {
                user_id: d.recipient.user_id,
                pubkey: d.recipient.pubkey,
                display_name: d.recipient.display_name,
                avatar_hash: d.recipient.avatar_hash,
            },
            created_at: d.created_at,
            last_message_at: d.last_message_at,
            last_read_at: d.last_read_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Device {
    #[schema(value_type = String)]
    pub device_pubkey: PublicKey,
    pub device_name: String,
    pub permissions: Vec<&'static str>,
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Device permission names in bit order.
pub fn device_permission_names(p: DevicePermissions) -> Vec<&'static str> {
    let mut names = Vec::new();
    if p.contains(DevicePermissions::SIGN_AUTH) {
        names.push("sign_auth");
    }
    if p.contains(DevicePermissions::SIGN_MESSAGES) {
        names.push("sign_messages");
    }
    names
}

impl From<storage::DeviceKey> for Device {
    fn from(d: storage::DeviceKey) -> Self {
        Device {
            device_pubkey: d.device_pubkey,
            device_name: d.device_name,
            permissions: device_permission_names(d.permissions),
            issued_at: d.issued_at,
            expires_at: d.expires_at,
            created_at: d.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Thread {
    #[schema(value_type = Id)]
    pub id: storage::ThreadId,
    #[schema(value_type = Id)]
    pub channel_id: storage::ChannelId,
    #[schema(value_type = Id)]
    pub parent_message_id: storage::MessageId,
    #[schema(value_type = Id)]
    pub creator_id: storage::UserId,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_reply_at: Option<Timestamp>,
    pub reply_count: i64,
    pub follower_count: i64,
    pub is_following: bool,
}

impl From<storage::Thread> for Thread {
    fn from(t: storage::Thread) -> Self {
        Thread {
            id: t.id,
            channel_id: t.channel_id,
            parent_message_id: t.parent_message_id,
            creator_id: t.creator_id,
            created_at: t.created_at,
            last_reply_at: t.last_reply_at,
            reply_count: t.reply_count,
            follower_count: t.follower_count,
            is_following: t.is_following,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ThreadCreated {
    #[schema(value_type = Id)]
    pub thread_id: storage::ThreadId,
    #[schema(value_type = Id)]
    pub parent_message_id: storage::MessageId,
    #[schema(value_type = Id)]
    pub channel_id: storage::ChannelId,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub reply_count: i64,
    pub follower_count: i64,
}

impl From<storage::Thread> for ThreadCreated {
    fn from(t: storage::Thread) -> Self {
        ThreadCreated {
            thread_id: t.id,
            parent_message_id: t.parent_message_id,
            channel_id: t.channel_id,
            created_at: t.created_at,
            reply_count: t.reply_count,
            follower_count: t.follower_count,
        }
    }
}
