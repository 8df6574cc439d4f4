//! `just bench-media`: S3 media through the real server, against s3s-fs on loopback.
//!
//! Starts s3s-fs (installed by `scripts/install-s3s-fs.sh`) and `target/release/decentcom serve`
//! as child processes (provider = s3), then measures:
//! - upload throughput through the server (MiB/s, one file per request, streamed) against a direct
//!   object_store multipart put of the same bytes to the same s3s-fs, in the same run (ratio;
//!   target >= 0.8);
//! - the server's resident memory while a 1 GiB upload streams through (VmRSS sampled from
//!   /proc/<pid>/status, and VmHWM): idle vs peak (target < 64 MiB above idle);
//! - the server's time to answer `GET /api/v1/media/{id}` with its 302 (p50, p99).
//!
//! It prints figures; it is not a test.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common/login.rs"]
mod login;
#[path = "common/process.rs"]
mod process;

use process::{Proc, free_port, repo_root, wait_for_port};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 256 * 1024;

struct Args {
    throughput_mib: u64,
    rounds: usize,
    rss_mib: u64,
    redirects: usize,
    /// Where s3s-fs keeps its objects (default: a temporary directory under $TMPDIR).
    data_in: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args { throughput_mib: 256, rounds: 3, rss_mib: 1024, redirects: 500, data_in: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let raw = it.next();
        if flag == "--data-in" {
            args.data_in = raw.map(PathBuf::from);
            continue;
        }
        let value = raw.and_then(|v| v.replace('_', "").parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--throughput-mib", Some(v)) => args.throughput_mib = v,
            ("--rounds", Some(v)) => args.rounds = v.max(1) as usize,
            ("--rss-mib", Some(v)) => args.rss_mib = v,
            ("--redirects", Some(v)) => args.redirects = v.max(1) as usize,
            _ => {
                eprintln!(
                    "usage: bench_media [--throughput-mib N] [--rounds N] [--rss-mib N] [--redirects N] [--data-in DIR]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// The bytes of file `seed`: `size` bytes in chunks, each chunk distinct (no deduplication).
fn chunks(seed: u64, size: u64) -> impl Iterator<Item = Bytes> {
    let mut pattern = vec![0u8; CHUNK];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in pattern.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let count = size.div_ceil(CHUNK as u64);
    (0..count).map(move |i| {
        let len = (size - i * CHUNK as u64).min(CHUNK as u64) as usize;
        let mut chunk = pattern[..len].to_vec();
        chunk[..16.min(len)].copy_from_slice(&[seed.to_le_bytes(), i.to_le_bytes()].concat()[..16.min(len)]);
        Bytes::from(chunk)
    })
}

/// Streams a one-file multipart upload over raw HTTP/1.1 (nothing buffered on this side);
/// returns the response status and body.
async fn upload(addr: &str, token: &str, channel: &str, seed: u64, size: u64) -> (u16, Value) {
    let boundary = "bench-media-boundary-5c2f";
    let pre = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{seed}.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let post = format!("\r\n--{boundary}--\r\n");
    let length = pre.len() as u64 + size + post.len() as u64;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let head = format!(
        "POST /api/v1/channels/{channel}/attachments HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(pre.as_bytes()).await.unwrap();
    for chunk in chunks(seed, size) {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.write_all(post.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    ticks / 100.0
}

fn mib(bytes_per_sec: f64) -> f64 {
    bytes_per_sec / MIB as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let root = repo_root();

    // s3s-fs with random keys over a temporary directory.
    let installed = Command::new("bash").arg(root.join("scripts/install-s3s-fs.sh")).output().unwrap();
    assert!(installed.status.success(), "scripts/install-s3s-fs.sh failed");
    let s3s = PathBuf::from(String::from_utf8(installed.stdout).unwrap().trim());
    let dir = tempfile::tempdir().unwrap();
    let data_root = match &args.data_in {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let data = data_root.path().join("s3");
    let bucket = "media";
    std::fs::create_dir_all(data.join(bucket)).unwrap();
    let key: String = format!("AK{:016X}", rand::random::<u64>());
    let secret: String = (0..20).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let s3_port = free_port();
    let mut s3_child = Command::new(&s3s)
        .args(["--host", "127.0.0.1", "--port", &s3_port.to_string(), "--access-key", &key, "--secret-key", &secret])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(s3_port, &mut s3_child, "s3s-fs").await;
    let s3_pid = s3_child.id();
    let _s3 = Proc(s3_child);
    let endpoint = format!("http://127.0.0.1:{s3_port}");

    // The server, as a child process.
    let binary = root.join("target/release/decentcom");
    assert!(binary.is_file(), "{} is missing: cargo build --release -p decentcom", binary.display());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(&binary)
        .arg("serve")
        .current_dir(dir.path())
        .env("DECENTCOM_NETWORK__BIND_ADDRESS", &addr)
        .env("DECENTCOM_STORAGE__DATABASE_PATH", dir.path().join("bench.db"))
        .env("DECENTCOM_STORAGE__MEDIA__PROVIDER", "s3")
        .env("DECENTCOM_STORAGE__MEDIA__BUCKET", bucket)
        .env("DECENTCOM_STORAGE__MEDIA__ENDPOINT", &endpoint)
        .env("DECENTCOM_STORAGE__MEDIA__ALLOW_HTTP", "true")
        .env("DECENTCOM_CONTENT__MAX_FILE_SIZE", (4 * 1024 * MIB).to_string())
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut server, "decentcom").await;
    let pid = server.id();
    let _server = Proc(server);
    let base = format!("http://{addr}");

    // Log in and find the default channel.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let token = login::login(&http, &base, &SigningKey::from_bytes(&[7; 32])).await;
    let channels: Value =
        http.get(format!("{base}/api/v1/channels")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let channel = channels["channels"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == "general"))
        .and_then(|c| c["id"].as_str())
        .expect("the general channel")
        .to_owned();

    // Warm up (connections, allocator), then the idle figure.
    let (status, _) = upload(&addr, &token, &channel, 1, 8 * MIB).await;
    assert_eq!(status, 201, "warm-up upload");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = proc_status_kib(pid, "VmRSS:");

    // Peak RSS while a large upload streams through.
    let peak = Arc::new(AtomicU64::new(idle_kib));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let (status, body) = upload(&addr, &token, &channel, 2, args.rss_mib * MIB).await;
    let big_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(status, 201, "large upload: {body}");
    let hwm_kib = proc_status_kib(pid, "VmHWM:");
    let peak_kib = peak.load(Ordering::Relaxed).max(hwm_kib);

    // Throughput: through the server vs a direct object_store put to the same s3s-fs.
    let direct = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_access_key_id(&key)
            .with_secret_access_key(&secret)
            .with_region("us-east-1")
            .build()
            .unwrap(),
    );
    let size = args.throughput_mib * MIB;
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    let me = std::process::id();
    let cpu = || [cpu_seconds(me), cpu_seconds(pid), cpu_seconds(s3_pid)];
    let (mut cpu_through, mut cpu_straight) = ([0.0; 3], [0.0; 3]);
    for round in 0..args.rounds as u64 {
        let before = cpu();
        let started = Instant::now();
        let (status, body) = upload(&addr, &token, &channel, 100 + round, size).await;
        assert_eq!(status, 201, "upload: {body}");
        through.push(size as f64 / started.elapsed().as_secs_f64());
        let after = cpu();
        (0..3).for_each(|i| cpu_through[i] += after[i] - before[i]);

        let before = cpu();
        let started = Instant::now();
        let upload = direct.put_multipart(&ObjectPath::from(format!("direct/{round}"))).await.unwrap();
        let mut writer = WriteMultipart::new(upload);
        for chunk in chunks(200 + round, size) {
            writer.wait_for_capacity(4).await.unwrap();
            writer.put(chunk);
        }
        writer.finish().await.unwrap();
        straight.push(size as f64 / started.elapsed().as_secs_f64());
        let after = cpu();
        (0..3).for_each(|i| cpu_straight[i] += after[i] - before[i]);
    }
    let per_gib = |cpu: [f64; 3]| {
        let gib = (size * args.rounds as u64) as f64 / (1024.0 * MIB as f64);
        format!("bench {:.2} s, server {:.2} s, s3s-fs {:.2} s", cpu[0] / gib, cpu[1] / gib, cpu[2] / gib)
    };
    let (through, straight) = (median(through), median(straight));

    // The 302: the server's own answer time (keep-alive client, no redirect followed).
    let hash = body[0]["content_hash"].as_str().expect("a media id").to_owned();
    let url = format!("{base}/api/v1/media/{hash}");
    let mut latencies = Vec::with_capacity(args.redirects);
    for _ in 0..args.redirects + 20 {
        let started = Instant::now();
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let _ = resp.bytes().await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let latencies: Vec<f64> = latencies.split_off(20);
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "bench-media (s3s-fs on loopback with its data in {}, release server as a child process)",
        data_root.path().display()
    )
    .unwrap();
    writeln!(
        out,
        "upload throughput, {} MiB x {} rounds (median): server {:.1} MiB/s, direct object_store put {:.1} MiB/s, ratio {:.2} (target >= 0.8)",
        args.throughput_mib,
        args.rounds,
        mib(through),
        mib(straight),
        through / straight
    )
    .unwrap();
    writeln!(out, "  CPU per GiB through the server: {}", per_gib(cpu_through)).unwrap();
    writeln!(out, "  CPU per GiB direct put:         {}", per_gib(cpu_straight)).unwrap();
    writeln!(
        out,
        "server RSS during a {} MiB upload ({:.1} MiB/s): idle {:.1} MiB, peak {:.1} MiB (VmHWM {:.1} MiB), +{:.1} MiB above idle (target < 64)",
        args.rss_mib,
        mib(args.rss_mib as f64 * MIB as f64 / big_secs),
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
        hwm_kib as f64 / 1024.0,
        (peak_kib.saturating_sub(idle_kib)) as f64 / 1024.0
    )
    .unwrap();
    writeln!(
        out,
        "302 to a pre-signed URL, {} requests: p50 {:.3} ms, p99 {:.3} ms",
        latencies.len(),
        pct(0.50),
        pct(0.99)
    )
    .unwrap();
}
