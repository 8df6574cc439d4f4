//! The event bus (api.md §6.4–§6.5). Handlers publish after their change is committed; every
//! gateway connection subscribes and filters by audience. With one process the bus is in-process
//! ([`LocalBus`]); with PostgreSQL, where several processes may serve one community, it is
//! [`SharedBus`], which also carries every message to the other processes.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::storage::{Broadcast, ChannelId, SessionId, StorageResult, UserId};

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

/// Gateway close codes (api.md §6.2).
pub mod close {
    pub const SHUTTING_DOWN: u16 = 1001;
    pub const FRAME_TOO_LARGE: u16 = 1009;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
    pub const SESSION_REVOKED: u16 = 4003;
    pub const REMOVED_FROM_SERVER: u16 = 4004;
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

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Delivers to the connections of every process, in publish order.
    async fn publish(&self, message: BusMessage);
    /// A stream of everything published from now on.
    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>>;
}

/// The in-process bus (one server process).
pub struct LocalBus {
    tx: broadcast::Sender<Arc<BusMessage>>,
}

impl LocalBus {
    pub fn new() -> Self {
        LocalBus { tx: broadcast::channel(4096).0 }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, message: BusMessage) {
        // No receivers (no connections) is not an error.
        let _ = self.tx.send(Arc::new(message));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.tx.subscribe()
    }
}

/// The bus of one process among several sharing a PostgreSQL database (api.md §6.5): a message
/// is delivered to this process's connections at once and broadcast to the other processes
/// through the storage's [`Broadcast`] channel; what the others broadcast is delivered here.
pub struct SharedBus {
    local: LocalBus,
    broadcast: Arc<dyn Broadcast>,
    /// Identifies this process's own broadcasts, which come back to it and are skipped.
    origin: String,
}

/// A bus message on the wire between processes.
#[derive(Serialize, Deserialize)]
struct Envelope<M> {
    origin: String,
    message: M,
}

impl SharedBus {
    /// Starts listening (before it returns, so nothing published afterwards is missed) and
    /// relays what other processes publish until `stop` is cancelled.
    pub async fn start(broadcast: Arc<dyn Broadcast>, stop: CancellationToken) -> StorageResult<Arc<SharedBus>> {
        let mut incoming = broadcast.subscribe().await?;
        let origin: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let bus = Arc::new(SharedBus { local: LocalBus::new(), broadcast, origin });
        let relay = bus.clone();
        tokio::spawn(async move {
            loop {
                let payload = tokio::select! {
                    () = stop.cancelled() => return,
                    payload = incoming.recv() => match payload {
                        Some(payload) => payload,
                        None => return,
                    },
                };
                match serde_json::from_str::<Envelope<BusMessage>>(&payload) {
                    Ok(envelope) if envelope.origin == relay.origin => {}
                    Ok(envelope) => relay.local.publish(envelope.message).await,
                    Err(err) => tracing::error!(error = %err, "event bus: undecodable message from another process"),
                }
            }
        });
        Ok(bus)
    }
}

#[async_trait]
impl EventBus for SharedBus {
    async fn publish(&self, message: BusMessage) {
        let envelope = Envelope { origin: self.origin.clone(), message: &message };
        let payload = serde_json::to_string(&envelope).expect("bus messages serialise");
        // This process's connections get it at once, whether or not the database answers.
        self.local.publish(message).await;
        self.broadcast.publish(payload);
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_in_publish_order() {
        let bus = LocalBus::new();
        let mut rx = bus.subscribe();
        for i in 0..3 {
            bus.publish(BusMessage::event(Audience::Channel(ChannelId(1)), "MESSAGE_CREATE", i)).await;
        }
        for i in 0..3 {
            match &*rx.recv().await.unwrap() {
                BusMessage::Event { data, .. } => assert_eq!(data, &serde_json::json!(i)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
