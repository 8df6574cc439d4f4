//! Channel messages (api.md §3.4): create (with attachment links), list (§1.6), read, edit and
//! soft delete. Thread replies are edited and deleted here too, through the thread's channel id.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, check_message_content, conflict, forbidden, message_in_channel};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{self, Path, Query, parse_opt_id};
use super::session::AuthedMember;
use crate::bus::Audience;
use crate::storage::{
    AttachmentId, ChannelId, Conflict, Entity, MessageId, MessageScope, NewMessage, PageCursor, Permissions,
    StorageError,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_messages, create_message)).routes(routes!(
        get_message,
        edit_message,
        delete_message
    ))
}

/// A `limit` query value: an integer clamped to `1..=max`, `default` when absent; anything that is
/// not an integer → 400.
pub(super) fn parse_limit(raw: Option<&str>, default: u32, max: u32) -> ApiResult<u32> {
    let Some(raw) = raw else { return Ok(default) };
    let digits = raw.strip_prefix(['-', '+']).unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_request("invalid query string: limit must be an integer"));
    }
    if raw.starts_with('-') {
        return Ok(1);
    }
    // Too large for u64 still counts as an integer: clamp.
    let value = digits.parse::<u64>().unwrap_or(u64::MAX);
    Ok(value.clamp(1, u64::from(max)) as u32)
}

/// The message-list query of api.md §1.6.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Default 50, clamped to 1..=100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Messages with id < cursor, newest first.
    before: Option<String>,
    /// Messages with id > cursor, oldest first.
    after: Option<String>,
}

impl PageQuery {
    /// The cursor and clamped limit, or 400.
    pub(super) fn page(&self) -> ApiResult<(PageCursor, u32)> {
        if self.before.is_some() && self.after.is_some() {
            return Err(bad_request("before and after are mutually exclusive"));
        }
        let limit = parse_limit(self.limit.as_deref(), 50, 100)?;
        let before: Option<MessageId> = parse_opt_id("before", self.before.as_deref())?;
        let after: Option<MessageId> = parse_opt_id("after", self.after.as_deref())?;
        let cursor = match (before, after) {
            (Some(id), _) => PageCursor::Before(id),
            (_, Some(id)) => PageCursor::After(id),
            _ => PageCursor::Latest,
        };
        Ok((cursor, limit))
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateMessage {
    content: String,
    /// Attachments uploaded by the sender to this channel, not yet linked.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    attachment_ids: Option<Vec<AttachmentId>>,
}

#[derive(Deserialize, ToSchema)]
pub struct EditMessage {
    content: String,
}

/// Posts a message (SEND_MESSAGES in the channel, not read-only), linking its attachments in the
/// same transaction; MESSAGE_CREATE to the channel's subscribers.
#[utoipa::path(post, path = "/channels/{channel_id}/messages", tag = "messages", request_body = CreateMessage,
    params(("channel_id" = String, Path, description = "channel id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Message), (status = 403, description = "missing send_messages permission / read-only"),
        (status = 404, description = "channel not found"), (status = 409, description = "attachment unavailable"),
        (status = 422, description = "content rules")))]
pub async fn create_message(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(channel_id): Path<ChannelId>,
    extract::Json(body): extract::Json<CreateMessage>,
) -> ApiResult<Json<dto::Message>> {
    member.require_in_text_channel(&state, channel_id, Permissions::SEND_MESSAGES, "send_messages").await?;
    member.require_writable()?;
    let attachment_ids = body.attachment_ids.unwrap_or_default();
    check_message_content(&state, &body.content, !attachment_ids.is_empty())?;
    let new =
        NewMessage { channel_id, thread_id: None, author_id: member.user_id(), content: body.content, attachment_ids };
    let message = state.storage.create_message(new).await.map_err(|err| match err {
        StorageError::Conflict(Conflict::AttachmentUnavailable(id)) => {
            conflict(format!("attachment {id} not found, not yours, already used, or from another channel"))
        }
        StorageError::NotFound(Entity::Channel) => ApiError::not_found("channel not found"),
        other => other.into(),
    })?;
    state.publish(Audience::Channel(channel_id), "MESSAGE_CREATE", dto::Message::for_broadcast(message.clone())).await;
    Ok(Json(message.into()))
}

/// A page of the channel's messages (READ_MESSAGES in the channel); thread replies excluded.
#[utoipa::path(get, path = "/channels/{channel_id}/messages", tag = "messages",
    params(("channel_id" = String, Path, description = "channel id"), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = dto::MessagePage), (status = 400, description = "bad query"),
        (status = 403, description = "missing read_messages permission"), (status = 404, description = "channel not found")))]
pub async fn list_messages(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(channel_id): Path<ChannelId>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<dto::MessagePage>> {
    let (cursor, limit) = query.page()?;
    member.require_in_text_channel(&state, channel_id, Permissions::READ_MESSAGES, "read_messages").await?;
    let page =
        state.storage.list_messages(MessageScope::Channel(channel_id), cursor, limit, Some(member.user_id())).await?;
    Ok(Json(page.into()))
}

/// One message of the channel (READ_MESSAGES in the channel).
#[utoipa::path(get, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages",
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Message), (status = 403, description = "missing read_messages permission"),
        (status = 404, description = "channel not found / message not found")))]
pub async fn get_message(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<dto::Message>> {
    member.require_in_text_channel(&state, channel_id, Permissions::READ_MESSAGES, "read_messages").await?;
    let message = message_in_channel(&state, channel_id, message_id, Some(member.user_id())).await?;
    Ok(Json(message.into()))
}

/// Edits a message: its author, or MANAGE_MESSAGES in the channel; MESSAGE_UPDATE to the channel's
/// subscribers.
#[utoipa::path(patch, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", request_body = EditMessage,
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Message), (status = 403, description = "cannot edit another user's message"),
        (status = 404, description = "channel not found / message not found"),
        (status = 409, description = "cannot edit a deleted message"), (status = 422, description = "content rules")))]
pub async fn edit_message(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
    extract::Json(body): extract::Json<EditMessage>,
) -> ApiResult<Json<dto::Message>> {
    let bits = member.require_in_text_channel(&state, channel_id, Permissions::SEND_MESSAGES, "send_messages").await?;
    member.require_writable()?;
    let message = message_in_channel(&state, channel_id, message_id, None).await?;
    if message.author_id != member.user_id() && !crate::permissions::has(bits, Permissions::MANAGE_MESSAGES) {
        return Err(forbidden("cannot edit another user's message"));
    }
    if message.deleted {
        return Err(conflict("cannot edit a deleted message"));
    }
    check_message_content(&state, &body.content, false)?;
    let edited = state.storage.edit_message(message_id, body.content).await.map_err(|err| match err {
        StorageError::Conflict(Conflict::MessageDeleted) => conflict("cannot edit a deleted message"),
        StorageError::NotFound(Entity::Message) => ApiError::not_found("message not found"),
        other => other.into(),
    })?;
    state.publish(Audience::Channel(channel_id), "MESSAGE_UPDATE", dto::Message::for_broadcast(edited.clone())).await;
    // The edit result carries no viewer; reload for the caller's `me` flags when it matters.
    let edited = if edited.reactions.is_empty() {
        edited
    } else {
        state.storage.get_message(message_id, Some(member.user_id())).await?.unwrap_or(edited)
    };
    Ok(Json(edited.into()))
}

/// Soft-deletes a message: its author, or MANAGE_MESSAGES in the channel; MESSAGE_DELETE to the
/// channel's subscribers. Deleting again answers 204.
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages",
    params(("channel_id" = String, Path, description = "channel id"), ("message_id" = String, Path, description = "message id")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 403, description = "cannot delete another user's message"),
        (status = 404, description = "channel not found / message not found")))]
pub async fn delete_message(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    let bits = member.require_in_text_channel(&state, channel_id, Permissions::SEND_MESSAGES, "send_messages").await?;
    member.require_writable()?;
    let message = message_in_channel(&state, channel_id, message_id, None).await?;
    if message.author_id != member.user_id() && !crate::permissions::has(bits, Permissions::MANAGE_MESSAGES) {
        return Err(forbidden("cannot delete another user's message"));
    }
    let deleted = state.storage.delete_message(message_id).await.map_err(|err| match err {
        StorageError::NotFound(Entity::Message) => ApiError::not_found("message not found"),
        other => other.into(),
    })?;
    if deleted {
        state
            .publish(
                Audience::Channel(channel_id),
                "MESSAGE_DELETE",
                json!({ "id": message_id, "channel_id": channel_id }),
            )
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
