//! The PostgreSQL side of `decentcom migrate`: the source read in one `REPEATABLE READ READ ONLY`
//! transaction (one consistent snapshot), the target written one batch per transaction with a
//! single multi-row `INSERT … SELECT * FROM UNNEST(typed arrays)` per table. Every statement is a
//! checked query macro, spelled out per table. A nullable column binds as `Vec<Option<T>>`
//! (an array with NULLs) through `as _`: the macros' type check knows only the element type.

use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use super::copy::UnderWay;
use super::digest::TableDigest;
use super::tables::{Bound, Kind, Row, Table, Value};
use crate::config::redact_url;
use crate::storage::postgres::classify_connect_error;

mod binary_copy;

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

/// Writes `rows` into `table` (inside the caller's transaction) with one binary `COPY`, the
/// fastest way into PostgreSQL: no statement to plan per batch, and rows go to the heap in bulk.
///
/// `COPY … FROM STDIN` is a protocol mode, not a statement the query macros can check or
/// prepare, so its text is built here; it names only the table and the columns of
/// [`Table::columns`] (checked against the schema by `tests/schema_parity.rs`). The values travel
/// as binary COPY data, never in the statement.
pub async fn insert(conn: &mut PgConnection, table: Table, rows: &[Row]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let data = binary_copy::encode(table, rows)?;
    let columns: Vec<&str> = table.columns().iter().map(|(name, _)| *name).collect();
    let statement = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", table.name(), columns.join(", "));
    let mut copy = conn.copy_in_raw(&statement).await?;
    let mut sent = Ok(());
    for chunk in data.chunks(COPY_CHUNK) {
        if let Err(err) = copy.send(chunk).await {
            sent = Err(err);
            break;
        }
    }
    match sent {
        Ok(()) => copy.finish().await.map(drop),
        Err(err) => {
            // Leaves the connection usable (the transaction rolls back); the send's error is
            // the one that matters.
            let _ = copy.abort(err.to_string()).await;
            Err(err)
        }
    }
}

/// The digest of the whole of `table`, in key order, read with one binary
/// `COPY (SELECT …) TO STDOUT` and hashed as the data arrives: no row is built, which makes
/// reading the target back for the verification much cheaper than a keyset scan of typed rows.
/// Like [`insert`]'s, the statement names only the table and the columns of [`Table::columns`]
/// (no macro can express `COPY`).
pub async fn digest_table(conn: &mut PgConnection, table: Table) -> Result<TableDigest, sqlx::Error> {
    let columns: Vec<&str> = table.columns().iter().map(|(name, _)| *name).collect();
    // Text keys in byte order, as every read of ours orders them.
    let order: Vec<String> = table
        .key_columns()
        .iter()
        .map(|(name, kind)| if *kind == Kind::Text { format!(r#"{name} COLLATE "C""#) } else { (*name).to_owned() })
        .collect();
    let statement = format!(
        "COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)",
        columns.join(", "),
        table.name(),
        order.join(", ")
    );
    let mut digest = TableDigest::default();
    let mut reader = binary_copy::DigestReader::new(table);
    let mut data = conn.copy_out_raw(&statement).await?;
    while let Some(chunk) = data.try_next().await? {
        reader.feed(&chunk, &mut digest)?;
    }
    reader.finish()?;
    Ok(digest)
}

/// Bytes per COPY data message.
const COPY_CHUNK: usize = 1 << 20;

/// Writes a page of messages and the threads whose parent message is among them. The target's
/// foreign keys are deferred for the load (see [`defer_indexes`]), so a reply may name its thread
/// before the thread's row is written.
pub async fn insert_messages(
    conn: &mut PgConnection,
    messages: &mut [Row],
    threads: &[Row],
) -> Result<(), sqlx::Error> {
    insert(conn, Table::Messages, messages).await?;
    insert(conn, Table::Threads, threads).await
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

/// The bookkeeping table that holds, while a load is under way, the work left to finish the
/// target: the definitions of the keys, secondary indexes and foreign keys dropped for the load,
/// and the `ANALYZE` of every table. Created and filled in the transaction that drops them; each
/// row removed in the transaction that does its work, so an interrupted run always knows what is
/// left. It is not part of the schema the query macros are checked against, so the statements on
/// it are plain text (as are the DDL statements built from catalog names and definitions, which
/// no macro can express).
const DEFERRED_TABLE: &str = "_decentcom_migrate_deferred";

/// What a piece of deferred work rebuilds (the bookkeeping table's `kind`).
const KEY: &str = "key";
const INDEX: &str = "index";
const FOREIGN_KEY: &str = "foreign key";
const STATISTICS: &str = "statistics";

/// A piece of deferred work, as the bookkeeping table holds it.
struct Piece<'a> {
    kind: &'static str,
    table: &'a str,
    /// A foreign key's referenced table.
    refers_to: Option<&'a str>,
    /// A foreign key on a cycle of references (see [`restore_next`]).
    on_cycle: bool,
    work: String,
    /// A second step, done in a transaction of its own after `work`.
    then_work: Option<String>,
}

impl<'a> Piece<'a> {
    fn new(kind: &'static str, table: &'a str, work: String) -> Piece<'a> {
        Piece { kind, table, refers_to: None, on_cycle: false, work, then_work: None }
    }
}

/// Drops the target's keys (primary and unique), secondary indexes and foreign keys for the bulk
/// load (unless an interrupted run already did), remembering their definitions; [`restore_keys`]
/// and [`restore_next`] put them back. Keeping them would make PostgreSQL maintain every index
/// (the full-text GIN index above all, and a key is an index too) and check every reference row
/// by row, each with its own WAL record; building and validating them once per table is much
/// cheaper. Each table is analysed once loaded too: autovacuum would do it only later, or never
/// where it is turned off, and the server's queries need the planner statistics.
pub async fn defer_indexes(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if deferred_table_exists(conn).await? {
        return Ok(());
    }
    // Only the copied tables' (others, such as the event bus's, stay empty and keep theirs).
    let copied: Vec<String> = Table::ALL.iter().map(|t| t.name().to_owned()).collect();
    let mut tx = conn.begin().await?;
    let indexes = sqlx::query!(
        r#"/* pg */ SELECT i.indexrelid::regclass::text AS "name!", c.relname::text AS "table!",
                  pg_get_indexdef(i.indexrelid) AS "definition!"
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relname::text = ANY($1)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
           ORDER BY 1"#,
        &copied
    )
    .fetch_all(&mut *tx)
    .await?;
    // Keys and foreign keys; `refers_to` is a foreign key's referenced table.
    let constraints = sqlx::query!(
        r#"/* pg */ SELECT conrelid::regclass::text AS "qualified!", quote_ident(conname) AS "name!",
                  k.contype = 'f' AS "is_foreign!", t.relname::text AS "table!", r.relname::text AS refers_to,
                  pg_get_constraintdef(k.oid) AS "definition!"
           FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid LEFT JOIN pg_class r ON r.oid = k.confrelid
           WHERE k.contype IN ('f', 'p', 'u') AND k.connamespace = current_schema()::regnamespace
             AND t.relname::text = ANY($1)
           ORDER BY k.contype <> 'f', conname"#,
        &copied
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {DEFERRED_TABLE} (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, table_name TEXT NOT NULL, \
         refers_to TEXT, on_cycle BOOLEAN NOT NULL, work TEXT NOT NULL, then_work TEXT)"
    )))
    .execute(&mut *tx)
    .await?;
    // Rebuilt in this order: keys (which foreign keys need), then indexes, then foreign keys, then
    // statistics.
    let mut pieces = Vec::new();
    let mut drop = Vec::new();
    let references: Vec<(&str, &str)> =
        constraints.iter().filter_map(|k| Some((k.table.as_str(), k.refers_to.as_deref()?))).collect();
    for key in constraints.iter().filter(|k| !k.is_foreign) {
        let work = format!("ALTER TABLE {} ADD CONSTRAINT {} {}", key.qualified, key.name, key.definition);
        pieces.push(Piece::new(KEY, &key.table, work));
    }
    for index in &indexes {
        pieces.push(Piece::new(INDEX, &index.table, index.definition.clone()));
    }
    // Dropped first: a foreign key needs the key it refers to.
    for key in constraints.iter() {
        drop.push(format!("ALTER TABLE {} DROP CONSTRAINT {}", key.qualified, key.name));
        let Some(refers_to) = key.refers_to.as_deref().filter(|_| key.is_foreign) else { continue };
        // In two steps: adding the key unchecked locks both tables (`SHARE ROW EXCLUSIVE`) only
        // for a moment; the check that follows, the long part, locks only its own table against
        // other checks (`SHARE UPDATE EXCLUSIVE`), so the keys of the tables it refers to, or
        // that refer to it, are checked meanwhile.
        let work = format!("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID", key.qualified, key.name, key.definition);
        pieces.push(Piece {
            refers_to: Some(refers_to),
            on_cycle: key.table != refers_to && reaches(&references, refers_to, &key.table),
            then_work: Some(format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", key.qualified, key.name)),
            ..Piece::new(FOREIGN_KEY, &key.table, work)
        });
    }
    drop.extend(indexes.iter().map(|index| format!("DROP INDEX {}", index.name)));
    for table in &copied {
        pieces.push(Piece::new(STATISTICS, table, format!("ANALYZE {table}")));
    }
    for piece in &pieces {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {DEFERRED_TABLE} (kind, table_name, refers_to, on_cycle, work, then_work) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )))
        .bind(piece.kind)
        .bind(piece.table)
        .bind(piece.refers_to)
        .bind(piece.on_cycle)
        .bind(&piece.work)
        .bind(&piece.then_work)
        .execute(&mut *tx)
        .await?;
    }
    for statement in drop {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// How many steps of deferred work are left (none when nothing is deferred).
pub async fn deferred_work(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    if !deferred_table_exists(conn).await? {
        return Ok(0);
    }
    let n: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) + COUNT(then_work) FROM {DEFERRED_TABLE}")))
            .fetch_one(&mut *conn)
            .await?;
    Ok(n as u64)
}

async fn deferred_table_exists(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"/* pg */ SELECT to_regclass('_decentcom_migrate_deferred') IS NOT NULL AS "exists!""#)
        .fetch_one(&mut *conn)
        .await
}

/// Whether `to` can be reached from `from` by following `references` (table → referenced table).
fn reaches(references: &[(&str, &str)], from: &str, to: &str) -> bool {
    let mut seen = vec![from];
    let mut next = vec![from];
    while let Some(table) = next.pop() {
        for &(child, parent) in references {
            if child == table && !seen.contains(&parent) {
                if parent == to {
                    return true;
                }
                seen.push(parent);
                next.push(parent);
            }
        }
    }
    false
}

/// Rebuilds the keys of `tables` (primary and unique, checking that no value repeats): what
/// reading a table in key order needs, and what its foreign keys and those referring to it need.
/// A key that another connection is rebuilding ([`restore_next`] takes keys too) is waited for.
/// Returns how many it rebuilt itself.
pub async fn restore_keys(conn: &mut PgConnection, tables: &[&str]) -> Result<u64, sqlx::Error> {
    let mut done = 0;
    while restore_one(conn, tables, Pieces::Keys).await? {
        done += 1;
    }
    Ok(done)
}

/// Does the next step of deferred work that involves only `complete` tables: their keys first
/// (the verifier waits for them), then their indexes, foreign keys (once the key they refer to
/// is back; added unchecked, then checked) and statistics. Several connections do this at once:
/// each takes the next piece nobody holds (`SKIP LOCKED`). Returns whether there was one.
///
/// Adding a foreign key locks its table, then the table it refers to, until it commits; two
/// connections adding keys that refer to each other's tables (`messages` and `threads`) would
/// deadlock. Such keys, those on a cycle of references, are left to the one connection called
/// with `takes_cycles`; any wait among the others ends (a cycle of waits needs a cycle of
/// references).
pub async fn restore_next(
    conn: &mut PgConnection,
    complete: &[&str],
    takes_cycles: bool,
    under_way: &UnderWay,
) -> Result<bool, sqlx::Error> {
    restore_one(conn, complete, Pieces::Ready { takes_cycles, under_way }).await
}

/// Which pieces of deferred work [`restore_one`] takes a step of.
#[derive(Clone, Copy)]
enum Pieces<'a> {
    /// The tables' keys, waiting for any that another connection is rebuilding.
    Keys,
    /// Whatever is ready and nobody holds, keys first, then preferably on tables no other step
    /// `under_way` locks; foreign keys on a cycle of references only with `takes_cycles`.
    Ready { takes_cycles: bool, under_way: &'a UnderWay },
}

/// The next step of a piece of deferred work, as [`restore_one`] reads it.
#[derive(sqlx::FromRow)]
struct Step {
    seq: i64,
    work: String,
    then_work: Option<String>,
    table_name: String,
    refers_to: Option<String>,
}

/// Does one step of deferred work of `pieces` on `tables`, in one transaction with the update of
/// its bookkeeping row (the piece's second step put in the first's place, or the row removed),
/// so a run killed half-way knows exactly what is left. Returns whether there was one.
async fn restore_one(conn: &mut PgConnection, tables: &[&str], pieces: Pieces<'_>) -> Result<bool, sqlx::Error> {
    if !deferred_table_exists(conn).await? {
        return Ok(false);
    }
    let (keys_only, takes_cycles, wait, under_way) = match pieces {
        Pieces::Keys => (true, false, "", None),
        Pieces::Ready { takes_cycles, under_way } => (false, takes_cycles, "SKIP LOCKED", Some(under_way)),
    };
    let busy = under_way.map(UnderWay::tables).unwrap_or_default();
    let mut tx = conn.begin().await?;
    // A foreign key also needs the key it refers to; a piece another connection is doing is
    // still there (its removal is not committed), so this holds until it is done.
    let next: Option<Step> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT seq, work, then_work, table_name, refers_to FROM {DEFERRED_TABLE} d
         WHERE d.table_name = ANY($1) AND (d.kind = '{KEY}' OR NOT $3)
           AND (d.refers_to IS NULL OR (d.refers_to = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM {DEFERRED_TABLE} k WHERE k.kind = '{KEY}' AND k.table_name = d.refers_to)))
           AND (NOT d.on_cycle OR $2)
         ORDER BY d.kind <> '{KEY}',
                  d.table_name = ANY($4) OR (d.then_work IS NOT NULL AND d.refers_to = ANY($4)), d.seq
         LIMIT 1 FOR UPDATE OF d {wait}"
    )))
    .bind(tables)
    .bind(takes_cycles)
    .bind(keys_only)
    .bind(&busy)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(Step { seq, work, then_work, table_name, refers_to }) = next else {
        // Ended explicitly: a transaction merely dropped is rolled back only when the connection
        // is next used, and until then its lock on the bookkeeping table would keep the final
        // `DROP TABLE` waiting.
        tx.rollback().await?;
        return Ok(false);
    };
    // Adding a foreign key locks the table it refers to as well; checking it hardly does.
    let locks = [Some(table_name), refers_to.filter(|_| then_work.is_some())].into_iter().flatten().collect();
    let _marked = under_way.map(|u| u.mark(locks));
    sqlx::raw_sql(sqlx::AssertSqlSafe(work)).execute(&mut *tx).await?;
    match then_work {
        // The second step (checking a foreign key) locks nothing another one would wait for in
        // a cycle: anyone may take it.
        Some(then_work) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {DEFERRED_TABLE} SET work = $2, then_work = NULL, on_cycle = false WHERE seq = $1"
        )))
        .bind(seq)
        .bind(then_work),
        None => sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {DEFERRED_TABLE} WHERE seq = $1"))).bind(seq),
    }
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Does whatever deferred work is left (see [`restore_keys`], [`restore_next`]), checking every
/// key and reference, then removes the bookkeeping table. Nothing when nothing was deferred.
pub async fn restore_indexes(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let all: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    restore_keys(conn, &all).await?;
    while restore_next(conn, &all, true, &UnderWay::default()).await? {}
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {DEFERRED_TABLE}"))).execute(&mut *conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reaches;

    #[test]
    fn only_keys_on_a_cycle_of_references_reach_back_to_their_table() {
        let references =
            [("messages", "threads"), ("threads", "messages"), ("messages", "users"), ("reactions", "messages")];
        assert!(reaches(&references, "threads", "messages"), "messages → threads → messages");
        assert!(!reaches(&references, "users", "messages"), "users refer to nothing");
        assert!(!reaches(&references, "messages", "reactions"), "nothing refers back to reactions");
    }
}
