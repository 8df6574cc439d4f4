//! Support for tests and benchmarks: throwaway PostgreSQL databases. Not used by the server.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The server the PostgreSQL suites create their databases on: `$DECENTCOM_TEST_PG_URL`, else
/// the local server.
pub fn pg_admin_url() -> String {
    std::env::var("DECENTCOM_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty PostgreSQL database, dropped (with any connections still open to it) when this
/// value is dropped — also when the test using it panics.
#[derive(Debug)]
pub struct ScratchPg {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchPg {
    /// Creates `decentcom_<prefix>_<random>`. Panics with a message naming the server and how to
    /// start it when PostgreSQL cannot be reached: a PostgreSQL suite must fail, never skip.
    pub async fn create(prefix: &str) -> ScratchPg {
        let admin_url = pg_admin_url();
        let name = format!("decentcom_{prefix}_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {} ({e}); set DECENTCOM_TEST_PG_URL or start the local server: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                crate::config::redact_url(&admin_url)
            )
        });
        // DDL on a generated name cannot be a checked query macro (identifiers are not parameters).
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("DECENTCOM_TEST_PG_URL must name a database: {admin_url}"),
        };
        ScratchPg { admin_url, name, url }
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl ScratchPg {
    /// Terminates every LISTEN connection to this database, as a PostgreSQL restart or a network
    /// blip would; one `true` per connection cut.
    pub async fn cut_listen_connections(&self) -> Vec<bool> {
        let mut conn =
            PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("cannot connect {}: {e}", self.name));
        // Harness SQL against the catalogue, not the application's schema: a runtime query.
        let cut = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot list the LISTEN connections of {}: {e}", self.name));
        let _ = conn.close().await;
        cut
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime; do the blocking work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop scratch database {}", self.name);
        }
    }
}
