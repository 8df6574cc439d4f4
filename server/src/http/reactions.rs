//! Reactions (api.md §3.6): one reaction per user per message, behind feature `emoji_reactions`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, forbidden, message_in_channel, text_channel};
use super::error::{ApiError, ApiResult};
use super::extract::{Path, Query, parse_opt_id};
use super::messages::parse_limit;
use super::session::AuthedMember;
use crate::bus::Audience;
use crate::storage::{ChannelId, Message, MessageId, Permissions, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(toggle_reaction, list_reactors))
        .routes(routes!(remove_own_reaction))
        .routes(routes!(remove_user_reaction))
}

/// 403 `emoji reactions are disabled on this server` unless the feature is on.
fn require_feature(state: &AppState) -> ApiResult<()> {
    if state.config.features.emoji_reactions {
        Ok(())
    } else {
        Err(forbidden("emoji reactions are disabled on this server"))
    }
}

/// The ids and emoji of a reaction path. The emoji is the percent-decoded segment: 1–64 bytes of
/// UTF-8, else 400 `invalid emoji`.
fn emoji_path(
    path: Result<Path<(ChannelId, MessageId, String)>, ApiError>,
) -> ApiResult<(ChannelId, MessageId, String)> {
    match path {
        Ok(Path((channel_id, message_id, emoji))) => {
            if emoji.is_empty() || emoji.len() > 64 {
                return Err(bad_request("invalid emoji"));
            }
            Ok((channel_id, message_id, emoji))
        }
        // Axum refuses a segment that does not decode to UTF-8 before deserializing anything.
        Err(err) if err.message.contains("Invalid UTF-8 in `emoji`") => Err(bad_request("invalid emoji")),
        Err(err) => Err(err),
    }
}

/// The channel (404 for unknown and DM ids) and, after `perms` are checked there, the message.
async fn target(
    state: &AppState,
    member: &AuthedMember,
    channel_id: ChannelId,
    message_id: MessageId,
    perms: &[(Permissions, &str)],
) -> ApiResult<Message> {
    text_channel(state, channel_id).await?;
    if !perms.is_empty() {
        let bits = member.in_channel(state, channel_id).await?;
        if let Some((_, name)) = perms.iter().find(|(p, _)| !crate::permissions::has(bits, *p)) {
            return Err(forbidden(format!("missing {name} permission")));
        }
    }
    message_in_channel(state, channel_id, message_id, None).await
}

async fn publish(state: &AppState, op: &str, message: &Message, user: UserId, emoji: &str) {
    let data = json!({ "channel_id": message.channel_id, "message_id": message.id, "user_id": user, "emoji": emoji });
    state.publish(Audience::Channel(message.channel_id), op, data).await;
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReactorQuery {
    /// Default 25, clamped to 1..=100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Continue below this user id.
    before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Reactor {
    #[schema(value_type = String)]
    id: UserId,
    display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReactorList {
    users: Vec<Reactor>,
    total: i64,
}

/// Adds, removes (same emoji) or replaces (another emoji) the caller's reaction;
/// REACTION_REMOVE then REACTION_ADD to the channel's subscribers.
#[utoipa::path(put, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "reactions",
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id"),
        ("emoji" = String, Path, description = "percent-encoded emoji, 1-64 bytes")),
    security(("bearer" = [])),
    responses((status = 204, description = "toggled"), (status = 400, description = "invalid emoji"),
        (status = 403, description = "feature off or missing permission"),
        (status = 404, description = "channel not found / message not found")))]
pub async fn toggle_reaction(
    State(state): State<AppState>,
    member: AuthedMember,
    path: Result<Path<(ChannelId, MessageId, String)>, ApiError>,
) -> ApiResult<StatusCode> {
    require_feature(&state)?;
    let (channel_id, message_id, emoji) = emoji_path(path)?;
    let perms = [(Permissions::READ_MESSAGES, "read_messages"), (Permissions::ADD_REACTIONS, "add_reactions")];
    let message = target(&state, &member, channel_id, message_id, &perms).await?;
    member.require_writable()?;
    let user = member.user_id();
    let change = state.storage.toggle_reaction(message.id, user, &emoji).await.map_err(|err| match err {
        crate::storage::StorageError::NotFound(_) => ApiError::not_found("message not found"),
        other => other.into(),
    })?;
    if let Some(removed) = &change.removed {
        publish(&state, "REACTION_REMOVE", &message, user, removed).await;
    }
    if let Some(added) = &change.added {
        publish(&state, "REACTION_ADD", &message, user, added).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The users holding `emoji` on the message, by user id descending.
#[utoipa::path(get, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "reactions",
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id"),
        ("emoji" = String, Path, description = "percent-encoded emoji, 1-64 bytes"), ReactorQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ReactorList), (status = 400, description = "invalid emoji or query"),
        (status = 403, description = "feature off or missing read_messages permission"),
        (status = 404, description = "channel not found / message not found")))]
pub async fn list_reactors(
    State(state): State<AppState>,
    member: AuthedMember,
    path: Result<Path<(ChannelId, MessageId, String)>, ApiError>,
    Query(query): Query<ReactorQuery>,
) -> ApiResult<Json<ReactorList>> {
    require_feature(&state)?;
    let (channel_id, message_id, emoji) = emoji_path(path)?;
    let limit = parse_limit(query.limit.as_deref(), 25, 100)?;
    let before: Option<UserId> = parse_opt_id("before", query.before.as_deref())?;
    let message =
        target(&state, &member, channel_id, message_id, &[(Permissions::READ_MESSAGES, "read_messages")]).await?;
    let page = state.storage.list_reactors(message.id, &emoji, before, limit).await?;
    Ok(Json(ReactorList {
        users: page.users.into_iter().map(|r| Reactor { id: r.user_id, display_name: r.display_name }).collect(),
        total: page.total,
    }))
}

/// Removes the caller's reaction, if any; REACTION_REMOVE when one was removed.
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}/reactions", tag = "reactions",
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id")),
    security(("bearer" = [])),
    responses((status = 204, description = "removed (or there was none)"), (status = 403, description = "feature off"),
        (status = 404, description = "channel not found / message not found")))]
pub async fn remove_own_reaction(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    require_feature(&state)?;
    let message = target(&state, &member, channel_id, message_id, &[]).await?;
    member.require_writable()?;
    let user = member.user_id();
    if let Some(emoji) = state.storage.remove_reaction(message.id, user).await? {
        publish(&state, "REACTION_REMOVE", &message, user, &emoji).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes another user's reaction (MANAGE_MESSAGES in the channel); REACTION_REMOVE when one was
/// removed.
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}/reactions/users/{user_id}", tag = "reactions",
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id"),
        ("user_id" = String, Path, description = "the reacting user's id")),
    security(("bearer" = [])),
    responses((status = 204, description = "removed (or there was none)"),
        (status = 403, description = "feature off or missing manage_messages permission"),
        (status = 404, description = "channel not found / message not found")))]
pub async fn remove_user_reaction(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, message_id, user_id)): Path<(ChannelId, MessageId, UserId)>,
) -> ApiResult<StatusCode> {
    require_feature(&state)?;
    let perms = [(Permissions::MANAGE_MESSAGES, "manage_messages")];
    let message = target(&state, &member, channel_id, message_id, &perms).await?;
    member.require_writable()?;
    if let Some(emoji) = state.storage.remove_reaction(message.id, user_id).await? {
        publish(&state, "REACTION_REMOVE", &message, user_id, &emoji).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
