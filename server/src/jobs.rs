//! Background maintenance (api.md §8): expired sessions every 300 s, expired challenges every
//! 60 s, expired invites every 3600 s, the first run one interval after startup. Each job is one
//! idempotent DELETE of rows expired at "now", so several processes may run them at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::storage::{Storage, StorageResult, Timestamp};

/// One maintenance job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    ExpiredSessions,
    ExpiredChallenges,
    ExpiredInvites,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::ExpiredSessions, Job::ExpiredChallenges, Job::ExpiredInvites];

    pub fn interval(self) -> Duration {
        Duration::from_secs(match self {
            Job::ExpiredSessions => 300,
            Job::ExpiredChallenges => 60,
            Job::ExpiredInvites => 3600,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Job::ExpiredSessions => "expired sessions",
            Job::ExpiredChallenges => "expired challenges",
            Job::ExpiredInvites => "expired invites",
        }
    }

    /// Runs the job once against rows expired at `now`; returns how many were deleted.
    pub async fn run(self, storage: &dyn Storage, now: Timestamp) -> StorageResult<u64> {
        match self {
            Job::ExpiredSessions => storage.purge_expired_sessions(now).await,
            Job::ExpiredChallenges => storage.purge_expired_challenges(now).await,
            Job::ExpiredInvites => storage.purge_expired_invites(now).await,
        }
    }
}

/// Spawns every job on its interval until `stop` is cancelled. A failed run is logged and
/// retried at the next interval.
pub fn spawn_all(storage: Arc<dyn Storage>, stop: CancellationToken) {
    spawn_every(storage, stop, Job::interval);
}

/// As [`spawn_all`] with the intervals given by `interval` (tests use short ones).
pub fn spawn_every(storage: Arc<dyn Storage>, stop: CancellationToken, interval: impl Fn(Job) -> Duration) {
    for job in Job::ALL {
        let every = interval(job);
        let storage = storage.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                match job.run(storage.as_ref(), Timestamp::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(job = job.name(), deleted = n, "maintenance"),
                    Err(err) => {
                        tracing::warn!(job = job.name(), error = %err, "maintenance failed; retrying next interval")
                    }
                }
            }
        });
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::storage::sqlite::SqliteBackend;
    use crate::storage::*;

    #[tokio::test]
    async fn jobs_purge_expired_rows_on_their_intervals_and_keep_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let settings = PoolSettings::from_config(&Default::default());
        let storage: Arc<dyn Storage> =
            Arc::new(SqliteBackend::open(&dir.path().join("jobs.db"), &settings).await.unwrap());
        let user = storage
            .register_user(NewUser { pubkey: PublicKey([1; 32]), is_bot: false, open_membership: true })
            .await
            .unwrap()
            .user;
        let past = Timestamp::now().plus_seconds(-10);
        let future = Timestamp::now().plus_seconds(3600 * 24);
        for (byte, expires_at) in [(1u8, past), (2, future)] {
            storage
                .create_session(NewSession {
                    token_hash: TokenHash([byte; 32]),
                    user_id: user.id,
                    device_key_id: None,
                    is_read_only: false,
                    expires_at,
                })
                .await
                .unwrap();
            storage.put_challenge(&PublicKey([byte; 32]), Nonce([byte; 32]), false, expires_at).await.unwrap();
        }
        let invite = |code: &str, expires_at| NewInvite {
            code: code.into(),
            created_by: user.id,
            grant_role_id: None,
            max_uses: 0,
            expires_at: Some(expires_at),
        };
        storage.create_invite(invite("expired1", past)).await.unwrap();
        storage.create_invite(invite("livecode", future)).await.unwrap();

        let stop = CancellationToken::new();
        spawn_every(storage.clone(), stop.clone(), |_| Duration::from_millis(50));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while storage.get_invite("expired1").await.unwrap().is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // every job has run at least once
        stop.cancel();

        assert!(storage.get_session(&TokenHash([1; 32])).await.unwrap().is_none(), "expired session purged");
        assert!(storage.get_session(&TokenHash([2; 32])).await.unwrap().is_some(), "live session kept");
        // `take_challenge` at an earlier `now` would still return a row that exists.
        let long_ago = Timestamp::from_micros(0).unwrap();
        assert!(storage.take_challenge(&PublicKey([1; 32]), long_ago).await.unwrap().is_none(), "expired purged");
        assert!(storage.take_challenge(&PublicKey([2; 32]), long_ago).await.unwrap().is_some(), "live kept");
        assert!(storage.get_invite("expired1").await.unwrap().is_none(), "expired invite purged");
        assert!(storage.get_invite("livecode").await.unwrap().is_some(), "live invite kept");
    }
}
