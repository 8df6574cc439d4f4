//! The PostgreSQL side of `decentcom migrate`: the source read in one `REPEATABLE READ READ ONLY`
//! transaction (one consistent snapshot), the target written one batch per transaction with a
//! single multi-row `INSERT … SELECT * FROM UNNEST(typed arrays)` per table. Every statement is a
//! checked query macro, spelled out per table. A nullable column binds as `Vec<Option<T>>`
//! (an array with NULLs) through `as _`: the macros' type check knows only the element type.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use super::tables::{Bound, Row, Table, Value, boolean, bytes, int, opt_int, opt_text, text};
use crate::config::redact_url;
use crate::storage::postgres::classify_connect_error;

/// The source: a read-only repeatable-read transaction held open for the whole run.
pub type Snapshot = Transaction<'static, Postgres>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn options(url: &str) -> eyre::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map_err(|_| eyre::eyre!("storage.database_url is not a valid PostgreSQL URL: {}", redact_url(url)))
}

async fn connect(url: &str) -> eyre::Result<PgConnection> {
    connect_with(url, |options| options).await
}

async fn connect_with(
    url: &str,
    adjust: impl FnOnce(PgConnectOptions) -> PgConnectOptions,
) -> eyre::Result<PgConnection> {
    let options = adjust(options(url)?);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(eyre::eyre!("{} ({})", classify_connect_error(&options, err), redact_url(url))),
        Err(_) => Err(eyre::eyre!(
            "cannot reach the database server at {}:{}: no answer within {} s ({})",
            options.get_host(),
            options.get_port(),
            CONNECT_TIMEOUT.as_secs(),
            redact_url(url)
        )),
    }
}

/// Connects and starts the read-only snapshot transaction every source query runs in.
pub async fn open_source(url: &str) -> eyre::Result<Snapshot> {
    // Probe with one connection first for a precise error, then hold the snapshot on a pool of
    // one (a pool-owned transaction can live as long as the run).
    connect(url).await?.close().await?;
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options(url)?).await?;
    Ok(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?)
}

pub async fn open_target(url: &str) -> eyre::Result<PgConnection> {
    // A committed batch need not wait for its WAL flush: a batch lost to a server crash right
    // after its commit is copied again by --resume, which trusts only what the target holds.
    connect_with(url, |options| options.options([("synchronous_commit", "off")])).await
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

pub async fn count(conn: &mut PgConnection, table: Table) -> Result<i64, sqlx::Error> {
    Ok(match table {
        Table::Roles => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM roles"#),
        Table::RolePermissions => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM role_permissions"#),
        Table::Media => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM media"#),
        Table::Users => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM users"#),
        Table::Members => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM members"#),
        Table::MemberRoles => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM member_roles"#),
        Table::Categories => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM categories"#),
        Table::Channels => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM channels"#),
        Table::ChannelPermissionOverrides => {
            count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM channel_permission_overrides"#)
        }
        Table::Dms => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM dms"#),
        Table::DmParticipants => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM dm_participants"#),
        Table::Messages => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM messages"#),
        Table::Threads => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM threads"#),
        Table::ThreadFollowers => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM thread_followers"#),
        Table::Reactions => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM reactions"#),
        Table::Attachments => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM attachments"#),
        Table::DeviceKeys => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM device_keys"#),
        Table::Sessions => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM sessions"#),
        Table::AuthChallenges => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM auth_challenges"#),
        Table::Bans => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM bans"#),
        Table::Allowlist => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM allowlist"#),
        Table::BotApprovals => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM bot_approvals"#),
        Table::Invites => count!(conn, r#"/* pg */ SELECT COUNT(*) AS "n!: i64" FROM invites"#),
    })
}

/// Up to `limit` rows of `table` from `bound` on, in primary-key order (text in byte order).
pub async fn page(conn: &mut PgConnection, table: Table, bound: &Bound, limit: i64) -> Result<Vec<Row>, sqlx::Error> {
    Ok(match (table, bound) {
        (Table::Roles, Bound::Int(a)) => page!(
            conn,
            "SELECT id, name, color, position, is_builtin, created_at, updated_at FROM roles WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, name, color, position, is_builtin, created_at, updated_at]
        ),
        (Table::RolePermissions, Bound::IntText(a, b)) => page!(
            conn,
            r#"SELECT role_id, permission FROM role_permissions WHERE role_id > $1 OR (role_id = $1 AND permission COLLATE "C" > $2) ORDER BY role_id, permission COLLATE "C" LIMIT $3"#,
            [*a, b.as_str(), limit],
            [role_id, permission]
        ),
        (Table::Media, Bound::Int(a)) => page!(
            conn,
            "SELECT id, content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at FROM media WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at]
        ),
        (Table::Users, Bound::Int(a)) => page!(
            conn,
            "SELECT id, pubkey, display_name, avatar_hash, is_bot, created_at FROM users WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, pubkey, display_name, avatar_hash, is_bot, created_at]
        ),
        (Table::Members, Bound::Int(a)) => page!(
            conn,
            "SELECT user_id, joined_at FROM members WHERE user_id >= $1 ORDER BY user_id LIMIT $2",
            [*a, limit],
            [user_id, joined_at]
        ),
        (Table::MemberRoles, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT user_id, role_id, assigned_at FROM member_roles WHERE (user_id, role_id) >= ($1, $2) ORDER BY user_id, role_id LIMIT $3",
            [*a, *b, limit],
            [user_id, role_id, assigned_at]
        ),
        (Table::Categories, Bound::Int(a)) => page!(
            conn,
            "SELECT id, name, position, created_at FROM categories WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, name, position, created_at]
        ),
        (Table::Channels, Bound::Int(a)) => page!(
            conn,
            "SELECT id, kind, name, topic, category_id, position, created_at, updated_at FROM channels WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, kind, name, topic, category_id, position, created_at, updated_at]
        ),
        (Table::ChannelPermissionOverrides, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT channel_id, role_id, allow_bits, deny_bits FROM channel_permission_overrides WHERE (channel_id, role_id) >= ($1, $2) ORDER BY channel_id, role_id LIMIT $3",
            [*a, *b, limit],
            [channel_id, role_id, allow_bits, deny_bits]
        ),
        (Table::Dms, Bound::Int(a)) => page!(
            conn,
            "SELECT channel_id, user_low, user_high, created_at, last_message_at FROM dms WHERE channel_id >= $1 ORDER BY channel_id LIMIT $2",
            [*a, limit],
            [channel_id, user_low, user_high, created_at, last_message_at]
        ),
        (Table::DmParticipants, Bound::Int2(a, b)) => page!(
            conn,
            "SELECT channel_id, user_id, is_open, last_read_at FROM dm_participants WHERE (channel_id, user_id) >= ($1, $2) ORDER BY channel_id, user_id LIMIT $3",
            [*a, *b, limit],
            [channel_id, user_id, is_open, last_read_at]
        ),
        (Table::Messages, Bound::Int(a)) => page!(
            conn,
            "SELECT id, channel_id, author_id, thread_id, content, search_text, created_at, edited_at, deleted_at FROM messages WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, channel_id, author_id, thread_id, content, search_text, created_at, edited_at, deleted_at]
        ),
        (Table::Threads, Bound::Int(a)) => page!(
            conn,
            "SELECT id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at, last_reply_author_id FROM threads WHERE id >= $1 ORDER BY id LIMIT $2",
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
            "SELECT thread_id, user_id, followed_at, last_read_at FROM thread_followers WHERE (thread_id, user_id) >= ($1, $2) ORDER BY thread_id, user_id LIMIT $3",
            [*a, *b, limit],
            [thread_id, user_id, followed_at, last_read_at]
        ),
        (Table::Reactions, Bound::Int(a)) => page!(
            conn,
            "SELECT id, message_id, user_id, emoji, created_at FROM reactions WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, message_id, user_id, emoji, created_at]
        ),
        (Table::Attachments, Bound::Int(a)) => page!(
            conn,
            "SELECT id, message_id, channel_id, uploader_id, content_hash, filename, size_bytes, mime_type, width, height, created_at, deleted_at FROM attachments WHERE id >= $1 ORDER BY id LIMIT $2",
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
            "SELECT id, device_pubkey, user_id, device_name, permissions, issued_at, expires_at, certificate, signature, created_at, revoked_at FROM device_keys WHERE id >= $1 ORDER BY id LIMIT $2",
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
            "SELECT id, token_hash, user_id, device_key_id, is_read_only, created_at, expires_at FROM sessions WHERE id >= $1 ORDER BY id LIMIT $2",
            [*a, limit],
            [id, token_hash, user_id, device_key_id, is_read_only, created_at, expires_at]
        ),
        (Table::AuthChallenges, Bound::Bytes(a)) => page!(
            conn,
            "SELECT pubkey, nonce, is_bot, created_at, expires_at FROM auth_challenges WHERE pubkey > $1 ORDER BY pubkey LIMIT $2",
            [a.as_slice(), limit],
            [pubkey, nonce, is_bot, created_at, expires_at]
        ),
        (Table::Bans, Bound::Bytes(a)) => page!(
            conn,
            "SELECT pubkey, banned_by, reason, banned_at FROM bans WHERE pubkey > $1 ORDER BY pubkey LIMIT $2",
            [a.as_slice(), limit],
            [pubkey, banned_by, reason, banned_at]
        ),
        (Table::Allowlist, Bound::Bytes(a)) => page!(
            conn,
            "SELECT pubkey, added_by, added_at FROM allowlist WHERE pubkey > $1 ORDER BY pubkey LIMIT $2",
            [a.as_slice(), limit],
            [pubkey, added_by, added_at]
        ),
        (Table::BotApprovals, Bound::Int(a)) => page!(
            conn,
            "SELECT user_id, requested_at, approved_by, approved_at, revoked_at, note FROM bot_approvals WHERE user_id >= $1 ORDER BY user_id LIMIT $2",
            [*a, limit],
            [user_id, requested_at, approved_by, approved_at, revoked_at, note]
        ),
        (Table::Invites, Bound::Text(a)) => page!(
            conn,
            r#"SELECT code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at FROM invites WHERE code COLLATE "C" > $1 ORDER BY code COLLATE "C" LIMIT $2"#,
            [a.as_str(), limit],
            [code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at]
        ),
        (table, bound) => unreachable!("{bound:?} is not a bound of {}", table.name()),
    })
}

/// The threads whose parent message id is in `first..=last`, in parent order.
pub async fn threads_by_parent(conn: &mut PgConnection, first: i64, last: i64) -> Result<Vec<Row>, sqlx::Error> {
    Ok(page!(
        conn,
        "SELECT id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at,
                last_reply_author_id
         FROM threads WHERE parent_message_id >= $1 AND parent_message_id <= $2 ORDER BY parent_message_id",
        [first, last],
        [id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at, last_reply_author_id]
    ))
}

// Column arrays for UNNEST.

fn ints(rows: &[Row], i: usize) -> Vec<i64> {
    rows.iter().map(|r| int(&r[i])).collect()
}

fn opt_ints(rows: &[Row], i: usize) -> Vec<Option<i64>> {
    rows.iter().map(|r| opt_int(&r[i])).collect()
}

fn texts(rows: &[Row], i: usize) -> Vec<String> {
    rows.iter().map(|r| text(&r[i]).to_owned()).collect()
}

fn opt_texts(rows: &[Row], i: usize) -> Vec<Option<String>> {
    rows.iter().map(|r| opt_text(&r[i]).map(str::to_owned)).collect()
}

fn byteas(rows: &[Row], i: usize) -> Vec<Vec<u8>> {
    rows.iter().map(|r| bytes(&r[i]).to_vec()).collect()
}

fn bools(rows: &[Row], i: usize) -> Vec<bool> {
    rows.iter().map(|r| boolean(&r[i])).collect()
}

fn micros_to_time(micros: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Protocol(format!("timestamp {micros} µs is outside PostgreSQL's range")))
}

fn times(rows: &[Row], i: usize) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    rows.iter().map(|r| micros_to_time(int(&r[i]))).collect()
}

fn opt_times(rows: &[Row], i: usize) -> Result<Vec<Option<DateTime<Utc>>>, sqlx::Error> {
    rows.iter().map(|r| opt_int(&r[i]).map(micros_to_time).transpose()).collect()
}

/// Inserts `rows` into `table` (inside the caller's transaction) with one statement.
pub async fn insert(conn: &mut PgConnection, table: Table, rows: &[Row]) -> Result<(), sqlx::Error> {
    match table {
        Table::Roles => {
            sqlx::query!(
        "INSERT INTO roles (id, name, color, position, is_builtin, created_at, updated_at) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::timestamptz[], $7::timestamptz[])",
        &ints(rows, 0),
        &texts(rows, 1),
        &opt_texts(rows, 2) as _,
        &ints(rows, 3),
        &bools(rows, 4),
        &times(rows, 5)?,
        &times(rows, 6)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::RolePermissions => {
            sqlx::query!(
                "INSERT INTO role_permissions (role_id, permission) SELECT * FROM UNNEST($1::bigint[], $2::text[])",
                &ints(rows, 0),
                &texts(rows, 1)
            )
            .execute(&mut *conn)
            .await?;
        }
        Table::Media => {
            sqlx::query!(
        "INSERT INTO media (id, content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::timestamptz[])",
        &ints(rows, 0),
        &texts(rows, 1),
        &texts(rows, 2),
        &opt_texts(rows, 3) as _,
        &ints(rows, 4),
        &texts(rows, 5),
        &opt_ints(rows, 6) as _,
        &times(rows, 7)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Users => {
            sqlx::query!(
        "INSERT INTO users (id, pubkey, display_name, avatar_hash, is_bot, created_at) SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::boolean[], $6::timestamptz[])",
        &ints(rows, 0),
        &byteas(rows, 1),
        &opt_texts(rows, 2) as _,
        &opt_texts(rows, 3) as _,
        &bools(rows, 4),
        &times(rows, 5)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Members => {
            sqlx::query!(
                "INSERT INTO members (user_id, joined_at) SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[])",
                &ints(rows, 0),
                &times(rows, 1)?
            )
            .execute(&mut *conn)
            .await?;
        }
        Table::MemberRoles => {
            sqlx::query!(
        "INSERT INTO member_roles (user_id, role_id, assigned_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &times(rows, 2)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Categories => {
            sqlx::query!(
        "INSERT INTO categories (id, name, position, created_at) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[])",
        &ints(rows, 0),
        &texts(rows, 1),
        &ints(rows, 2),
        &times(rows, 3)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Channels => {
            sqlx::query!(
        "INSERT INTO channels (id, kind, name, topic, category_id, position, created_at, updated_at) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[])",
        &ints(rows, 0),
        &texts(rows, 1),
        &opt_texts(rows, 2) as _,
        &opt_texts(rows, 3) as _,
        &opt_ints(rows, 4) as _,
        &ints(rows, 5),
        &times(rows, 6)?,
        &times(rows, 7)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::ChannelPermissionOverrides => {
            sqlx::query!(
        "INSERT INTO channel_permission_overrides (channel_id, role_id, allow_bits, deny_bits) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &ints(rows, 2),
        &ints(rows, 3)
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Dms => {
            sqlx::query!(
        "INSERT INTO dms (channel_id, user_low, user_high, created_at, last_message_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &ints(rows, 2),
        &times(rows, 3)?,
        &opt_times(rows, 4)? as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::DmParticipants => {
            sqlx::query!(
        "INSERT INTO dm_participants (channel_id, user_id, is_open, last_read_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::boolean[], $4::timestamptz[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &bools(rows, 2),
        &opt_times(rows, 3)? as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Messages => {
            sqlx::query!(
        "INSERT INTO messages (id, channel_id, author_id, thread_id, content, search_text, created_at, edited_at, deleted_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &ints(rows, 2),
        &opt_ints(rows, 3) as _,
        &texts(rows, 4),
        &texts(rows, 5),
        &times(rows, 6)?,
        &opt_times(rows, 7)? as _,
        &opt_times(rows, 8)? as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Threads => {
            sqlx::query!(
        "INSERT INTO threads (id, channel_id, parent_message_id, creator_id, created_at, reply_count, last_reply_at, last_reply_author_id) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::bigint[], $7::timestamptz[], $8::bigint[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &ints(rows, 2),
        &ints(rows, 3),
        &times(rows, 4)?,
        &ints(rows, 5),
        &opt_times(rows, 6)? as _,
        &opt_ints(rows, 7) as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::ThreadFollowers => {
            sqlx::query!(
        "INSERT INTO thread_followers (thread_id, user_id, followed_at, last_read_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[], $4::timestamptz[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &times(rows, 2)?,
        &opt_times(rows, 3)? as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Reactions => {
            sqlx::query!(
        "INSERT INTO reactions (id, message_id, user_id, emoji, created_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[])",
        &ints(rows, 0),
        &ints(rows, 1),
        &ints(rows, 2),
        &texts(rows, 3),
        &times(rows, 4)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Attachments => {
            sqlx::query!(
        "INSERT INTO attachments (id, message_id, channel_id, uploader_id, content_hash, filename, size_bytes, mime_type, width, height, created_at, deleted_at) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[], $11::timestamptz[], $12::timestamptz[])",
        &ints(rows, 0),
        &opt_ints(rows, 1) as _,
        &ints(rows, 2),
        &ints(rows, 3),
        &texts(rows, 4),
        &texts(rows, 5),
        &ints(rows, 6),
        &texts(rows, 7),
        &opt_ints(rows, 8) as _,
        &opt_ints(rows, 9) as _,
        &times(rows, 10)?,
        &opt_times(rows, 11)? as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::DeviceKeys => {
            sqlx::query!(
        "INSERT INTO device_keys (id, device_pubkey, user_id, device_name, permissions, issued_at, expires_at, certificate, signature, created_at, revoked_at) SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bigint[], $4::text[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::bytea[], $9::bytea[], $10::timestamptz[], $11::timestamptz[])",
        &ints(rows, 0),
        &byteas(rows, 1),
        &ints(rows, 2),
        &texts(rows, 3),
        &ints(rows, 4),
        &times(rows, 5)?,
        &opt_times(rows, 6)? as _,
        &byteas(rows, 7),
        &byteas(rows, 8),
        &times(rows, 9)?,
        &opt_times(rows, 10)? as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Sessions => {
            sqlx::query!(
        "INSERT INTO sessions (id, token_hash, user_id, device_key_id, is_read_only, created_at, expires_at) SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], $5::boolean[], $6::timestamptz[], $7::timestamptz[])",
        &ints(rows, 0),
        &byteas(rows, 1),
        &ints(rows, 2),
        &opt_ints(rows, 3) as _,
        &bools(rows, 4),
        &times(rows, 5)?,
        &times(rows, 6)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::AuthChallenges => {
            sqlx::query!(
        "INSERT INTO auth_challenges (pubkey, nonce, is_bot, created_at, expires_at) SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::boolean[], $4::timestamptz[], $5::timestamptz[])",
        &byteas(rows, 0),
        &byteas(rows, 1),
        &bools(rows, 2),
        &times(rows, 3)?,
        &times(rows, 4)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Bans => {
            sqlx::query!(
        "INSERT INTO bans (pubkey, banned_by, reason, banned_at) SELECT * FROM UNNEST($1::bytea[], $2::bigint[], $3::text[], $4::timestamptz[])",
        &byteas(rows, 0),
        &ints(rows, 1),
        &opt_texts(rows, 2) as _,
        &times(rows, 3)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Allowlist => {
            sqlx::query!(
        "INSERT INTO allowlist (pubkey, added_by, added_at) SELECT * FROM UNNEST($1::bytea[], $2::bigint[], $3::timestamptz[])",
        &byteas(rows, 0),
        &ints(rows, 1),
        &times(rows, 2)?
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::BotApprovals => {
            sqlx::query!(
        "INSERT INTO bot_approvals (user_id, requested_at, approved_by, approved_at, revoked_at, note) SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::text[])",
        &ints(rows, 0),
        &times(rows, 1)?,
        &opt_ints(rows, 2) as _,
        &opt_times(rows, 3)? as _,
        &opt_times(rows, 4)? as _,
        &opt_texts(rows, 5) as _
    )
    .execute(&mut *conn)
    .await?;
        }
        Table::Invites => {
            sqlx::query!(
        "INSERT INTO invites (code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])",
        &texts(rows, 0),
        &ints(rows, 1),
        &opt_ints(rows, 2) as _,
        &ints(rows, 3),
        &ints(rows, 4),
        &opt_times(rows, 5)? as _,
        &times(rows, 6)?
    )
    .execute(&mut *conn)
    .await?;
        }
    }
    Ok(())
}

/// Sets `messages.thread_id` of messages inserted before their thread: `(message id, thread id)`.
pub async fn set_thread_ids(conn: &mut PgConnection, pairs: &[(i64, i64)]) -> Result<(), sqlx::Error> {
    let (messages, threads): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
    sqlx::query!(
        "UPDATE messages SET thread_id = u.thread_id FROM UNNEST($1::bigint[], $2::bigint[]) AS u (id, thread_id)
         WHERE messages.id = u.id",
        &messages,
        &threads
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes the roles (and their permissions) the migrations seed, so the source's own versions
/// of roles 1 and 2 can be copied with their ids. Only ever called on a target that holds
/// nothing else.
pub async fn clear_seeded_roles(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query!("/* pg */ DELETE FROM role_permissions").execute(&mut *tx).await?;
    sqlx::query!("/* pg */ DELETE FROM roles").execute(&mut *tx).await?;
    tx.commit().await
}

/// Refreshes the planner statistics after loading.
pub async fn finish_target(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("/* pg */ ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// The largest id each `BIGSERIAL` sequence has handed out, by table name (sequences never used
/// are left out).
pub async fn id_counters(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"/* pg */ SELECT sequencename AS "name!", last_value AS "last!" FROM pg_sequences
           WHERE schemaname = current_schema() AND last_value IS NOT NULL"#
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.name.strip_suffix("_id_seq").map(|table| (table.to_owned(), r.last)))
        .collect())
}

/// Sets the `id` sequence of `table` so the next id is `value + 1` (or 1 when `value` < 1).
pub async fn raise_id_counter(conn: &mut PgConnection, table: Table, value: i64) -> Result<(), sqlx::Error> {
    let (value, is_called) = if value >= 1 { (value, true) } else { (1, false) };
    sqlx::query!(
        r#"SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3) AS "set!""#,
        table.name(),
        value,
        is_called
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(())
}

/// Whether the database has sqlx's migration table.
pub async fn has_migrations_table(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"/* pg */ SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "exists!""#)
        .fetch_one(&mut *conn)
        .await
}

/// The bookkeeping table that holds, while a load is under way, the definitions of the secondary
/// indexes and foreign keys dropped for it. Created and filled in the transaction that drops
/// them, removed in the one that restores them, so an interrupted run always knows what to
/// restore. It is not part of the schema the query macros are checked against, so the statements
/// on it are plain text (as are the DDL statements built from catalog names and definitions,
/// which no macro can express).
const DEFERRED_TABLE: &str = "_decentcom_migrate_deferred";

/// Drops the target's secondary indexes and foreign keys for the bulk load (unless an interrupted
/// run already did), remembering their definitions; [`restore_indexes`] puts them back. Keeping
/// them would make PostgreSQL maintain every index (the full-text GIN index above all) and check
/// every reference row by row; rebuilding and validating them once at the end is much cheaper.
pub async fn defer_indexes(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if deferred_table_exists(conn).await? {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    let indexes = sqlx::query!(
        r#"/* pg */ SELECT i.indexrelid::regclass::text AS "name!", pg_get_indexdef(i.indexrelid) AS "definition!"
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relname <> '_sqlx_migrations'
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
           ORDER BY 1"#
    )
    .fetch_all(&mut *tx)
    .await?;
    let foreign_keys = sqlx::query!(
        r#"/* pg */ SELECT conrelid::regclass::text AS "table!", quote_ident(conname) AS "name!",
                  pg_get_constraintdef(oid) AS "definition!"
           FROM pg_constraint WHERE contype = 'f' AND connamespace = current_schema()::regnamespace
           ORDER BY conname"#
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {DEFERRED_TABLE} (seq BIGSERIAL PRIMARY KEY, restore TEXT NOT NULL)"
    )))
    .execute(&mut *tx)
    .await?;
    // Restored in this order: indexes first, so that validating the foreign keys can use them.
    let mut restore = Vec::new();
    let mut drop = Vec::new();
    for index in &indexes {
        restore.push(index.definition.clone());
        drop.push(format!("DROP INDEX {}", index.name));
    }
    for key in &foreign_keys {
        restore.push(format!("ALTER TABLE {} ADD CONSTRAINT {} {}", key.table, key.name, key.definition));
        drop.push(format!("ALTER TABLE {} DROP CONSTRAINT {}", key.table, key.name));
    }
    for statement in &restore {
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {DEFERRED_TABLE} (restore) VALUES ($1)")))
            .bind(statement)
            .execute(&mut *tx)
            .await?;
    }
    for statement in drop {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await?;
    }
    tx.commit().await
}

async fn deferred_table_exists(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"/* pg */ SELECT to_regclass('_decentcom_migrate_deferred') IS NOT NULL AS "exists!""#)
        .fetch_one(&mut *conn)
        .await
}

/// Recreates the indexes and foreign keys [`defer_indexes`] dropped (validating every reference)
/// and removes the bookkeeping table, in one transaction. Nothing when none were deferred.
pub async fn restore_indexes(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if !deferred_table_exists(conn).await? {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    let statements: Vec<(String,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT restore FROM {DEFERRED_TABLE} ORDER BY seq")))
            .fetch_all(&mut *tx)
            .await?;
    for (statement,) in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {DEFERRED_TABLE}"))).execute(&mut *tx).await?;
    tx.commit().await
}
