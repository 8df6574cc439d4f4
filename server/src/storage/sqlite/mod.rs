//! The SQLite backend: one file, WAL journal, foreign keys on, every statement checked at compile
//! time by the sqlx macros against a scratch database built from `migrations/sqlite`.
//!
//! Conventions of this module:
//! - timestamps are bound as `Timestamp::as_micros()` and read through `"x: Timestamp"` overrides;
//! - lists of ids are bound as a JSON array and read with `IN (SELECT value FROM json_each(?))`;
//! - a statement without bind parameters starts with `/* sqlite */` (its text must never equal a
//!   PostgreSQL statement: both live in one offline cache keyed by the hash of the SQL);
//! - every transaction that reads and then writes starts with `BEGIN IMMEDIATE`, so concurrent
//!   writers queue on the busy timeout instead of failing with SQLITE_BUSY on lock upgrade.

mod channels;
mod devices;
mod dms;
mod invites;
mod media;
mod members;
mod messages;
mod reactions;
mod roles;
mod rows;
mod sessions;
mod threads;
mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::MigrateError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::schema::{self, Column, ColumnType, ForeignKey, Index, SchemaSnapshot, Table};
use super::{OpenError, PoolSettings, Storage, StorageResult};

/// The statement that starts every read-then-write transaction.
/// A write transaction takes the write lock at its start, so it never has to upgrade a read lock
/// (which fails with SQLITE_BUSY under concurrency instead of waiting).
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// A write transaction of this process. SQLite has one writer at a time; writers of one process
/// queue on an async FIFO lock before `BEGIN IMMEDIATE` instead of spinning in SQLite's busy
/// handler, whose growing sleeps (up to 100 ms each) made tail latency under load seconds long.
/// Other processes on the same file still wait through `busy_timeout`.
pub(super) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _writer: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
}

pub struct SqliteBackend {
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqliteBackend {
    /// Starts a write transaction, queueing behind this process's other writers.
    pub(super) async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let writer = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        Ok(WriteTx { tx, _writer: writer })
    }

    /// Opens (creating it and its directory if missing) the database file at `path` and runs the
    /// embedded migrations.
    pub async fn open(path: &Path, settings: &PoolSettings) -> Result<SqliteBackend, OpenError> {
        let sqlite_error = |reason: String| OpenError::Sqlite { path: path.display().to_string(), reason };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| sqlite_error(e.to_string()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            // An in-process connection does not drop like a network link: no ping (one more trip
            // to the connection's worker thread) before every checkout.
            .test_before_acquire(false)
            .max_connections(settings.max_connections.max(1))
            .min_connections(settings.min_connections)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(settings.idle_timeout)
            .connect_with(options)
            .await
            .map_err(|e| sqlite_error(e.to_string()))?;
        // Two processes starting on a fresh file can race to apply the same migration; the loser
        // fails on the tables the winner created. A second run then sees them applied.
        let migrator = sqlx::migrate!("../migrations/sqlite");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(MigrateError::VersionMissing(version)) => {
                    return Err(OpenError::NewerSchema { version });
                }
                Err(_) if attempt < 2 => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(other) => return Err(OpenError::Migration(other.to_string())),
            }
        }
        Ok(SqliteBackend { pool, writer: Default::default() })
    }

    /// The live schema, normalised for comparison with the PostgreSQL one.
    pub async fn schema_snapshot(&self) -> StorageResult<SchemaSnapshot> {
        let mut conn = self.pool.acquire().await?;
        let names = sqlx::query_scalar!(
            r#"/* sqlite */ SELECT name AS "name!: String" FROM sqlite_master
               WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
                 AND name <> '_sqlx_migrations' AND name NOT LIKE 'messages\_fts%' ESCAPE '\'
               ORDER BY name"#
        )
        .fetch_all(&mut *conn)
        .await?;

        let mut snapshot = SchemaSnapshot::default();
        for name in names {
            let mut table = Table::default();

            // The pragma table-valued functions are runtime queries: the query macros cannot
            // describe them ("no such table column"), so these four are the only unchecked SQL.
            let columns: Vec<(String, String, i64, i64)> =
                sqlx::query_as(r#"SELECT name, type, "notnull", pk FROM pragma_table_info(?1) ORDER BY cid"#)
                    .bind(&name)
                    .fetch_all(&mut *conn)
                    .await?;
            let mut pk: Vec<(i64, String)> = Vec::new();
            for (column, declared_type, notnull, pk_position) in columns {
                let declared = declared_type.trim().to_ascii_uppercase();
                let ty = match declared.as_str() {
                    "INTEGER" if column.ends_with("_at") => ColumnType::Timestamp,
                    "INTEGER" => ColumnType::Integer,
                    "TEXT" => ColumnType::Text,
                    "BLOB" => ColumnType::Bytes,
                    "BOOLEAN" => ColumnType::Bool,
                    _ => ColumnType::Other(declared_type.clone()),
                };
                // Primary-key columns are never NULL in practice (PostgreSQL reports them NOT
                // NULL); SQLite only says so for columns declared NOT NULL.
                let nullable = notnull == 0 && pk_position == 0;
                if pk_position > 0 {
                    pk.push((pk_position, column.clone()));
                }
                table.columns.insert(column, Column { ty, nullable });
            }
            pk.sort();
            table.primary_key = pk.into_iter().map(|(_, n)| n).collect();
            if !table.primary_key.is_empty() {
                table.indexes.insert(Index { columns: table.primary_key.clone(), unique: true, partial: false });
            }

            let fks: Vec<(i64, String, String, Option<String>, String)> = sqlx::query_as(
                r#"SELECT id, "table", "from", "to", on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq"#,
            )
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?;
            let mut grouped: BTreeMap<i64, ForeignKey> = BTreeMap::new();
            for (id, references_table, from_column, to_column, on_delete) in fks {
                let entry = grouped.entry(id).or_insert_with(|| ForeignKey {
                    columns: Vec::new(),
                    references_table,
                    references_columns: Vec::new(),
                    on_delete: schema::normalise_on_delete(&on_delete),
                });
                entry.columns.push(from_column);
                entry.references_columns.push(to_column.unwrap_or_default());
            }
            table.foreign_keys = grouped.into_values().collect();

            let indexes: Vec<(String, bool, bool)> =
                sqlx::query_as(r#"SELECT name, "unique", partial FROM pragma_index_list(?1)"#)
                    .bind(&name)
                    .fetch_all(&mut *conn)
                    .await?;
            for (index, unique, partial) in indexes {
                let columns: Vec<String> =
                    sqlx::query_scalar(r#"SELECT name FROM pragma_index_info(?1) ORDER BY seqno"#)
                        .bind(&index)
                        .fetch_all(&mut *conn)
                        .await?;
                table.indexes.insert(Index { columns, unique, partial });
            }

            snapshot.tables.insert(name, table);
        }
        Ok(snapshot)
    }
}

#[async_trait]
impl Storage for SqliteBackend {
    async fn ping(&self) -> StorageResult<()> {
        sqlx::query_scalar!(r#"/* sqlite */ SELECT 1 AS "one!: i64""#).fetch_one(&self.pool).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests;

/// Conflict(LastAdmin) when `user` is the only member holding @admin (api.md §5.4: the server
/// always keeps one). Write transactions are serialised, so the answer holds until commit.
async fn keep_an_admin(conn: &mut sqlx::SqliteConnection, user: super::UserId) -> StorageResult<()> {
    let admin = super::RoleId::ADMIN;
    let last = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM member_roles WHERE user_id = ?1 AND role_id = ?2)
              AND NOT EXISTS (SELECT 1 FROM member_roles WHERE role_id = ?2 AND user_id <> ?1) AS "last!: bool""#,
        user,
        admin
    )
    .fetch_one(&mut *conn)
    .await?;
    if last { Err(super::StorageError::Conflict(super::Conflict::LastAdmin)) } else { Ok(()) }
}
