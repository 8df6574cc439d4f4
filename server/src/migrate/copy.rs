//! The copy itself: tasks joined by channels, so that reading the source, writing the target,
//! reading the target back and rebuilding the target's indexes all run at once.
//!
//! - the **reader** reads the source in key order, page by page, and digests every row it reads
//!   (the source side of the verification, computed from the very rows that are copied);
//! - the **writers** write each page to the target in one transaction. On PostgreSQL two
//!   writers, on their own connections, write consecutive pages at the same time, but commit
//!   strictly in page order: whatever moment the process is killed at, the target holds a prefix
//!   of the source, which is what `--resume` relies on. (SQLite has a single writer.)
//! - the **tracker** follows the commits in their order: progress bars and timings, and news
//!   of each completed table for the verifier and the restorers;
//! - the **verifier**, on its own target connection, takes each table once it is complete:
//!   sees its keys rebuilt (PostgreSQL loads without them) and reads the whole table back in
//!   key order into its digest (the target side of the verification; on PostgreSQL one binary
//!   `COPY` per table, hashed without building rows);
//! - the **restorers**, on more connections (PostgreSQL only), rebuild each complete table's
//!   keys first (the verifier needs them), then its deferred indexes and foreign keys as soon as
//!   the tables it refers to have their keys back.
//!
//! Threads are written together with their parent messages, not in their own key order; both
//! sides of them are scanned once the copy is over (see [`super::run`]).
//!
//! When one task fails, the channels close behind it and the others stop; the first error is
//! the one reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::digest::{Summary, TableDigest};
use super::progress::Progress;
use super::tables::{self, Bound, Row, Table};
use super::{Db, Result};

/// Where the copy of one table starts, and what both sides hold before that point.
pub(super) struct Start {
    /// The first key still to copy; `None` when the table has nothing left to copy.
    pub bound: Option<Bound>,
    /// Rows already in the target (an interrupted run's).
    pub present: u64,
    /// The digests of those rows on each side, continued by the copy.
    pub source: TableDigest,
    pub target: TableDigest,
    /// The last of those rows in the source.
    pub source_last: Option<Row>,
}

impl Start {
    pub fn fresh(table: Table) -> Start {
        Start {
            bound: Some(Bound::start(table.key())),
            present: 0,
            source: TableDigest::default(),
            target: TableDigest::default(),
            source_last: None,
        }
    }
}

/// One copied table: both sides' digests and what the copy did.
pub(super) struct Copied {
    pub table: Table,
    pub source: Summary,
    pub target: Summary,
    pub source_last: Option<Row>,
    pub rows: u64,
    pub copied: u64,
    /// Wall time from the table's first read in the source to its last commit in the target.
    /// Tables overlap (the reader is ahead of the writers), so these do not add up to the run.
    pub seconds: f64,
}

/// What the reader hands a writer: a page and its place in the order of commits.
struct Page {
    seq: u64,
    table: Table,
    /// When the reader began reading this page's table.
    began: Instant,
    /// `None`: the table is done (all its earlier pages committed once this one's turn comes).
    rows: Option<Vec<Row>>,
    threads: Vec<Row>,
}

/// What the writers report, in commit order.
#[derive(Clone, Copy)]
enum Written {
    Committed {
        table: Table,
        rows: usize,
        threads: usize,
    },
    /// The table's last page is committed: `seconds` since its first read.
    Done {
        table: Table,
        seconds: f64,
    },
}

/// Whose turn it is to commit: the page with this sequence number, or nobody any more (a writer
/// failed; the others roll back what they hold and stop).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Next(u64),
    Stopped,
}

/// Pages in flight per writer: enough to keep every task busy, few enough to bound memory.
const IN_FLIGHT: usize = 2;

pub(super) struct Connections {
    pub source: Db,
    /// The target connections that write; the first one is the main target connection.
    pub writers: Vec<Db>,
    /// A target connection for reading back.
    pub verify: Db,
    /// Target connections for rebuilding indexes (none when the target does not defer them).
    pub restore: Vec<Db>,
}

/// Copies every table (but threads, which travel with messages) from its start; returns the
/// connections and one line per table, threads included with their `copied` count.
pub(super) async fn copy_tables(
    conns: Connections,
    mut starts: BTreeMap<&'static str, Start>,
    totals: &BTreeMap<&'static str, u64>,
    deferred: u64,
    batch: usize,
    progress: &Progress,
) -> Result<(Connections, Vec<Copied>)> {
    let Connections { source, writers, verify, restore } = conns;
    let mut reader_starts = BTreeMap::new();
    let mut verifier_starts = BTreeMap::new();
    let mut bars = BTreeMap::new();
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Threads) {
        let start = starts.remove(table.name()).unwrap_or_else(|| Start::fresh(table));
        reader_starts.insert(table, (start.bound.clone(), start.source, start.source_last));
        verifier_starts.insert(table, (start.bound, start.target));
        bars.insert(table, (totals[table.name()], start.present));
    }

    let (turn, _) = watch::channel(Turn::Next(0));
    let turn = Arc::new(turn);
    let (to_tracker, written) = mpsc::unbounded_channel();
    let (to_verifier, completed) = mpsc::unbounded_channel();
    // One bar for the deferred work, done by the verifier (keys) and the restorers (the rest).
    let work = if deferred > 0 { progress.work(deferred) } else { indicatif::ProgressBar::hidden() };
    let mut to_restorers = Vec::new();
    let mut restorer_tasks = Vec::new();
    let under_way = UnderWay::default();
    for (i, db) in restore.into_iter().enumerate() {
        let (to_restorer, done) = mpsc::unbounded_channel();
        to_restorers.push(to_restorer);
        restorer_tasks.push(tokio::spawn(rebuild(db, i == 0, under_way.clone(), done, work.clone())));
    }
    let mut to_writers = Vec::new();
    let mut writer_tasks = Vec::new();
    for db in writers {
        let (to_writer, pages) = mpsc::channel(IN_FLIGHT);
        to_writers.push(to_writer);
        writer_tasks.push(tokio::spawn(write(db, pages, Arc::clone(&turn), to_tracker.clone())));
    }
    drop(to_tracker);
    let reader = tokio::spawn(read(source, reader_starts, batch, to_writers));
    let tracker = tokio::spawn(track(written, to_verifier, to_restorers, bars, progress.clone()));
    let verifier = tokio::spawn(read_back(verify, verifier_starts, batch, completed, work.clone()));
    let (reader, writers, tracker, verifier, restorers) = tokio::join!(
        reader,
        futures::future::join_all(writer_tasks),
        tracker,
        verifier,
        futures::future::join_all(restorer_tasks)
    );
    work.finish();
    // The writers' errors first: when one fails, the reader and the others only see it go away.
    let writers = writers.into_iter().map(unwrap).collect::<Result<Vec<Db>>>()?;
    let (verify, targets) = unwrap(verifier)?;
    let restore = restorers.into_iter().map(unwrap).collect::<Result<Vec<Db>>>()?;
    let (source, sources) = unwrap(reader)?;
    let times = unwrap(tracker);

    let mut lines = Vec::new();
    for (table, (source_summary, source_last)) in sources {
        let (copied, seconds, thread_rows) = times.get(&table).copied().unwrap_or((0, 0.0, 0));
        lines.push(Copied {
            table,
            source: source_summary,
            target: targets[&table],
            source_last,
            rows: totals[table.name()],
            copied,
            seconds,
        });
        if table == Table::Messages {
            // Threads' digests come later, from their own scans.
            lines.push(Copied {
                table: Table::Threads,
                source: TableDigest::default().finish(),
                target: TableDigest::default().finish(),
                source_last: None,
                rows: totals[Table::Threads.name()],
                copied: thread_rows,
                seconds,
            });
        }
    }
    Ok((Connections { source, writers, verify, restore }, lines))
}

/// A task's result, its panic carried on.
fn unwrap<T>(joined: Result<T, tokio::task::JoinError>) -> T {
    joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

type SourceStarts = BTreeMap<Table, (Option<Bound>, TableDigest, Option<Row>)>;

/// The reader: every table's remaining rows, in key order, digested on the way; page `n` goes to
/// writer `n mod writers`.
async fn read(
    mut source: Db,
    starts: SourceStarts,
    batch: usize,
    to_writers: Vec<mpsc::Sender<Page>>,
) -> Result<(Db, Vec<(Table, (Summary, Option<Row>))>)> {
    let mut out = Vec::new();
    let mut seq = 0u64;
    // Hands the next page to its writer; false when that writer has stopped.
    macro_rules! send {
        ($table:expr, $began:expr, $rows:expr, $threads:expr) => {{
            let page = Page { seq, table: $table, began: $began, rows: $rows, threads: $threads };
            seq += 1;
            to_writers[(page.seq % to_writers.len() as u64) as usize].send(page).await.is_ok()
        }};
    }
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Threads) {
        let (mut bound, mut digest, mut last) = starts[&table].clone();
        let began = Instant::now();
        while let Some(lower) = bound.take() {
            let rows = source.page(table, &lower, batch).await?;
            let Some(final_row) = rows.last() else { break };
            // The threads whose parent message is in this page travel with it.
            let threads = if table == Table::Messages {
                let Bound::Int(first) = lower else { unreachable!("messages are keyed by id") };
                source.threads_by_parent(first, tables::int(&final_row[0])).await?
            } else {
                Vec::new()
            };
            if rows.len() == batch {
                bound = Bound::after(table.key(), final_row);
            }
            rows.iter().for_each(|r| digest.add(r));
            last = rows.last().cloned();
            if !send!(table, began, Some(rows), threads) {
                return Ok((source, out)); // a writer stopped: its error is the one to report
            }
        }
        out.push((table, (digest.finish(), last)));
        if !send!(table, began, None, Vec::new()) {
            return Ok((source, out));
        }
    }
    Ok((source, out))
}

/// A writer: writes each page it is given in its own transaction, and commits it when its turn
/// comes.
async fn write(
    mut target: Db,
    mut pages: mpsc::Receiver<Page>,
    turn: Arc<watch::Sender<Turn>>,
    to_tracker: mpsc::UnboundedSender<Written>,
) -> Result<Db> {
    let stop = || {
        turn.send_replace(Turn::Stopped);
    };
    while let Some(Page { seq, table, began, rows, threads }) = pages.recv().await {
        let mut waiting = turn.subscribe();
        let my_turn = async move {
            let now = waiting.wait_for(|t| *t == Turn::Next(seq) || *t == Turn::Stopped).await;
            now.is_ok_and(|t| *t == Turn::Next(seq))
        };
        let news = match rows {
            Some(rows) => {
                let n = rows.len();
                match target.write_page(table, rows, &threads, my_turn).await {
                    Ok(true) => Written::Committed { table, rows: n, threads: threads.len() },
                    Ok(false) => break,
                    Err(e) => {
                        stop();
                        return Err(e);
                    }
                }
            }
            // Its turn comes once every earlier page is committed: the table's last write.
            None if my_turn.await => Written::Done { table, seconds: began.elapsed().as_secs_f64() },
            None => break,
        };
        // Still this page's turn: the tracker hears of the commits in their order.
        if to_tracker.send(news).is_err() {
            stop();
            break;
        }
        turn.send_replace(Turn::Next(seq + 1));
    }
    Ok(target)
}

/// Per table: rows copied now, seconds spent, thread rows copied with it (messages).
type Times = BTreeMap<Table, (u64, f64, u64)>;

/// The tracker: progress bars and rows from the commits, timings as the writers measured them;
/// tells the verifier and the restorers of each table completed.
///
/// It does not time tables itself: it hears of commits through a channel, possibly many at once
/// (a 30,000-message table once took "0.00 s" between the tracker's first and last look at it).
async fn track(
    mut written: mpsc::UnboundedReceiver<Written>,
    to_verifier: mpsc::UnboundedSender<Table>,
    to_restorers: Vec<mpsc::UnboundedSender<Table>>,
    bars: BTreeMap<Table, (u64, u64)>,
    progress: Progress,
) -> Times {
    let mut out = Times::new();
    let mut current: Option<(Table, indicatif::ProgressBar)> = None;
    while let Some(news) = written.recv().await {
        let table = match news {
            Written::Committed { table, .. } | Written::Done { table, .. } => table,
        };
        if current.as_ref().is_none_or(|(t, _)| *t != table) {
            let (total, present) = bars[&table];
            let bar = progress.table(table.name(), total);
            bar.set_position(present);
            bar.reset_eta();
            current = Some((table, bar));
        }
        let (_, bar) = current.as_ref().expect("set above");
        let entry = out.entry(table).or_insert((0, 0.0, 0));
        match news {
            Written::Committed { rows, threads, .. } => {
                entry.0 += rows as u64;
                entry.2 += threads as u64;
                bar.inc(rows as u64);
            }
            Written::Done { seconds, .. } => {
                entry.1 = seconds;
                bar.finish();
                let tables = completed_with(table);
                if to_verifier.send(table).is_err()
                    || to_restorers.iter().any(|r| tables.iter().any(|t| r.send(*t).is_err()))
                {
                    break; // the verifier or a restorer stopped: its error is the one to report
                }
            }
        }
    }
    out
}

/// The tables complete once `table` is: threads are complete with messages (they travel in the
/// same pages).
fn completed_with(table: Table) -> Vec<Table> {
    if table == Table::Messages { vec![Table::Messages, Table::Threads] } else { vec![table] }
}

type TargetStarts = BTreeMap<Table, (Option<Bound>, TableDigest)>;

/// The verifier: for each completed table, sees its keys rebuilt, then reads what the target
/// holds from the table's start on to its end.
async fn read_back(
    mut target: Db,
    starts: TargetStarts,
    batch: usize,
    mut completed: mpsc::UnboundedReceiver<Table>,
    work: indicatif::ProgressBar,
) -> Result<(Db, BTreeMap<Table, Summary>)> {
    let mut states = starts;
    let mut out = BTreeMap::new();
    let page = super::scan_page(batch);
    while let Some(table) = completed.recv().await {
        // The restorers rebuild keys first; whichever of them this does not rebuild itself it
        // waits for.
        let names: Vec<&str> = completed_with(table).iter().map(|t| t.name()).collect();
        work.inc(target.restore_keys(&names).await?);
        let (bound, digest) = states.remove(&table).expect("every table has a start");
        out.insert(table, target.digest_rest(table, bound, digest, page).await?);
    }
    Ok((target, out))
}

/// A restorer: does each table's deferred work (keys, indexes, foreign keys, statistics) once
/// the tables it involves are ready, one piece at a time so that a table completed meanwhile
/// (its keys first) is taken into account at once. Only the first one adds the foreign keys on
/// a cycle of references (see [`super::postgres::restore_next`]).
async fn rebuild(
    mut db: Db,
    takes_cycles: bool,
    under_way: UnderWay,
    mut ready: mpsc::UnboundedReceiver<Table>,
    work: indicatif::ProgressBar,
) -> Result<Db> {
    let mut complete = Vec::new();
    loop {
        while let Ok(table) = ready.try_recv() {
            complete.push(table.name());
        }
        if db.restore_next(&complete, takes_cycles, &under_way).await? {
            work.inc(1);
            continue;
        }
        // Nothing to do until another table is complete.
        match ready.recv().await {
            Some(table) => complete.push(table.name()),
            None => return Ok(db),
        }
    }
}

/// The tables that the steps under way on other connections lock, shared by the connections
/// calling [`super::postgres::restore_next`]: each prefers steps on other tables, since steps
/// on one table (checking its foreign keys, analysing it, building its indexes) mostly wait for
/// each other.
// Only PostgreSQL defers work: a build with SQLite alone (`just prepare`) never reads it.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[derive(Clone, Default)]
pub(super) struct UnderWay(Arc<Mutex<Vec<String>>>);

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
impl UnderWay {
    pub(super) fn tables(&self) -> Vec<String> {
        self.0.lock().expect("never poisoned").clone()
    }

    /// Marks `tables` as locked until the returned guard is dropped.
    pub(super) fn mark(&self, tables: Vec<String>) -> Marked {
        self.0.lock().expect("never poisoned").extend(tables.iter().cloned());
        Marked { under_way: self.clone(), tables }
    }
}

/// Tables marked as locked by a step under way (see [`UnderWay::mark`]), unmarked when dropped.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(super) struct Marked {
    under_way: UnderWay,
    tables: Vec<String>,
}

impl Drop for Marked {
    fn drop(&mut self) {
        let mut all = self.under_way.0.lock().expect("never poisoned");
        for table in &self.tables {
            if let Some(i) = all.iter().position(|t| t == table) {
                all.swap_remove(i);
            }
        }
    }
}
