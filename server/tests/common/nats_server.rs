//! NATS for the suites that use the NATS bus provider: the machine's server through `$NATS_URL`
//! (default `nats://127.0.0.1:4222`), or a NATS server process of the test's own, for tests that
//! restart it (never the shared one).

// Not every suite uses every item.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `$NATS_URL`, or the local server. Panics, naming the address, when nothing answers there: a
/// NATS suite fails, never skips.
pub fn shared_url() -> String {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let address = url.trim_start_matches("nats://").rsplit('@').next().unwrap_or_default().to_owned();
    if std::net::TcpStream::connect_timeout(
        &address.parse().unwrap_or_else(|e| panic!("NATS_URL {url} is not host:port ({e})")),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("no NATS server answers at {url}: start one with JetStream enabled (nats-server -js) or set NATS_URL");
    }
    url
}

/// A stream name no other test uses.
pub fn unique_stream(prefix: &str) -> String {
    format!("{prefix}_{:016X}", rand::random::<u64>())
}

/// A `nats-server -js` child on a free loopback port, its store in a directory of its own that
/// outlives restarts. Killed when dropped.
pub struct OwnNatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnNatsServer {
    pub async fn start() -> OwnNatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = dir.path().join("jetstream");
        let mut server = OwnNatsServer { child: None, port, store, _dir: dir };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and starts it again on the same port
    /// and store, after `down` without a server.
    pub async fn restart(&mut self, down: Duration) {
        self.kill();
        tokio::time::sleep(down).await;
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn spawn(&mut self) {
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): install nats-server (Debian: apt-get install nats-server) or set \
                     NATS_SERVER_BIN"
                )
            });
        self.child = Some(child);
        wait_for_port(self.port, &self.store).await;
    }
}

async fn wait_for_port(port: u16, store: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server (store {}) did not listen on {port}", store.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
