//! Fresh databases per test. Only this file talks to a database directly (to create and drop
//! PostgreSQL test databases); the suite itself sees nothing but `&dyn Storage`.

#![allow(dead_code)]

use std::time::Duration;

use decentcom::storage::PoolSettings;
#[cfg(feature = "sqlite")]
use decentcom::storage::Storage;

fn pool_settings() -> PoolSettings {
    PoolSettings {
        // enough for the concurrency tests to really overlap, small enough for parallel tests
        max_connections: 8,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(60),
        idle_timeout: None,
        statement_timeout: None,
    }
}

/// A migrated SQLite database in its own temporary directory, removed on drop.
#[cfg(feature = "sqlite")]
pub struct SqliteTestDb {
    // Field order matters: the backend (its pool) drops before the directory is removed.
    storage: decentcom::storage::sqlite::SqliteBackend,
    _dir: tempfile::TempDir,
}

#[cfg(feature = "sqlite")]
impl SqliteTestDb {
    pub async fn create() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory for the SQLite test database");
        let path = dir.path().join("conformance.db");
        let storage = decentcom::storage::sqlite::SqliteBackend::open(&path, &pool_settings())
            .await
            .unwrap_or_else(|e| panic!("cannot open the SQLite test database {}: {e}", path.display()));
        SqliteTestDb { storage, _dir: dir }
    }

    pub fn storage(&self) -> &dyn Storage {
        &self.storage
    }
}

#[cfg(feature = "postgres")]
pub use pg::PostgresTestDb;

#[cfg(feature = "postgres")]
mod pg {
    use std::sync::atomic::{AtomicU32, Ordering};

    use decentcom::config::redact_url;
    use decentcom::storage::Storage;
    use decentcom::storage::postgres::PostgresBackend;
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    fn admin_url() -> String {
        std::env::var("DECENTCOM_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
    }

    async fn connect_admin(url: &str) -> PgConnection {
        match PgConnection::connect(url).await {
            Ok(conn) => conn,
            Err(e) => panic!(
                "the PostgreSQL conformance tests need a PostgreSQL server at {} \
                 (set DECENTCOM_TEST_PG_URL to another admin URL, or start the local one with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`): {e}",
                redact_url(url)
            ),
        }
    }

    /// A unique database name: process id, a per-process counter and the clock, so parallel test
    /// processes (and other helpers' runs) never collide.
    fn database_name() -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        format!("decentcom_conformance_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh PostgreSQL database migrated by `PostgresBackend::open`, dropped (`WITH (FORCE)`)
    /// when this value drops — also while unwinding from a failed assertion.
    pub struct PostgresTestDb {
        // Field order matters: the backend (its pool) drops before the database is dropped.
        storage: Option<PostgresBackend>,
        _guard: DropDatabase,
    }

    impl PostgresTestDb {
        pub async fn create() -> Self {
            let admin = admin_url();
            let name = database_name();
            let mut conn = connect_admin(&admin).await;
            // DDL on a generated name cannot be a checked query macro; the name is ours
            // (ASCII letters, digits and underscores only), quoted all the same.
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("cannot create the test database {name} at {}: {e}", redact_url(&admin)));
            let _ = conn.close().await;
            let guard = DropDatabase { admin_url: admin.clone(), name: name.clone() };

            let mut url = url::Url::parse(&admin).expect("DECENTCOM_TEST_PG_URL must be a URL");
            url.set_path(&format!("/{name}"));
            let storage = PostgresBackend::open(url.as_str(), &super::pool_settings())
                .await
                .unwrap_or_else(|e| panic!("cannot open the PostgreSQL test database {name}: {e}"));
            PostgresTestDb { storage: Some(storage), _guard: guard }
        }

        pub fn storage(&self) -> &dyn Storage {
            self.storage.as_ref().expect("storage is present until drop")
        }
    }

    struct DropDatabase {
        admin_url: String,
        name: String,
    }

    impl Drop for DropDatabase {
        fn drop(&mut self) {
            let admin = self.admin_url.clone();
            let name = self.name.clone();
            // Drop runs inside the test's runtime (possibly while unwinding), where blocking on a
            // future is not allowed: use a separate thread with its own small runtime.
            let outcome = std::thread::spawn(move || -> Result<(), String> {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    let mut conn = PgConnection::connect(&admin).await.map_err(|e| e.to_string())?;
                    // DDL on a generated name: see `create`. FORCE ends the backend's connections.
                    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = conn.close().await;
                    Ok(())
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the drop thread panicked".to_owned()));
            if let Err(e) = outcome {
                let message = format!("could not drop the test database {}: {e}", self.name);
                if std::thread::panicking() {
                    eprintln!("{message}");
                } else {
                    panic!("{message}");
                }
            }
        }
    }
}
