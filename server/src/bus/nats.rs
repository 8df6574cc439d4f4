//! The NATS JetStream provider, for fleets that outgrow LISTEN/NOTIFY (whose commit lock
//! serialises every publishing transaction of every process, and whose traffic all crosses the
//! primary database).
//!
//! The log is one stream (`bus.nats_stream`, `DECENTCOM_EVENTS` by default, so that several
//! deployments can share a NATS cluster) over the subjects `<stream in lower case>.>`: a message
//! goes to `…all`, `…channel.<id>`, `…user.<id>` (one user), `…users` (several) or `…control`
//! (instructions about connections), so that a process can subscribe to what its connections
//! need; `s` is the stream sequence, which JetStream hands out in order across every publisher.
//! A process follows the stream with an ordered consumer, which recreates itself after a lost
//! connection or a server restart and goes on after the last message it delivered; a jump in the
//! sequence means messages the limits removed (a gap beyond retention). Limits: the retention's
//! age and count. Credentials come from the environment only: `NATS_CREDS` (a credentials file),
//! `NATS_TOKEN`, or `NATS_USER` and `NATS_PASSWORD`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Appended, Audience, BusMessage, Follow, Pending, Provider, ReadError, Retention, Sequenced};

/// How long startup waits for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most messages published before their acknowledgements are awaited.
const BATCH: usize = 256;
/// Wait between attempts to store a message.
const RETRY_DELAY: Duration = Duration::from_millis(250);

pub struct NatsLog {
    jetstream: jetstream::Context,
    stream: String,
    queue: mpsc::UnboundedSender<Pending>,
    /// Counts the client's (re)connections to the server.
    connections: watch::Receiver<u64>,
}

impl NatsLog {
    /// Connects to `url` (credentials from the environment), creates the stream if it does not
    /// exist yet, and starts the publisher. Errors name the URL.
    pub async fn connect(url: &str, stream: &str, retention: Retention) -> Result<NatsLog, ReadError> {
        let shown = crate::config::redact_url(url);
        let fail = |what: &str, err: &dyn std::fmt::Display| ReadError::Unavailable(format!("{what} {shown}: {err}"));
        let (connected, connections) = watch::channel(0u64);
        let options = credentials(async_nats::ConnectOptions::new())
            .await
            .map_err(|e| fail("cannot read the NATS credentials for", &e))?
            .connection_timeout(CONNECT_TIMEOUT)
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    connected.send_modify(|n| *n += 1);
                }
                std::future::ready(())
            });
        let client = options.connect(url).await.map_err(|e| fail("cannot reach NATS at", &e))?;
        let jetstream = jetstream::new(client);
        jetstream
            .get_or_create_stream(stream::Config {
                name: stream.to_owned(),
                subjects: vec![format!("{}.>", prefix(stream))],
                max_age: retention.max_age,
                max_messages: i64::try_from(retention.max_messages).unwrap_or(i64::MAX),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("cannot create the JetStream stream on", &e))?;
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run_publisher(jetstream.clone(), prefix(stream), pending));
        Ok(NatsLog { jetstream, stream: stream.to_owned(), queue, connections })
    }

    async fn stream(&self) -> Result<stream::Stream, ReadError> {
        self.jetstream.get_stream(&self.stream).await.map_err(|e| ReadError::Unavailable(e.to_string()))
    }

    async fn state(&self) -> Result<stream::State, ReadError> {
        let mut stream = self.stream().await?;
        Ok(stream.info().await.map_err(|e| ReadError::Unavailable(e.to_string()))?.state.clone())
    }
}

/// Credentials from the environment, never from the configuration file.
async fn credentials(options: async_nats::ConnectOptions) -> std::io::Result<async_nats::ConnectOptions> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(path) = var("NATS_CREDS") {
        return options.credentials_file(path).await;
    }
    if let Some(token) = var("NATS_TOKEN") {
        return Ok(options.token(token));
    }
    if let (Some(user), Some(password)) = (var("NATS_USER"), var("NATS_PASSWORD")) {
        return Ok(options.user_and_password(user, password));
    }
    Ok(options)
}

/// The subject prefix of a stream: its name in lower case.
fn prefix(stream: &str) -> String {
    stream.to_ascii_lowercase()
}

/// The subject of a message under `prefix` (see the module documentation).
pub fn subject(prefix: &str, message: &BusMessage) -> String {
    match message {
        BusMessage::Event { audience: Audience::All, .. } => format!("{prefix}.all"),
        BusMessage::Event { audience: Audience::Channel(c) | Audience::ChannelExcept(c, _), .. } => {
            format!("{prefix}.channel.{c}")
        }
        BusMessage::Event { audience: Audience::Users(users), .. } => match users.as_slice() {
            [one] => format!("{prefix}.user.{one}"),
            _ => format!("{prefix}.users"),
        },
        BusMessage::CloseSessions { .. } | BusMessage::CloseUser { .. } | BusMessage::ChannelDeleted { .. } => {
            format!("{prefix}.control")
        }
    }
}

#[async_trait]
impl Provider for NatsLog {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn append(&self, message: BusMessage) -> Appended {
        let (held, appended) = oneshot::channel();
        let _ = self.queue.send((message, held));
        appended
    }

    async fn head(&self) -> Result<u64, ReadError> {
        Ok(self.state().await?.last_sequence)
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Sequenced>, ReadError> {
        let state = self.state().await?;
        if state.last_sequence <= after {
            return Ok(Vec::new());
        }
        if after + 1 < state.first_sequence {
            return Err(ReadError::Gone);
        }
        let until = state.last_sequence.min(after.saturating_add(limit as u64));
        let mut messages = ordered(&self.stream().await?, &self.stream, after).await?;
        let mut out = Vec::new();
        while let Some(next) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.ok().flatten() {
            let message = sequenced(next.map_err(|e| ReadError::Unavailable(e.to_string()))?)?;
            if message.s != out.last().map_or(after, |m: &Sequenced| m.s) + 1 {
                return Err(ReadError::Gone);
            }
            let s = message.s;
            out.push(message);
            if s >= until {
                break;
            }
        }
        Ok(out)
    }

    /// An ordered consumer from `after`. It would notice a restarted server only after two
    /// missed idle heartbeats (half a minute), so a reconnection ends the stream at once instead
    /// ([`ReadError::Unavailable`]): the bus follows again from the last message it read.
    fn follow(&self, after: u64) -> Follow {
        let (jetstream, name) = (self.jetstream.clone(), self.stream.clone());
        let mut connections = self.connections.clone();
        connections.borrow_and_update();
        futures::stream::once(async move {
            let stream = jetstream.get_stream(&name).await.map_err(|e| ReadError::Unavailable(e.to_string()))?;
            ordered(&stream, &name, after).await.map(|messages| (messages, after))
        })
        .flat_map(move |started| match started {
            Ok((messages, after)) => {
                let state = (messages, after, false, connections.clone());
                futures::stream::unfold(state, |(mut messages, last, done, mut connections)| async move {
                    if done {
                        return None;
                    }
                    let item = tokio::select! {
                        next = messages.next() => match next? {
                            Ok(message) => sequenced(message),
                            // The ordered consumer recreates itself after transient errors; what
                            // reaches us is not recoverable here.
                            Err(err) => Err(ReadError::Unavailable(err.to_string())),
                        },
                        _ = connections.changed() => Err(ReadError::Unavailable("reconnected to NATS".into())),
                    };
                    match item {
                        Ok(message) if message.s == last + 1 => {
                            let s = message.s;
                            Some((Ok(message), (messages, s, false, connections)))
                        }
                        // A jump: the limits removed messages this process had not read.
                        Ok(_) => Some((Err(ReadError::Gone), (messages, last, true, connections))),
                        Err(err) => Some((Err(err), (messages, last, true, connections))),
                    }
                })
                .boxed()
            }
            Err(err) => futures::stream::iter([Err(err)]).boxed(),
        })
        .boxed()
    }
}

/// An ordered consumer of every subject of the stream `name`, from the message after `after`.
async fn ordered(stream: &stream::Stream, name: &str, after: u64) -> Result<consumer::pull::Ordered, ReadError> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("{}.>", prefix(name)),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
            ..Default::default()
        })
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))?;
    consumer.messages().await.map_err(|e| ReadError::Unavailable(e.to_string()))
}

fn sequenced(message: jetstream::Message) -> Result<Sequenced, ReadError> {
    let info = message.info().map_err(|e| ReadError::Unavailable(e.to_string()))?;
    let (s, at) = (info.stream_sequence, info.published.timestamp());
    let message: BusMessage = serde_json::from_slice(&message.payload)
        .map_err(|e| ReadError::Unavailable(format!("undecodable message {s}: {e}")))?;
    Ok(Sequenced { s, at, message })
}

/// Publishes queued messages in order until the queue is dropped: a batch is sent, then its
/// acknowledgements awaited. A message whose acknowledgement does not come (the server is
/// restarting, say) is sent again, and the rest of the batch after it, one at a time, until it is
/// stored: an event of a committed change is never dropped, only delayed. Every message carries
/// an id (`Nats-Msg-Id`), so JetStream stores a message sent twice once.
async fn run_publisher(jetstream: jetstream::Context, prefix: String, mut pending: mpsc::UnboundedReceiver<Pending>) {
    // Unique to this run of this process: its id and start time.
    let process = format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let mut counter: u64 = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        // Each message as (subject, id, payload).
        let mut outgoing = Vec::with_capacity(batch.len());
        let mut held = Vec::with_capacity(batch.len());
        for (message, appended) in batch.drain(..) {
            counter += 1;
            let payload = Bytes::from(serde_json::to_vec(&message).expect("bus messages serialise"));
            outgoing.push((subject(&prefix, &message), format!("{process}-{counter}"), payload));
            held.push(appended);
        }
        let mut acks = Vec::with_capacity(outgoing.len());
        for (subject, id, payload) in &outgoing {
            acks.push(jetstream.send_publish(subject.clone(), publish(id, payload)).await);
        }
        let mut first_failed = None;
        for (i, ack) in acks.into_iter().enumerate() {
            let stored = match ack {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if !stored && first_failed.is_none() {
                first_failed = Some(i);
            }
        }
        if let Some(from) = first_failed {
            for (subject, id, payload) in &outgoing[from..] {
                publish_until_stored(&jetstream, subject, id, payload).await;
            }
        }
        for held in held {
            let _ = held.send(());
        }
    }
}

fn publish(id: &str, payload: &Bytes) -> jetstream::message::PublishMessage {
    jetstream::message::PublishMessage::build().payload(payload.clone()).message_id(id)
}

/// Sends one message until JetStream acknowledges it.
async fn publish_until_stored(jetstream: &jetstream::Context, subject: &str, id: &str, payload: &Bytes) {
    let mut attempts = 0u32;
    loop {
        let outcome = match jetstream.send_publish(subject.to_owned(), publish(id, payload)).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match outcome {
            Ok(()) => {
                if attempts > 0 {
                    tracing::info!(attempts = attempts + 1, "event bus: NATS stored the message after retrying");
                }
                return;
            }
            Err(err) => {
                attempts += 1;
                if attempts == 1 {
                    tracing::warn!(error = %err, "event bus: NATS did not store a message; retrying");
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}
