//! PostgreSQL outages through a proxy the test owns: severed, stalled, then every connection
//! terminated by the server (57P01, as in a restart), while four clients post throughout and a
//! load balancer's probe polls `/health`.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::proxy::{Mode, Proxy};
use crate::support::{Backend, TestServer};

/// The server's `storage.acquire_timeout_seconds` in this test.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an answer may take during an outage: the acquire timeout, plus the time the
/// database monitor needs to see a silent database (one ping interval and one ping timeout), plus
/// scheduling slack on a loaded machine.
const OUTAGE_ANSWER_BOUND: Duration = Duration::from_secs(2 + 2 + 1);
/// `/health` must answer within this, whatever the database does (api.md §3.1).
const HEALTH_BOUND: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    Severed,
    AfterSever,
    Stalled,
    AfterStall,
    Terminated,
}

#[derive(Debug)]
struct Answer {
    phase: Phase,
    status: u16,
    error: Option<String>,
    took: Duration,
    content: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_fails_fast_and_service_comes_back_alone() {
    let admin_url = url::Url::parse(&decentcom::testing::pg_admin_url()).unwrap();
    let upstream =
        (admin_url.host_str().unwrap(), admin_url.port().unwrap_or(5432)).to_socket_addrs().unwrap().next().unwrap();
    decentcom::http::init_tracing();
    let proxy = Proxy::start(upstream).await;
    let proxied = proxy.addr;
    let server = TestServer::start_with(Backend::Postgres, |config| {
        let mut url = url::Url::parse(config.storage.database_url.as_deref().unwrap()).unwrap();
        url.set_host(Some(&proxied.ip().to_string())).unwrap();
        url.set_port(Some(proxied.port())).unwrap();
        config.storage.database_url = Some(url.to_string());
        config.storage.acquire_timeout_seconds = ACQUIRE_TIMEOUT.as_secs();
        // Four clients post as fast as they can (a flood to the rate limits).
        config.limits = decentcom::config::LimitsConfig::off();
    })
    .await;
    let database = server.database_name().to_owned();

    let admin = server.login(1).await;
    let channel = admin.create_channel("outage").await;
    let mut posters = Vec::new();
    for seed in 2..6u8 {
        posters.push(server.login(seed).await);
    }
    let mut gateway = server.gateway(admin.token()).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": channel}})).await;

    let phase = Arc::new(Mutex::new(Phase::Before));
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, poster) in posters.into_iter().enumerate() {
        let (phase, stop, answers, channel) = (phase.clone(), stop.clone(), answers.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let content = format!("poster {n} message {i}");
                i += 1;
                let at = *phase.lock().await;
                let started = Instant::now();
                let r =
                    poster.post(&format!("/api/v1/channels/{channel}/messages"), json!({ "content": content })).await;
                let error = r.body.get("error").and_then(Value::as_str).map(str::to_owned);
                answers.lock().await.push(Answer {
                    phase: at,
                    status: r.status,
                    error,
                    took: started.elapsed(),
                    content,
                });
                if r.status != 200 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let probes: Arc<Mutex<Vec<Answer>>> = Arc::default();
    tasks.push(tokio::spawn({
        let (phase, stop, probes, anon) = (phase.clone(), stop.clone(), probes.clone(), server.anonymous());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let at = *phase.lock().await;
                let started = Instant::now();
                let r = anon.send(anon.request(reqwest::Method::GET, "/health").timeout(Duration::from_secs(10))).await;
                let error = r.body.get("error").and_then(Value::as_str).map(str::to_owned);
                probes.lock().await.push(Answer {
                    phase: at,
                    status: r.status,
                    error,
                    took: started.elapsed(),
                    content: String::new(),
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }));

    let script = [
        (Phase::Before, None, 2),
        (Phase::Severed, Some(Mode::Sever), 5),
        (Phase::AfterSever, Some(Mode::Forward), 4),
        (Phase::Stalled, Some(Mode::Stall), 6),
        (Phase::AfterStall, Some(Mode::Forward), 5),
    ];
    for (next, mode, seconds) in script {
        *phase.lock().await = next;
        if let Some(mode) = mode {
            proxy.set(mode);
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    // A restart as the server sees it: PostgreSQL terminates every connection (57P01).
    *phase.lock().await = Phase::Terminated;
    terminate_connections(&database).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let answers = std::mem::take(&mut *answers.lock().await);
    let probes = std::mem::take(&mut *probes.lock().await);
    println!("posts:  {}", summary(&answers));
    println!("health: {}", summary(&probes));

    // Only 200 or 503 `database unavailable`, never a hang.
    for a in answers.iter().chain(&probes) {
        assert!(a.status == 200 || (a.status == 503 && a.error.as_deref() == Some("database unavailable")), "{a:?}");
    }
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    assert!(slowest <= OUTAGE_ANSWER_BOUND, "a post took {slowest:?}");
    let slowest_probe = probes.iter().map(|a| a.took).max().unwrap();
    assert!(slowest_probe <= HEALTH_BOUND, "/health took {slowest_probe:?}");
    // The outages were outages, and service came back after each without a restart.
    for outage in [Phase::Severed, Phase::Stalled] {
        assert!(answers.iter().any(|a| a.phase == outage && a.status == 503), "no 503 during {outage:?}");
        assert!(probes.iter().any(|a| a.phase == outage && a.status == 503), "/health never 503 in {outage:?}");
    }
    for recovered in [Phase::AfterSever, Phase::AfterStall, Phase::Terminated] {
        assert!(answers.iter().any(|a| a.phase == recovered && a.status == 200), "no 200 in {recovered:?}");
    }
    assert_eq!(probes.last().unwrap().status, 200, "/health after the outages");

    // Every accepted post is readable exactly once.
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for message in all_messages(&admin, &channel).await {
        *stored.entry(message["content"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let accepted: Vec<&str> = answers.iter().filter(|a| a.status == 200).map(|a| a.content.as_str()).collect();
    let missing_or_twice: Vec<(&str, usize)> =
        accepted.iter().map(|c| (*c, stored.get(*c).copied().unwrap_or(0))).filter(|(_, n)| *n != 1).collect();
    assert_eq!(missing_or_twice, Vec::<(&str, usize)>::new(), "accepted posts not stored exactly once");
    println!("accepted {} posts, {} readable", accepted.len(), stored.values().sum::<usize>());

    // The event bus's LISTEN connection came back by itself too.
    let after = admin.post_message(&channel, "after every outage").await;
    loop {
        let event = gateway.expect_op("MESSAGE_CREATE").await;
        if event["d"]["id"] == after["id"] {
            break;
        }
    }
}

/// Statuses per phase with the slowest answer of each.
fn summary(answers: &[Answer]) -> String {
    let mut by: BTreeMap<(Phase, u16), (usize, Duration)> = BTreeMap::new();
    for a in answers {
        let entry = by.entry((a.phase, a.status)).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(a.took);
    }
    by.iter().map(|((p, s), (n, max))| format!("{p:?} {s}×{n} (max {max:.2?})")).collect::<Vec<_>>().join(", ")
}

/// Every message of a channel, newest first.
async fn all_messages(user: &crate::support::User, channel: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = user.get(&format!("/api/v1/channels/{channel}/messages?limit=100{cursor}")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let page = r.body["messages"].as_array().unwrap().clone();
        if let Some(last) = page.last() {
            cursor = format!("&before={}", last["id"].as_str().unwrap());
        }
        let more = r.body["has_more"].as_bool().unwrap();
        out.extend(page);
        if !more {
            return out;
        }
    }
}

/// Terminates every connection to `database` from the PostgreSQL side (SQLSTATE 57P01 for the
/// client), through a connection of the test's own that bypasses the proxy.
async fn terminate_connections(database: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&decentcom::testing::pg_admin_url()).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(terminated.iter().any(|t| *t), "the server held connections to terminate");
}
