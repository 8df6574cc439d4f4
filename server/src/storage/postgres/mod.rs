//! The PostgreSQL backend. Every statement goes through the compile-time checked query macros;
//! statements without bind parameters start with `/* pg */` so that their offline-cache key never
//! collides with a SQLite statement of the same text.
//!
//! One module per domain holds that domain's `impl XStore for PostgresBackend`; the loaders shared
//! by several domains (users, members with roles, roles with permissions, messages with their
//! attachments, reactions and thread summaries) live in [`load`].

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::schema::{self, Column, ColumnType, ForeignKey, Index, SchemaSnapshot, Table};
use super::{Conflict, OpenError, PoolSettings, RoleId, Storage, StorageError, StorageResult, UserId};

mod channels;
mod devices;
mod dms;
mod invites;
mod load;
mod media;
mod members;
mod messages;
mod reactions;
mod roles;
mod sessions;
mod threads;
mod users;

/// The PostgreSQL implementation of [`Storage`].
#[derive(Clone, Debug)]
pub struct PostgresBackend {
    pool: PgPool,
}

/// Advisory-lock keys (transaction scoped). Arbitrary constants, distinct per purpose. (The event
/// bus's `bus_append()`, migration 0003, holds 7221634985004335109 to its commit.)
const LOCK_FIRST_USER: i64 = 0x6465_6365_6e74_0001;
const LOCK_DEFAULT_CHANNEL: i64 = 0x6465_6365_6e74_0002;
/// Namespace mixed into the per-(message, user) reaction lock key.
const LOCK_REACTION_NS: i64 = 0x6465_6365_6e74_0003;
/// Taken by every change that may take @admin from a member, so that two of them (two admins
/// removing each other) cannot each see the other one stay.
const LOCK_ADMINS: i64 = 0x6465_6365_6e74_0004;

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Longest wait for the first connection at startup (the pool's acquire timeout if shorter), so
/// that an unreachable host is reported quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl PostgresBackend {
    /// Connects, classifies connection failures for the operator, runs the embedded migrations
    /// and builds the pool. No error message ever contains the password.
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<PostgresBackend, OpenError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|_| OpenError::Other("storage.database_url is not a valid PostgreSQL URL".to_owned()))?;
        if let Some(timeout) = settings.statement_timeout {
            options = options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }

        // One connection first, with a bounded wait, so the common failures are reported
        // precisely and quickly (a pool would only say "timed out").
        let probe_timeout = settings.acquire_timeout.min(PROBE_TIMEOUT).max(Duration::from_millis(100));
        let mut conn = match tokio::time::timeout(probe_timeout, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return Err(classify_connect_error(&options, err)),
            Err(_) => {
                return Err(OpenError::Unreachable {
                    host: options.get_host().to_owned(),
                    port: options.get_port(),
                    reason: format!("no answer within {} ms", probe_timeout.as_millis()),
                });
            }
        };

        let migrated = sqlx::migrate!("../migrations/postgres").run(&mut conn).await;
        // The probe connection is not needed any more; a failure to close it cleanly is harmless.
        let _ = conn.close().await;
        migrated.map_err(|err| match err {
            sqlx::migrate::MigrateError::VersionMissing(version) => OpenError::NewerSchema { version },
            other => OpenError::Migration(other.to_string()),
        })?;

        let pool = PgPoolOptions::new()
            // A ping before every checkout doubled the round trips of each storage call. Only a
            // connection that sat idle for a while (when a server restart or a dropped link
            // goes unnoticed) is pinged; a busy one proves itself alive with its last statement.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(settings.idle_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|err| classify_connect_error(&options, err))?;
        Ok(PostgresBackend { pool })
    }

    /// The live schema of `public` (without `_sqlx_migrations`; foreign keys once validated), for
    /// the schema parity test.
    pub async fn schema_snapshot(&self) -> StorageResult<SchemaSnapshot> {
        let mut snapshot = SchemaSnapshot::default();

        let columns = sqlx::query!(
            r#"/* pg */
            SELECT c.relname::text AS "table_name!", a.attname::text AS "column_name!",
                   t.typname::text AS "type_name!", NOT a.attnotnull AS "nullable!"
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0
              AND NOT a.attisdropped AND c.relname <> '_sqlx_migrations'
            ORDER BY c.relname, a.attnum"#
        )
        .fetch_all(&self.pool)
        .await?;
        for c in columns {
            let ty = match c.type_name.as_str() {
                "int8" | "int4" | "int2" => ColumnType::Integer,
                "text" | "varchar" => ColumnType::Text,
                "bytea" => ColumnType::Bytes,
                "bool" => ColumnType::Bool,
                "timestamptz" => ColumnType::Timestamp,
                other => ColumnType::Other(other.to_owned()),
            };
            let table: &mut Table = snapshot.tables.entry(c.table_name).or_default();
            table.columns.insert(c.column_name, Column { ty, nullable: c.nullable });
        }

        let indexes = sqlx::query!(
            r#"/* pg */
            SELECT c.relname::text AS "table_name!",
                   ARRAY(SELECT a.attname::text
                         FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS "columns!: Vec<String>",
                   i.indisunique AS "is_unique!", i.indisprimary AS "is_primary!",
                   i.indpred IS NOT NULL AS "partial!"
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations'"#
        )
        .fetch_all(&self.pool)
        .await?;
        for i in indexes {
            let Some(table) = snapshot.tables.get_mut(&i.table_name) else {
                continue;
            };
            if i.is_primary {
                table.primary_key = i.columns.clone();
            }
            table.indexes.insert(Index { columns: i.columns, unique: i.is_unique, partial: i.partial });
        }

        let foreign_keys = sqlx::query!(
            r#"/* pg */
            SELECT c.relname::text AS "table_name!", r.relname::text AS "references_table!",
                   ARRAY(SELECT a.attname::text
                         FROM unnest(k.conkey) WITH ORDINALITY AS x(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.attnum
                         ORDER BY x.ord) AS "columns!: Vec<String>",
                   ARRAY(SELECT a.attname::text
                         FROM unnest(k.confkey) WITH ORDINALITY AS x(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.attnum
                         ORDER BY x.ord) AS "references_columns!: Vec<String>",
                   k.confdeltype::text AS "on_delete!"
            FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid
            JOIN pg_class r ON r.oid = k.confrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND k.contype = 'f' AND c.relname <> '_sqlx_migrations'
              -- a key added NOT VALID does not vouch for the rows already there
              AND k.convalidated"#
        )
        .fetch_all(&self.pool)
        .await?;
        for f in foreign_keys {
            let Some(table) = snapshot.tables.get_mut(&f.table_name) else {
                continue;
            };
            table.foreign_keys.insert(ForeignKey {
                columns: f.columns,
                references_table: f.references_table,
                references_columns: f.references_columns,
                on_delete: schema::normalise_on_delete(&f.on_delete),
            });
        }

        Ok(snapshot)
    }
}

/// Maps a connection error to the operator-facing [`OpenError`] (never with the password: only
/// host, port, user and database name are shown).
pub(crate) fn classify_connect_error(options: &PgConnectOptions, err: sqlx::Error) -> OpenError {
    let host = options.get_host().to_owned();
    let port = options.get_port();
    match &err {
        sqlx::Error::Io(io) => {
            return OpenError::Unreachable { host, port, reason: io.to_string() };
        }
        sqlx::Error::Tls(tls) => {
            return OpenError::Unreachable { host, port, reason: format!("TLS: {tls}") };
        }
        // Something answered, but not as a PostgreSQL server (a proxy, another service).
        sqlx::Error::Protocol(detail) => {
            return OpenError::Unreachable { host, port, reason: format!("not a PostgreSQL server: {detail}") };
        }
        sqlx::Error::PoolTimedOut => {
            return OpenError::Unreachable { host, port, reason: "timed out waiting for a connection".to_owned() };
        }
        _ => {}
    }
    if let Some(db) = err.as_database_error() {
        match db.code().as_deref() {
            Some("28P01") | Some("28000") => {
                return OpenError::AuthenticationFailed { user: options.get_username().to_owned() };
            }
            Some("3D000") => {
                let name = options.get_database().unwrap_or(options.get_username()).to_owned();
                return OpenError::DatabaseMissing { name };
            }
            _ => return OpenError::Other(db.message().to_owned()),
        }
    }
    OpenError::Other(err.to_string())
}

#[async_trait]
impl Storage for PostgresBackend {
    async fn ping(&self) -> StorageResult<()> {
        sqlx::query_scalar!(r#"/* pg */ SELECT 1 AS "one!""#).fetch_one(&self.pool).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }
}

/// Conflict(LastAdmin) when `user` is the only member holding @admin (api.md §5.4: the server
/// always keeps one). Takes [`LOCK_ADMINS`] until the caller's transaction ends.
async fn keep_an_admin(conn: &mut PgConnection, user: UserId) -> StorageResult<()> {
    advisory_xact_lock(conn, LOCK_ADMINS).await?;
    let last = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM member_roles WHERE user_id = $1 AND role_id = $2)
              AND NOT EXISTS (SELECT 1 FROM member_roles WHERE role_id = $2 AND user_id <> $1) AS "last!""#,
        user.0,
        RoleId::ADMIN.0
    )
    .fetch_one(&mut *conn)
    .await?;
    if last { Err(StorageError::Conflict(Conflict::LastAdmin)) } else { Ok(()) }
}

/// Takes a transaction-scoped advisory lock.
async fn advisory_xact_lock(conn: &mut PgConnection, key: i64) -> StorageResult<()> {
    sqlx::query!("SELECT 1 AS \"locked!\" FROM pg_advisory_xact_lock($1)", key).fetch_one(&mut *conn).await?;
    Ok(())
}
