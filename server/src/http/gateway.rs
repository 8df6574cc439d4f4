//! `GET /api/v1/gateway` (api.md §6): the WebSocket event stream.
//!
//! Each connection is one task that owns its socket and selects over: client frames
//! (SUBSCRIBE / UNSUBSCRIBE / HEARTBEAT_ACK), the event bus (events filtered by audience and
//! instructions to close connections), the heartbeat timers and server shutdown. Everything a
//! connection sends goes through that one task, so per-channel order is the bus order.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::session::{AuthedMember, member_access, session_for_token};
use crate::bus::{Audience, BusMessage, Delivery, ResumeError, Sequenced};
use crate::permissions::has;
use crate::storage::{ChannelId, Permissions, Session, User, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(gateway))
}

/// Gateway close codes (api.md §6.2).
pub mod close {
    pub const SHUTTING_DOWN: u16 = 1001;
    pub const FRAME_TOO_LARGE: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
    pub const SESSION_REVOKED: u16 = 4003;
    pub const REMOVED_FROM_SERVER: u16 = 4004;
    /// The connection may have missed events: refetch over REST and reconnect.
    pub const RESYNC_REQUIRED: u16 = 4005;
    /// The client did not read its events; its backlog overflowed.
    pub const TOO_SLOW: u16 = 4008;
}

/// The largest client frame (and message) accepted; larger ones close with 1009.
pub const MAX_CLIENT_FRAME: usize = 16 * 1024;
/// How long a closing connection waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Opens the gateway WebSocket; the token comes from `Authorization: Bearer` or `?token=`.
///
/// Text frames carry one JSON object each: server events `{op, d, t, s}` (HELLO, READY, HEARTBEAT,
/// ERROR, RESUMED and the dispatched events, which alone carry `s`: a number that increases
/// across the whole deployment), client commands `{op, d}` (SUBSCRIBE, UNSUBSCRIBE,
/// HEARTBEAT_ACK). The server sends HEARTBEAT every `gateway.heartbeat_interval_ms`; no
/// HEARTBEAT_ACK within `gateway.heartbeat_ack_timeout_ms` closes with 4002.
///
/// Resume (an extension beyond v1): reconnect with `?resume=<the last s received>` (and
/// `&subscribe=<ids>` to restore subscriptions first) to receive HELLO, every event missed that
/// the user may see now, in order, then RESUMED `{"s": <last>}`, then live events with no gap and
/// no duplicate.
///
/// Close codes: 1000 (answering the client's close), 1001 shutting down, 1009 frame over 16 KiB,
/// 4001 unauthorized, 4002 heartbeat timeout, 4003 session revoked, 4004 removed from server, 4005
/// resync required (events may have been missed, or the resume point is not held: refetch over
/// REST), 4008 too slow (the connection's event backlog overflowed).
#[utoipa::path(get, path = "/gateway", tag = "gateway", security((), ("bearer" = [])),
    params(
        ("token" = Option<String>, Query,
            description = "session token, for clients that cannot set headers (the Authorization header wins)"),
        ("resume" = Option<u64>, Query,
            description = "the `s` of the last event received before a disconnect: every event after it that the \
                           user may see now is sent after HELLO, then RESUMED {s}, then live events (4005 when \
                           it is older than gateway.resume_window_seconds, from the future, or no longer held)"),
        ("subscribe" = Option<String>, Query,
            description = "channel ids to subscribe to at once, comma-separated (as SUBSCRIBE each; needed with \
                           `resume` to replay channel events)"),
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol; HELLO then READY (or, resuming, \
                                      the missed events then RESUMED)"),
        (status = 400, description = "expected websocket upgrade / invalid resume point / invalid subscribe list"),
        (status = 401, description = "missing session token"),
    ))]
pub async fn gateway(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(token) = header_token(&headers).or_else(|| query_token(query.as_deref())) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing session token").into_response();
    };
    let Ok(upgrade) = upgrade else {
        return ApiError::new(StatusCode::BAD_REQUEST, "expected websocket upgrade").into_response();
    };
    let start = match Start::from_query(query.as_deref()) {
        Ok(start) => start,
        Err(err) => return err.into_response(),
    };
    let identity = match authenticate(&state, &token).await {
        Ok(identity) => identity,
        // The database is unreachable: answer over HTTP rather than pretend the token is bad.
        Err(err) => return err.into_response(),
    };
    upgrade.max_frame_size(MAX_CLIENT_FRAME).max_message_size(MAX_CLIENT_FRAME).on_upgrade(move |socket| async move {
        match identity {
            Some((session, user)) => Connection::new(state, socket, session, user).run(start).await,
            None => {
                let mut socket = socket;
                close_socket(&mut socket, close::UNAUTHORIZED, "unauthorized").await;
            }
        }
    })
}

/// `Authorization: Bearer <token>` when well formed.
fn header_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").filter(|t| !t.is_empty()).map(str::to_owned)
}

/// `?token=<token>`.
fn query_token(query: Option<&str>) -> Option<String> {
    query_value(query, "token")
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// How a connection starts: resuming after an `s`, and the channels to subscribe to at once.
#[derive(Debug, Default)]
struct Start {
    resume: Option<u64>,
    subscribe: Vec<String>,
}

impl Start {
    /// `?resume=<s>&subscribe=<id>,<id>`; a malformed value is a 400 before the upgrade.
    fn from_query(query: Option<&str>) -> Result<Start, ApiError> {
        let resume = match query_value(query, "resume") {
            None => None,
            Some(raw) => Some(
                raw.parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0 && raw.starts_with(|c: char| c.is_ascii_digit()))
                    .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid resume point"))?,
            ),
        };
        let subscribe = match query_value(query, "subscribe") {
            None => Vec::new(),
            Some(raw) if raw.is_empty() => Vec::new(),
            Some(raw) => {
                let ids: Vec<String> = raw.split(',').map(str::to_owned).collect();
                if ids.iter().any(|id| id.parse::<ChannelId>().is_err()) {
                    return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid subscribe list"));
                }
                ids
            }
        };
        Ok(Start { resume, subscribe })
    }
}

/// The session and user behind a token when it is valid and the user is a member; `None` when
/// the connection is to be closed with 4001; an error when the database cannot say.
async fn authenticate(state: &AppState, token: &str) -> Result<Option<(Session, User)>, ApiError> {
    let session = match session_for_token(state, token).await {
        Ok(session) => session,
        Err(err) if err.status == StatusCode::UNAUTHORIZED => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(state.storage.get_member(session.user_id).await?.map(|member| (session, member.user)))
}

/// Sends a close frame and waits briefly for the client's reply, so the frame is not lost to a
/// reset connection.
async fn close_socket(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    if socket.send(WsMessage::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A server event envelope (api.md §6.2): dispatched events carry `s`, their place in the
/// deployment-wide order (HELLO, READY, HEARTBEAT, ERROR and RESUMED do not).
#[derive(Serialize)]
struct Envelope<'a> {
    op: &'a str,
    d: &'a Value,
    t: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<u64>,
}

fn envelope(op: &str, d: &Value, t: i64, s: Option<u64>) -> String {
    serde_json::to_string(&Envelope { op, d, t, s }).unwrap_or_default()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A client command (api.md §6.3).
#[derive(Deserialize)]
struct Command {
    op: String,
    #[serde(default)]
    d: Value,
}

/// Why a connection ends.
enum End {
    /// Close with this code and reason.
    Close(u16, String),
    /// The client sent a Close frame: answer it (the reply completes the closing handshake, so
    /// the client sees its own code back, 1000 for a normal close, instead of 1006).
    ClientClosed,
    /// The socket failed: nothing more to send.
    Gone,
}

struct Connection {
    state: AppState,
    socket: WebSocket,
    session: Session,
    user: User,
    subscriptions: HashSet<ChannelId>,
}

impl Connection {
    fn new(state: AppState, socket: WebSocket, session: Session, user: User) -> Self {
        Connection { state, socket, session, user, subscriptions: HashSet::new() }
    }

    async fn run(mut self, start: Start) {
        let end = self.serve(start).await;
        tracing::debug!(user = %self.user.id, "gateway connection ending");
        match end {
            End::Close(code, reason) => close_socket(&mut self.socket, code, &reason).await,
            // tungstenite has queued the echo of the client's frame; closing the sink sends it.
            End::ClientClosed => {
                let _ = futures::SinkExt::close(&mut self.socket).await;
            }
            End::Gone => {}
        }
    }

    async fn send(&mut self, op: &str, d: &Value) -> Result<(), End> {
        self.send_text(envelope(op, d, now(), None)).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), End> {
        self.socket.send(WsMessage::Text(text.into())).await.map_err(|_| End::Gone)
    }

    async fn serve(&mut self, start: Start) -> End {
        // Subscribe before HELLO so nothing published after it is missed; what the log held
        // before this connection opened is not for it (publishing returns once the log holds a
        // message, so that covers every request answered before the connection opened).
        let mut bus = self.state.events.subscribe();
        let opened_after = self.state.events.head().await;
        if let Err(end) = self.hello().await {
            return end;
        }
        for channel in start.subscribe {
            let subscribe = Command { op: "SUBSCRIBE".into(), d: json!({ "channel_id": channel }) };
            if let Err(end) = self.command(subscribe).await {
                return end;
            }
        }
        // The live stream skips events up to this `s`: those before the connection opened, or
        // those replayed.
        let replayed_through = match start.resume {
            None => match self.send("READY", &json!({})).await {
                Ok(()) => opened_after,
                Err(end) => return end,
            },
            Some(after) => match self.resume(after).await {
                Ok(last) => last,
                Err(end) => return end,
            },
        };
        let shutdown = self.state.shutdown.clone();
        let interval = Duration::from_millis(self.state.config.gateway.heartbeat_interval_ms.max(1));
        let ack_timeout = Duration::from_millis(self.state.config.gateway.heartbeat_ack_timeout_ms);
        let mut next_heartbeat = Instant::now() + interval;
        let mut ack_deadline: Option<Instant> = None;

        loop {
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled() => Err(End::Close(close::SHUTTING_DOWN, "server shutting down".into())),
                () = sleep_until(ack_deadline.unwrap_or_else(Instant::now)), if ack_deadline.is_some() => {
                    Err(End::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout".into()))
                }
                frame = self.socket.recv() => match frame {
                    Some(Ok(WsMessage::Close(_))) => Err(End::ClientClosed),
                    None => Err(End::Gone),
                    Some(Err(err)) => Err(read_error(&err)),
                    Some(Ok(WsMessage::Text(text))) if text.len() > MAX_CLIENT_FRAME => Err(too_large()),
                    Some(Ok(WsMessage::Binary(bytes))) if bytes.len() > MAX_CLIENT_FRAME => Err(too_large()),
                    Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<Command>(&text) {
                        Ok(command) if command.op == "HEARTBEAT_ACK" => {
                            ack_deadline = None;
                            Ok(())
                        }
                        Ok(command) => self.command(command).await,
                        Err(_) => Ok(()),
                    },
                    Some(Ok(_)) => Ok(()),
                },
                delivery = bus.recv() => match delivery {
                    Ok(Delivery::Message(message)) if message.s <= replayed_through => Ok(()),
                    Ok(Delivery::Message(message)) => self.deliver(&message).await,
                    Ok(Delivery::Resync) => Err(End::Close(close::RESYNC_REQUIRED, "resync required".into())),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(user = %self.user.id, missed, "gateway client too slow: its backlog overflowed");
                        Err(End::Close(close::TOO_SLOW, "too slow".into()))
                    }
                    Err(RecvError::Closed) => Err(End::Close(close::SHUTTING_DOWN, "server shutting down".into())),
                },
                () = sleep_until(next_heartbeat) => {
                    next_heartbeat += interval;
                    if ack_deadline.is_none() {
                        ack_deadline = Some(Instant::now() + ack_timeout);
                    }
                    self.send("HEARTBEAT", &json!({})).await
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Replays every event after `after` this connection may see now, then RESUMED; returns the
    /// last `s` replayed (or `after`).
    async fn resume(&mut self, after: u64) -> Result<u64, End> {
        let window = Duration::from_secs(self.state.config.gateway.resume_window_seconds);
        let missed = match self.state.events.replay(after, window).await {
            Ok(missed) => missed,
            Err(err) => {
                if let ResumeError::Unavailable(cause) = &err {
                    tracing::warn!(error = %cause, "gateway: cannot read the event log to resume");
                }
                return Err(End::Close(close::RESYNC_REQUIRED, format!("resync required: {err}")));
            }
        };
        let mut last = after;
        for message in missed {
            self.deliver(&message).await?;
            last = message.s;
        }
        self.send("RESUMED", &json!({ "s": last })).await?;
        Ok(last)
    }

    /// HELLO: the server, the user and every text channel.
    async fn hello(&mut self) -> Result<(), End> {
        let channels = match self.state.storage.list_channels().await {
            Ok(channels) => channels,
            Err(err) => {
                tracing::error!(error = %err, "gateway: cannot list channels");
                return Err(End::Close(close::INTERNAL_ERROR, "internal error".into()));
            }
        };
        let hello = json!({
            "server_name": self.state.config.server.name,
            "user": {
                "id": self.user.id,
                "pubkey": self.user.pubkey,
                "display_name": self.user.display_name,
            },
            "channels": channels.iter().map(|c| json!({"id": c.id, "name": c.name})).collect::<Vec<_>>(),
            "heartbeat_interval_ms": self.state.config.gateway.heartbeat_interval_ms,
        });
        self.send("HELLO", &hello).await
    }

    /// SUBSCRIBE and UNSUBSCRIBE; unknown ops and malformed commands are ignored.
    async fn command(&mut self, command: Command) -> Result<(), End> {
        let Some(raw) = command.d.get("channel_id").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(());
        };
        match command.op.as_str() {
            "SUBSCRIBE" => match check_subscribe(&self.state, &self.session, self.user.id, &raw).await? {
                Ok(channel) => {
                    self.subscriptions.insert(channel);
                    Ok(())
                }
                Err(error) => {
                    let d = json!({"command": "SUBSCRIBE", "channel_id": raw, "error": error});
                    self.send("ERROR", &d).await
                }
            },
            "UNSUBSCRIBE" => {
                if let Ok(channel) = raw.parse::<ChannelId>() {
                    self.subscriptions.remove(&channel);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Applies one bus message to this connection (live, or replayed on resume: the same rules).
    async fn deliver(&mut self, sequenced: &Sequenced) -> Result<(), End> {
        match &sequenced.message {
            BusMessage::Event { audience, op, data, t } => {
                let wanted = match audience {
                    Audience::All => true,
                    Audience::Channel(channel) => self.subscriptions.contains(channel),
                    Audience::ChannelExcept(channel, user) => {
                        *user != self.user.id && self.subscriptions.contains(channel)
                    }
                    Audience::Users(users) => users.contains(&self.user.id),
                };
                if wanted {
                    self.send_text(envelope(op, data, *t, Some(sequenced.s))).await?;
                }
                Ok(())
            }
            BusMessage::CloseSessions { sessions, code, reason } if sessions.contains(&self.session.id) => {
                Err(End::Close(*code, reason.clone()))
            }
            BusMessage::CloseUser { user, code, reason } if *user == self.user.id => {
                Err(End::Close(*code, reason.clone()))
            }
            BusMessage::ChannelDeleted { channel } => {
                self.subscriptions.remove(channel);
                Ok(())
            }
            BusMessage::CloseSessions { .. } | BusMessage::CloseUser { .. } => Ok(()),
        }
    }
}

/// The checks of SUBSCRIBE: the channel is a text channel and the user, still a member, can read
/// it. The inner error is the ERROR event's message.
async fn check_subscribe(
    state: &AppState,
    session: &Session,
    user: UserId,
    raw: &str,
) -> Result<Result<ChannelId, String>, End> {
    let Ok(channel) = raw.parse::<ChannelId>() else {
        return Ok(Err("channel not found".into()));
    };
    let checked = async {
        if state.storage.get_channel(channel).await?.is_none() {
            return Ok(Err("channel not found".to_owned()));
        }
        let Some(member) = state.storage.get_member(user).await? else {
            return Ok(Ok(None));
        };
        let access = member_access(state, user).await?;
        let authed = AuthedMember { session: session.clone(), member, access };
        let bits = authed.in_channel(state, channel).await?;
        if has(bits, Permissions::READ_MESSAGES) {
            Ok(Ok(Some(channel)))
        } else {
            Ok(Err("missing read_messages permission".to_owned()))
        }
    };
    let outcome: Result<Result<Option<ChannelId>, String>, ApiError> = checked.await;
    match outcome {
        Ok(Ok(Some(channel))) => Ok(Ok(channel)),
        // No longer a member: the connection is over.
        Ok(Ok(None)) => Err(End::Close(close::REMOVED_FROM_SERVER, "removed from server".into())),
        Ok(Err(error)) => Ok(Err(error)),
        Err(err) => Ok(Err(err.message)),
    }
}

fn too_large() -> End {
    End::Close(close::FRAME_TOO_LARGE, "frame too large".into())
}

/// A read error: an oversized frame or message closes with 1009; anything else ends the
/// connection without a close frame.
fn read_error(err: &axum::Error) -> End {
    let text = err.to_string();
    if text.contains("Message too long") || text.contains("Space limit exceeded") {
        too_large()
    } else {
        tracing::debug!(error = %text, "gateway read error");
        End::Gone
    }
}
