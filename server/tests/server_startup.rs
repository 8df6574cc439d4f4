//! `decentcom serve` as a real child process: first start creates the SQLite file and the media
//! directory, `/health` and `/api/v1/server/info` answer, SIGTERM stops it cleanly; and `/health`
//! answers 503 JSON once the database is gone.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

#[path = "common/server_process.rs"]
mod server_process;

/// Starts the binary in `dir` with `env` (and the server name the checks expect).
async fn start(dir: &Path, env: &[(&str, String)]) -> (Child, String) {
    let mut env = env.to_vec();
    env.push(("DECENTCOM_SERVER__NAME", "Test Server".into()));
    let server = server_process::start(dir, &env).await;
    (server.child, server.base)
}

fn sigterm_and_wait(mut child: Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "decentcom exited with {status} after SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "decentcom did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn first_start_on_sqlite_creates_its_files_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start(dir.path(), &[]).await;

    assert!(dir.path().join("decentcom.db").is_file(), "the SQLite file is created");
    assert!(dir.path().join("media").is_dir(), "the media directory is created");

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.headers()["content-type"], "application/json");
    assert_eq!(health.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let info: Value = reqwest::get(format!("{base}/api/v1/server/info")).await.unwrap().json().await.unwrap();
    assert_eq!(info, json!({"name": "Test Server", "description": null, "membership_mode": "open", "icon": null}));

    sigterm_and_wait(child);
}

#[tokio::test]
async fn health_is_503_json_when_the_postgres_database_goes_away() {
    let scratch = decentcom::testing::ScratchPg::create("startup").await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start(
        dir.path(),
        &[
            ("DECENTCOM_STORAGE__BACKEND", "postgres".into()),
            ("DECENTCOM_STORAGE__DATABASE_URL", scratch.url().into()),
            ("DECENTCOM_STORAGE__ACQUIRE_TIMEOUT_SECONDS", "2".into()),
        ],
    )
    .await;
    assert!(!dir.path().join("decentcom.db").exists(), "no SQLite file with backend = postgres");

    drop(scratch); // drops the database, closing the server's connections
    let resp = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"error": "database unavailable"}));

    sigterm_and_wait(child);
}

/// Runs `decentcom serve` with `env`, expecting it to refuse to start; returns its stderr.
fn refuses_to_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_decentcom"));
    cmd.arg("serve").current_dir(dir.path()).env("DECENTCOM_NETWORK__BIND_ADDRESS", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    assert!(!output.status.success(), "decentcom started although it should not have");
    String::from_utf8(output.stderr).unwrap()
}

fn postgres_env(url: &str) -> [(&'static str, &str); 3] {
    [
        ("DECENTCOM_STORAGE__BACKEND", "postgres"),
        ("DECENTCOM_STORAGE__DATABASE_URL", url),
        ("DECENTCOM_STORAGE__ACQUIRE_TIMEOUT_SECONDS", "3"),
    ]
}

#[test]
fn an_unreachable_postgres_is_named_by_host_and_port_without_the_password() {
    let stderr = refuses_to_start(&postgres_env("postgres://app:hunter2@127.0.0.1:1/decentcom"));
    assert!(stderr.contains("cannot reach the database server at 127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn an_unreachable_nats_bus_is_named_by_its_url() {
    let stderr =
        refuses_to_start(&[("DECENTCOM_BUS__PROVIDER", "nats"), ("DECENTCOM_BUS__NATS_URL", "nats://127.0.0.1:1")]);
    assert!(stderr.contains("cannot start the event bus (nats at nats://127.0.0.1:1)"), "{stderr}");
    assert!(stderr.contains("cannot reach NATS at nats://127.0.0.1:1"), "{stderr}");
    // Credentials belong in the environment, never in the URL.
    let stderr = refuses_to_start(&[
        ("DECENTCOM_BUS__PROVIDER", "nats"),
        ("DECENTCOM_BUS__NATS_URL", "nats://app:hunter2@127.0.0.1:1"),
    ]);
    assert!(stderr.contains("bus.nats_url must not hold credentials"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_missing_postgres_database_is_named() {
    let admin = decentcom::testing::pg_admin_url();
    let url = format!("{}/decentcom_no_such_database", admin.rsplit_once('/').unwrap().0);
    let stderr = refuses_to_start(&postgres_env(&url));
    assert!(stderr.contains("database `decentcom_no_such_database` does not exist"), "{stderr}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_database_migrated_by_a_newer_binary_is_refused() {
    use sqlx::Connection;
    let scratch = decentcom::testing::ScratchPg::create("newer").await;
    let settings = decentcom::storage::PoolSettings::from_config(&Default::default());
    drop(decentcom::storage::postgres::PostgresBackend::open(scratch.url(), &settings).await.unwrap());
    // Pretend a newer decentcom applied a migration this binary does not know. This edits sqlx's
    // own bookkeeping table, which the query macros do not cover (test-only runtime SQL).
    let mut conn = sqlx::PgConnection::connect(scratch.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let url = scratch.url().to_owned();
    let stderr = tokio::task::spawn_blocking(move || refuses_to_start(&postgres_env(&url))).await.unwrap();
    assert!(stderr.contains("migration 99990101000000") && stderr.contains("refusing to start"), "{stderr}");
}

#[test]
fn configuration_errors_stop_startup_naming_the_key() {
    let stderr = refuses_to_start(&[("DECENTCOM_STORAGE__MAX_CONECTIONS", "5")]);
    assert!(
        stderr.contains("storage.max_conections") && stderr.contains("DECENTCOM_STORAGE__MAX_CONECTIONS"),
        "{stderr}"
    );
    let stderr = refuses_to_start(&[("DECENTCOM_STORAGE__BACKEND", "postgres")]);
    assert!(stderr.contains("storage.database_url is required when backend = \"postgres\""), "{stderr}");
}

#[test]
fn s3_media_needs_credentials_from_the_environment_and_a_reachable_bucket() {
    let s3 = [
        ("DECENTCOM_STORAGE__MEDIA__PROVIDER", "s3"),
        ("DECENTCOM_STORAGE__MEDIA__BUCKET", "decentcom-media"),
        ("DECENTCOM_STORAGE__MEDIA__ENDPOINT", "http://127.0.0.1:1"),
        ("DECENTCOM_STORAGE__MEDIA__ALLOW_HTTP", "true"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_decentcom"))
        .arg("serve")
        .current_dir(dir.path())
        .env("DECENTCOM_NETWORK__BIND_ADDRESS", "127.0.0.1:0")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .envs(s3)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("missing S3 credentials"), "{stderr}");

    // With credentials in the environment, the bucket must answer; the secret is never printed.
    let mut env = s3.to_vec();
    env.extend([("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-printed")]);
    let stderr = refuses_to_start(&env);
    assert!(stderr.contains("media store unreachable: bucket \"decentcom-media\" at http://127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-never-printed"), "{stderr}");
}
