//! [`Broadcast`] over PostgreSQL LISTEN/NOTIFY: every server process sharing the database hears
//! what any of them publishes, with no other broker.
//!
//! A NOTIFY payload must stay under 8000 bytes. A larger payload is stored in `bus_payloads` and
//! only a reference to its row is notified; listeners fetch the row. Publishing only queues: one
//! background task per process sends the queue in order, as many inline payloads per statement
//! as have accumulated, so a request never waits for the broadcast and PostgreSQL receives (and
//! delivers to every listener) this process's payloads in publish order.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::storage::{Broadcast, StorageError, StorageResult};

/// The NOTIFY channel all processes listen on.
const CHANNEL: &str = "decentcom_events";
/// Largest payload sent inline (PostgreSQL's limit is 8000 bytes including marker and sequence).
const MAX_INLINE: usize = 7900;
/// Marker of an inline notification: `=<sequence> <payload>`. The per-process sequence number
/// keeps identical payloads sent in one statement (one transaction) distinct, which PostgreSQL
/// would otherwise fold into one notification.
const INLINE: char = '=';
/// Marker of a stored payload; the rest of the notification is its `bus_payloads` id.
const STORED: char = '@';
/// Most payloads sent by one statement.
const BATCH: usize = 256;
/// How long a stored payload is kept: listeners fetch it within milliseconds of the notification.
const KEEP_STORED: Duration = Duration::from_secs(300);
/// How often each listener deletes stored payloads older than [`KEEP_STORED`].
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Wait between attempts to re-establish a lost listen connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The PostgreSQL broadcast channel of one server process.
#[derive(Debug)]
pub struct PgBroadcast {
    pool: PgPool,
    queue: mpsc::UnboundedSender<String>,
}

impl PgBroadcast {
    /// Starts the publishing task (it ends when this value is dropped).
    pub fn new(pool: PgPool) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run_publisher(pool.clone(), pending));
        PgBroadcast { pool, queue }
    }
}

#[async_trait]
impl Broadcast for PgBroadcast {
    fn publish(&self, payload: String) {
        // The task only stops once `self.queue` is dropped, so this cannot fail while `self` lives.
        let _ = self.queue.send(payload);
    }

    async fn subscribe(&self) -> StorageResult<mpsc::Receiver<String>> {
        let listener = listen(&self.pool).await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_listener(self.pool.clone(), listener, tx));
        Ok(rx)
    }
}

/// Sends queued payloads in order until the queue is dropped. A failed send is logged; the
/// payloads it carried do not reach the other processes (this process's own connections have
/// them already).
async fn run_publisher(pool: PgPool, mut pending: mpsc::UnboundedReceiver<String>) {
    let mut sequence: u64 = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(err) = send(&pool, &batch, &mut sequence).await {
            tracing::error!(error = %err, events = batch.len(), "event bus: cannot broadcast to the other processes");
        }
        batch.clear();
    }
}

/// Sends `batch` in order: runs of inline payloads in one statement each, a large payload stored
/// and announced by one statement (one transaction, so the row is visible to every listener by
/// the time the notification arrives).
async fn send(pool: &PgPool, batch: &[String], sequence: &mut u64) -> StorageResult<()> {
    let mut inline = Vec::new();
    for payload in batch {
        if payload.len() <= MAX_INLINE {
            *sequence += 1;
            inline.push(format!("{INLINE}{sequence} {payload}"));
            continue;
        }
        notify_inline(pool, &mut inline).await?;
        sqlx::query!(
            "WITH stored AS (INSERT INTO bus_payloads (payload) VALUES ($2) RETURNING id)
             SELECT pg_notify($1, $3 || id::text) FROM stored",
            CHANNEL,
            payload,
            STORED.to_string(),
        )
        .execute(pool)
        .await?;
    }
    notify_inline(pool, &mut inline).await
}

/// Notifies `messages` in array order (a function scan yields rows in order) and empties it.
async fn notify_inline(pool: &PgPool, messages: &mut Vec<String>) -> StorageResult<()> {
    if !messages.is_empty() {
        sqlx::query!("SELECT pg_notify($1, message) FROM UNNEST($2::text[]) AS message", CHANNEL, &messages[..])
            .execute(pool)
            .await?;
        messages.clear();
    }
    Ok(())
}

async fn listen(pool: &PgPool) -> StorageResult<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications to `tx` until it is closed or the pool is closed. A lost connection is
/// logged and re-established; what was published meanwhile is not delivered to this process.
async fn run_listener(pool: PgPool, mut listener: PgListener, tx: mpsc::Sender<String>) {
    let mut purge = tokio::time::interval(PURGE_EVERY);
    loop {
        let received = tokio::select! {
            () = tx.closed() => return,
            _ = purge.tick() => {
                purge_stored(&pool).await;
                continue;
            }
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => match resolve(&pool, notification.payload()).await {
                Ok(Some(payload)) => {
                    if tx.send(payload).await.is_err() {
                        return;
                    }
                }
                Ok(None) => tracing::warn!(
                    notification = notification.payload(),
                    "event bus: a stored event was already deleted; it is not delivered here"
                ),
                Err(err) => {
                    tracing::error!(error = %err, "event bus: cannot fetch a stored event; it is not delivered here")
                }
            },
            Ok(None) | Err(_) if pool.is_closed() => return,
            Ok(None) | Err(_) => {
                tracing::warn!("event bus: lost the LISTEN connection to PostgreSQL; reconnecting");
                listener = loop {
                    if tx.is_closed() || pool.is_closed() {
                        return;
                    }
                    match listen(&pool).await {
                        Ok(listener) => break listener,
                        Err(err) => {
                            tracing::warn!(error = %err, "event bus: cannot listen yet; retrying");
                            tokio::time::sleep(RECONNECT_DELAY).await;
                        }
                    }
                };
                tracing::info!(
                    "event bus: listening again (events published while disconnected were not delivered here)"
                );
            }
        }
    }
}

/// The payload a notification carries: inline, or fetched from `bus_payloads`. `None` when the
/// stored row is gone.
async fn resolve(pool: &PgPool, notification: &str) -> StorageResult<Option<String>> {
    if let Some((_sequence, payload)) = notification.strip_prefix(INLINE).and_then(|rest| rest.split_once(' ')) {
        return Ok(Some(payload.to_owned()));
    }
    let id: i64 = notification.strip_prefix(STORED).and_then(|id| id.parse().ok()).ok_or_else(|| {
        StorageError::Backend(sqlx::Error::Protocol(format!("unexpected event bus notification {notification:?}")))
    })?;
    Ok(sqlx::query_scalar!("SELECT payload FROM bus_payloads WHERE id = $1", id).fetch_optional(pool).await?)
}

/// Deletes stored payloads every listener has long fetched. Idempotent: every process runs it.
async fn purge_stored(pool: &PgPool) {
    let keep = KEEP_STORED.as_secs_f64();
    let purged = sqlx::query!("DELETE FROM bus_payloads WHERE created_at < now() - make_interval(secs => $1)", keep)
        .execute(pool)
        .await;
    if let Err(err) = purged {
        tracing::warn!(error = %err, "event bus: cannot delete old stored events; retrying later");
    }
}
