//! How fetched rows combine into records: the part of loading that does not depend on the
//! dialect, written once. Each backend fetches these row shapes with its own checked statements
//! (a fixed number per batch, never one per record) and hands them here.

use std::collections::HashMap;

use super::{
    Attachment, Channel, ChannelAccess, ChannelId, ContentHash, DeviceKeyId, Member, MemberAuth, Message, MessageId,
    Override, Permissions, PublicKey, ReactionSummary, Role, RoleId, RoleRef, Session, SessionAuth, SessionId,
    ThreadId, ThreadSummary, Timestamp, TokenHash, User, UserId,
};

/// A message before its attachments, reactions and thread summary are attached.
pub struct MessageRow {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub author_id: UserId,
    pub thread_id: Option<ThreadId>,
    pub content: String,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
}

/// One emoji's count on one message, and whether the viewer holds it.
pub struct ReactionCountRow {
    pub message_id: MessageId,
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

/// The thread hanging off a parent message.
pub struct ThreadSummaryRow {
    pub thread_id: ThreadId,
    pub parent_message_id: MessageId,
    pub reply_count: i64,
    pub last_reply_at: Option<Timestamp>,
    pub last_reply_author_id: Option<UserId>,
}

/// Messages in the order of `rows`. `attachments` in id order, `reactions` per message in the
/// order of each emoji's earliest reaction. A deleted message lists no attachments.
pub fn messages(
    rows: Vec<MessageRow>,
    attachments: Vec<Attachment>,
    reactions: Vec<ReactionCountRow>,
    threads: Vec<ThreadSummaryRow>,
) -> Vec<Message> {
    let mut attachments_by_message: HashMap<MessageId, Vec<Attachment>> = HashMap::new();
    for a in attachments {
        if let Some(message) = a.message_id {
            attachments_by_message.entry(message).or_default().push(a);
        }
    }
    let mut reactions_by_message: HashMap<MessageId, Vec<ReactionSummary>> = HashMap::new();
    for r in reactions {
        reactions_by_message.entry(r.message_id).or_default().push(ReactionSummary {
            emoji: r.emoji,
            count: r.count,
            me: r.me,
        });
    }
    let mut thread_by_message: HashMap<MessageId, ThreadSummary> = threads
        .into_iter()
        .map(|t| {
            let summary = ThreadSummary {
                thread_id: t.thread_id,
                reply_count: t.reply_count,
                last_reply_at: t.last_reply_at,
                last_reply_author_id: t.last_reply_author_id,
            };
            (t.parent_message_id, summary)
        })
        .collect();
    rows.into_iter()
        .map(|row| {
            let deleted = row.deleted_at.is_some();
            let attachments = attachments_by_message.remove(&row.id).filter(|_| !deleted).unwrap_or_default();
            Message {
                id: row.id,
                channel_id: row.channel_id,
                author_id: row.author_id,
                content: row.content,
                created_at: row.created_at,
                edited_at: row.edited_at,
                deleted,
                thread_id: row.thread_id,
                attachments,
                reactions: reactions_by_message.remove(&row.id).unwrap_or_default(),
                thread: thread_by_message.remove(&row.id),
            }
        })
        .collect()
}

/// A member before its roles are attached.
pub struct MemberRow {
    pub id: UserId,
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    pub avatar_hash: Option<ContentHash>,
    pub is_bot: bool,
    pub created_at: Timestamp,
    pub joined_at: Timestamp,
}

/// One role held by one member.
pub struct MemberRoleRow {
    pub user_id: UserId,
    pub id: RoleId,
    pub name: String,
    pub color: Option<String>,
    pub position: i64,
}

/// Members in the order of `rows`, each with its roles in the order of `roles` (position
/// descending, then id).
pub fn members(rows: Vec<MemberRow>, roles: Vec<MemberRoleRow>) -> Vec<Member> {
    let mut by_user: HashMap<UserId, Vec<RoleRef>> = HashMap::new();
    for r in roles {
        by_user.entry(r.user_id).or_default().push(RoleRef {
            id: r.id,
            name: r.name,
            color: r.color,
            position: r.position,
        });
    }
    rows.into_iter()
        .map(|r| Member {
            roles: by_user.remove(&r.id).unwrap_or_default(),
            joined_at: r.joined_at,
            user: User {
                id: r.id,
                pubkey: r.pubkey,
                display_name: r.display_name,
                avatar_hash: r.avatar_hash,
                is_bot: r.is_bot,
                created_at: r.created_at,
            },
        })
        .collect()
}

/// A message just inserted: no edit, no reactions, no thread hanging off it yet (the row is not
/// visible to anyone else before its transaction commits), and the attachments it was linked to.
pub fn new_message(
    id: MessageId,
    channel_id: ChannelId,
    author_id: UserId,
    thread_id: Option<ThreadId>,
    content: String,
    created_at: Timestamp,
    mut attachments: Vec<Attachment>,
) -> Message {
    attachments.sort_by_key(|a| a.id);
    Message {
        id,
        channel_id,
        author_id,
        content,
        created_at,
        edited_at: None,
        deleted: false,
        thread_id,
        attachments,
        reactions: Vec::new(),
        thread: None,
    }
}

/// One row of the authentication statement: the session with its user and membership, repeated
/// for each role of interest (every role held, and @everyone whether held or not). A non-member
/// has one row without a role.
pub struct SessionAuthRow {
    pub session_id: SessionId,
    pub token_hash: TokenHash,
    pub user_id: UserId,
    pub device_key_id: Option<DeviceKeyId>,
    pub device_pubkey: Option<PublicKey>,
    pub is_read_only: bool,
    pub session_created_at: Timestamp,
    pub expires_at: Timestamp,
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    pub avatar_hash: Option<ContentHash>,
    pub is_bot: bool,
    pub user_created_at: Timestamp,
    /// None for a non-member.
    pub joined_at: Option<Timestamp>,
    pub role: Option<AuthRoleRow>,
}

/// A role in [`SessionAuthRow`]; `held` is false for @everyone when its assignment is missing.
pub struct AuthRoleRow {
    pub role: Role,
    pub held: bool,
}

/// The session and membership of authentication rows ordered by role position descending, then
/// role id. None for no rows (unknown token).
pub fn session_auth(rows: Vec<SessionAuthRow>) -> Option<SessionAuth> {
    let mut rows = rows.into_iter();
    let first = rows.next()?;
    let session = Session {
        id: first.session_id,
        token_hash: first.token_hash,
        user_id: first.user_id,
        device_key_id: first.device_key_id,
        device_pubkey: first.device_pubkey,
        is_read_only: first.is_read_only,
        created_at: first.session_created_at,
        expires_at: first.expires_at,
    };
    let Some(joined_at) = first.joined_at else {
        return Some(SessionAuth { session, member: None });
    };
    let user = User {
        id: first.user_id,
        pubkey: first.pubkey,
        display_name: first.display_name,
        avatar_hash: first.avatar_hash,
        is_bot: first.is_bot,
        created_at: first.user_created_at,
    };
    let mut roles = Vec::new();
    let mut everyone = None;
    for AuthRoleRow { role, held } in first.role.into_iter().chain(rows.filter_map(|row| row.role)) {
        if role.id == RoleId::EVERYONE {
            everyone = Some(role.clone());
        }
        if held {
            roles.push(role);
        }
    }
    let refs =
        roles.iter().map(|r| RoleRef { id: r.id, name: r.name.clone(), color: r.color.clone(), position: r.position });
    let member = Member { user, joined_at, roles: refs.collect() };
    Some(SessionAuth { session, member: Some(MemberAuth { member, roles, everyone }) })
}

/// The OR of stored permission names (unknown names are ignored).
pub fn permissions_from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Permissions {
    names.into_iter().filter_map(Permissions::from_stored_name).fold(Permissions::empty(), |acc, p| acc | p)
}

/// One row of the channel access statement: the channel, repeated for each of its overrides.
pub struct ChannelAccessRow {
    pub channel: Channel,
    /// None when the channel has no override.
    pub role_id: Option<RoleId>,
    pub allow_bits: Option<i64>,
    pub deny_bits: Option<i64>,
    pub role_position: Option<i64>,
}

/// The channel and its overrides from rows ordered by role id; None for no rows.
pub fn channel_access(rows: Vec<ChannelAccessRow>) -> Option<ChannelAccess> {
    let channel = rows.first()?.channel.clone();
    let overrides = rows
        .into_iter()
        .filter_map(|r| {
            let o = Override {
                channel_id: channel.id,
                role_id: r.role_id?,
                allow: Permissions::from_bits_truncate(r.allow_bits?),
                deny: Permissions::from_bits_truncate(r.deny_bits?),
            };
            Some((o, r.role_position.unwrap_or(0)))
        })
        .collect();
    Some(ChannelAccess { channel, overrides })
}
