//! The event bus (api.md §6.4–§6.5, and the sequence numbers and resume of §6.2).
//!
//! Handlers publish a [`BusMessage`] after their change is committed. Every message gets `s`, a
//! number that increases across the whole deployment, from a log that keeps recent messages: a
//! provider. Each process reads the log in order and hands every message to its gateway
//! connections ([`EventBus::subscribe`]), its own messages included, so all connections of all
//! processes see one order. A process remembers the last `s` it read: when its connection to the
//! log drops and comes back it reads on from there, so nothing is skipped; when the log no longer
//! holds what it missed (a gap beyond retention) it tells its connections to resynchronise
//! ([`Delivery::Resync`], close code 4005). The same log serves a reconnecting client's
//! `?resume=<s>` ([`EventBus::replay`]).
//!
//! Providers: [`local`] (one process: SQLite), [`postgres`] (a table of recent messages, NOTIFY
//! only rings the bell) and [`nats`] (a JetStream stream) for fleets that outgrow NOTIFY's
//! commit lock.

pub mod local;
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::storage::{ChannelId, SessionId, UserId};

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Every connection of every member.
    All,
    /// Connections subscribed to the channel.
    Channel(ChannelId),
    /// Connections subscribed to the channel, except every connection of this user (typing).
    ChannelExcept(ChannelId, UserId),
    /// Every connection of these users (DMs, devices).
    Users(Vec<UserId>),
}

/// What travels on the bus: events for connections, or instructions about connections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BusMessage {
    Event {
        audience: Audience,
        op: String,
        data: serde_json::Value,
        t: i64,
    },
    /// Close the connections authenticated with these sessions (logout, device revocation).
    CloseSessions {
        sessions: Vec<SessionId>,
        code: u16,
        reason: String,
    },
    /// Close every connection of the user (leave, kick, ban).
    CloseUser {
        user: UserId,
        code: u16,
        reason: String,
    },
    /// Drop every subscription to the channel.
    ChannelDeleted {
        channel: ChannelId,
    },
}

impl BusMessage {
    pub fn event(audience: Audience, op: &str, data: impl Serialize) -> Self {
        BusMessage::Event {
            audience,
            op: op.to_owned(),
            data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null),
            t: chrono::Utc::now().timestamp(),
        }
    }
}

/// How much of the log is kept: enough for a client to resume within the window (and a process
/// to catch up after a short outage), and never more than `max_messages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_messages: usize,
}

impl Retention {
    /// The window plus a minute, at most 200,000 messages.
    pub fn for_resume_window(window: Duration) -> Retention {
        Retention { max_age: window + Duration::from_secs(60), max_messages: 200_000 }
    }
}

/// A message with its place in the deployment-wide order.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequenced {
    pub s: u64,
    /// When it was appended to the log (Unix seconds): resume windows are measured on it.
    pub at: i64,
    pub message: BusMessage,
}

/// What a process hands its gateway connections.
#[derive(Clone, Debug)]
pub enum Delivery {
    Message(Arc<Sequenced>),
    /// The log lost messages this process had not read (a gap beyond retention): every
    /// connection may have missed some and must resynchronise (close 4005).
    Resync,
}

/// Why the log cannot say what came after an `s`.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The log no longer holds the messages after `s` (pruned, or a new log).
    #[error("the event log no longer holds what followed")]
    Gone,
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
}

/// Resolves once the log holds an appended message.
pub type Appended = tokio::sync::oneshot::Receiver<()>;

/// A message in a provider's queue, with what resolves its [`Appended`].
pub type Pending = (BusMessage, tokio::sync::oneshot::Sender<()>);

/// Messages in order, as a provider delivers them to a process.
pub type Follow = futures::stream::BoxStream<'static, Result<Sequenced, ReadError>>;

/// A log of recent messages, shared by every process of a deployment.
#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Appends `message` (in this process's publish order). Returns at once: a background task
    /// sends it, retrying until the log holds it, and then resolves [`Appended`].
    fn append(&self, message: BusMessage) -> Appended;
    /// The highest `s` in the log (0 for an empty log).
    async fn head(&self) -> Result<u64, ReadError>;
    /// Up to `limit` messages with a number greater than `after`, in order (for resuming
    /// clients). [`ReadError::Gone`] when some of them are no longer held.
    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Sequenced>, ReadError>;
    /// Every message after `after`, in order, for as long as the provider runs. A lost
    /// connection is re-established and reading goes on from the last message; messages the
    /// log lost meanwhile end the stream with [`ReadError::Gone`].
    fn follow(&self, after: u64) -> Follow;
    /// Drops what is older than the retention. Every process runs it periodically, so it must be
    /// safe to run concurrently; providers that enforce their limits themselves do nothing.
    async fn prune(&self) -> Result<(), ReadError> {
        Ok(())
    }
}

/// The provider `config` names (api.md §7.2 `bus.provider`), connected.
pub async fn open(config: &crate::config::Config) -> Result<Arc<dyn Provider>, ReadError> {
    use crate::config::BusProviderKind;
    let retention = Retention::for_resume_window(Duration::from_secs(config.gateway.resume_window_seconds));
    Ok(match config.bus_provider() {
        BusProviderKind::InProcess => Arc::new(local::LocalLog::new(retention)),
        #[cfg(feature = "postgres")]
        BusProviderKind::Postgres => {
            let url = config.storage.database_url.as_deref().unwrap_or_default();
            Arc::new(postgres::PgLog::connect(url, retention).await?)
        }
        #[cfg(not(feature = "postgres"))]
        BusProviderKind::Postgres => {
            return Err(ReadError::Unavailable("this build of decentcom has no postgres backend".into()));
        }
        BusProviderKind::Nats => {
            Arc::new(nats::NatsLog::connect(&config.bus.nats_url, &config.bus.nats_stream, retention).await?)
        }
    })
}

/// The provider `config` names, for error messages (never with a password).
pub fn describe(config: &crate::config::Config) -> String {
    use crate::config::BusProviderKind;
    match config.bus_provider() {
        BusProviderKind::InProcess => "in-process".to_owned(),
        BusProviderKind::Postgres => "postgres".to_owned(),
        BusProviderKind::Nats => format!("nats at {}", crate::config::redact_url(&config.bus.nats_url)),
    }
}

/// Messages read from the log per query.
const READ_BATCH: usize = 1000;
/// How long a publisher waits for the log to hold its message.
const APPEND_WAIT: Duration = Duration::from_secs(2);
/// How often each process prunes the log.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// Wait before following the log again after it could not be read.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Messages a connection may fall behind before it is closed as too slow (4008).
pub const CONNECTION_BACKLOG: usize = 4096;

/// The bus of one process: a provider, followed in order by one task and fanned out to this
/// process's connections.
pub struct EventBus {
    provider: Arc<dyn Provider>,
    local: broadcast::Sender<Delivery>,
    /// The last `s` read from the log and handed to the connections.
    last: AtomicU64,
}

impl EventBus {
    /// Starts following the log from its current head (what is published from now on) until
    /// `stop` is cancelled.
    pub async fn start(provider: Arc<dyn Provider>, stop: CancellationToken) -> Result<Arc<EventBus>, ReadError> {
        let head = provider.head().await?;
        let bus = Arc::new(EventBus { provider, local: broadcast::channel(CONNECTION_BACKLOG).0, last: head.into() });
        tokio::spawn(bus.clone().pump(stop.clone()));
        tokio::spawn(prune_periodically(bus.provider.clone(), stop));
        Ok(bus)
    }

    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    /// Publishes to every connection of every process (after the change is committed), and
    /// returns once the log holds the message: a request's events then come before its answer,
    /// so a connection opened after the answer (which starts after the log's head) never
    /// receives them late. The wait is bounded ([`APPEND_WAIT`]): while the log is unreachable
    /// the message stays queued and the answer goes out.
    pub async fn publish(&self, message: BusMessage) {
        let _ = tokio::time::timeout(APPEND_WAIT, self.provider.append(message)).await;
    }

    /// The newest `s` in the log, or the last this process read when the log cannot say: a new
    /// connection receives the messages after it.
    pub async fn head(&self) -> u64 {
        self.provider.head().await.unwrap_or(0).max(self.last())
    }

    /// What the log hands this process from now on, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.local.subscribe()
    }

    /// The last `s` this process has read.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Every message after `after` up to at least the last one this process had read when
    /// called, for a resuming client: [`ResumeError`] when `after` is from the future, older
    /// than `window` (the first message after it was appended longer ago), or no longer held.
    pub async fn replay(&self, after: u64, window: Duration) -> Result<Vec<Arc<Sequenced>>, ResumeError> {
        let head = self.provider.head().await.map_err(ResumeError::Unavailable)?.max(self.last());
        if after > head {
            return Err(ResumeError::Future);
        }
        let oldest = chrono::Utc::now().timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        let mut out: Vec<Arc<Sequenced>> = Vec::new();
        let mut from = after;
        while from < head {
            let batch = match self.provider.read_after(from, READ_BATCH).await {
                Ok(batch) => batch,
                Err(ReadError::Gone) => return Err(ResumeError::Expired),
                Err(err) => return Err(ResumeError::Unavailable(err)),
            };
            if out.is_empty() && batch.first().is_some_and(|first| first.at < oldest) {
                return Err(ResumeError::Expired);
            }
            let Some(last) = batch.last() else { break };
            from = last.s;
            out.extend(batch.into_iter().map(Arc::new));
        }
        Ok(out)
    }

    /// Follows the log and hands every message to the connections. When the log cannot be read
    /// the provider is followed again from the last message read; on a gap, the connections are
    /// told to resynchronise and the log is followed on from its head.
    async fn pump(self: Arc<Self>, stop: CancellationToken) {
        use futures::StreamExt;
        loop {
            let mut follow = self.provider.follow(self.last());
            let ended = loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = follow.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        self.last.store(message.s, Ordering::Release);
                        // No connection is not an error.
                        let _ = self.local.send(Delivery::Message(Arc::new(message)));
                    }
                    Some(Err(err)) => break Some(err),
                    None => break None,
                }
            };
            match ended {
                Some(ReadError::Gone) => {
                    tracing::error!(
                        provider = self.provider.name(),
                        after = self.last(),
                        "event bus: messages this process had not read are gone from the log; closing every \
                         gateway connection for a resync (4005)"
                    );
                    let _ = self.local.send(Delivery::Resync);
                    self.skip_to_head(&stop).await;
                }
                Some(ReadError::Unavailable(cause)) => {
                    tracing::warn!(
                        provider = self.provider.name(),
                        after = self.last(),
                        error = %cause,
                        "event bus: cannot read the log; following it again from the last message read"
                    );
                }
                None => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }

    /// After a gap: goes on from what the log holds now.
    async fn skip_to_head(&self, stop: &CancellationToken) {
        loop {
            if let Ok(head) = self.provider.head().await {
                self.last.store(head.max(self.last()), Ordering::Release);
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }
}

/// Runs [`Provider::prune`] every [`PRUNE_EVERY`] until `stop`.
async fn prune_periodically(provider: Arc<dyn Provider>, stop: CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(err) = provider.prune().await {
            tracing::warn!(provider = provider.name(), error = %err, "event bus: cannot prune the log; retrying later");
        }
    }
}

/// Why a client cannot resume from its `s` (close 4005, refetch over REST).
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("resume point is from the future")]
    Future,
    #[error("resume point is older than the resume window")]
    Expired,
    #[error("the event log is unavailable: {0}")]
    Unavailable(ReadError),
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pretty_assertions::assert_eq;

    use super::*;

    /// A log whose follow hands out what a test scripted, then waits forever.
    struct Scripted {
        follows: Mutex<Vec<Vec<Result<Sequenced, ReadError>>>>,
        head: u64,
    }

    #[async_trait]
    impl Provider for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn append(&self, _: BusMessage) -> Appended {
            tokio::sync::oneshot::channel().1
        }
        async fn head(&self) -> Result<u64, ReadError> {
            Ok(self.head)
        }
        async fn read_after(&self, _: u64, _: usize) -> Result<Vec<Sequenced>, ReadError> {
            Ok(Vec::new())
        }
        fn follow(&self, _: u64) -> Follow {
            use futures::StreamExt;
            let next = self.follows.lock().unwrap().pop().unwrap_or_default();
            futures::stream::iter(next).chain(futures::stream::pending()).boxed()
        }
    }

    fn message(s: u64) -> Sequenced {
        Sequenced { s, at: 0, message: BusMessage::ChannelDeleted { channel: ChannelId(1) } }
    }

    fn received(delivery: Delivery) -> Option<u64> {
        match delivery {
            Delivery::Message(m) => Some(m.s),
            Delivery::Resync => None,
        }
    }

    #[tokio::test]
    async fn a_gap_tells_every_connection_to_resync_and_the_bus_goes_on_from_the_head() {
        // Followed twice: first 1, 2 then a gap; then (from the head, 10) 11.
        let follows = vec![vec![Ok(message(11))], vec![Ok(message(1)), Ok(message(2)), Err(ReadError::Gone)]];
        let provider = Arc::new(Scripted { follows: Mutex::new(follows), head: 10 });
        let stop = CancellationToken::new();
        let bus = EventBus { provider, local: broadcast::channel(16).0, last: 0.into() };
        let bus = Arc::new(bus);
        let mut rx = bus.subscribe();
        tokio::spawn(bus.clone().pump(stop.clone()));
        let mut got = Vec::new();
        for _ in 0..4 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            got.push(received(delivery));
        }
        assert_eq!(got, vec![Some(1), Some(2), None, Some(11)]);
        assert_eq!(bus.last(), 11);
        stop.cancel();
    }

    #[tokio::test]
    async fn an_unreadable_log_is_followed_again_from_the_last_message_without_a_resync() {
        let unavailable = || Err(ReadError::Unavailable("connection lost".into()));
        let follows = vec![vec![Ok(message(3))], vec![Ok(message(1)), Ok(message(2)), unavailable()]];
        let provider = Arc::new(Scripted { follows: Mutex::new(follows), head: 0 });
        let stop = CancellationToken::new();
        let bus = Arc::new(EventBus { provider, local: broadcast::channel(16).0, last: 0.into() });
        let mut rx = bus.subscribe();
        tokio::spawn(bus.clone().pump(stop.clone()));
        let mut got = Vec::new();
        for _ in 0..3 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            got.push(received(delivery));
        }
        assert_eq!(got, vec![Some(1), Some(2), Some(3)]);
        stop.cancel();
    }
}
