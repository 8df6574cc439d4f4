//! `just bench-bus`: the event bus under increasing post rates, per provider.
//!
//! For each provider (PostgreSQL LISTEN/NOTIFY + log table, NATS JetStream) two `decentcom serve`
//! processes (target/release/decentcom) share one fresh PostgreSQL database; 20 gateway clients
//! (10 on each process) watch one channel. Posts go through both processes alternately at a
//! fixed rate (open loop: one post every 1/rate s, whatever the answers do) for `--seconds` per
//! step; each post carries its send time, and each client records when its MESSAGE_CREATE
//! arrived. Delivery latency is send → receipt, over every (message, client) pair.
//!
//! Prints, per provider and rate: posts/s achieved, delivery p50/p99/max; then the highest rate
//! sustained (≥ 95 % of the target achieved, no failed post, every client got every message,
//! delivery p99 < 250 ms) and the figures at 1,000 posts/s.
//!
//!     just bench-bus [--seconds N] [--rates 100,250,500,1000,1500]
//!
//! Needs PostgreSQL (`$DECENTCOM_TEST_PG_URL`) and NATS with JetStream (`$NATS_URL`, default
//! nats://127.0.0.1:4222).

#[path = "common/login.rs"]
mod login;
#[path = "common/process.rs"]
mod process;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use decentcom::testing::ScratchPg;
use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use process::{Proc, free_port, repo_root, wait_for_port};

const CLIENTS: usize = 20;
const P99_TARGET_MS: f64 = 250.0;

struct Args {
    seconds: u64,
    rates: Vec<u64>,
}

fn parse_args() -> Args {
    let mut args = Args { seconds: 5, rates: vec![100, 250, 500, 1000, 1500, 2000] };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--seconds", Some(v)) => args.seconds = v.parse().expect("--seconds N"),
            ("--rates", Some(v)) => args.rates = v.split(',').map(|r| r.parse().expect("--rates N,N,…")).collect(),
            _ => {
                eprintln!("usage: bench_bus [--seconds N] [--rates N,N,…]");
                std::process::exit(2);
            }
        }
    }
    args
}

fn now_micros() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

async fn start_server(dir: &Path, name: &str, database_url: &str, bus: &[(&str, String)]) -> (Proc, String) {
    let binary = repo_root().join("target/release/decentcom");
    assert!(binary.is_file(), "{} is missing: cargo build --release -p decentcom", binary.display());
    let workdir = dir.join(name);
    std::fs::create_dir_all(&workdir).unwrap();
    let port = free_port();
    let mut cmd = Command::new(&binary);
    cmd.arg("serve")
        .current_dir(&workdir)
        .env("DECENTCOM_NETWORK__BIND_ADDRESS", format!("127.0.0.1:{port}"))
        .env("DECENTCOM_STORAGE__BACKEND", "postgres")
        .env("DECENTCOM_STORAGE__DATABASE_URL", database_url)
        // The bench floods on purpose: no per-user message limit.
        .env("DECENTCOM_LIMITS__MESSAGES_PER_MINUTE", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (key, value) in bus {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().unwrap();
    wait_for_port(port, &mut child, &format!("decentcom {name}")).await;
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// Receipt latencies (µs) per post tag, shared by the clients.
type Receipts = Arc<Mutex<Vec<(u64, u64)>>>;

/// A gateway client subscribed to `channel`, recording (tag, latency µs) for every
/// MESSAGE_CREATE whose content is `<tag> <sent µs>`.
async fn watch(base: &str, token: &str, channel: &str, receipts: Receipts) -> tokio::task::JoinHandle<()> {
    let url = format!("{}/api/v1/gateway?token={token}&subscribe={channel}", base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("gateway connects");
    // HELLO and READY.
    for _ in 0..2 {
        socket.next().await.unwrap().unwrap();
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            let WsMessage::Text(text) = frame else { continue };
            let received = now_micros();
            let frame: Value = serde_json::from_str(&text).unwrap();
            match frame["op"].as_str() {
                Some("MESSAGE_CREATE") => {
                    let content = frame["d"]["content"].as_str().unwrap_or_default();
                    if let Some((tag, sent)) = content.split_once(' ') {
                        let (tag, sent): (u64, u64) = (tag.parse().unwrap(), sent.parse().unwrap());
                        receipts.lock().await.push((tag, received.saturating_sub(sent)));
                    }
                }
                Some("HEARTBEAT") => {
                    let _ = socket.send(WsMessage::Text(json!({"op": "HEARTBEAT_ACK"}).to_string().into())).await;
                }
                _ => {}
            }
        }
    })
}

struct Step {
    rate: u64,
    achieved: f64,
    failed: u64,
    missing: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Step {
    fn sustained(&self) -> bool {
        self.achieved >= 0.95 * self.rate as f64 && self.failed == 0 && self.missing == 0 && self.p99_ms < P99_TARGET_MS
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Posts at `rate` for `seconds` through both processes, then waits for the deliveries.
async fn step(
    bases: &[String; 2],
    token: &str,
    channel: &str,
    rate: u64,
    seconds: u64,
    receipts: &Receipts,
    tag0: u64,
) -> Step {
    receipts.lock().await.clear();
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut posts = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until((started + interval * u32::try_from(i).unwrap()).into()).await;
        let (http, token) = (http.clone(), token.to_owned());
        let url = format!("{}/api/v1/channels/{channel}/messages", bases[(i % 2) as usize]);
        let tag = tag0 + i;
        posts.push(tokio::spawn(async move {
            let body = json!({"content": format!("{tag} {}", now_micros())});
            matches!(http.post(url).bearer_auth(token).json(&body).send().await, Ok(r) if r.status() == 200)
        }));
    }
    let mut failed = 0;
    for post in posts {
        if !post.await.unwrap() {
            failed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let achieved = (total - failed) as f64 / elapsed;
    // Wait for the deliveries to settle (at most 10 s).
    let expected = usize::try_from(total - failed).unwrap() * CLIENTS;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receipts.lock().await.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receipts.lock().await.clone();
    let mut latencies: Vec<u64> = got.iter().map(|(_, l)| *l).collect();
    latencies.sort_unstable();
    let per_tag = got.iter().fold(HashMap::<u64, usize>::new(), |mut m, (t, _)| {
        *m.entry(*t).or_default() += 1;
        m
    });
    let missing = expected.saturating_sub(per_tag.values().sum());
    Step {
        rate,
        achieved,
        failed,
        missing,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(f64::NAN, |l| *l as f64 / 1000.0),
    }
}

async fn run_provider(name: &str, bus: &[(&str, String)], args: &Args) -> Vec<Step> {
    let pg = ScratchPg::create("bench_bus").await;
    let dir = tempfile::tempdir().unwrap();
    let (_a, base_a) = start_server(dir.path(), "a", pg.url(), bus).await;
    let (_b, base_b) = start_server(dir.path(), "b", pg.url(), bus).await;
    let bases = [base_a, base_b];
    let http = reqwest::Client::new();
    let token = login::login(&http, &bases[0], &SigningKey::from_bytes(&[1; 32])).await;
    let channels: Value = http
        .get(format!("{}/api/v1/channels", bases[0]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel = channels["channels"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == "general"))
        .and_then(|c| c["id"].as_str())
        .expect("the general channel")
        .to_owned();
    let receipts: Receipts = Arc::default();
    let mut watchers = Vec::new();
    for i in 0..CLIENTS {
        let base = &bases[i % 2];
        let key = SigningKey::from_bytes(&[u8::try_from(i + 2).unwrap(); 32]);
        let user_token = login::login(&http, base, &key).await;
        watchers.push(watch(base, &user_token, &channel, receipts.clone()).await);
    }
    // Warm up.
    step(&bases, &token, &channel, 50, 1, &receipts, 0).await;
    let mut steps = Vec::new();
    for (n, &rate) in args.rates.iter().enumerate() {
        let result = step(&bases, &token, &channel, rate, args.seconds, &receipts, 1_000_000 * (n as u64 + 1)).await;
        println!(
            "{name:>8} {:>6} posts/s target  {:>8.0} achieved  failed {:>4}  missing {:>5}  delivery p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms{}",
            result.rate,
            result.achieved,
            result.failed,
            result.missing,
            result.p50_ms,
            result.p99_ms,
            result.max_ms,
            if result.sustained() { "" } else { "  (not sustained)" }
        );
        steps.push(result);
    }
    for watcher in watchers {
        watcher.abort();
    }
    steps
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let stream = format!("DECENTCOM_BENCH_{:08X}", rand::random::<u32>());
    let providers: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("postgres", vec![("DECENTCOM_BUS__PROVIDER", "postgres".to_owned())]),
        (
            "nats",
            vec![
                ("DECENTCOM_BUS__PROVIDER", "nats".to_owned()),
                ("DECENTCOM_BUS__NATS_URL", nats_url.clone()),
                ("DECENTCOM_BUS__NATS_STREAM", stream.clone()),
            ],
        ),
    ];
    println!("two processes, {CLIENTS} gateway clients on one channel, {} s per rate", args.seconds);
    let mut summary = Vec::new();
    for (name, bus) in &providers {
        let steps = run_provider(name, bus, &args).await;
        summary.push((name.to_owned(), steps));
    }
    println!();
    for (name, steps) in &summary {
        let best = steps.iter().filter(|s| s.sustained()).map(|s| s.rate).max();
        let at_1000 = steps.iter().find(|s| s.rate == 1000);
        println!(
            "{name:>8}: highest sustained rate {}; at 1,000 posts/s: {}",
            best.map_or("none".to_owned(), |r| format!("{r} posts/s")),
            at_1000.map_or("not measured".to_owned(), |s| format!(
                "achieved {:.0}/s, delivery p50 {:.1} ms, p99 {:.1} ms",
                s.achieved, s.p50_ms, s.p99_ms
            ))
        );
    }
    // The bench's stream on the shared NATS server.
    if let Ok(client) = async_nats::connect(&nats_url).await {
        let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
    }
}
