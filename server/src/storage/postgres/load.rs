//! Row → model loaders shared by several domains, each in a fixed number of statements (no N+1):
//! users, members with their roles, roles with their permissions, threads, and messages with
//! their attachments, reaction summaries and thread summaries.

use sqlx::postgres::PgConnection;

use crate::storage::assemble::{self, MemberRoleRow, MemberRow, MessageRow, ReactionCountRow, ThreadSummaryRow};

use crate::storage::{
    Attachment, AttachmentId, ChannelId, ContentHash, Member, Message, MessageId, Permissions, PublicKey, Role, RoleId,
    StorageResult, Thread, ThreadId, Timestamp, User, UserId,
};

pub(super) async fn user(conn: &mut PgConnection, id: UserId) -> StorageResult<Option<User>> {
    let user = sqlx::query_as!(
        User,
        r#"SELECT id AS "id: UserId", pubkey AS "pubkey: PublicKey", display_name,
                  avatar_hash AS "avatar_hash: ContentHash", is_bot, created_at AS "created_at: Timestamp"
           FROM users WHERE id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(user)
}

/// The members among `ids`, by joined_at then user id, with their roles.
pub(super) async fn members(conn: &mut PgConnection, ids: &[i64]) -> StorageResult<Vec<Member>> {
    let rows = sqlx::query_as!(
        MemberRow,
        r#"SELECT u.id AS "id: UserId", u.pubkey AS "pubkey: PublicKey", u.display_name,
                  u.avatar_hash AS "avatar_hash: ContentHash", u.is_bot, u.created_at AS "created_at: Timestamp",
                  m.joined_at AS "joined_at: Timestamp"
           FROM members m JOIN users u ON u.id = m.user_id
           WHERE m.user_id = ANY($1::int8[])
           ORDER BY m.joined_at, m.user_id"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    with_roles(conn, rows).await
}

/// Every member, by joined_at then user id, with their roles.
pub(super) async fn all_members(conn: &mut PgConnection) -> StorageResult<Vec<Member>> {
    let rows = sqlx::query_as!(
        MemberRow,
        r#"/* pg */
           SELECT u.id AS "id: UserId", u.pubkey AS "pubkey: PublicKey", u.display_name,
                  u.avatar_hash AS "avatar_hash: ContentHash", u.is_bot, u.created_at AS "created_at: Timestamp",
                  m.joined_at AS "joined_at: Timestamp"
           FROM members m JOIN users u ON u.id = m.user_id
           ORDER BY m.joined_at, m.user_id"#
    )
    .fetch_all(&mut *conn)
    .await?;
    with_roles(conn, rows).await
}

/// One member, if `id` is one.
pub(super) async fn member(conn: &mut PgConnection, id: UserId) -> StorageResult<Option<Member>> {
    Ok(members(conn, &[id.0]).await?.pop())
}

async fn with_roles(conn: &mut PgConnection, rows: Vec<MemberRow>) -> StorageResult<Vec<Member>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id.0).collect();
    let assignments = sqlx::query_as!(
        MemberRoleRow,
        r#"SELECT mr.user_id AS "user_id: UserId", r.id AS "id: RoleId", r.name, r.color, r.position
           FROM member_roles mr JOIN roles r ON r.id = mr.role_id
           WHERE mr.user_id = ANY($1::int8[])
           ORDER BY r.position DESC, r.id"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(assemble::members(rows, assignments))
}

/// A role row with its permission names.
pub(super) struct RoleRow {
    pub id: RoleId,
    pub name: String,
    pub color: Option<String>,
    pub permissions: Vec<String>,
    pub position: i64,
    pub is_builtin: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<RoleRow> for Role {
    fn from(r: RoleRow) -> Role {
        Role {
            id: r.id,
            name: r.name,
            color: r.color,
            permissions: permissions_from_names(&r.permissions),
            position: r.position,
            is_builtin: r.is_builtin,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The OR of the stored permission rows.
pub(super) fn permissions_from_names(names: &[String]) -> Permissions {
    names.iter().filter_map(|n| Permissions::from_stored_name(n)).fold(Permissions::empty(), |acc, p| acc | p)
}

/// The stored names of a permission set.
pub(super) fn permission_names(p: Permissions) -> Vec<String> {
    p.stored_names().map(str::to_owned).collect()
}

pub(super) async fn role(conn: &mut PgConnection, id: RoleId) -> StorageResult<Option<Role>> {
    let row = sqlx::query_as!(
        RoleRow,
        r#"SELECT r.id AS "id: RoleId", r.name, r.color,
                  ARRAY(SELECT rp.permission FROM role_permissions rp WHERE rp.role_id = r.id) AS "permissions!: Vec<String>",
                  r.position, r.is_builtin, r.created_at AS "created_at: Timestamp", r.updated_at AS "updated_at: Timestamp"
           FROM roles r WHERE r.id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Role::from))
}

/// A thread with its follower count and whether `viewer` follows it.
pub(super) async fn thread(
    conn: &mut PgConnection,
    id: ThreadId,
    viewer: Option<UserId>,
) -> StorageResult<Option<Thread>> {
    let thread = sqlx::query_as!(
        Thread,
        r#"SELECT t.id AS "id: ThreadId", t.channel_id AS "channel_id: ChannelId",
                  t.parent_message_id AS "parent_message_id: MessageId", t.creator_id AS "creator_id: UserId",
                  t.created_at AS "created_at: Timestamp", t.last_reply_at AS "last_reply_at: Timestamp",
                  t.last_reply_author_id AS "last_reply_author_id: UserId", t.reply_count,
                  (SELECT count(*) FROM thread_followers f WHERE f.thread_id = t.id) AS "follower_count!",
                  EXISTS (SELECT 1 FROM thread_followers f WHERE f.thread_id = t.id AND f.user_id = $2)
                      AS "is_following!"
           FROM threads t WHERE t.id = $1"#,
        id.0,
        viewer.map(|v| v.0)
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(thread)
}

pub(super) async fn message(
    conn: &mut PgConnection,
    id: MessageId,
    viewer: Option<UserId>,
) -> StorageResult<Option<Message>> {
    let row = sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", channel_id AS "channel_id: ChannelId", author_id AS "author_id: UserId",
                  content, created_at AS "created_at: Timestamp", edited_at AS "edited_at: Timestamp",
                  deleted_at AS "deleted_at: Timestamp", thread_id AS "thread_id: ThreadId"
           FROM messages WHERE id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(hydrate(conn, vec![row], viewer).await?.pop()),
        None => Ok(None),
    }
}

/// Attaches attachments, reaction summaries and thread summaries to message rows, in three
/// statements whatever the number of messages. The order of `rows` is kept.
pub(super) async fn hydrate(
    conn: &mut PgConnection,
    rows: Vec<MessageRow>,
    viewer: Option<UserId>,
) -> StorageResult<Vec<Message>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id.0).collect();
    let attachments = sqlx::query_as!(
        Attachment,
        r#"SELECT id AS "id: AttachmentId", message_id AS "message_id: MessageId",
                  channel_id AS "channel_id: ChannelId", uploader_id AS "uploader_id: UserId", filename,
                  content_hash AS "content_hash: ContentHash", size_bytes AS size, mime_type, width, height,
                  created_at AS "created_at: Timestamp"
           FROM attachments
           WHERE message_id = ANY($1::int8[]) AND deleted_at IS NULL
           ORDER BY id"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;

    let reactions = sqlx::query_as!(
        ReactionCountRow,
        r#"SELECT message_id AS "message_id!: MessageId", emoji AS "emoji!", count(*) AS "count!",
                  COALESCE(bool_or(user_id = $2), FALSE) AS "me!"
           FROM reactions
           WHERE message_id = ANY($1::int8[])
           GROUP BY message_id, emoji
           ORDER BY message_id, min(id)"#,
        &ids,
        viewer.map(|v| v.0)
    )
    .fetch_all(&mut *conn)
    .await?;

    let threads = sqlx::query_as!(
        ThreadSummaryRow,
        r#"SELECT id AS "thread_id: ThreadId", parent_message_id AS "parent_message_id: MessageId", reply_count,
                  last_reply_at AS "last_reply_at: Timestamp", last_reply_author_id AS "last_reply_author_id: UserId"
           FROM threads WHERE parent_message_id = ANY($1::int8[])"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;

    Ok(assemble::messages(rows, attachments, reactions, threads))
}
