//! `decentcom migrate`: copies a server's database between SQLite and PostgreSQL (either way),
//! with its media blobs when the two sides use different media stores, and proves the copy
//! lossless by comparing per-table row counts and content digests of both sides.
//!
//! - [`tables`]: the tables in copy order and the canonical row both dialects are read into;
//! - [`copy`]: the copy, with the reading back and the index rebuilds running alongside it;
//! - `sqlite` / `postgres`: each dialect's statements (source snapshot, batched target writes);
//! - [`digest`]: per-table content digests;
//! - [`media`]: blob copy between stores, hash-checked;
//! - [`progress`]: progress bars and the printed tables;
//! - [`synthetic`]: generated databases for the tests and the benchmark.
//!
//! Safety: the source is opened read-only and read in one snapshot transaction; the target is
//! written one batch per transaction, so a killed run leaves whole batches only, and `--resume`
//! continues after the target's last row of each table once it has checked that what the target
//! holds is exactly the start of the source (same rows, same content).

mod copy;
pub mod digest;
pub mod media;
pub mod progress;
// Generated SQLite databases: needs the SQLite writer.
#[cfg(feature = "sqlite")]
#[doc(hidden)]
pub mod synthetic;
pub mod tables;
pub mod unstorable;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeMap;

use eyre::WrapErr;

use crate::config::{Backend, Config};
use copy::UnderWay;
use digest::{Summary, TableDigest};
use progress::{Progress, render_table};
use tables::{Bound, Row, Table};
use unstorable::{NulText, Unstorable};

/// Exit codes of `decentcom migrate` (also listed in its `--help`).
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_MISMATCH: u8 = 3;
pub const EXIT_TARGET_REFUSED: u8 = 4;
pub const EXIT_MISSING_MEDIA: u8 = 5;
pub const EXIT_UNSTORABLE: u8 = 6;

/// Rows per target transaction unless `--batch-size` says otherwise. Measured on a 1M-message
/// community: PostgreSQL loads fastest from 50 000 rows per batch up (10 000: 1.7× slower). For
/// SQLite no larger batch has been shown to help yet (measurements on a shared machine varied
/// too much), so it keeps 10 000.
pub fn default_batch_size(target: Backend) -> usize {
    match target {
        Backend::Postgres => 50_000,
        Backend::Sqlite => 10_000,
    }
}

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub from: Backend,
    pub to: Backend,
    pub dry_run: bool,
    pub batch_size: usize,
    pub resume: bool,
    pub verify_only: bool,
    pub allow_missing_media: bool,
    pub quiet: bool,
    /// What to do with text holding U+0000 (SQLite → PostgreSQL).
    pub nul_text: NulText,
}

/// Why a migration did not succeed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Usage(String),
    #[error("verification failed: {} differ between source and target", .0.join(", "))]
    Mismatch(Vec<String>),
    #[error("{0}")]
    TargetRefused(String),
    #[error(
        "{} media blob(s) are missing from the source store: {} (re-run with --allow-missing-media to copy without them)",
        .0.len(), .0.join(", ")
    )]
    MissingMedia(Vec<String>),
    /// Values the target cannot store (listed in the message).
    #[error("{0}")]
    Unstorable(String),
    #[error(transparent)]
    Failed(#[from] eyre::Report),
}

impl From<sqlx::Error> for MigrateError {
    fn from(err: sqlx::Error) -> MigrateError {
        MigrateError::Failed(err.into())
    }
}

impl MigrateError {
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::Usage(_) => EXIT_USAGE,
            MigrateError::Mismatch(_) => EXIT_MISMATCH,
            MigrateError::TargetRefused(_) => EXIT_TARGET_REFUSED,
            MigrateError::MissingMedia(_) => EXIT_MISSING_MEDIA,
            MigrateError::Unstorable(_) => EXIT_UNSTORABLE,
            MigrateError::Failed(_) => EXIT_ERROR,
        }
    }
}

type Result<T, E = MigrateError> = std::result::Result<T, E>;

/// One side of the migration: the source's snapshot or the target's connection.
enum Db {
    /// The source, and whether text read from it has its U+0000 replaced.
    #[cfg(feature = "sqlite")]
    SqliteSource(sqlite::Snapshot, NulText),
    #[cfg(feature = "sqlite")]
    SqliteTarget(sqlx::SqliteConnection),
    #[cfg(feature = "postgres")]
    PgSource(postgres::Snapshot),
    #[cfg(feature = "postgres")]
    PgTarget(sqlx::PgConnection),
}

/// Runs `$body` with `$c` bound to the side's connection, in the module `$m` of its dialect.
macro_rules! on {
    ($db:expr, |$c:ident, $m:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            Db::SqliteSource(tx, _) => {
                let $c: &mut sqlx::SqliteConnection = &mut *tx;
                #[allow(unused_imports)]
                use sqlite as $m;
                $body
            }
            #[cfg(feature = "sqlite")]
            Db::SqliteTarget(conn) => {
                let $c: &mut sqlx::SqliteConnection = conn;
                #[allow(unused_imports)]
                use sqlite as $m;
                $body
            }
            #[cfg(feature = "postgres")]
            Db::PgSource(tx) => {
                let $c: &mut sqlx::PgConnection = &mut *tx;
                #[allow(unused_imports)]
                use postgres as $m;
                $body
            }
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => {
                let $c: &mut sqlx::PgConnection = conn;
                #[allow(unused_imports)]
                use postgres as $m;
                $body
            }
        }
    };
}

/// Runs `$body` inside a transaction of the target's connection, then commits it once `$turn`
/// (a future) resolves to true; on false, rolls it back and makes the enclosing block return
/// `Ok(false)`.
macro_rules! in_transaction {
    ($db:expr, $turn:expr, |$c:ident, $m:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            Db::SqliteTarget(conn) => {
                use sqlx::Connection as _;
                let mut tx = conn.begin().await?;
                {
                    let $c: &mut sqlx::SqliteConnection = &mut *tx;
                    use sqlite as $m;
                    $body
                }
                if !$turn.await {
                    return Ok(false);
                }
                tx.commit().await?;
            }
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => {
                use sqlx::Connection as _;
                let mut tx = conn.begin().await?;
                {
                    let $c: &mut sqlx::PgConnection = &mut *tx;
                    use postgres as $m;
                    $body
                }
                if !$turn.await {
                    return Ok(false);
                }
                tx.commit().await?;
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("only a target is written"),
        }
    };
}

impl Db {
    fn describe(config: &Config, backend: Backend) -> String {
        match backend {
            Backend::Sqlite => format!("SQLite {}", config.storage.database_path.display()),
            Backend::Postgres => {
                format!(
                    "PostgreSQL {}",
                    crate::config::redact_url(config.storage.database_url.as_deref().unwrap_or(""))
                )
            }
        }
    }

    /// Opens one side; `nul_text` applies to a SQLite source (the only side that can hold NUL).
    async fn open(config: &Config, backend: Backend, as_source: bool, nul_text: NulText) -> Result<Db> {
        let storage = &config.storage;
        #[cfg(not(feature = "sqlite"))]
        let _ = nul_text;
        match (backend, as_source) {
            #[cfg(feature = "sqlite")]
            (Backend::Sqlite, true) => {
                Ok(Db::SqliteSource(sqlite::open_source(&storage.database_path).await?, nul_text))
            }
            #[cfg(feature = "sqlite")]
            (Backend::Sqlite, false) => Ok(Db::SqliteTarget(sqlite::open_target(&storage.database_path).await?)),
            #[cfg(feature = "postgres")]
            (Backend::Postgres, true) => {
                Ok(Db::PgSource(postgres::open_source(storage.database_url.as_deref().unwrap_or("")).await?))
            }
            #[cfg(feature = "postgres")]
            (Backend::Postgres, false) => {
                Ok(Db::PgTarget(postgres::open_target(storage.database_url.as_deref().unwrap_or("")).await?))
            }
            #[allow(unreachable_patterns)]
            (other, _) => {
                Err(MigrateError::Usage(format!("this build of decentcom has no {} backend", other.as_str())))
            }
        }
    }

    async fn count(&mut self, table: Table) -> Result<u64> {
        let n = on!(self, |c, m| m::count(c, table).await).wrap_err_with(|| format!("counting {}", table.name()))?;
        Ok(n as u64)
    }

    async fn page(&mut self, table: Table, bound: &Bound, limit: usize) -> Result<Vec<Row>> {
        #[allow(unused_mut)]
        let mut rows = on!(self, |c, m| m::page(c, table, bound, limit as i64).await)
            .wrap_err_with(|| format!("reading {}", table.name()))?;
        #[cfg(feature = "sqlite")]
        if let Db::SqliteSource(_, NulText::Replace) = self {
            unstorable::replace_nul(&mut rows);
        }
        Ok(rows)
    }

    /// The values of this side PostgreSQL cannot store (only a SQLite source can hold any).
    async fn unstorable(&mut self) -> Result<Vec<Unstorable>> {
        #[cfg(feature = "sqlite")]
        if let Db::SqliteSource(snapshot, _) = self {
            let mut found = Vec::new();
            for table in Table::ALL {
                let values = sqlite::unstorable(&mut *snapshot, table).await;
                found.extend(values.wrap_err_with(|| format!("checking the text of {}", table.name()))?);
            }
            return Ok(found);
        }
        Ok(Vec::new())
    }

    /// The digest of the whole of `table` as this side holds it, given `digest` of its rows
    /// before `bound` (those an interrupted run copied, checked on resuming). A PostgreSQL
    /// target reads the whole table again in one binary `COPY`, hashed as it arrives, which
    /// costs less than reading the rest as rows; elsewhere the rest is read page by page.
    async fn digest_rest(
        &mut self,
        table: Table,
        bound: Option<Bound>,
        digest: TableDigest,
        page: usize,
    ) -> Result<Summary> {
        #[cfg(feature = "postgres")]
        if let Db::PgTarget(conn) = self {
            let whole = postgres::digest_table(conn, table).await;
            return Ok(whole.wrap_err_with(|| format!("reading back {}", table.name()))?.finish());
        }
        Ok(match bound {
            Some(bound) => scan_from(self, table, bound, digest, page, None).await?.0.finish(),
            None => digest.finish(),
        })
    }

    async fn threads_by_parent(&mut self, first: i64, last: i64) -> Result<Vec<Row>> {
        Ok(on!(self, |c, m| m::threads_by_parent(c, first, last).await).wrap_err("reading threads")?)
    }

    async fn id_counters(&mut self) -> Result<BTreeMap<String, i64>> {
        Ok(on!(self, |c, m| m::id_counters(c).await).wrap_err("reading id counters")?.into_iter().collect())
    }

    /// The migration versions recorded in the database, or `None` when it has no migration
    /// table at all (a brand-new database).
    async fn applied_migrations(&mut self) -> Result<Option<Vec<i64>>> {
        use sqlx::migrate::Migrate;
        let has_table = on!(self, |c, m| m::has_migrations_table(c).await)?;
        if !has_table {
            return Ok(None);
        }
        let applied = on!(self, |c, _m| c.list_applied_migrations("_sqlx_migrations").await)
            .wrap_err("reading the applied migrations")?;
        Ok(Some(applied.into_iter().map(|m| m.version).collect()))
    }

    /// This binary's migrations for the side's dialect.
    fn known_migrations(&self) -> Vec<i64> {
        let migrator = match self {
            #[cfg(feature = "sqlite")]
            Db::SqliteSource(..) | Db::SqliteTarget(_) => sqlx::migrate!("../migrations/sqlite"),
            #[cfg(feature = "postgres")]
            Db::PgSource(_) | Db::PgTarget(_) => sqlx::migrate!("../migrations/postgres"),
        };
        migrator.iter().filter(|m| !m.migration_type.is_down_migration()).map(|m| m.version).collect()
    }

    /// Runs this binary's migrations on an empty target.
    async fn run_migrations(&mut self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Db::SqliteTarget(conn) => sqlx::migrate!("../migrations/sqlite").run(conn).await,
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => sqlx::migrate!("../migrations/postgres").run(conn).await,
            #[allow(unreachable_patterns)]
            _ => unreachable!("only a target is migrated"),
        }
        .wrap_err("creating the schema in the target")?;
        Ok(())
    }

    /// Writes one page of `table` in one transaction, committed once `turn` resolves to true
    /// (false: rolled back, and `Ok(false)` returned). A page of messages carries the threads
    /// whose parent message is in it (messages and threads refer to each other).
    async fn write_page(
        &mut self,
        table: Table,
        mut rows: Vec<Row>,
        threads: &[Row],
        turn: impl Future<Output = bool>,
    ) -> Result<bool> {
        let run = async {
            in_transaction!(self, turn, |c, m| match table {
                Table::Messages => m::insert_messages(c, &mut rows, threads).await?,
                _ => m::insert(c, table, &rows).await?,
            });
            Ok::<_, sqlx::Error>(true)
        };
        Ok(run.await.wrap_err_with(|| format!("writing {} to the target", table.name()))?)
    }

    async fn clear_seeded_roles(&mut self) -> Result<()> {
        Ok(on!(self, |c, m| m::clear_seeded_roles(c).await).wrap_err("removing the target's seeded roles")?)
    }

    async fn raise_id_counter(&mut self, table: Table, value: i64) -> Result<()> {
        Ok(on!(self, |c, m| m::raise_id_counter(c, table, value).await)
            .wrap_err_with(|| format!("setting the id counter of {}", table.name()))?)
    }

    /// PostgreSQL target: drop secondary indexes and foreign keys for the load.
    async fn defer_indexes(&mut self) -> Result<()> {
        match self {
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => Ok(postgres::defer_indexes(conn).await.wrap_err("deferring the target's indexes")?),
            _ => Ok(()),
        }
    }

    /// PostgreSQL target: rebuild what [`Db::defer_indexes`] dropped (also after an interrupted run).
    async fn restore_indexes(&mut self) -> Result<()> {
        match self {
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => Ok(postgres::restore_indexes(conn)
                .await
                .wrap_err("rebuilding the target's indexes and foreign keys (a reference may be broken)")?),
            _ => Ok(()),
        }
    }

    /// PostgreSQL target: rebuilds the keys (primary, unique) of `tables` dropped for the load,
    /// or waits for the restorer rebuilding one; returns how many it rebuilt.
    async fn restore_keys(&mut self, tables: &[&str]) -> Result<u64> {
        match self {
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => Ok(postgres::restore_keys(conn, tables)
                .await
                .wrap_err("rebuilding the target's keys (a value may repeat)")?),
            _ => {
                let _ = tables; // only PostgreSQL defers any work
                Ok(0)
            }
        }
    }

    /// PostgreSQL target: does the next piece of deferred work (keys first, then indexes,
    /// foreign keys, statistics) that only involves the `complete` tables, foreign keys on a
    /// cycle of references only when `takes_cycles`; returns whether there was one.
    async fn restore_next(&mut self, complete: &[&str], takes_cycles: bool, under_way: &UnderWay) -> Result<bool> {
        match self {
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => Ok(postgres::restore_next(conn, complete, takes_cycles, under_way).await.wrap_err(
                "rebuilding the target's keys, indexes and foreign keys (a key may repeat or a reference be broken)",
            )?),
            _ => {
                let _ = (complete, takes_cycles, under_way); // only PostgreSQL defers any work
                Ok(false)
            }
        }
    }

    /// PostgreSQL target: how many pieces of deferred work (keys, indexes, foreign keys,
    /// statistics) are left.
    async fn deferred_work(&mut self) -> Result<u64> {
        match self {
            #[cfg(feature = "postgres")]
            Db::PgTarget(conn) => Ok(postgres::deferred_work(conn).await.wrap_err("reading the deferred work")?),
            _ => Ok(0),
        }
    }

    /// Whether the target's indexes are deferred for the load (so a restorer has work to do).
    fn defers_indexes(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            Db::PgTarget(_) => true,
            _ => false,
        }
    }

    /// SQLite target: refreshes the planner statistics (a PostgreSQL target analyses each table
    /// as part of its deferred work).
    async fn finish_target(&mut self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Db::SqliteTarget(conn) => Ok(sqlite::finish_target(conn).await.wrap_err("analysing the target")?),
            _ => Ok(()),
        }
    }
}

/// Checks that the source was written by exactly this binary's schema.
async fn check_source_schema(source: &mut Db, name: &str) -> Result<()> {
    let known = source.known_migrations();
    match source.applied_migrations().await? {
        None => Err(MigrateError::Failed(eyre::eyre!("the source {name} holds no decentcom database"))),
        Some(applied) if applied == known => Ok(()),
        Some(applied) => Err(MigrateError::Failed(eyre::eyre!(
            "the source {name} is at schema version(s) {applied:?}, this binary at {known:?}: run the matching \
             decentcom on it (`decentcom serve` upgrades an older database) before migrating"
        ))),
    }
}

/// Creates the schema in a brand-new target; refuses one at another schema version.
async fn prepare_target_schema(target: &mut Db, name: &str, may_create: bool) -> Result<()> {
    let known = target.known_migrations();
    match target.applied_migrations().await? {
        Some(applied) if applied == known => Ok(()),
        None if may_create => target.run_migrations().await,
        Some(applied) if applied.is_empty() && may_create => target.run_migrations().await,
        None => Err(MigrateError::TargetRefused(format!("the target {name} holds no decentcom database"))),
        Some(applied) => Err(MigrateError::TargetRefused(format!(
            "the target {name} is at schema version(s) {applied:?}, this binary at {known:?}; refusing to write to it"
        ))),
    }
}

/// The number of rows every page read for digests and resume checks.
fn scan_page(batch_size: usize) -> usize {
    batch_size.max(10_000)
}

/// Reads a whole table (or its first `limit` rows) in key order: its digest (to be finished or
/// continued) and last row.
async fn scan(db: &mut Db, table: Table, page: usize, limit: Option<u64>) -> Result<(TableDigest, Option<Row>)> {
    scan_from(db, table, Bound::start(table.key()), TableDigest::default(), page, limit).await
}

/// Reads a table from `bound` on in key order (up to `limit` rows in `digest` in all), continuing
/// `digest`: the digest and the last row read.
async fn scan_from(
    db: &mut Db,
    table: Table,
    mut bound: Bound,
    mut digest: TableDigest,
    page: usize,
    limit: Option<u64>,
) -> Result<(TableDigest, Option<Row>)> {
    let mut last = None;
    loop {
        let want = match limit {
            Some(limit) => page.min((limit - digest.rows()) as usize),
            None => page,
        };
        if want == 0 {
            break;
        }
        let rows = db.page(table, &bound, want).await?;
        rows.iter().for_each(|r| digest.add(r));
        let done = rows.len() < want;
        last = rows.into_iter().last().or(last);
        match last.as_ref().and_then(|r| Bound::after(table.key(), r)) {
            Some(next) if !done => bound = next,
            _ => break,
        }
    }
    Ok((digest, last))
}

/// One table's line of the verification.
struct Verified {
    table: Table,
    source: Summary,
    target: Summary,
    source_last: Option<Row>,
}

/// Computes counts and digests of every table on both sides (both read at the same time).
async fn verify(source: &mut Db, target: &mut Db, page: usize, progress: &Progress) -> Result<Vec<Verified>> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let bar = progress.table(&format!("verify {}", table.name()), 2);
        let (s, t) = tokio::join!(scan(source, table, page, None), scan(target, table, page, None));
        let ((source_digest, source_last), (target_digest, _)) = (s?, t?);
        bar.finish_and_clear();
        out.push(Verified { table, source: source_digest.finish(), target: target_digest.finish(), source_last });
    }
    Ok(out)
}

fn verification_table(lines: &[Verified]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|v| {
            vec![
                v.table.name().to_owned(),
                v.source.rows.to_string(),
                v.target.rows.to_string(),
                v.source.short_hex(),
                v.target.short_hex(),
                if v.source == v.target { "ok" } else { "MISMATCH" }.to_owned(),
            ]
        })
        .collect();
    render_table(&["table", "source rows", "target rows", "source sha256", "target sha256", ""], &rows)
}

fn mismatches(lines: &[Verified]) -> Vec<String> {
    lines.iter().filter(|v| v.source != v.target).map(|v| v.table.name().to_owned()).collect()
}

/// Checks what an interrupted run left in the target: for every table, the target's rows must be
/// exactly the source's first rows (same count, same digest). Threads are written together with
/// messages, keyed by their parent message rather than their own id, so they are not a prefix of
/// the source's threads; the final verification covers them.
async fn resume_points(
    source: &mut Db,
    target: &mut Db,
    page: usize,
    progress: &Progress,
) -> Result<BTreeMap<&'static str, copy::Start>> {
    let mut out = BTreeMap::new();
    for table in Table::ALL {
        if table == Table::Threads {
            continue;
        }
        let (target_digest, target_last) = scan(target, table, page, None).await?;
        let start = match target_last {
            None => copy::Start::fresh(table),
            Some(last) => {
                let present = target_digest.rows();
                let (source_digest, source_last) = scan(source, table, page, Some(present)).await?;
                if source_digest.clone().finish() != target_digest.clone().finish() {
                    return Err(MigrateError::TargetRefused(format!(
                        "cannot resume: the target's {} ({present} rows) are not the first rows of the source's; the \
                         target does not hold an interrupted migration of this source",
                        table.name(),
                    )));
                }
                progress.note(format!("resuming {} after {present} rows already copied", table.name()));
                copy::Start {
                    bound: Bound::after(table.key(), &last),
                    present,
                    source: source_digest,
                    target: target_digest,
                    source_last,
                }
            }
        };
        out.insert(table.name(), start);
    }
    Ok(out)
}

/// The copy's table: per table, the wall time from its first read to its last commit and the
/// rows per second over that time. The copy is pipelined, so tables overlap in time.
fn copy_table(lines: &[copy::Copied]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let rate = if l.seconds > 0.0 { (l.copied as f64 / l.seconds).round() as u64 } else { 0 };
            vec![
                l.table.name().to_owned(),
                l.rows.to_string(),
                l.copied.to_string(),
                seconds(l.seconds),
                rate.to_string(),
            ]
        })
        .collect();
    let mut out = render_table(&["table", "source rows", "copied now", "seconds", "rows/s"], &rows);
    out.push_str("(seconds: from a table's first read to its last commit; tables are copied overlapping)\n");
    out
}

/// Seconds with three significant digits, at least two decimals: a table of a few rows takes
/// well under 10 ms, which two decimals would show as 0.00.
fn seconds(s: f64) -> String {
    let decimals = if s > 0.0 && s < 1.0 { (2 - s.log10().floor() as i64).clamp(2, 9) as usize } else { 2 };
    format!("{s:.decimals$}")
}

/// Whether blobs move: the target's media store differs from the source's.
fn media_moves(config: &Config) -> Option<&crate::config::MediaConfig> {
    config.migrate.target_media.as_ref().filter(|target| **target != config.storage.media)
}

/// Media rows of the source: `(content hash, size)`.
async fn media_rows(source: &mut Db, page: usize) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut bound = Bound::start(Table::Media.key());
    loop {
        let rows = source.page(Table::Media, &bound, page).await?;
        for r in &rows {
            let size = tables::int(&r[tables::MEDIA_SIZE_BYTES]).max(0) as u64;
            out.push((tables::text(&r[tables::MEDIA_CONTENT_HASH]).to_owned(), size));
        }
        match rows.last().and_then(|r| Bound::after(Table::Media.key(), r)) {
            Some(next) if rows.len() == page => bound = next,
            _ => break,
        }
    }
    Ok(out)
}

/// Copies every blob of the source's media rows to the target store; returns the names of the
/// blobs missing from the source store.
async fn copy_media(
    config: &Config,
    target_media: &crate::config::MediaConfig,
    rows: &[(String, u64)],
    progress: &Progress,
) -> Result<(Vec<String>, u64, u64)> {
    let source_store = media::open_store(&config.storage.media, "source").await?;
    let target_store = media::open_store(target_media, "target").await?;
    let bar = progress.media(rows.iter().map(|(_, size)| size).sum());
    let (mut missing, mut copied_bytes, mut copied_objects) = (Vec::new(), 0u64, 0u64);
    for (hash, size) in rows {
        match media::copy_blob(&source_store, &target_store, hash).await? {
            media::Copied::Bytes(n) => {
                copied_bytes += n;
                copied_objects += 1;
            }
            media::Copied::Present => {}
            media::Copied::Missing => missing.push(hash.clone()),
        }
        bar.inc(*size);
    }
    bar.finish();
    Ok((missing, copied_objects, copied_bytes))
}

/// What a finished run reports (also printed unless quiet).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows copied in this run, all tables.
    pub rows_copied: u64,
    /// Media blobs copied in this run and their bytes.
    pub media_objects: u64,
    pub media_bytes: u64,
}

/// Runs `decentcom migrate` as `options` say, printing to stdout unless quiet.
pub async fn run(config: &Config, options: &Options) -> Result<Outcome> {
    if options.from == options.to {
        return Err(MigrateError::Usage("--from and --to must differ (sqlite → postgres or postgres → sqlite)".into()));
    }
    if options.batch_size == 0 {
        return Err(MigrateError::Usage("--batch-size must be at least 1".into()));
    }
    if config.storage.database_path.as_os_str().is_empty() {
        return Err(MigrateError::Usage("storage.database_path (the SQLite side) is required".into()));
    }
    if config.storage.database_url.as_deref().is_none_or(str::is_empty) {
        return Err(MigrateError::Usage("storage.database_url (the PostgreSQL side) is required".into()));
    }
    let progress = Progress::new(options.quiet);
    let say = |text: String| {
        if !options.quiet {
            print!("{text}");
        }
    };
    let (source_name, target_name) = (Db::describe(config, options.from), Db::describe(config, options.to));
    let mut source = Db::open(config, options.from, true, options.nul_text).await?;
    check_source_schema(&mut source, &source_name).await?;
    let page = scan_page(options.batch_size);

    let mut totals = BTreeMap::new();
    for table in Table::ALL {
        totals.insert(table.name(), source.count(table).await?);
    }
    // Before anything is written: values the target cannot store.
    let unstorable = if options.to == Backend::Postgres { source.unstorable().await? } else { Vec::new() };
    let replaced = unstorable::nul_counts(&unstorable);

    if options.dry_run {
        let rows: Vec<Vec<String>> =
            Table::ALL.iter().map(|t| vec![t.name().to_owned(), totals[t.name()].to_string()]).collect();
        let mut text = format!("dry run: {source_name} → {target_name}\n\n");
        text += &render_table(&["table", "rows to copy"], &rows);
        text += &format!("total: {} rows\n", totals.values().sum::<u64>());
        match media_moves(config) {
            Some(target_media) => {
                let media = media_rows(&mut source, page).await?;
                text += &format!(
                    "media: {} objects, {} bytes to copy ({:?} store → {:?} store)\n",
                    media.len(),
                    media.iter().map(|(_, s)| s).sum::<u64>(),
                    config.storage.media.provider,
                    target_media.provider
                );
            }
            None => text += "media: both sides share [storage.media]; no blob is copied\n",
        }
        if !unstorable.is_empty() {
            text += &format!(
                "\n{} value(s) the target cannot store:\n{}{}",
                unstorable.len(),
                unstorable::render(&unstorable),
                if unstorable::blocks(&unstorable, options.nul_text) {
                    "a real run would refuse to start (--replace-nul replaces U+0000 with U+FFFD; invalid UTF-8 \
                     must be fixed in the source)\n"
                } else {
                    "a real run replaces each U+0000 with U+FFFD (--replace-nul)\n"
                }
            );
        }
        say(text);
        return Ok(Outcome::default());
    }
    if unstorable::blocks(&unstorable, options.nul_text) {
        return Err(MigrateError::Unstorable(format!(
            "the source {source_name} holds {} value(s) the target cannot store; nothing was written:\n{}\
             (re-run with --replace-nul to replace each U+0000 with U+FFFD; invalid UTF-8 must be fixed in the source)",
            unstorable.len(),
            unstorable::render(&unstorable)
        )));
    }
    for (table, n) in &replaced {
        say(format!("{table}: {n} value(s) with U+0000 copied with U+FFFD in its place (--replace-nul)\n"));
    }

    let mut target = Db::open(config, options.to, false, options.nul_text).await?;
    prepare_target_schema(&mut target, &target_name, !options.verify_only).await?;

    if options.verify_only {
        let lines = verify(&mut source, &mut target, page, &progress).await?;
        return report(&lines, &source_name, &target_name, &say).map(|()| Outcome::default());
    }

    progress.note(format!("migrating {source_name} → {target_name}"));
    let mut others_empty = true;
    let mut not_empty = Vec::new();
    for table in Table::ALL {
        let n = target.count(table).await?;
        if n > 0 && !matches!(table, Table::Roles | Table::RolePermissions) {
            others_empty = false;
            not_empty.push(format!("{} ({n} rows)", table.name()));
        }
    }
    let starts = if others_empty {
        // Nothing but (at most) the roles the migrations seed, or the roles of an
        // interrupted run that got no further: start from scratch.
        target.clear_seeded_roles().await?;
        target.defer_indexes().await?;
        Table::ALL.iter().map(|t| (t.name(), copy::Start::fresh(*t))).collect()
    } else if options.resume {
        // Reading the target in key order needs its keys.
        let all: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        target.restore_keys(&all).await?;
        resume_points(&mut source, &mut target, page, &progress).await?
    } else {
        return Err(MigrateError::TargetRefused(format!(
            "the target {target_name} already holds data: {}; refusing to write to it (use --resume to continue an \
             interrupted migration of the same source)",
            not_empty.join(", ")
        )));
    };

    // PostgreSQL takes two writers (one more backend to work), two restorers for the deferred
    // indexes, and the verifier; SQLite writes through one connection and reads through another.
    // The connections are opened at once: each costs a round trip or more (TLS, authentication).
    let deferred = target.deferred_work().await?;
    let more = if target.defers_indexes() { 4 } else { 1 };
    let mut opened =
        futures::future::try_join_all((0..more).map(|_| Db::open(config, options.to, false, options.nul_text)))
            .await?
            .into_iter();
    let verify = opened.next().expect("one connection at least");
    let mut writers = vec![target];
    writers.extend(opened.next());
    let restore: Vec<Db> = opened.collect();
    let conns = copy::Connections { source, writers, verify, restore };
    let (conns, copied) = copy::copy_tables(conns, starts, &totals, deferred, options.batch_size, &progress).await?;
    let copy::Connections { mut source, writers, mut verify, mut restore } = conns;
    let mut target = writers.into_iter().next().expect("the target connection");
    if let Some(restore) = restore.first_mut() {
        restore.restore_indexes().await?;
    }
    let mut outcome = Outcome { rows_copied: copied.iter().map(|l| l.copied).sum(), ..Outcome::default() };
    say(format!("\n{}", copy_table(&copied)));

    // Threads were written in their parent messages' order: scan both sides of them now.
    let (s, t) =
        tokio::join!(scan(&mut source, Table::Threads, page, None), scan(&mut verify, Table::Threads, page, None));
    let ((source_threads, source_threads_last), (target_threads, _)) = (s?, t?);
    let lines: Vec<Verified> = copied
        .into_iter()
        .map(|c| match c.table {
            Table::Threads => Verified {
                table: c.table,
                source: source_threads.clone().finish(),
                target: target_threads.clone().finish(),
                source_last: source_threads_last.clone(),
            },
            _ => Verified { table: c.table, source: c.source, target: c.target, source_last: c.source_last },
        })
        .collect();

    if let Some(target_media) = media_moves(config) {
        let rows = media_rows(&mut source, page).await?;
        let (missing, objects, bytes) = copy_media(config, target_media, &rows, &progress).await?;
        outcome.media_objects = objects;
        outcome.media_bytes = bytes;
        say(format!("\nmedia: {objects} objects ({bytes} bytes) copied, {} missing in the source\n", missing.len()));
        if !missing.is_empty() {
            if options.allow_missing_media {
                progress.note(format!("missing media (allowed): {}", missing.join(", ")));
            } else {
                return Err(MigrateError::MissingMedia(missing));
            }
        }
    }

    // Ids never collide with the copied ones, nor with ids the source had handed out.
    let counters = source.id_counters().await?;
    for line in &lines {
        let table = line.table;
        if !table.has_serial_id() {
            continue;
        }
        let max_id = line.source_last.as_ref().map_or(0, |r| tables::int(&r[0]));
        let counter = counters.get(table.name()).copied().unwrap_or(0);
        target.raise_id_counter(table, max_id.max(counter)).await?;
    }
    target.finish_target().await?;
    report(&lines, &source_name, &target_name, &say)?;
    Ok(outcome)
}

/// Prints the verification table; a mismatch in any table is an error naming them.
fn report(lines: &[Verified], source_name: &str, target_name: &str, say: &impl Fn(String)) -> Result<()> {
    say(format!("\nverification ({source_name} vs {target_name}):\n{}", verification_table(lines)));
    let bad = mismatches(lines);
    if !bad.is_empty() {
        return Err(MigrateError::Mismatch(bad));
    }
    say("\nsource and target hold the same rows in every table\n".to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::seconds;

    #[test]
    fn seconds_keep_three_significant_digits_below_one() {
        let shown: Vec<String> = [12.5, 1.0, 0.673, 0.0136, 0.00896, 0.000209, 0.0].into_iter().map(seconds).collect();
        assert_eq!(shown, ["12.50", "1.00", "0.673", "0.0136", "0.00896", "0.000209", "0.00"]);
    }
}
