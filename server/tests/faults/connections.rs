//! Connections that cannot exhaust the process (api.md §1.7): the request-head and keep-alive
//! deadlines, `network.max_connections`, and the open-file limit raised at startup — with a real
//! server under the common soft limit of 1,024 files and 2,000 silent sockets open against it.

use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use decentcom::http::listener::{self, Limits};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server_process::{self, ServerProcess};
use crate::support::{Client, log_in};

/// A server of the real accept loop with short deadlines, answering `GET /` with `ok`.
async fn small_server(limits: Limits) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        listener::serve(socket, app, limits, std::future::pending()).await.unwrap();
    });
    (addr, task)
}

const SHORT: Limits =
    Limits { max_connections: 2, head_timeout: Duration::from_millis(400), idle_timeout: Duration::from_millis(1500) };

/// How long the server keeps `stream` open from now (it closes: read gives 0 or an error).
async fn open_for(stream: &mut TcpStream, at_most: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(at_most.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return at_most,
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue, // a response; keep waiting for the close
        }
    }
}

async fn get_root(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_head_timeout() {
    let (addr, _server) = small_server(SHORT).await;
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let open = open_for(&mut silent, Duration::from_secs(5)).await;
    assert!(open >= Duration::from_millis(300) && open < Duration::from_millis(1200), "closed after {open:?}");
}

#[tokio::test]
async fn a_head_trickling_in_is_closed_after_the_head_timeout_from_its_first_byte() {
    let (addr, _server) = small_server(SHORT).await;
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    // A first request, so that the keep-alive idle limit (1.5 s) rather than the first-request
    // limit applies while nothing arrives.
    assert!(get_root(&mut slow).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nx-slow: ").await.unwrap();
    let closed = loop {
        if slow.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "a trickling head is never cut");
    };
    assert!(closed >= Duration::from_millis(300) && closed < Duration::from_millis(1200), "closed after {closed:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_stays_open_past_the_head_timeout_until_the_idle_timeout() {
    let (addr, _server) = small_server(SHORT).await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    assert!(get_root(&mut conn).await.starts_with("HTTP/1.1 200"));
    let open = open_for(&mut conn, Duration::from_secs(5)).await;
    assert!(open >= Duration::from_millis(1300) && open < Duration::from_millis(2500), "closed after {open:?}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let (addr, _server) = small_server(SHORT).await;
    let mut first = TcpStream::connect(&addr).await.unwrap();
    let mut second = TcpStream::connect(&addr).await.unwrap();
    assert!(get_root(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(get_root(&mut second).await.starts_with("HTTP/1.1 200"));
    // Both are held (keep-alive): a third is connected by the kernel but not served...
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await.is_err(), "served early");
    // ...until one of them closes.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// Runs the server binary with the open-file limits `soft` / `hard` (as `ulimit -Sn` / `-Hn`).
fn with_file_limits(soft: u64, hard: u64) -> impl FnOnce(&mut Command) {
    move |cmd: &mut Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || rlimit::Resource::NOFILE.set(soft, hard));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_silent_sockets_do_not_lock_clients_out() {
    // This test holds 2,000 sockets itself.
    rlimit::increase_nofile_limit(8192).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [("DECENTCOM_NETWORK__MAX_CONNECTIONS", "3000".to_owned())];
    let server: ServerProcess = server_process::start_with(dir.path(), &env, with_file_limits(1024, 4096)).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    let mut silent = Vec::new();
    for _ in 0..2000 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let anon = Client { http: reqwest::Client::new(), base: server.base.clone(), token: None };
    let started = Instant::now();
    let health = anon.get("/health").await;
    let health_took = started.elapsed();
    assert_eq!(health.status, 200);
    let started = Instant::now();
    let user = log_in(&anon, ed25519_dalek::SigningKey::from_bytes(&[7; 32]), false).await;
    let login_took = started.elapsed();
    assert_eq!(user.get("/api/v1/auth/me").await.status, 200);
    println!("with 2000 silent sockets: /health {health_took:?}, login {login_took:?}");
    assert!(health_took < Duration::from_secs(1), "/health took {health_took:?}");
    assert!(login_took < Duration::from_secs(1), "login took {login_took:?}");

    // The silent sockets are closed by the request-head deadline (10 s after they opened).
    tokio::time::sleep(listener::HEAD_TIMEOUT + Duration::from_secs(1)).await;
    let mut closed = 0;
    for stream in &mut silent {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, silent.len(), "silent sockets closed by the head deadline");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("raised the open-file limit"), "{log}");
}

#[tokio::test]
async fn a_hard_file_limit_below_max_connections_is_refused_naming_both_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_decentcom"));
    cmd.arg("serve")
        .current_dir(dir.path())
        .env("DECENTCOM_NETWORK__BIND_ADDRESS", format!("127.0.0.1:{}", server_process::free_port()));
    with_file_limits(1024, 1024)(&mut cmd);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the hard limit is 1024") && stderr.contains("network.max_connections = 10000"),
        "{stderr}"
    );
}
