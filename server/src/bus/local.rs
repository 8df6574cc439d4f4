//! The in-process provider: the bus of a single server process (SQLite). The log is a buffer in
//! memory, bounded by [`Retention`]; numbers start at the startup time in microseconds, so that
//! they keep increasing across restarts and a client's `s` from an earlier run is never taken
//! for a message of this one (it is older than the buffer: the client resynchronises).

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::{Appended, BusMessage, Follow, Provider, ReadError, Retention, Sequenced};

/// How far a follower may fall behind the appends before it has lost messages.
const FOLLOWER_BACKLOG: usize = 65_536;

pub struct LocalLog {
    state: Mutex<State>,
    retention: Retention,
    appended: broadcast::Sender<Sequenced>,
}

struct State {
    /// The last number handed out.
    head: u64,
    /// Every number up to this one is gone from `recent` (or was never in it).
    pruned_through: u64,
    recent: VecDeque<Sequenced>,
}

impl LocalLog {
    pub fn new(retention: Retention) -> LocalLog {
        let base = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        LocalLog {
            state: Mutex::new(State { head: base, pruned_through: base, recent: VecDeque::new() }),
            retention,
            appended: broadcast::channel(FOLLOWER_BACKLOG).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Provider for LocalLog {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn append(&self, message: BusMessage) -> Appended {
        let mut state = self.lock();
        state.head += 1;
        let sequenced = Sequenced { s: state.head, at: chrono::Utc::now().timestamp(), message };
        state.recent.push_back(sequenced.clone());
        let oldest = sequenced.at - i64::try_from(self.retention.max_age.as_secs()).unwrap_or(i64::MAX);
        while state.recent.len() > self.retention.max_messages || state.recent.front().is_some_and(|m| m.at < oldest) {
            if let Some(dropped) = state.recent.pop_front() {
                state.pruned_through = dropped.s;
            }
        }
        // Sent under the lock: a follower that subscribed under it misses nothing and sees no
        // message twice. No follower is not an error.
        let _ = self.appended.send(sequenced);
        let (held, appended) = tokio::sync::oneshot::channel();
        let _ = held.send(());
        appended
    }

    async fn head(&self) -> Result<u64, ReadError> {
        Ok(self.lock().head)
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Sequenced>, ReadError> {
        let state = self.lock();
        if after < state.pruned_through {
            return Err(ReadError::Gone);
        }
        Ok(state.recent.iter().filter(|m| m.s > after).take(limit).cloned().collect())
    }

    fn follow(&self, after: u64) -> Follow {
        let (backlog, live) = {
            let state = self.lock();
            let live = self.appended.subscribe();
            if after < state.pruned_through {
                return futures::stream::iter([Err(ReadError::Gone)]).boxed();
            }
            let backlog: Vec<Sequenced> = state.recent.iter().filter(|m| m.s > after).cloned().collect();
            (backlog, live)
        };
        let live = futures::stream::unfold(live, |mut live| async move {
            match live.recv().await {
                Ok(message) => Some((Ok(message), live)),
                // The follower fell behind: what it skipped is lost to it.
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Err(ReadError::Gone), live)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        futures::stream::iter(backlog.into_iter().map(Ok)).chain(live).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pretty_assertions::assert_eq;

    use super::*;
    use crate::bus::Audience;

    fn message(i: i64) -> BusMessage {
        BusMessage::event(Audience::All, "TEST", i)
    }

    #[tokio::test]
    async fn numbers_increase_and_old_messages_are_pruned_by_count() {
        let log = LocalLog::new(Retention { max_age: Duration::from_secs(60), max_messages: 3 });
        let start = log.head().await.unwrap();
        for i in 0..5 {
            log.append(message(i)).await.unwrap();
        }
        assert_eq!(log.head().await.unwrap(), start + 5);
        let kept: Vec<u64> = log.read_after(start + 2, 10).await.unwrap().iter().map(|m| m.s).collect();
        assert_eq!(kept, vec![start + 3, start + 4, start + 5]);
        assert!(matches!(log.read_after(start + 1, 10).await, Err(ReadError::Gone)));
    }
}
