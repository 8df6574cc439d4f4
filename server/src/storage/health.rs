//! Whether the database answers, watched in the background.
//!
//! A connection that goes silent (a stalled network path, a frozen server) does not fail a query:
//! it hangs, and the driver has no client-side statement timeout. The server cannot tell such a
//! request from a slow one by looking at it, but it can tell that the database stopped answering:
//! this monitor pings it every second with a one-second limit, and the HTTP layer answers 503 to
//! requests that have waited longer than `storage.acquire_timeout_seconds` while it is down
//! (api.md §1.5).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Storage;

/// How often the database is pinged, and how long one ping may take.
pub const PING_EVERY: Duration = Duration::from_secs(1);
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The latest verdict of the monitor (clone freely).
#[derive(Clone, Debug)]
pub struct DatabaseHealth {
    up: watch::Receiver<bool>,
}

impl DatabaseHealth {
    /// Starts the monitor; it stops with `stop`. The database counts as up until a ping fails.
    pub fn spawn(storage: Arc<dyn Storage>, stop: CancellationToken) -> DatabaseHealth {
        let (tx, rx) = watch::channel(true);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PING_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let up = matches!(tokio::time::timeout(PING_TIMEOUT, storage.ping()).await, Ok(Ok(())));
                tx.send_if_modified(|current| {
                    if *current == up {
                        return false;
                    }
                    if up {
                        tracing::info!("the database answers again");
                    } else {
                        tracing::error!("the database does not answer");
                    }
                    *current = up;
                    true
                });
            }
        });
        DatabaseHealth { up: rx }
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Resolves once the database is down (at once if it is now).
    pub async fn wait_down(&self) {
        let mut up = self.up.clone();
        if up.wait_for(|up| !*up).await.is_err() {
            // The monitor stopped (shutdown): never resolve.
            std::future::pending::<()>().await;
        }
    }
}
