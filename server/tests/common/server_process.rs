//! `decentcom serve` as a child process, configured through the environment only — shared by
//! the suites that run the real binary (startup, scale-out, migrate).

// Not every suite reads every field.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `decentcom serve`.
pub struct ServerProcess {
    pub child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Where its stderr goes: `stderr.log` in its working directory.
    pub log: PathBuf,
}

/// Starts the binary in `dir` (so no `decentcom.toml` is picked up from elsewhere) on a free
/// loopback port with `env`, and waits until it answers `/health`. Panics with its stderr if it
/// exits first.
pub async fn start(dir: &Path, env: &[(&str, String)]) -> ServerProcess {
    start_with(dir, env, |_| {}).await
}

/// As [`start`], with the command adjusted by `customize` before it is spawned (resource limits).
pub async fn start_with(dir: &Path, env: &[(&str, String)], customize: impl FnOnce(&mut Command)) -> ServerProcess {
    let port = free_port();
    let log = dir.join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_decentcom"));
    cmd.arg("serve")
        .current_dir(dir)
        .env("DECENTCOM_NETWORK__BIND_ADDRESS", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    customize(&mut cmd);
    let mut child = cmd.spawn().expect("spawn decentcom");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = reqwest::get(format!("{base}/health")).await {
            assert_eq!(resp.status(), 200);
            return ServerProcess { child, base, log };
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("decentcom serve exited before serving ({status}):\n{}", std::fs::read_to_string(&log).unwrap());
        }
        assert!(Instant::now() < deadline, "decentcom serve did not start within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
