//! [`Broadcast`] over PostgreSQL LISTEN/NOTIFY: every server process sharing the database hears
//! what any of them publishes, with no other broker.
//!
//! A NOTIFY payload must stay under 8000 bytes. A larger payload is stored in `bus_payloads` and
//! only a reference to its row is notified; listeners fetch the row. Both kinds are published
//! by one statement each, one at a time per process, so notifications are queued in publish
//! order and PostgreSQL delivers them to every listener in that order.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Mutex, mpsc};

use crate::storage::{Broadcast, StorageError, StorageResult};

/// The NOTIFY channel all processes listen on.
const CHANNEL: &str = "decentcom_events";
/// Largest payload sent inline (PostgreSQL's limit is 8000 bytes including the marker).
const MAX_INLINE: usize = 7900;
/// Marker of an inline payload; the rest of the notification is the payload.
const INLINE: char = '=';
/// Marker of a stored payload; the rest of the notification is its `bus_payloads` id.
const STORED: char = '@';
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
    /// Serialises this process's publishes so that they are queued in publish order.
    publishing: Mutex<()>,
}

impl PgBroadcast {
    pub fn new(pool: PgPool) -> Self {
        PgBroadcast { pool, publishing: Mutex::new(()) }
    }
}

#[async_trait]
impl Broadcast for PgBroadcast {
    async fn publish(&self, payload: &str) -> StorageResult<()> {
        let _turn = self.publishing.lock().await;
        if payload.len() <= MAX_INLINE {
            let message = format!("{INLINE}{payload}");
            sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL, message).execute(&self.pool).await?;
        } else {
            // Stored and announced in one statement (one transaction): the row is visible to
            // every listener by the time the notification is delivered.
            sqlx::query!(
                "WITH stored AS (INSERT INTO bus_payloads (payload) VALUES ($2) RETURNING id)
                 SELECT pg_notify($1, $3 || id::text) FROM stored",
                CHANNEL,
                payload,
                STORED.to_string(),
            )
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn subscribe(&self) -> StorageResult<mpsc::Receiver<String>> {
        let listener = listen(&self.pool).await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_listener(self.pool.clone(), listener, tx));
        Ok(rx)
    }
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
    if let Some(payload) = notification.strip_prefix(INLINE) {
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
