//! `just bench-migrate`: `decentcom migrate` against pgloader on the same SQLite file.
//!
//! Generates a synthetic community as a SQLite file (default 1M messages, 10k users, with
//! reactions, threads, DMs, media rows and attachments), then times, as child processes, in
//! alternating pairs (`--runs`, 3 by default): `decentcom migrate` SQLite → PostgreSQL (including
//! its verification of every table) and pgloader loading the same SQLite file into another
//! PostgreSQL database; then `decentcom migrate` PostgreSQL → SQLite once. Prints rows/s of each,
//! each pair's ratio to pgloader and their median (target: ≥ 1.5×).
//! Runs target/release/decentcom (the recipe builds it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use decentcom::migrate::progress::render_table;
use decentcom::migrate::synthetic::{self, Community};
use decentcom::testing::ScratchPg;

struct Args {
    /// Pairs of runs (ours, then pgloader's) SQLite → PostgreSQL; the ratio reported is the
    /// median of the pairs' ratios, as one pair on a shared machine can be off either way.
    runs: usize,
    messages: i64,
    users: i64,
    batch_size: Option<usize>,
    dir: Option<PathBuf>,
    /// Keep `DIR/community.db` when it is already there (saves the generation while iterating).
    reuse: bool,
}

fn parse_args() -> Args {
    let mut args = Args { runs: 3, messages: 1_000_000, users: 10_000, batch_size: None, dir: None, reuse: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--reuse" {
            args.reuse = true;
            continue;
        }
        let value = it.next();
        let number = value.as_deref().and_then(|v| v.replace('_', "").parse::<i64>().ok());
        match (flag.as_str(), number) {
            ("--runs", Some(v)) if v > 0 => args.runs = v as usize,
            ("--messages", Some(v)) => args.messages = v,
            ("--users", Some(v)) => args.users = v,
            ("--batch-size", Some(v)) => args.batch_size = Some(v as usize),
            ("--dir", _) if value.is_some() => args.dir = value.map(PathBuf::from),
            _ => {
                eprintln!(
                    "usage: bench_migrate [--runs N] [--messages N] [--users N] [--batch-size N] [--dir DIR [--reuse]]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

fn binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/decentcom");
    assert!(path.is_file(), "{} is missing: cargo build --release -p decentcom first", path.display());
    path
}

fn write_config(dir: &Path, name: &str, sqlite: &Path, pg_url: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!("[storage]\ndatabase_path = {:?}\ndatabase_url = {:?}\n", sqlite.display().to_string(), pg_url);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `decentcom migrate` and returns its wall time in seconds; panics (with its output) when
/// it fails.
fn timed_migrate(config: &Path, from: &str, to: &str, batch_size: Option<usize>) -> f64 {
    let began = Instant::now();
    let mut cmd = Command::new(binary());
    cmd.args(["migrate", "--from", from, "--to", to, "--quiet"]);
    if let Some(rows) = batch_size {
        cmd.args(["--batch-size", &rows.to_string()]);
    }
    let out = cmd.arg("--config").arg(config).stdin(Stdio::null()).output().unwrap();
    let seconds = began.elapsed().as_secs_f64();
    assert!(out.status.success(), "migrate {from} → {to} failed: {}", String::from_utf8_lossy(&out.stderr));
    seconds
}

/// The total number of rows of the source, from `decentcom migrate --dry-run`.
fn total_rows(config: &Path) -> u64 {
    let out = Command::new(binary())
        .args(["migrate", "--from", "sqlite", "--to", "postgres", "--dry-run", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "dry run failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("total: ")?.strip_suffix(" rows")?.parse().ok())
        .unwrap_or_else(|| panic!("no total in the dry run's output:\n{stdout}"))
}

/// Loads the SQLite file into `pg_url` with pgloader (its own schema and indexes, as a plain
/// pgloader migration does) and returns its wall time. Left out, as `decentcom migrate` leaves
/// them out: SQLite's full-text tables (PostgreSQL computes its own search column), sqlx's
/// migration table, and SQLite's planner statistics.
fn timed_pgloader(dir: &Path, sqlite: &Path, pg_url: &str) -> f64 {
    let load = dir.join("pgloader.load");
    std::fs::write(
        &load,
        format!(
            "LOAD DATABASE\n  FROM sqlite://{}\n  INTO {pg_url}\n  WITH create tables, create indexes, reset sequences\n  \
             EXCLUDING TABLE NAMES LIKE 'messages_fts%', '_sqlx_migrations', 'sqlite_stat%';\n",
            sqlite.display()
        ),
    )
    .unwrap();
    let began = Instant::now();
    let out = Command::new("pgloader").arg(&load).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run pgloader ({e}): install it with `apt-get install pgloader` (the recipe does)")
    });
    let seconds = began.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgloader failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    seconds
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let temp = tempfile::tempdir().unwrap();
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("community.db");
    let back = dir.join("back.db");
    let reuse = args.reuse && args.dir.is_some() && source.is_file();
    let remove = if reuse { vec![&back] } else { vec![&source, &back] };
    for f in remove {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
        }
    }

    let size = Community { users: args.users, channels: 50, messages: args.messages };
    if reuse {
        eprintln!("reusing {} (--reuse)", source.display());
    } else {
        eprintln!("generating {size:?} into {}", source.display());
        let began = Instant::now();
        synthetic::write_community(&source, size, 20_000).await.unwrap();
        eprintln!("generated in {:.1} s", began.elapsed().as_secs_f64());
    }

    // Read the file once, so that the first run does not pay alone for bringing it into the page
    // cache (a reused file may have been evicted since; a cold first run took 26 s, not 10).
    std::io::copy(&mut std::fs::File::open(&source).unwrap(), &mut std::io::sink()).unwrap();
    let rows = total_rows(&write_config(&dir, "dry-run.toml", &source, "postgres://unused/unused"));
    let rate = |seconds: f64| rows as f64 / seconds;

    // The pairs alternate, each on two fresh databases.
    let mut lines = Vec::new();
    let mut ratios = Vec::new();
    let mut last_target = None;
    for run in 1..=args.runs {
        let ours = ScratchPg::create("bench_migrate").await;
        let theirs = ScratchPg::create("bench_pgloader").await;
        eprintln!("pair {run}/{}: decentcom migrate sqlite → postgres ({rows} rows)", args.runs);
        let up = timed_migrate(
            &write_config(&dir, "to-pg.toml", &source, ours.url()),
            "sqlite",
            "postgres",
            args.batch_size,
        );
        eprintln!("  {up:.1} s");
        eprintln!("pair {run}/{}: pgloader sqlite → postgres", args.runs);
        let pgloader = timed_pgloader(&dir, &source, theirs.url());
        eprintln!("  {pgloader:.1} s");
        let ratio = rate(up) / rate(pgloader);
        ratios.push(ratio);
        lines.push(line(&format!("{run}: decentcom migrate sqlite → postgres (verified)"), rows, up, Some(ratio)));
        lines.push(line(&format!("{run}: pgloader sqlite → postgres"), rows, pgloader, Some(1.0)));
        last_target = Some(ours);
    }
    let ours = last_target.expect("at least one run");

    eprintln!("decentcom migrate postgres → sqlite");
    let down =
        timed_migrate(&write_config(&dir, "to-sqlite.toml", &back, ours.url()), "postgres", "sqlite", args.batch_size);
    eprintln!("  {down:.1} s");
    lines.push(line("decentcom migrate postgres → sqlite (verified)", rows, down, None));

    print!("{}", render_table(&["run", "rows", "seconds", "rows/s", "vs pgloader"], &lines));
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "sqlite → postgres vs pgloader, median of {} pair(s): {median:.2}× (target ≥ 1.5×, verification included): {}",
        ratios.len(),
        if median >= 1.5 { "met" } else { "NOT met" }
    );
}

/// One line of the results table; `ratio` to pgloader's rate, when there is one to compare with.
fn line(name: &str, rows: u64, seconds: f64, ratio: Option<f64>) -> Vec<String> {
    vec![
        name.to_owned(),
        rows.to_string(),
        format!("{seconds:.1}"),
        format!("{:.0}", rows as f64 / seconds),
        ratio.map(|r| format!("{r:.2}×")).unwrap_or_default(),
    ]
}
