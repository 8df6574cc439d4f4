//! How fetched rows combine into records: the part of loading that does not depend on the
//! dialect, written once. Each backend fetches these row shapes with its own checked statements
//! (a fixed number per batch, never one per record) and hands them here.

use std::collections::HashMap;

use super::{
    Attachment, ChannelId, ContentHash, Member, Message, MessageId, PublicKey, ReactionSummary, RoleId, RoleRef,
    ThreadId, ThreadSummary, Timestamp, User, UserId,
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
