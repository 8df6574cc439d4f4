//! Row loading shared by every domain module: messages with their attachments, reactions and
//! thread summaries, members with their roles, roles with their permissions, channels, threads
//! and users — each batch in a fixed number of queries (no N+1).

use std::collections::HashMap;

use sqlx::SqliteConnection;

pub(super) use crate::storage::assemble::MessageRow;
use crate::storage::assemble::{self, MemberRoleRow, MemberRow, ReactionCountRow, ThreadSummaryRow};

use crate::storage::{
    Attachment, Channel, ChannelId, ContentHash, Member, Message, MessageId, Permissions, PublicKey, Role, RoleId,
    StorageResult, Thread, ThreadId, Timestamp, User, UserId,
};

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`.
pub(super) fn json_ids(ids: impl IntoIterator<Item = i64>) -> String {
    let parts: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A JSON array of strings.
pub(super) fn json_strings<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}

/// Loads one message row.
pub(super) async fn message_row(conn: &mut SqliteConnection, id: MessageId) -> StorageResult<Option<MessageRow>> {
    Ok(sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id!: MessageId", channel_id AS "channel_id!: ChannelId", author_id AS "author_id!: UserId",
                  thread_id AS "thread_id?: ThreadId", content AS "content!", created_at AS "created_at!: Timestamp",
                  edited_at AS "edited_at?: Timestamp", deleted_at AS "deleted_at?: Timestamp"
           FROM messages WHERE id = ?1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Loads one message with everything it carries.
pub(super) async fn load_message(
    conn: &mut SqliteConnection,
    id: MessageId,
    viewer: Option<UserId>,
) -> StorageResult<Option<Message>> {
    let Some(row) = message_row(conn, id).await? else {
        return Ok(None);
    };
    Ok(hydrate_messages(conn, vec![row], viewer).await?.pop())
}

/// Attaches attachments, reaction summaries and thread summaries to message rows, keeping their
/// order: three queries whatever the number of messages.
pub(super) async fn hydrate_messages(
    conn: &mut SqliteConnection,
    rows: Vec<MessageRow>,
    viewer: Option<UserId>,
) -> StorageResult<Vec<Message>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = json_ids(rows.iter().map(|r| r.id.0));

    let attachments = sqlx::query_as!(
        Attachment,
        r#"SELECT id AS "id!: _", message_id AS "message_id?: MessageId", channel_id AS "channel_id!: ChannelId",
                  uploader_id AS "uploader_id!: UserId", filename AS "filename!", content_hash AS "content_hash!: ContentHash",
                  size_bytes AS "size!", mime_type AS "mime_type!", width, height,
                  created_at AS "created_at!: Timestamp"
           FROM attachments
           WHERE message_id IN (SELECT value FROM json_each(?1)) AND deleted_at IS NULL
           ORDER BY id"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;

    let reactions = sqlx::query_as!(
        ReactionCountRow,
        r#"SELECT message_id AS "message_id!: MessageId", emoji AS "emoji!: String", COUNT(*) AS "count!: i64",
                  COALESCE(MAX(user_id = ?2), 0) AS "me!: bool"
           FROM reactions
           WHERE message_id IN (SELECT value FROM json_each(?1))
           GROUP BY message_id, emoji
           ORDER BY message_id, MIN(id)"#,
        ids,
        viewer
    )
    .fetch_all(&mut *conn)
    .await?;

    let threads = sqlx::query_as!(
        ThreadSummaryRow,
        r#"SELECT id AS "thread_id!: ThreadId", parent_message_id AS "parent_message_id!: MessageId",
                  reply_count AS "reply_count!: i64", last_reply_at AS "last_reply_at?: Timestamp",
                  last_reply_author_id AS "last_reply_author_id?: UserId"
           FROM threads WHERE parent_message_id IN (SELECT value FROM json_each(?1))"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;

    Ok(assemble::messages(rows, attachments, reactions, threads))
}

pub(super) async fn load_user(conn: &mut SqliteConnection, id: UserId) -> StorageResult<Option<User>> {
    Ok(sqlx::query_as!(
        User,
        r#"SELECT id AS "id!: UserId", pubkey AS "pubkey!: PublicKey", display_name,
                  avatar_hash AS "avatar_hash?: ContentHash", is_bot AS "is_bot!: bool",
                  created_at AS "created_at!: Timestamp"
           FROM users WHERE id = ?1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Members (all of them when `only` is None, else those whose ids are in the JSON array), by
/// joined_at then user id, each with its roles by position descending then id. Two queries.
pub(super) async fn load_members(conn: &mut SqliteConnection, only: Option<String>) -> StorageResult<Vec<Member>> {
    let rows = sqlx::query_as!(
        MemberRow,
        r#"SELECT u.id AS "id!: UserId", u.pubkey AS "pubkey!: PublicKey", u.display_name AS "display_name?: String",
                  u.avatar_hash AS "avatar_hash?: ContentHash", u.is_bot AS "is_bot!: bool",
                  u.created_at AS "created_at!: Timestamp", m.joined_at AS "joined_at!: Timestamp"
           FROM members m JOIN users u ON u.id = m.user_id
           WHERE ?1 IS NULL OR m.user_id IN (SELECT value FROM json_each(?1))
           ORDER BY m.joined_at, m.user_id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let roles = sqlx::query_as!(
        MemberRoleRow,
        r#"SELECT mr.user_id AS "user_id!: UserId", r.id AS "id!: RoleId", r.name AS "name!: String",
                  r.color AS "color?: String", r.position AS "position!: i64"
           FROM member_roles mr JOIN roles r ON r.id = mr.role_id
           WHERE ?1 IS NULL OR mr.user_id IN (SELECT value FROM json_each(?1))
           ORDER BY r.position DESC, r.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(assemble::members(rows, roles))
}

pub(super) async fn load_member(conn: &mut SqliteConnection, user: UserId) -> StorageResult<Option<Member>> {
    Ok(load_members(conn, Some(json_ids([user.0]))).await?.pop())
}

/// Roles (all when `only` is None), by position descending then id, with their permissions.
pub(super) async fn load_roles(conn: &mut SqliteConnection, only: Option<String>) -> StorageResult<Vec<Role>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!: RoleId", name AS "name!: String", color AS "color?: String",
                  position AS "position!: i64", is_builtin AS "is_builtin!: bool",
                  created_at AS "created_at!: Timestamp", updated_at AS "updated_at!: Timestamp"
           FROM roles
           WHERE ?1 IS NULL OR id IN (SELECT value FROM json_each(?1))
           ORDER BY position DESC, id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let permissions = sqlx::query!(
        r#"SELECT role_id AS "role_id!: RoleId", permission AS "permission!: String"
           FROM role_permissions
           WHERE ?1 IS NULL OR role_id IN (SELECT value FROM json_each(?1))"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_role: HashMap<RoleId, Permissions> = HashMap::new();
    for p in permissions {
        let flag = Permissions::from_stored_name(&p.permission).unwrap_or_default();
        *by_role.entry(p.role_id).or_default() |= flag;
    }
    Ok(rows
        .into_iter()
        .map(|r| Role {
            permissions: by_role.get(&r.id).copied().unwrap_or_default(),
            id: r.id,
            name: r.name,
            color: r.color,
            position: r.position,
            is_builtin: r.is_builtin,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

pub(super) async fn load_role(conn: &mut SqliteConnection, id: RoleId) -> StorageResult<Option<Role>> {
    Ok(load_roles(conn, Some(json_ids([id.0]))).await?.pop())
}

/// Text channels (all when `only` is None), by position then id, with their category names.
pub(super) async fn load_channels(conn: &mut SqliteConnection, only: Option<String>) -> StorageResult<Vec<Channel>> {
    Ok(sqlx::query_as!(
        Channel,
        r#"SELECT c.id AS "id!: ChannelId", c.name AS "name!: String", c.topic AS "topic?: String",
                  cat.name AS "category?: String", c.position AS "position!: i64",
                  c.created_at AS "created_at!: Timestamp", c.updated_at AS "updated_at!: Timestamp"
           FROM channels c LEFT JOIN categories cat ON cat.id = c.category_id
           WHERE c.kind = 'text' AND (?1 IS NULL OR c.id IN (SELECT value FROM json_each(?1)))
           ORDER BY c.position, c.id"#,
        only
    )
    .fetch_all(&mut *conn)
    .await?)
}

pub(super) async fn load_channel(conn: &mut SqliteConnection, id: ChannelId) -> StorageResult<Option<Channel>> {
    Ok(load_channels(conn, Some(json_ids([id.0]))).await?.pop())
}

/// A thread with its follower count and whether `viewer` follows it.
pub(super) async fn load_thread(
    conn: &mut SqliteConnection,
    id: ThreadId,
    viewer: Option<UserId>,
) -> StorageResult<Option<Thread>> {
    Ok(sqlx::query_as!(
        Thread,
        r#"SELECT t.id AS "id!: ThreadId", t.channel_id AS "channel_id!: ChannelId",
                  t.parent_message_id AS "parent_message_id!: MessageId", t.creator_id AS "creator_id!: UserId",
                  t.created_at AS "created_at!: Timestamp", t.last_reply_at AS "last_reply_at?: Timestamp",
                  t.last_reply_author_id AS "last_reply_author_id?: UserId", t.reply_count AS "reply_count!: i64",
                  (SELECT COUNT(*) FROM thread_followers f WHERE f.thread_id = t.id) AS "follower_count!: i64",
                  EXISTS (SELECT 1 FROM thread_followers f WHERE f.thread_id = t.id AND f.user_id = ?2)
                      AS "is_following!: bool"
           FROM threads t WHERE t.id = ?1"#,
        id,
        viewer
    )
    .fetch_optional(&mut *conn)
    .await?)
}
