//! `decentcom migrate` as a real child process, against real PostgreSQL databases (one fresh
//! database per test) and a real S3-compatible server (s3s-fs): round trip SQLite → PostgreSQL →
//! SQLite on a dataset that touches every table and edge case, resume after SIGKILL, refusal of a
//! non-empty target or of one at another schema version, media local → S3 → local with hashes
//! checked, fresh ids after migration, and a migrated server answering the API as before.

#[path = "api/s3.rs"]
mod s3;
#[path = "common/server_process.rs"]
mod server_process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use decentcom::config::{Backend, Config};
use decentcom::media::Blobs;
use decentcom::migrate::synthetic::{self, Community};
use decentcom::migrate::tables::{Row, Table, Value};
use decentcom::storage::NewChannel;
use decentcom::testing::ScratchPg;
use pretty_assertions::assert_eq;

/// Writes a configuration naming both sides (and optionally more TOML) into `dir`.
fn config(dir: &Path, name: &str, sqlite: &Path, pg_url: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[storage]\ndatabase_path = {:?}\ndatabase_url = {:?}\n\n[storage.media]\npath = {:?}\n\n{extra}",
        sqlite.display().to_string(),
        pg_url,
        dir.join("media").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn migrate_command(config: &Path, from: &str, to: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_decentcom"));
    cmd.args(["migrate", "--from", from, "--to", to, "--config"])
        .arg(config)
        .args(args)
        .env_remove("DECENTCOM_STORAGE__BACKEND")
        .stdin(Stdio::null());
    cmd
}

/// Runs `decentcom migrate` to completion.
fn migrate(config: &Path, from: &str, to: &str, args: &[&str]) -> Output {
    migrate_command(config, from, to, args).output().expect("run decentcom migrate")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect_success(output: &Output) {
    assert_eq!(code(output), 0, "decentcom migrate failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
}

fn rows_of(tables: &[(Table, Vec<Row>)], table: Table) -> &[Row] {
    &tables.iter().find(|(t, _)| *t == table).unwrap().1
}

/// The live schema of a PostgreSQL database (tables, columns, indexes, foreign keys).
async fn pg_schema(url: &str) -> decentcom::storage::schema::SchemaSnapshot {
    let settings = decentcom::storage::PoolSettings::from_config(&Config::default().storage);
    let backend = decentcom::storage::postgres::PostgresBackend::open(url, &settings).await.unwrap();
    backend.schema_snapshot().await.unwrap()
}

/// The schema this binary's migrations create.
async fn fresh_pg_schema() -> decentcom::storage::schema::SchemaSnapshot {
    let fresh = ScratchPg::create("migrate_fresh").await;
    pg_schema(fresh.url()).await
}

fn max_id(tables: &[(Table, Vec<Row>)], table: Table) -> i64 {
    rows_of(tables, table)
        .iter()
        .map(|r| match r[0] {
            Value::Int(id) => id,
            _ => panic!("{table:?} has no integer id"),
        })
        .max()
        .unwrap()
}

#[tokio::test]
async fn round_trip_sqlite_postgres_sqlite_keeps_every_column_of_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let (source, back) = (dir.path().join("source.db"), dir.path().join("back.db"));
    synthetic::write_edge_cases(&source).await.unwrap();
    let expected = synthetic::edge_cases();
    assert!(expected.iter().all(|(_, rows)| !rows.is_empty()), "the dataset touches every table");
    assert_eq!(expected.len(), Table::ALL.len());
    // the file holds exactly the dataset (read back through the same reader)
    assert_eq!(synthetic::read_sqlite(&source).await.unwrap(), expected);

    let pg = ScratchPg::create("migrate_rt").await;
    let to_pg = config(dir.path(), "to-pg.toml", &source, pg.url(), "");
    // a batch of 2 puts threads and their replies in the same and in different batches
    let out = migrate(&to_pg, "sqlite", "postgres", &["--batch-size", "2"]);
    expect_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("source and target hold the same rows in every table"), "{stdout}");
    for table in Table::ALL {
        assert!(stdout.contains(table.name()), "the summary names {}: {stdout}", table.name());
    }
    assert_eq!(synthetic::read_postgres(pg.url()).await.unwrap(), expected);
    // the indexes and foreign keys dropped for the load are all back, and nothing else is left
    assert_eq!(pg_schema(pg.url()).await, fresh_pg_schema().await);

    let to_sqlite = config(dir.path(), "to-sqlite.toml", &back, pg.url(), "");
    expect_success(&migrate(&to_sqlite, "postgres", "sqlite", &["--quiet"]));
    assert_eq!(synthetic::read_sqlite(&back).await.unwrap(), expected);

    // the source was only read
    assert_eq!(synthetic::read_sqlite(&source).await.unwrap(), expected);

    // --verify-only compares without writing, and says so by its exit code
    let out = migrate(&to_sqlite, "postgres", "sqlite", &["--verify-only"]);
    expect_success(&out);
    assert!(text(&out.stdout).contains("verification"), "{}", text(&out.stdout));
}

#[tokio::test]
async fn a_target_holding_data_is_refused_and_verification_names_a_differing_table() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    synthetic::write_edge_cases(&source).await.unwrap();
    let pg = ScratchPg::create("migrate_refuse").await;
    let cfg = config(dir.path(), "c.toml", &source, pg.url(), "");
    expect_success(&migrate(&cfg, "sqlite", "postgres", &["-q"]));

    let again = migrate(&cfg, "sqlite", "postgres", &[]);
    assert_eq!(code(&again), 4, "{}", text(&again.stderr));
    let stderr = text(&again.stderr);
    assert!(stderr.contains("already holds data") && stderr.contains("--resume"), "{stderr}");
    // nothing was written: still exactly one copy
    assert_eq!(synthetic::read_postgres(pg.url()).await.unwrap(), synthetic::edge_cases());

    // --resume on a complete copy has nothing left to do
    expect_success(&migrate(&cfg, "sqlite", "postgres", &["--resume", "-q"]));
    assert_eq!(synthetic::read_postgres(pg.url()).await.unwrap(), synthetic::edge_cases());

    // a different source is not "the same source": resume is refused
    let other = dir.path().join("other.db");
    synthetic::write_community(&other, Community { users: 20, channels: 2, messages: 50 }, 100).await.unwrap();
    let other_cfg = config(dir.path(), "other.toml", &other, pg.url(), "");
    let out = migrate(&other_cfg, "sqlite", "postgres", &["--resume"]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot resume"), "{}", text(&out.stderr));

    // verification of two different databases names the tables that differ
    let out = migrate(&other_cfg, "sqlite", "postgres", &["--verify-only"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    assert!(stderr.contains("messages") && stderr.contains("users"), "{stderr}");
}

#[tokio::test]
async fn a_run_killed_mid_table_resumes_with_nothing_missing_or_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let size = Community { users: 300, channels: 5, messages: 60_000 };
    synthetic::write_community(&source, size, 5_000).await.unwrap();
    let pg = ScratchPg::create("migrate_kill").await;
    let cfg = config(dir.path(), "c.toml", &source, pg.url(), "");

    let mut child = migrate_command(&cfg, "sqlite", "postgres", &["--batch-size", "200", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let copied_before_kill = loop {
        let n = synthetic::count_postgres(pg.url(), Table::Messages).await.unwrap_or(0);
        if n > 0 {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the migration finished before it could be killed");
        assert!(Instant::now() < deadline, "no message was copied within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let after_kill = synthetic::count_postgres(pg.url(), Table::Messages).await.unwrap();
    assert!(after_kill >= copied_before_kill && after_kill < size.messages as u64, "killed mid-table: {after_kill}");
    assert_eq!(after_kill % 200, 0, "only whole batches are ever committed");

    let refused = migrate(&cfg, "sqlite", "postgres", &["-q"]);
    assert_eq!(code(&refused), 4, "{}", text(&refused.stderr));

    let out = migrate(&cfg, "sqlite", "postgres", &["--resume", "--batch-size", "1000"]);
    expect_success(&out);
    assert!(text(&out.stdout).contains("source and target hold the same rows"), "{}", text(&out.stdout));
    let (source_rows, target_rows) =
        (synthetic::read_sqlite(&source).await.unwrap(), synthetic::read_postgres(pg.url()).await.unwrap());
    assert_eq!(rows_of(&target_rows, Table::Messages).len(), size.messages as usize);
    assert!(source_rows == target_rows, "every table is identical after the resumed run");
    assert_eq!(pg_schema(pg.url()).await, fresh_pg_schema().await);
}

/// The copy table `decentcom migrate` prints: per table, rows copied now and seconds.
fn copy_timings(stdout: &str) -> Vec<(String, u64, f64)> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("table ") || !l.contains("copied now")).skip(2);
    let mut out = Vec::new();
    for line in lines.by_ref().take_while(|l| !l.trim().is_empty() && !l.starts_with('(')) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 5, "table, source rows, copied now, seconds, rows/s: {line:?}");
        out.push((cells[0].to_owned(), cells[2].parse().unwrap(), cells[3].parse().unwrap()));
    }
    out
}

/// Issue #21: the copy is pipelined, so each table's time is measured from its first read to its
/// last commit, not between two progress events (which once printed `messages 0.00 s,
/// 349,744,104 rows/s`).
#[tokio::test]
async fn every_copied_table_reports_a_time_within_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (community, edge) = (dir.path().join("community.db"), dir.path().join("edge.db"));
    synthetic::write_community(&community, Community { users: 200, channels: 6, messages: 30_000 }, 5_000)
        .await
        .unwrap();
    synthetic::write_edge_cases(&edge).await.unwrap();
    for (source, batch) in [(&community, "1000"), (&edge, "2")] {
        let pg = ScratchPg::create("migrate_timing").await;
        let cfg = config(dir.path(), "timing.toml", source, pg.url(), "");
        let began = Instant::now();
        let out = migrate(&cfg, "sqlite", "postgres", &["--batch-size", batch]);
        let run = began.elapsed().as_secs_f64();
        expect_success(&out);
        let stdout = text(&out.stdout);
        let timings = copy_timings(&stdout);
        let names: Vec<&str> = timings.iter().map(|(name, _, _)| name.as_str()).collect();
        let mut expected: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted, expected, "one line per table:\n{stdout}");
        assert!(timings.iter().any(|(name, copied, _)| name == "messages" && *copied > 0), "{stdout}");
        for (name, copied, seconds) in &timings {
            if *copied > 0 {
                assert!(*seconds > 0.0 && *seconds <= run, "{name}: {seconds} s of a {run:.3} s run:\n{stdout}");
            }
        }
    }
}

#[tokio::test]
async fn a_target_at_another_schema_version_is_refused_and_left_as_it_was() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    synthetic::write_edge_cases(&source).await.unwrap();

    // A PostgreSQL target that an older binary set up: only the first migration applied.
    let old_pg = ScratchPg::create("migrate_old_pg").await;
    let mut conn = sqlx::PgConnection::connect(old_pg.url()).await.unwrap();
    sqlx::migrate!("../migrations/postgres").run_to(1, &mut conn).await.unwrap();
    conn.close().await.unwrap();
    let seeded = synthetic::count_postgres(old_pg.url(), Table::Roles).await.unwrap();
    let out = migrate(&config(dir.path(), "old-pg.toml", &source, old_pg.url(), ""), "sqlite", "postgres", &[]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("schema version"), "{}", text(&out.stderr));
    assert_eq!(synthetic::count_postgres(old_pg.url(), Table::Roles).await.unwrap(), seeded, "nothing written");
    assert_eq!(synthetic::count_postgres(old_pg.url(), Table::Users).await.unwrap(), 0, "nothing written");

    // The same for a SQLite target, from a PostgreSQL source of this version.
    let pg = ScratchPg::create("migrate_old_sqlite").await;
    expect_success(&migrate(&config(dir.path(), "to-pg.toml", &source, pg.url(), ""), "sqlite", "postgres", &["-q"]));
    let old_sqlite = dir.path().join("old.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&old_sqlite).create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::migrate!("../migrations/sqlite").run_to(1, &mut conn).await.unwrap();
    conn.close().await.unwrap();
    let before = synthetic::read_sqlite(&old_sqlite).await.unwrap();
    let out = migrate(&config(dir.path(), "old-sqlite.toml", &old_sqlite, pg.url(), ""), "postgres", "sqlite", &[]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("schema version"), "{}", text(&out.stderr));
    assert_eq!(synthetic::read_sqlite(&old_sqlite).await.unwrap(), before, "nothing written");
}

#[tokio::test]
async fn new_rows_after_migration_get_fresh_ids_on_either_target() {
    let dir = tempfile::tempdir().unwrap();
    let (source, back) = (dir.path().join("source.db"), dir.path().join("back.db"));
    synthetic::write_edge_cases(&source).await.unwrap();
    let expected = synthetic::edge_cases();
    let pg = ScratchPg::create("migrate_ids").await;
    expect_success(&migrate(&config(dir.path(), "a.toml", &source, pg.url(), ""), "sqlite", "postgres", &["-q"]));
    expect_success(&migrate(&config(dir.path(), "b.toml", &back, pg.url(), ""), "postgres", "sqlite", &["-q"]));

    for backend in [Backend::Postgres, Backend::Sqlite] {
        let mut config = Config::default();
        config.storage.backend = backend;
        config.storage.database_path = back.clone();
        config.storage.database_url = Some(pg.url().to_owned());
        let storage = decentcom::storage::open(&config.storage).await.unwrap();
        let channel = storage
            .create_channel(NewChannel {
                name: format!("fresh-{}", backend.as_str()),
                topic: None,
                category: None,
                position: 0,
            })
            .await
            .unwrap();
        assert_eq!(channel.id.0, max_id(&expected, Table::Channels) + 1, "{backend:?}");
    }
}

#[tokio::test]
async fn media_moves_from_local_disk_to_s3_and_back_checked_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (source, back) = (dir.path().join("source.db"), dir.path().join("back.db"));
    synthetic::write_edge_cases(&source).await.unwrap();
    let local = Blobs::local(&dir.path().join("media")).unwrap();
    let blobs = synthetic::edge_case_blobs();
    for blob in &blobs {
        local.put_bytes(blob.clone().into()).await.unwrap();
    }
    let s3 = s3::S3Server::start().await;
    let s3_table = |table: &str| {
        format!(
            "[{table}]\nprovider = \"s3\"\nbucket = {:?}\nendpoint = {:?}\nallow_http = true\nregion = \"us-east-1\"\n",
            s3.bucket, s3.endpoint
        )
    };
    let pg = ScratchPg::create("migrate_media").await;
    let up = config(dir.path(), "up.toml", &source, pg.url(), &s3_table("migrate.target_media"));
    let run = |cfg: &Path, from: &str, to: &str, args: &[&str]| {
        migrate_command(cfg, from, to, args)
            .env("AWS_ACCESS_KEY_ID", &s3.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
            .output()
            .unwrap()
    };

    // dry run: counts and bytes, nothing copied
    let out = run(&up, "sqlite", "postgres", &["--dry-run"]);
    expect_success(&out);
    let total: usize = blobs.iter().map(Vec::len).sum();
    assert!(text(&out.stdout).contains(&format!("media: 2 objects, {total} bytes")), "{}", text(&out.stdout));
    assert_eq!(s3.keys().await, Vec::<String>::new());

    expect_success(&run(&up, "sqlite", "postgres", &["-q"]));
    let mut hashes: Vec<String> = blobs.iter().map(|b| synthetic::sha256_hex(b)).collect();
    hashes.sort();
    assert_eq!(s3.keys().await, hashes);
    for blob in &blobs {
        assert_eq!(s3.object(&synthetic::sha256_hex(blob)).await.unwrap().to_vec(), *blob);
    }

    // back: the PostgreSQL side's store is S3, the SQLite side's a new local directory
    let down_dir = dir.path().join("down");
    std::fs::create_dir_all(&down_dir).unwrap();
    let down = down_dir.join("down.toml");
    std::fs::write(
        &down,
        format!(
            "[storage]\ndatabase_path = {:?}\ndatabase_url = {:?}\n\n{}\n[migrate.target_media]\npath = {:?}\n",
            back.display().to_string(),
            pg.url(),
            s3_table("storage.media"),
            down_dir.join("media").display().to_string()
        ),
    )
    .unwrap();
    expect_success(&run(&down, "postgres", "sqlite", &["-q"]));
    let restored = Blobs::local(&down_dir.join("media")).unwrap();
    for blob in &blobs {
        let hash = decentcom::storage::ContentHash::parse(&synthetic::sha256_hex(blob)).unwrap();
        let bytes = restored.get(&hash, None).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.to_vec(), *blob);
    }
    assert_eq!(synthetic::read_sqlite(&back).await.unwrap(), synthetic::edge_cases());

    // a blob missing from the source store is named and fails the run, unless allowed
    let missing = synthetic::sha256_hex(&blobs[1]);
    std::fs::remove_file(dir.path().join("media").join(&missing)).unwrap();
    let pg2 = ScratchPg::create("migrate_media_missing").await;
    let s3_prefixed = format!("{}prefix = \"second/\"\n", s3_table("migrate.target_media"));
    let again = config(dir.path(), "again.toml", &source, pg2.url(), &s3_prefixed);
    let out = run(&again, "sqlite", "postgres", &["-q"]);
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&missing), "{}", text(&out.stderr));
    expect_success(&run(&again, "sqlite", "postgres", &["-q", "--resume", "--allow-missing-media"]));
}

/// The API responses a client of the edge-case server sees (with user 1's session).
async fn api_answers(base: &str) -> Vec<(String, u16, serde_json::Value)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for path in [
        "/api/v1/server/info",
        "/api/v1/auth/me",
        "/api/v1/channels",
        "/api/v1/channels/1/messages",
        "/api/v1/channels/2/messages",
        "/api/v1/roles",
        "/api/v1/members",
        "/api/v1/dms",
        "/api/v1/dms/3/messages",
        "/api/v1/invites",
        "/api/v1/bans",
        "/api/v1/search?q=hello",
    ] {
        let resp = client.get(format!("{base}{path}")).bearer_auth(synthetic::ALICE_TOKEN).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        out.push((path.to_owned(), status, body));
    }
    out
}

#[tokio::test]
async fn a_migrated_server_starts_and_answers_the_api_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    synthetic::write_edge_cases(&source).await.unwrap();
    let pg = ScratchPg::create("migrate_api").await;
    expect_success(&migrate(&config(dir.path(), "c.toml", &source, pg.url(), ""), "sqlite", "postgres", &["-q"]));

    let sqlite_env = [("DECENTCOM_STORAGE__DATABASE_PATH", source.display().to_string())];
    let server_process::ServerProcess { mut child, base, .. } = server_process::start(dir.path(), &sqlite_env).await;
    let before = api_answers(&base).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(before.iter().filter(|(_, status, _)| *status == 200).count() >= 10, "{before:#?}");

    let pg_env = [
        ("DECENTCOM_STORAGE__BACKEND", "postgres".to_owned()),
        ("DECENTCOM_STORAGE__DATABASE_URL", pg.url().to_owned()),
    ];
    let server_process::ServerProcess { mut child, base, .. } = server_process::start(dir.path(), &pg_env).await;
    let after = api_answers(&base).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(after, before);
}

#[tokio::test]
async fn unreachable_sides_and_bad_usage_are_reported_clearly_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    synthetic::write_edge_cases(&source).await.unwrap();
    // a port nothing listens on, and a password that must never be printed
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://someone:s3cr3t-pw@127.0.0.1:{port}/nowhere");
    let cfg = config(dir.path(), "c.toml", &source, &url, "");

    for (from, to) in [("sqlite", "postgres"), ("postgres", "sqlite")] {
        let out = migrate(&cfg, from, to, &[]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(code(&out), 1, "{stderr}");
        assert!(stderr.contains(&format!("127.0.0.1:{port}")), "names the server: {stderr}");
        assert!(!stderr.contains("s3cr3t-pw") && !stdout.contains("s3cr3t-pw"), "{stdout}{stderr}");
    }

    let missing = config(dir.path(), "m.toml", &dir.path().join("absent.db"), &url, "");
    let out = migrate(&missing, "sqlite", "postgres", &[]);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("absent.db") && text(&out.stderr).contains("does not exist"));
    assert!(!dir.path().join("absent.db").exists(), "a missing source is never created");

    let out = migrate(&cfg, "sqlite", "sqlite", &[]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let out = migrate(&cfg, "sqlite", "postgres", &["--batch-size", "0"]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
}

/// Runs `sql` statements on a SQLite file with CHECK constraints and foreign keys off (tests
/// write what another tool could have written; table names are data here, so no query macro).
async fn tamper(path: &Path, statements: &[String]) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    conn.execute("PRAGMA ignore_check_constraints = ON").await.unwrap();
    conn.execute("PRAGMA foreign_keys = OFF").await.unwrap();
    for sql in statements {
        conn.execute(sqlx::AssertSqlSafe(sql.clone())).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.unwrap();
}

/// `table.column` of every value line `decentcom migrate` listed as unstorable.
fn listed_columns(output: &str) -> std::collections::BTreeSet<String> {
    output
        .lines()
        .filter(|l| l.starts_with("  ") && (l.contains(": contains U+0000") || l.contains(": is not valid UTF-8")))
        .map(|l| l.trim().split(' ').next().unwrap().to_owned())
        .collect()
}

/// Whether a PostgreSQL database holds any table.
async fn pg_tables(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetch_one(&mut conn).await.unwrap()
}

#[tokio::test]
async fn a_source_holding_nul_is_refused_untouched_then_moved_with_replace_nul() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    synthetic::write_edge_cases(&source).await.unwrap();
    tamper(
        &source,
        &["UPDATE messages SET content = 'x' || char(0) || 'y' WHERE id = (SELECT min(id) FROM messages WHERE deleted_at IS NULL)"
            .to_owned()],
    )
    .await;
    let message_id = synthetic::read_sqlite(&source).await.unwrap();
    let message_id = rows_of(&message_id, Table::Messages)
        .iter()
        .find(|r| matches!(&r[4], Value::Text(t) if t.contains('\0')))
        .map(|r| r[0].clone())
        .unwrap();
    let Value::Int(message_id) = message_id else { unreachable!() };
    let pg = ScratchPg::create("migrate_nul").await;
    let cfg = config(dir.path(), "nul.toml", &source, pg.url(), "");

    let dry = migrate(&cfg, "sqlite", "postgres", &["--dry-run"]);
    expect_success(&dry);
    let listed = text(&dry.stdout);
    assert!(listed.contains(&format!("messages.content (id={message_id}): contains U+0000")), "{listed}");
    assert!(listed.contains("a real run would refuse"), "{listed}");

    let refused = migrate(&cfg, "sqlite", "postgres", &[]);
    assert_eq!(code(&refused), 6, "{}\n{}", text(&refused.stdout), text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains(&format!("messages.content (id={message_id})")) && stderr.contains("nothing was written"));
    assert_eq!(pg_tables(pg.url()).await, 0, "the target is untouched");

    let moved = migrate(&cfg, "sqlite", "postgres", &["--replace-nul"]);
    expect_success(&moved);
    let stdout = text(&moved.stdout) + &text(&moved.stderr);
    assert!(stdout.contains("source and target hold the same rows in every table"), "{stdout}");
    assert!(stdout.contains("messages: 1 value(s) with U+0000"), "{stdout}");
    let copied = synthetic::read_postgres(pg.url()).await.unwrap();
    let content = rows_of(&copied, Table::Messages).iter().find(|r| r[0] == Value::Int(message_id)).unwrap()[4].clone();
    assert_eq!(content, Value::Text("x\u{FFFD}y".into()));
    // Every other row is the source's, byte for byte.
    let mut expected = synthetic::read_sqlite(&source).await.unwrap();
    decentcom::migrate::unstorable::replace_nul(
        &mut expected.iter_mut().find(|(t, _)| *t == Table::Messages).unwrap().1,
    );
    assert_eq!(copied, expected);
}

#[tokio::test]
async fn every_text_column_is_checked_and_invalid_utf8_is_refused_even_with_replace_nul() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    synthetic::write_edge_cases(&source).await.unwrap();
    let rows = synthetic::read_sqlite(&source).await.unwrap();
    // A NUL in every text value of every table; expected: every text column that holds a value.
    let mut statements = Vec::new();
    let mut expected = std::collections::BTreeSet::new();
    for (table, table_rows) in &rows {
        for (i, (column, kind)) in table.columns().iter().enumerate() {
            if *kind != decentcom::migrate::tables::Kind::Text {
                continue;
            }
            if table_rows.iter().any(|r| r[i] != Value::Null) {
                expected.insert(format!("{}.{column}", table.name()));
            }
            statements.push(format!(
                "UPDATE {0} SET {1} = CAST(CAST({1} AS BLOB) || x'00' AS TEXT) WHERE {1} IS NOT NULL",
                table.name(),
                column
            ));
        }
    }
    tamper(&source, &statements).await;
    let pg = ScratchPg::create("migrate_text").await;
    let cfg = config(dir.path(), "text.toml", &source, pg.url(), "");
    let dry = migrate(&cfg, "sqlite", "postgres", &["--dry-run"]);
    expect_success(&dry);
    assert_eq!(listed_columns(&text(&dry.stdout)), expected);

    // Bytes that are not UTF-8 cannot be fixed by --replace-nul.
    tamper(
        &source,
        &["UPDATE users SET display_name = CAST(x'41ff42' AS TEXT) WHERE id = (SELECT min(id) FROM users)".to_owned()],
    )
    .await;
    let refused = migrate(&cfg, "sqlite", "postgres", &["--replace-nul"]);
    assert_eq!(code(&refused), 6, "{}\n{}", text(&refused.stdout), text(&refused.stderr));
    assert!(text(&refused.stderr).contains("users.display_name (id="), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("is not valid UTF-8"));
    assert_eq!(pg_tables(pg.url()).await, 0, "the target is untouched");
}
