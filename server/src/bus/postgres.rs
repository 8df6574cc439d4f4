//! The PostgreSQL provider: the log is the `bus_events` table (migration 0003), NOTIFY only rings
//! the bell. Appending is one call of `bus_append` per batch: appenders of every process take
//! turns, so `s` is handed out in commit order. A follower reads the rows after the last `s` it
//! read whenever the bell rings, every few seconds anyway (a notification can be lost with its
//! connection), and at once after its LISTEN connection comes back: nothing published meanwhile
//! is skipped. Rows older than the retention are pruned by every process alike.
//!
//! The bus has a small pool of its own, so that a saturated request pool never delays events.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};

use super::{Appended, BusMessage, Follow, Pending, Provider, ReadError, Retention, Sequenced};

/// The NOTIFY channel of the bell (`bus_append` notifies it).
const CHANNEL: &str = "decentcom_events";
/// Most messages appended by one call.
const BATCH: usize = 256;
/// A follower reads the log this often even without a bell.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Wait between attempts to re-establish a lost LISTEN connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Rows read per query by a follower.
const FOLLOW_BATCH: i64 = 1000;

pub struct PgLog {
    pool: PgPool,
    queue: mpsc::UnboundedSender<Pending>,
    retention: Retention,
}

impl PgLog {
    /// Connects to `url` (the same database as the storage) and starts the appender and the
    /// pruning task.
    pub async fn connect(url: &str, retention: Retention) -> Result<PgLog, ReadError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| ReadError::Unavailable(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| ReadError::Unavailable(format!("cannot connect the event bus: {e}")))?;
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run_appender(pool.clone(), pending));
        Ok(PgLog { pool, queue, retention })
    }
}

#[async_trait]
impl Provider for PgLog {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn append(&self, message: BusMessage) -> Appended {
        let (held, appended) = oneshot::channel();
        // The appender only stops once `self.queue` is dropped.
        let _ = self.queue.send((message, held));
        appended
    }

    async fn head(&self) -> Result<u64, ReadError> {
        head(&self.pool).await
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Sequenced>, ReadError> {
        read_after(&self.pool, after, i64::try_from(limit).unwrap_or(i64::MAX)).await
    }

    fn follow(&self, after: u64) -> Follow {
        let (tx, rx) = mpsc::channel(FOLLOW_BATCH as usize);
        tokio::spawn(run_follower(self.pool.clone(), after, tx));
        tokio_stream_from(rx)
    }

    /// Deletes rows older than the retention, or beyond its count, and records how far. Every
    /// process runs it; two at once delete the same rows, and `pruned_through` only grows.
    async fn prune(&self) -> Result<(), ReadError> {
        let max_age = self.retention.max_age.as_secs_f64();
        let max_messages = i64::try_from(self.retention.max_messages).unwrap_or(i64::MAX);
        sqlx::query!(
            "WITH deleted AS (
                 DELETE FROM bus_events
                 WHERE created_at < now() - make_interval(secs => $1)
                    OR s <= (SELECT max(s) FROM bus_events) - $2
                 RETURNING s)
             UPDATE bus_state SET pruned_through = GREATEST(pruned_through, (SELECT max(s) FROM deleted))
             WHERE EXISTS (SELECT 1 FROM deleted)",
            max_age,
            max_messages
        )
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}

fn tokio_stream_from(rx: mpsc::Receiver<Result<Sequenced, ReadError>>) -> Follow {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

fn unavailable(err: sqlx::Error) -> ReadError {
    ReadError::Unavailable(err.to_string())
}

async fn head(pool: &PgPool) -> Result<u64, ReadError> {
    let head = sqlx::query_scalar!(
        r#"SELECT GREATEST(COALESCE((SELECT max(s) FROM bus_events), 0), pruned_through) AS "head!"
           FROM bus_state"#
    )
    .fetch_one(pool)
    .await
    .map_err(unavailable)?;
    Ok(u64::try_from(head).unwrap_or(0))
}

/// The rows after `after` and, in the same snapshot, how far the log has been pruned.
async fn read_after(pool: &PgPool, after: u64, limit: i64) -> Result<Vec<Sequenced>, ReadError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = sqlx::query!(
        r#"SELECT st.pruned_through AS "pruned_through!", e.s AS "s?", e.payload AS "payload?",
                  e.created_at AS "created_at?"
           FROM bus_state st
           LEFT JOIN LATERAL (SELECT s, payload, created_at FROM bus_events WHERE s > $1 ORDER BY s LIMIT $2) e
             ON true"#,
        after,
        limit
    )
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    if rows.first().is_some_and(|row| after < row.pruned_through) {
        return Err(ReadError::Gone);
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (Some(s), Some(payload), Some(created_at)) = (row.s, row.payload, row.created_at) else { continue };
        match serde_json::from_str::<BusMessage>(&payload) {
            Ok(message) => {
                out.push(Sequenced { s: u64::try_from(s).unwrap_or(0), at: created_at.timestamp(), message });
            }
            // Written by another version of decentcom: skipped, not fatal.
            Err(err) => tracing::error!(s, error = %err, "event bus: undecodable message in the log"),
        }
    }
    Ok(out)
}

/// Appends queued messages in order, a batch per call, until the queue is dropped. A batch that
/// cannot be appended (the database is restarting, say) is retried until it is, later messages
/// waiting behind it: an event of a committed change is never dropped, only delayed. (A call
/// that fails after its commit, its answer lost with the connection, appends the batch twice;
/// clients see an event again rather than never.)
async fn run_appender(pool: PgPool, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let (payloads, held): (Vec<String>, Vec<oneshot::Sender<()>>) =
            batch.drain(..).map(|(m, held)| (serde_json::to_string(&m).expect("bus messages serialise"), held)).unzip();
        let mut failures = 0u32;
        while let Err(err) =
            sqlx::query_scalar!(r#"SELECT bus_append($1::text[]) AS "last!""#, &payloads[..]).fetch_one(&pool).await
        {
            if pool.is_closed() {
                return;
            }
            failures += 1;
            if failures == 1 {
                tracing::warn!(error = %err, messages = payloads.len(), "event bus: cannot append to the log; retrying");
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
        if failures > 0 {
            tracing::info!(attempts = failures + 1, "event bus: appended after retrying");
        }
        for held in held {
            let _ = held.send(());
        }
    }
}

/// Hands `tx` every row after `after`, in order, until it is closed: reads on every bell, every
/// [`POLL_EVERY`], and after re-establishing a lost LISTEN connection.
async fn run_follower(pool: PgPool, mut after: u64, tx: mpsc::Sender<Result<Sequenced, ReadError>>) {
    let mut listener = None;
    let mut reconnecting = false;
    loop {
        if tx.is_closed() || pool.is_closed() {
            return;
        }
        if listener.is_none() {
            match listen(&pool).await {
                Ok(l) => {
                    if reconnecting {
                        tracing::info!("event bus: listening again (reading on from s = {after})");
                    }
                    listener = Some(l);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "event bus: cannot LISTEN yet; retrying");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            }
        }
        // Everything after the last row read (also right after (re)connecting).
        loop {
            match read_after(&pool, after, FOLLOW_BATCH).await {
                Ok(rows) => {
                    let done = (rows.len() as i64) < FOLLOW_BATCH;
                    for row in rows {
                        after = row.s;
                        if tx.send(Ok(row)).await.is_err() {
                            return;
                        }
                    }
                    if done {
                        break;
                    }
                }
                Err(ReadError::Gone) => {
                    let _ = tx.send(Err(ReadError::Gone)).await;
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "event bus: cannot read the log; retrying");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
        let Some(current) = listener.as_mut() else { continue };
        let bell = tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(POLL_EVERY) => Ok(Some(())),
            received = current.try_recv() => received.map(|n| n.map(|_| ())),
        };
        if !matches!(bell, Ok(Some(()))) {
            tracing::warn!(
                "event bus: lost the LISTEN connection to PostgreSQL; reconnecting (reading on from s = {after})"
            );
            listener = None;
            reconnecting = true;
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
