//! `just bench-storage`: the storage contract on both backends in one run.
//!
//! For each backend: message insert throughput (one per transaction, and batched), then with the
//! channel filled to `--messages` (default 1M) messages: latest-page (50) latency and search
//! latency, p50/p99. Prints a table. Targets (issue #3): latest page p99 < 5 ms, search p50 < 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use decentcom::config::StorageConfig;
use decentcom::storage::postgres::PostgresBackend;
use decentcom::storage::search::parse_query;
use decentcom::storage::sqlite::SqliteBackend;
use decentcom::storage::*;
use decentcom::testing::ScratchPg;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Args {
    messages: usize,
    single: usize,
    samples: usize,
}

fn parse_args() -> Args {
    let mut args = Args { messages: 1_000_000, single: 2_000, samples: 300 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.replace('_', "").parse().ok());
        match (flag.as_str(), value) {
            ("--messages", Some(v)) => args.messages = v,
            ("--single", Some(v)) => args.single = v,
            ("--samples", Some(v)) => args.samples = v,
            _ => {
                eprintln!("usage: bench_storage [--messages N] [--single N] [--samples N]");
                std::process::exit(2);
            }
        }
    }
    args
}

/// A fixed vocabulary of pronounceable words, so a search term matches a realistic share of
/// messages (each word appears in roughly messages × 10 / 5000 of them).
fn vocabulary() -> Vec<String> {
    let onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "st"];
    let vowels = ["a", "e", "i", "o", "u", "ai", "ou"];
    let mut rng = StdRng::seed_from_u64(7);
    let mut words = std::collections::BTreeSet::new();
    while words.len() < 5000 {
        let syllables = rng.random_range(2..=3);
        let word: String = (0..syllables)
            .map(|_| {
                format!("{}{}", onsets[rng.random_range(0..onsets.len())], vowels[rng.random_range(0..vowels.len())])
            })
            .collect();
        words.insert(word);
    }
    words.into_iter().collect()
}

fn sentence(rng: &mut StdRng, words: &[String]) -> String {
    let n = rng.random_range(6..=14);
    (0..n).map(|_| words[rng.random_range(0..words.len())].as_str()).collect::<Vec<_>>().join(" ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Figures {
    backend: &'static str,
    single_per_s: f64,
    batched_per_s: f64,
    page_p50: Duration,
    page_p99: Duration,
    search_p50: Duration,
    search_p99: Duration,
    /// Mean `total_estimate` (capped at 1000 by the contract).
    search_hits: f64,
}

/// Where a backend's database lives, for the maintenance statement run after the bulk load.
enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// Refreshes planner statistics after the bulk load, as any import would (and as autovacuum
/// eventually does on PostgreSQL): without them the first queries on a just-loaded million rows
/// are planned as if the table were empty. A maintenance statement of this harness, not of the
/// application, hence a plain runtime string.
async fn analyze(target: &Target) {
    use sqlx::Connection;
    match target {
        Target::Sqlite(path) => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
        }
        Target::Postgres(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
        }
    }
}

/// Unmeasured requests before each latency series (connection pool and caches warm up).
const WARM_UP: usize = 20;

async fn run(
    backend: &'static str,
    storage: Arc<dyn Storage>,
    target: Target,
    args: &Args,
    words: &[String],
) -> Figures {
    let mut rng = StdRng::seed_from_u64(42);
    let user = storage
        .register_user(NewUser { pubkey: PublicKey([9; 32]), is_bot: false, open_membership: true })
        .await
        .unwrap()
        .user;
    let channel = storage
        .create_channel(NewChannel { name: "bench".into(), topic: None, category: None, position: 0 })
        .await
        .unwrap();

    eprintln!("[{backend}] {} single inserts", args.single);
    let started = Instant::now();
    for _ in 0..args.single {
        let content = sentence(&mut rng, words);
        storage
            .create_message(NewMessage {
                channel_id: channel.id,
                thread_id: None,
                author_id: user.id,
                content,
                attachment_ids: vec![],
            })
            .await
            .unwrap();
    }
    let single_per_s = args.single as f64 / started.elapsed().as_secs_f64();

    let remaining = args.messages.saturating_sub(args.single);
    eprintln!("[{backend}] {remaining} batched inserts");
    let started = Instant::now();
    let mut done = 0;
    while done < remaining {
        let n = (remaining - done).min(10_000);
        let batch = (0..n).map(|_| (user.id, sentence(&mut rng, words))).collect();
        storage.create_messages_batch(channel.id, batch).await.unwrap();
        done += n;
    }
    let batched_per_s = remaining as f64 / started.elapsed().as_secs_f64();
    analyze(&target).await;

    eprintln!("[{backend}] latest page x{}", args.samples);
    let mut page = Vec::with_capacity(args.samples);
    for i in 0..WARM_UP + args.samples {
        let t = Instant::now();
        let p = storage
            .list_messages(MessageScope::Channel(channel.id), PageCursor::Latest, 50, Some(user.id))
            .await
            .unwrap();
        if i >= WARM_UP {
            page.push(t.elapsed());
        }
        assert_eq!(p.messages.len(), 50);
    }
    page.sort();

    eprintln!("[{backend}] search x{}", args.samples);
    let mut search = Vec::with_capacity(args.samples);
    let mut hits = 0i64;
    for i in 0..WARM_UP + args.samples {
        let q = &words[rng.random_range(0..words.len())];
        let t = Instant::now();
        let result = storage
            .search_messages(SearchQuery {
                terms: parse_query(q).unwrap(),
                channel_ids: vec![channel.id],
                author_id: None,
                created_before: None,
                created_after: None,
                cursor: None,
                limit: 25,
                viewer: Some(user.id),
            })
            .await
            .unwrap();
        if i >= WARM_UP {
            search.push(t.elapsed());
            hits += result.total_estimate;
        }
    }
    search.sort();

    Figures {
        backend,
        single_per_s,
        batched_per_s,
        page_p50: percentile(&page, 0.5),
        page_p99: percentile(&page, 0.99),
        search_p50: percentile(&search, 0.5),
        search_p99: percentile(&search, 0.99),
        search_hits: hits as f64 / args.samples as f64,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let words = vocabulary();
    let settings = PoolSettings::from_config(&StorageConfig::default());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let sqlite = SqliteBackend::open(&path, &settings).await.unwrap();
    let sqlite_figures = run("sqlite", Arc::new(sqlite), Target::Sqlite(path), &args, &words).await;

    let scratch = ScratchPg::create("bench").await;
    let postgres = PostgresBackend::open(scratch.url(), &settings).await.unwrap();
    let postgres_figures =
        run("postgres", Arc::new(postgres), Target::Postgres(scratch.url().to_owned()), &args, &words).await;

    println!();
    println!(
        "storage benchmark: {} messages in one channel; ANALYZE after the bulk load; {} samples per latency \
         figure after {WARM_UP} unmeasured",
        args.messages, args.samples
    );
    println!(
        "| backend  | insert, 1 per tx | insert, batched | latest page p50 | latest page p99 | search p50 | search p99 | avg matches/query |"
    );
    println!(
        "|----------|-----------------:|----------------:|----------------:|----------------:|-----------:|-----------:|------------------:|"
    );
    for f in [&sqlite_figures, &postgres_figures] {
        println!(
            "| {:<8} | {:>12.0} /s | {:>11.0} /s | {:>15} | {:>15} | {:>10} | {:>10} | {:>17.0} |",
            f.backend,
            f.single_per_s,
            f.batched_per_s,
            ms(f.page_p50),
            ms(f.page_p99),
            ms(f.search_p50),
            ms(f.search_p99),
            f.search_hits
        );
    }
    println!(
        "postgres/sqlite ratios: insert 1/tx {:.2}, batched {:.2}, page p99 {:.2}, search p50 {:.2}",
        postgres_figures.single_per_s / sqlite_figures.single_per_s,
        postgres_figures.batched_per_s / sqlite_figures.batched_per_s,
        postgres_figures.page_p99.as_secs_f64() / sqlite_figures.page_p99.as_secs_f64(),
        postgres_figures.search_p50.as_secs_f64() / sqlite_figures.search_p50.as_secs_f64(),
    );
    println!("targets: latest page p99 < 5 ms, search p50 < 20 ms (both backends)");
}
