//! Typing indicators (api.md §3.8): never stored; at most one TYPING_START per (user, channel)
//! every 2 s per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::forbidden;
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use super::session::AuthedMember;
use crate::bus::{Audience, EventBus};
use crate::storage::{ChannelId, ChannelKind, Permissions, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start_typing))
}

/// The minimum interval between two forwarded TYPING_START of one user in one channel.
const INTERVAL: Duration = Duration::from_secs(2);

/// The rate limiter's key: the event bus (one per server instance in this process; its address is
/// pinned by the `Weak` kept in the entry, so it cannot be reused while the entry lives), the user
/// and the channel.
type Key = (usize, UserId, ChannelId);

struct Entry {
    at: Instant,
    _bus: Weak<EventBus>,
}

fn limiter() -> &'static Mutex<HashMap<Key, Entry>> {
    static LIMITER: OnceLock<Mutex<HashMap<Key, Entry>>> = OnceLock::new();
    LIMITER.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether a TYPING_START for (user, channel) may be forwarded now; records it if so.
fn may_forward(bus: &Arc<EventBus>, user: UserId, channel: ChannelId) -> bool {
    let now = Instant::now();
    let key = (Arc::as_ptr(bus).cast::<()>() as usize, user, channel);
    let mut map = limiter().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if map.len() >= 1024 {
        map.retain(|_, entry| now.duration_since(entry.at) < INTERVAL);
    }
    match map.get(&key) {
        Some(entry) if now.duration_since(entry.at) < INTERVAL => false,
        _ => {
            map.insert(key, Entry { at: now, _bus: Arc::downgrade(bus) });
            true
        }
    }
}

/// Text channel: SEND_MESSAGES; DM channel: participant. TYPING_START goes to the channel's
/// subscribers except the sender's connections, or for a DM to the other participant.
#[utoipa::path(post, path = "/channels/{channel_id}/typing", tag = "typing",
    params(("channel_id" = String, Path, description = "text or DM channel id")),
    security(("bearer" = [])),
    responses((status = 204, description = "accepted (also when rate limited)"),
              (status = 403, description = "missing send_messages permission, not a participant, or read-only"),
              (status = 404, description = "channel not found")))]
pub async fn start_typing(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    let user = auth.user_id();
    let audience = match state.storage.channel_kind(channel_id).await? {
        Some(ChannelKind::Text) => {
            auth.require_in_channel(&state, channel_id, Permissions::SEND_MESSAGES, "send_messages").await?;
            Audience::ChannelExcept(channel_id, user)
        }
        Some(ChannelKind::Dm) => {
            let dm = state.storage.get_dm(channel_id).await?.ok_or_else(|| ApiError::not_found("channel not found"))?;
            if !dm.has_participant(user) {
                return Err(forbidden("not a participant in this DM"));
            }
            Audience::Users(vec![dm.other(user)])
        }
        None => return Err(ApiError::not_found("channel not found")),
    };
    auth.require_writable()?;
    if may_forward(&state.events, user, channel_id) {
        state
            .publish(
                audience,
                "TYPING_START",
                serde_json::json!({
                    "channel_id": channel_id,
                    "user_id": user,
                    "display_name": auth.member.user.display_name,
                    "timestamp": chrono::Utc::now().timestamp(),
                }),
            )
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Retention;
    use crate::bus::local::LocalLog;

    #[tokio::test]
    async fn one_event_per_user_and_channel_every_two_seconds() {
        let stop = tokio_util::sync::CancellationToken::new();
        let retention = Retention::for_resume_window(Duration::from_secs(60));
        let bus = EventBus::start(Arc::new(LocalLog::new(retention)), stop.clone()).await.unwrap();
        let other = EventBus::start(Arc::new(LocalLog::new(retention)), stop.clone()).await.unwrap();
        assert!(may_forward(&bus, UserId(1), ChannelId(1)));
        assert!(!may_forward(&bus, UserId(1), ChannelId(1)));
        assert!(may_forward(&bus, UserId(2), ChannelId(1)));
        assert!(may_forward(&bus, UserId(1), ChannelId(2)));
        assert!(may_forward(&other, UserId(1), ChannelId(1)), "another server instance has its own limit");
        stop.cancel();
    }
}
