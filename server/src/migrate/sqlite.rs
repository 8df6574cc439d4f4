//! The SQLite side of `decentcom migrate`: the source read from one read-only snapshot, the
//! target written in batches, one transaction per batch. Every statement is a checked query
//! macro; the per-table statements are spelled out in full so each can be read (and is checked)
//! on its own.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, Transaction};

use super::tables::{Bound, MESSAGE_THREAD_ID, Row, THREAD_ID, Table, Value, int, opt_int};
use super::unstorable::{Problem, Unstorable};

/// The source: a read transaction held open for the whole run (one consistent snapshot).
pub type Snapshot = Transaction<'static, Sqlite>;

/// Rows sqlx's SQLite worker thread may read ahead of the reader. The default (50) makes the
/// worker and the reader wake each other every few rows, which cost more than reading itself on
/// a whole-table scan; a page's worth lets the worker run ahead.
const ROW_BUFFER: usize = 10_000;

/// Opens `path` read-only and starts the read transaction every source query runs in. A missing
/// file is an error (never created).
pub async fn open_source(path: &Path) -> eyre::Result<Snapshot> {
    if !path.is_file() {
        eyre::bail!("the SQLite database {} does not exist", path.display());
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .row_buffer_size(ROW_BUFFER);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| eyre::eyre!("cannot open the SQLite database {} read-only: {e}", path.display()))?;
    let mut snapshot = pool.begin().await?;
    // A deferred transaction takes its snapshot at the first read: read now, so that every
    // later statement sees the database as it was at this point.
    sqlx::query_scalar!(r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM sqlite_master"#)
        .fetch_one(&mut *snapshot)
        .await?;
    Ok(snapshot)
}

/// Opens (creating it if missing) the target file. Foreign keys are enforced while loading, as
/// they are by the server.
pub async fn open_target(path: &Path) -> eyre::Result<SqliteConnection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| eyre::eyre!("cannot create the directory of {}: {e}", path.display()))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // Loading touches every page of the growing tables and indexes again and again: keep
        // them in SQLite's cache (up to 256 MiB, taken only as the file grows) rather than
        // re-reading them from the OS's (the default cache is 2 MiB).
        .pragma("cache_size", "-262144")
        .row_buffer_size(ROW_BUFFER);
    SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| eyre::eyre!("cannot open the SQLite database {}: {e}", path.display()))
}

macro_rules! count {
    ($conn:expr, $sql:literal) => {
        sqlx::query_scalar!($sql).fetch_one(&mut *$conn).await?
    };
}

/// One page of a table in key order: `$sql` selects `$col`s, which become the canonical row.
macro_rules! page {
    ($conn:expr, $sql:literal, [$($arg:expr),*], [$($col:ident),*]) => {
        sqlx::query!($sql, $($arg),*)
            .fetch_all(&mut *$conn)
            .await?
            .into_iter()
            .map(|r| vec![$(Value::from(r.$col)),*])
            .collect::<Vec<Row>>()
    };
}

pub async fn count(conn: &mut SqliteConnection, table: Table) -> Result<i64, sqlx::Error> {
    Ok(match table {
        Table::Roles => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM roles"#),
        Table::RolePermissions => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM role_permissions"#),
        Table::Media => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM media"#),
        Table::Users => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM users"#),
        Table::Members => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM members"#),
        Table::MemberRoles => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM member_roles"#),
        Table::Categories => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM categories"#),
        Table::Channels => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM channels"#),
        Table::ChannelPermissionOverrides => {
            count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM channel_permission_overrides"#)
        }
        Table::Dms => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM dms"#),
        Table::DmParticipants => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM dm_participants"#),
        Table::Messages => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM messages"#),
        Table::Threads => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM threads"#),
        Table::ThreadFollowers => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM thread_followers"#),
        Table::Reactions => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM reactions"#),
        Table::Attachments => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM attachments"#),
        Table::DeviceKeys => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM device_keys"#),
        Table::Sessions => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM sessions"#),
        Table::AuthChallenges => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM auth_challenges"#),
        Table::Bans => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM bans"#),
        Table::Allowlist => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM allowlist"#),
        Table::BotApprovals => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM bot_approvals"#),
        Table::Invites => count!(conn, r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM invites"#),
    })
}

/// Up to `limit` rows of `table` from `bound` on, in primary-key order.
pub async fn page(
    conn: &mut SqliteConnection,
    table: Table,
    bound: &Bound,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    Ok(match (table, bound) {
        (Table::Roles, Bound::Int(a)) => page!(
            conn,
            "SELECT id, name, color, position, is_builtin, created_at, updated_at FROM roles WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, name, color, position, is_builtin, created_at, updated_at]
        ),
        (Table::RolePermissions, Bound::IntText(a, b)) => page!(
            conn,
            "SELECT role_id, permission FROM role_permissions WHERE role_id > ?1 OR (role_id = ?1 AND permission > ?2) ORDER BY role_id, permission LIMIT ?3",
            [*a, b.as_str(), limit],
            [role_id, permission]
        ),
        (Table::Media, Bound::Int(a)) => page!(
            conn,
            "SELECT id, content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at FROM media WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at]
        ),
        (Table::Users, Bound::Int(a)) => page!(
            conn,
            "SELECT id, pubkey, display_name, avatar_hash, is_bot, created_at FROM users WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, pubkey, display_name, avatar_hash, is_bot, created_at]
        ),
        (Table::Members, Bound::Int(a)) => page!(
            conn,
            "SELECT user_id, joined_at FROM members WHERE user_id >= ? ORDER BY user_id LIMIT ?",
            [*a, limit],
            [user_id, joined_at]
        ),
        (Table::MemberRoles, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT user_id, role_id, assigned_at FROM member_roles WHERE (user_id, role_id) >= (?, ?) ORDER BY user_id, role_id LIMIT ?",
            [*a, *b, limit],
            [user_id, role_id, assigned_at]
        ),
        (Table::Categories, Bound::Int(a)) => page!(
            conn,
            "SELECT id, name, position, created_at FROM categories WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, name, position, created_at]
        ),
        (Table::Channels, Bound::Int(a)) => page!(
            conn,
            "SELECT id, kind, name, topic, category_id, position, created_at, updated_at FROM channels WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, kind, name, topic, category_id, position, created_at, updated_at]
        ),
        (Table::ChannelPermissionOverrides, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT channel_id, role_id, allow_bits, deny_bits FROM channel_permission_overrides WHERE (channel_id, role_id) >= (?, ?) ORDER BY channel_id, role_id LIMIT ?",
            [*a, *b, limit],
            [channel_id, role_id, allow_bits, deny_bits]
        ),
        (Table::Dms, Bound::Int(a)) => page!(
            conn,
            "SELECT channel_id, user_low, user_high, created_at, last_message_at FROM dms WHERE channel_id >= ? ORDER BY channel_id LIMIT ?",
            [*a, limit],
            [channel_id, user_low, user_high, created_at, last_message_at]
        ),
        (Table::DmParticipants, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT channel_id, user_id, is_open, last_read_at FROM dm_participants WHERE (channel_id, user_id) >= (?, ?) ORDER BY channel_id, user_id LIMIT ?",
            [*a, *b, limit],
            [channel_id, user_id, is_open, last_read_at]
        ),
        (Table::Messages, Bound::Int(a)) => page!(
            conn,
            "SELECT id, channel_id, author_id, thread_id, content, search_text, created_at, edited_at, deleted_at FROM messages WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, channel_id, author_id, thread_id, content, search_text, created_at, edited_at, deleted_at]
        ),
        (Table::Threads, Bound::Int(a)) => page!(
            conn,
            "SELECT id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at, last_reply_author_id FROM threads WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [
                id,
                channel_id,
                parent_message_id,
                creator_id,
                created_at,
                reply_count,
                last_reply_at,
                last_reply_author_id
            ]
        ),
        (Table::ThreadFollowers, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT thread_id, user_id, followed_at, last_read_at FROM thread_followers WHERE (thread_id, user_id) >= (?, ?) ORDER BY thread_id, user_id LIMIT ?",
            [*a, *b, limit],
            [thread_id, user_id, followed_at, last_read_at]
        ),
        (Table::Reactions, Bound::Int(a)) => page!(
            conn,
            "SELECT id, message_id, user_id, emoji, created_at FROM reactions WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, message_id, user_id, emoji, created_at]
        ),
        (Table::Attachments, Bound::Int(a)) => page!(
            conn,
            "SELECT id, message_id, channel_id, uploader_id, content_hash, filename, size_bytes, mime_type, width, height, created_at, deleted_at FROM attachments WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [
                id,
                message_id,
                channel_id,
                uploader_id,
                content_hash,
                filename,
                size_bytes,
                mime_type,
                width,
                height,
                created_at,
                deleted_at
            ]
        ),
        (Table::DeviceKeys, Bound::Int(a)) => page!(
            conn,
            "SELECT id, device_pubkey, user_id, device_name, permissions, issued_at, expires_at, certificate, signature, created_at, revoked_at FROM device_keys WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [
                id,
                device_pubkey,
                user_id,
                device_name,
                permissions,
                issued_at,
                expires_at,
                certificate,
                signature,
                created_at,
                revoked_at
            ]
        ),
        (Table::Sessions, Bound::Int(a)) => page!(
            conn,
            "SELECT id, token_hash, user_id, device_key_id, is_read_only, created_at, expires_at FROM sessions WHERE id >= ? ORDER BY id LIMIT ?",
            [*a, limit],
            [id, token_hash, user_id, device_key_id, is_read_only, created_at, expires_at]
        ),
        (Table::AuthChallenges, Bound::Bytes(a)) => page!(
            conn,
            "SELECT pubkey, nonce, is_bot, created_at, expires_at FROM auth_challenges WHERE pubkey > ? ORDER BY pubkey LIMIT ?",
            [a.as_slice(), limit],
            [pubkey, nonce, is_bot, created_at, expires_at]
        ),
        (Table::Bans, Bound::Bytes(a)) => page!(
            conn,
            "SELECT pubkey, banned_by, reason, banned_at FROM bans WHERE pubkey > ? ORDER BY pubkey LIMIT ?",
            [a.as_slice(), limit],
            [pubkey, banned_by, reason, banned_at]
        ),
        (Table::Allowlist, Bound::Bytes(a)) => page!(
            conn,
            "SELECT pubkey, added_by, added_at FROM allowlist WHERE pubkey > ? ORDER BY pubkey LIMIT ?",
            [a.as_slice(), limit],
            [pubkey, added_by, added_at]
        ),
        (Table::BotApprovals, Bound::Int(a)) => page!(
            conn,
            "SELECT user_id, requested_at, approved_by, approved_at, revoked_at, note FROM bot_approvals WHERE user_id >= ? ORDER BY user_id LIMIT ?",
            [*a, limit],
            [user_id, requested_at, approved_by, approved_at, revoked_at, note]
        ),
        (Table::Invites, Bound::Text(a)) => page!(
            conn,
            "SELECT code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at FROM invites WHERE code > ? ORDER BY code LIMIT ?",
            [a.as_str(), limit],
            [code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at]
        ),
        (table, bound) => unreachable!("{bound:?} is not a bound of {}", table.name()),
    })
}

/// The threads whose parent message id is in `first..=last`, in parent order.
pub async fn threads_by_parent(conn: &mut SqliteConnection, first: i64, last: i64) -> Result<Vec<Row>, sqlx::Error> {
    Ok(page!(
        conn,
        "SELECT id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at,
                last_reply_author_id
         FROM threads WHERE parent_message_id >= ? AND parent_message_id <= ? ORDER BY parent_message_id",
        [first, last],
        [id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at, last_reply_author_id]
    ))
}

/// A page of canonical rows as a JSON array of arrays, the single parameter of the `INSERT`s
/// below: integers and text as themselves (`->>` gives back an INTEGER or a TEXT), bytes as hex
/// (`unhex` turns them back into a BLOB), booleans as 1 and 0 (SQLite's booleans), NULL as null.
struct JsonRows<'a>(&'a [Row]);

impl serde::Serialize for JsonRows<'_> {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        out.collect_seq(self.0.iter().map(JsonRow))
    }
}

struct JsonRow<'a>(&'a Row);

impl serde::Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        out.collect_seq(self.0.iter().map(JsonValue))
    }
}

struct JsonValue<'a>(&'a Value);

impl serde::Serialize for JsonValue<'_> {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => out.serialize_unit(),
            Value::Int(i) => out.serialize_i64(*i),
            Value::Text(text) => out.serialize_str(text),
            Value::Bytes(bytes) => out.serialize_str(&hex::encode(bytes)),
            Value::Bool(b) => out.serialize_i64(i64::from(*b)),
        }
    }
}

/// Inserts `rows` into `table` (inside the caller's transaction) with one statement: the page
/// travels as a single JSON parameter (see [`JsonRows`]) that `jsonb_each` unpacks into rows, so
/// a page costs one round trip to SQLite's worker thread instead of one per row.
pub async fn insert(conn: &mut SqliteConnection, table: Table, rows: &[Row]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(&JsonRows(rows)).map_err(|e| sqlx::Error::Encode(e.into()))?;
    match table {
        Table::Roles => sqlx::query!(
            "INSERT INTO roles (id, name, color, position, is_builtin, created_at, updated_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::RolePermissions => sqlx::query!(
            "INSERT INTO role_permissions (role_id, permission) SELECT value ->> 0, value ->> 1 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Media => sqlx::query!(
            "INSERT INTO media (id, content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Users => sqlx::query!(
            "INSERT INTO users (id, pubkey, display_name, avatar_hash, is_bot, created_at) SELECT value ->> 0, unhex(value ->> 1), value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Members => sqlx::query!(
            "INSERT INTO members (user_id, joined_at) SELECT value ->> 0, value ->> 1 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::MemberRoles => sqlx::query!(
            "INSERT INTO member_roles (user_id, role_id, assigned_at) SELECT value ->> 0, value ->> 1, value ->> 2 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Categories => sqlx::query!(
            "INSERT INTO categories (id, name, position, created_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Channels => sqlx::query!(
            "INSERT INTO channels (id, kind, name, topic, category_id, position, created_at, updated_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::ChannelPermissionOverrides => sqlx::query!(
            "INSERT INTO channel_permission_overrides (channel_id, role_id, allow_bits, deny_bits) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Dms => sqlx::query!(
            "INSERT INTO dms (channel_id, user_low, user_high, created_at, last_message_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::DmParticipants => sqlx::query!(
            "INSERT INTO dm_participants (channel_id, user_id, is_open, last_read_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Messages => sqlx::query!(
            "INSERT INTO messages (id, channel_id, author_id, thread_id, content, search_text, created_at, edited_at, deleted_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Threads => sqlx::query!(
            "INSERT INTO threads (id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at, last_reply_author_id) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::ThreadFollowers => sqlx::query!(
            "INSERT INTO thread_followers (thread_id, user_id, followed_at, last_read_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Reactions => sqlx::query!(
            "INSERT INTO reactions (id, message_id, user_id, emoji, created_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Attachments => sqlx::query!(
            "INSERT INTO attachments (id, message_id, channel_id, uploader_id, content_hash, filename, size_bytes, mime_type, width, height, created_at, deleted_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::DeviceKeys => sqlx::query!(
            "INSERT INTO device_keys (id, device_pubkey, user_id, device_name, permissions, issued_at, expires_at, certificate, signature, created_at, revoked_at) SELECT value ->> 0, unhex(value ->> 1), value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, unhex(value ->> 7), unhex(value ->> 8), value ->> 9, value ->> 10 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Sessions => sqlx::query!(
            "INSERT INTO sessions (id, token_hash, user_id, device_key_id, is_read_only, created_at, expires_at) SELECT value ->> 0, unhex(value ->> 1), value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::AuthChallenges => sqlx::query!(
            "INSERT INTO auth_challenges (pubkey, nonce, is_bot, created_at, expires_at) SELECT unhex(value ->> 0), unhex(value ->> 1), value ->> 2, value ->> 3, value ->> 4 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Bans => sqlx::query!(
            "INSERT INTO bans (pubkey, banned_by, reason, banned_at) SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Allowlist => sqlx::query!(
            "INSERT INTO allowlist (pubkey, added_by, added_at) SELECT unhex(value ->> 0), value ->> 1, value ->> 2 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::BotApprovals => sqlx::query!(
            "INSERT INTO bot_approvals (user_id, requested_at, approved_by, approved_at, revoked_at, note) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
        Table::Invites => sqlx::query!(
            "INSERT INTO invites (code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 FROM jsonb_each(?)",
            json
        )
        .execute(&mut *conn)
        .await?,
    };
    Ok(())
}

/// Writes a page of messages and the threads whose parent message is among them. Foreign keys
/// are enforced row by row, and messages and threads refer to each other: a reply whose thread is
/// among `threads` is written without its `thread_id` first, then the threads, then those
/// replies' `thread_id`.
pub async fn insert_messages(
    conn: &mut SqliteConnection,
    messages: &mut [Row],
    threads: &[Row],
) -> Result<(), sqlx::Error> {
    let new_threads: HashSet<i64> = threads.iter().map(|t| int(&t[THREAD_ID])).collect();
    let mut fixups = Vec::new();
    for m in messages.iter_mut() {
        if let Some(thread) = opt_int(&m[MESSAGE_THREAD_ID]).filter(|t| new_threads.contains(t)) {
            fixups.push((int(&m[0]), thread));
            m[MESSAGE_THREAD_ID] = Value::Null;
        }
    }
    insert(conn, Table::Messages, messages).await?;
    insert(conn, Table::Threads, threads).await?;
    for (message, thread) in fixups {
        sqlx::query!("UPDATE messages SET thread_id = ? WHERE id = ?", thread, message).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes the roles (and their permissions) the migrations seed, so the source's own versions
/// of roles 1 and 2 can be copied with their ids. Only ever called on a target that holds
/// nothing else.
pub async fn clear_seeded_roles(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query!("/* sqlite */ DELETE FROM role_permissions").execute(&mut *tx).await?;
    sqlx::query!("/* sqlite */ DELETE FROM roles").execute(&mut *tx).await?;
    tx.commit().await
}

/// After loading: AUTOINCREMENT counters already moved past every explicitly inserted id
/// (SQLite keeps `sqlite_sequence` at the largest id ever inserted), so only the planner
/// statistics are refreshed.
pub async fn finish_target(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("/* sqlite */ ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// The largest id each AUTOINCREMENT table has handed out (`sqlite_sequence`), by table name.
///
/// The statements on `sqlite_sequence` are not checked macros: describing any statement on that
/// internal table (its columns have no declared types) crashes sqlx's SQLite analysis at compile
/// time. They are fixed text with bound values.
pub async fn id_counters(conn: &mut SqliteConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT name, seq FROM sqlite_sequence").fetch_all(&mut *conn).await
}

/// Raises the AUTOINCREMENT counter of `table` to at least `value`, so the ids the source had
/// handed out (including those of deleted rows) are never reused.
pub async fn raise_id_counter(conn: &mut SqliteConnection, table: Table, value: i64) -> Result<(), sqlx::Error> {
    // Not macros: see `id_counters`.
    let name = table.name();
    let mut tx = conn.begin().await?;
    sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, ?1) WHERE name = ?2")
        .bind(value)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)",
    )
    .bind(name)
    .bind(value)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Whether the database has sqlx's migration table.
pub async fn has_migrations_table(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let n = sqlx::query_scalar!(
        r#"/* sqlite */ SELECT COUNT(*) AS "n!: i64" FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"#
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(n > 0)
}

/// Scans every text value of `table` (read as bytes, so that invalid UTF-8 written by another
/// tool is seen rather than failing the read) and reports those PostgreSQL cannot store.
pub async fn unstorable(conn: &mut SqliteConnection, table: Table) -> Result<Vec<Unstorable>, sqlx::Error> {
    use futures::TryStreamExt;
    let mut found = Vec::new();
    // `$sql` selects the key columns (shown by `$key`) and the text columns `$text`, cast to BLOB.
    macro_rules! scan {
        ($sql:literal, |$r:ident| $key:expr, [$($text:ident),*]) => {{
            let mut rows = sqlx::query!($sql).fetch(&mut *conn);
            while let Some($r) = rows.try_next().await? {
                $(
                    if let Some(problem) = $r.$text.as_deref().and_then(Problem::of) {
                        found.push(Unstorable { table, column: stringify!($text), key: $key, problem });
                    }
                )*
            }
        }};
    }
    match table {
        Table::Roles => scan!(
            r#"SELECT id AS "id!: i64", CAST(name AS BLOB) AS "name?: Vec<u8>", CAST(color AS BLOB) AS "color?: Vec<u8>" FROM roles"#,
            |r| format!("id={}", r.id),
            [name, color]
        ),
        Table::RolePermissions => scan!(
            r#"SELECT role_id AS "role_id!: i64", CAST(permission AS BLOB) AS "permission?: Vec<u8>" FROM role_permissions"#,
            |r| format!(
                "role_id={}, permission={}",
                r.role_id,
                String::from_utf8_lossy(r.permission.as_deref().unwrap_or_default())
            ),
            [permission]
        ),
        Table::Media => scan!(
            r#"SELECT id AS "id!: i64", CAST(content_hash AS BLOB) AS "content_hash?: Vec<u8>", CAST(object_key AS BLOB) AS "object_key?: Vec<u8>", CAST(bucket AS BLOB) AS "bucket?: Vec<u8>", CAST(mime_type AS BLOB) AS "mime_type?: Vec<u8>" FROM media"#,
            |r| format!("id={}", r.id),
            [content_hash, object_key, bucket, mime_type]
        ),
        Table::Users => scan!(
            r#"SELECT id AS "id!: i64", CAST(display_name AS BLOB) AS "display_name?: Vec<u8>", CAST(avatar_hash AS BLOB) AS "avatar_hash?: Vec<u8>" FROM users"#,
            |r| format!("id={}", r.id),
            [display_name, avatar_hash]
        ),
        Table::Categories => scan!(
            r#"SELECT id AS "id!: i64", CAST(name AS BLOB) AS "name?: Vec<u8>" FROM categories"#,
            |r| format!("id={}", r.id),
            [name]
        ),
        Table::Channels => scan!(
            r#"SELECT id AS "id!: i64", CAST(kind AS BLOB) AS "kind?: Vec<u8>", CAST(name AS BLOB) AS "name?: Vec<u8>", CAST(topic AS BLOB) AS "topic?: Vec<u8>" FROM channels"#,
            |r| format!("id={}", r.id),
            [kind, name, topic]
        ),
        Table::Messages => scan!(
            r#"SELECT id AS "id!: i64", CAST(content AS BLOB) AS "content?: Vec<u8>", CAST(search_text AS BLOB) AS "search_text?: Vec<u8>" FROM messages"#,
            |r| format!("id={}", r.id),
            [content, search_text]
        ),
        Table::Reactions => scan!(
            r#"SELECT id AS "id!: i64", CAST(emoji AS BLOB) AS "emoji?: Vec<u8>" FROM reactions"#,
            |r| format!("id={}", r.id),
            [emoji]
        ),
        Table::Attachments => scan!(
            r#"SELECT id AS "id!: i64", CAST(content_hash AS BLOB) AS "content_hash?: Vec<u8>", CAST(filename AS BLOB) AS "filename?: Vec<u8>", CAST(mime_type AS BLOB) AS "mime_type?: Vec<u8>" FROM attachments"#,
            |r| format!("id={}", r.id),
            [content_hash, filename, mime_type]
        ),
        Table::DeviceKeys => scan!(
            r#"SELECT id AS "id!: i64", CAST(device_name AS BLOB) AS "device_name?: Vec<u8>" FROM device_keys"#,
            |r| format!("id={}", r.id),
            [device_name]
        ),
        Table::Bans => scan!(
            r#"SELECT pubkey AS "pubkey!: Vec<u8>", CAST(reason AS BLOB) AS "reason?: Vec<u8>" FROM bans"#,
            |r| format!("pubkey={}", bs58::encode(&r.pubkey).into_string()),
            [reason]
        ),
        Table::BotApprovals => scan!(
            r#"SELECT user_id AS "user_id!: i64", CAST(note AS BLOB) AS "note?: Vec<u8>" FROM bot_approvals"#,
            |r| format!("user_id={}", r.user_id),
            [note]
        ),
        Table::Invites => scan!(
            r#"SELECT CAST(code AS BLOB) AS "code?: Vec<u8>" FROM invites"#,
            |r| format!("code={}", String::from_utf8_lossy(r.code.as_deref().unwrap_or_default())),
            [code]
        ),
        // No text column.
        Table::Members
        | Table::MemberRoles
        | Table::ChannelPermissionOverrides
        | Table::Dms
        | Table::DmParticipants
        | Table::Threads
        | Table::ThreadFollowers
        | Table::Sessions
        | Table::AuthChallenges
        | Table::Allowlist => {}
    }
    Ok(found)
}
