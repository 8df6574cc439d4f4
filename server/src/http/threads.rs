//! Threads (api.md §3.7): creating a thread on a channel message, reading it and its replies,
//! replying, following and read marks.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{check_message_content, conflict, forbidden, message_in_channel, text_channel};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use super::messages::PageQuery;
use super::session::AuthedMember;
use crate::bus::Audience;
use crate::storage::{
    AttachmentId, ChannelId, Conflict, Entity, MessageId, MessageScope, NewMessage, Permissions, StorageError, Thread,
    ThreadId, UserId,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_thread))
        .routes(routes!(get_thread))
        .routes(routes!(list_thread_messages, create_thread_message))
        .routes(routes!(follow_thread, unfollow_thread))
        .routes(routes!(mark_thread_read))
}

/// A thread, or 404 `thread not found`.
async fn thread(state: &AppState, id: ThreadId, viewer: UserId) -> ApiResult<Thread> {
    state.storage.get_thread(id, Some(viewer)).await?.ok_or_else(|| ApiError::not_found("thread not found"))
}

/// 409 for an attachment that cannot be linked (api.md §3.4).
fn attachment_conflict(id: AttachmentId) -> ApiError {
    conflict(format!("attachment {id} not found, not yours, already used, or from another channel"))
}

/// Creates the thread of a channel message, or returns the existing one (idempotent per parent).
/// A thread reply cannot itself be a thread parent: such a message answers 404 `message not found`.
#[utoipa::path(post, path = "/channels/{channel_id}/messages/{message_id}/threads", tag = "threads",
    params(("channel_id" = String, Path, description = "text channel id"),
           ("message_id" = String, Path, description = "parent message id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::ThreadCreated),
              (status = 403, description = "feature off or missing read_messages permission"),
              (status = 404, description = "channel or message not found")))]
pub async fn create_thread(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<axum::Json<dto::ThreadCreated>> {
    if !state.config.features.message_threads {
        return Err(forbidden("message threads are disabled on this server"));
    }
    text_channel(&state, channel_id).await?;
    auth.require_in_channel(&state, channel_id, Permissions::READ_MESSAGES, "read_messages").await?;
    let parent = message_in_channel(&state, channel_id, message_id, None).await?;
    if parent.thread_id.is_some() {
        return Err(ApiError::not_found("message not found"));
    }
    let (thread, created) = match state.storage.create_thread(message_id, auth.user_id()).await {
        Ok(outcome) => outcome,
        Err(StorageError::NotFound(_) | StorageError::InvalidInput(_)) => {
            return Err(ApiError::not_found("message not found"));
        }
        Err(err) => return Err(err.into()),
    };
    if created {
        state
            .publish(
                Audience::Channel(thread.channel_id),
                "THREAD_CREATE",
                serde_json::json!({
                    "thread_id": thread.id,
                    "channel_id": thread.channel_id,
                    "parent_message_id": thread.parent_message_id,
                    "creator_id": thread.creator_id,
                }),
            )
            .await;
    }
    Ok(axum::Json(thread.into()))
}

/// One thread (READ_MESSAGES in its channel).
#[utoipa::path(get, path = "/threads/{thread_id}", tag = "threads",
    params(("thread_id" = String, Path, description = "thread id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Thread),
              (status = 403, description = "missing read_messages permission"),
              (status = 404, description = "thread not found")))]
pub async fn get_thread(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(thread_id): Path<ThreadId>,
) -> ApiResult<axum::Json<dto::Thread>> {
    let thread = thread(&state, thread_id, auth.user_id()).await?;
    auth.require_in_channel(&state, thread.channel_id, Permissions::READ_MESSAGES, "read_messages").await?;
    Ok(axum::Json(thread.into()))
}

/// A page of a thread's replies (READ_MESSAGES in its channel).
#[utoipa::path(get, path = "/threads/{thread_id}/messages", tag = "threads",
    params(("thread_id" = String, Path, description = "thread id"), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = dto::MessagePage),
              (status = 400, description = "bad cursor or limit"),
              (status = 403, description = "missing read_messages permission"),
              (status = 404, description = "thread not found")))]
pub async fn list_thread_messages(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(thread_id): Path<ThreadId>,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<dto::MessagePage>> {
    let (cursor, limit) = query.page()?;
    let thread = thread(&state, thread_id, auth.user_id()).await?;
    auth.require_in_channel(&state, thread.channel_id, Permissions::READ_MESSAGES, "read_messages").await?;
    let page =
        state.storage.list_messages(MessageScope::Thread(thread.id), cursor, limit, Some(auth.user_id())).await?;
    Ok(axum::Json(page.into()))
}

/// A thread reply or channel message body.
#[derive(Deserialize, ToSchema)]
pub struct NewReply {
    content: String,
    #[schema(value_type = Option<Vec<String>>)]
    attachment_ids: Option<Vec<AttachmentId>>,
}

/// A reply: validated like a channel message, counted on the thread, its author made a follower.
/// Emits THREAD_MESSAGE_CREATE and THREAD_UPDATE (never MESSAGE_CREATE).
#[utoipa::path(post, path = "/threads/{thread_id}/messages", tag = "threads",
    params(("thread_id" = String, Path, description = "thread id")),
    request_body = NewReply,
    security(("bearer" = [])),
    responses((status = 200, body = dto::Message),
              (status = 403, description = "missing send_messages permission or read-only session"),
              (status = 404, description = "thread not found"),
              (status = 409, description = "attachment unavailable"),
              (status = 422, description = "content rules")))]
pub async fn create_thread_message(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(thread_id): Path<ThreadId>,
    Json(body): Json<NewReply>,
) -> ApiResult<axum::Json<dto::Message>> {
    let thread = thread(&state, thread_id, auth.user_id()).await?;
    auth.require_in_channel(&state, thread.channel_id, Permissions::SEND_MESSAGES, "send_messages").await?;
    auth.require_writable()?;
    let attachment_ids = body.attachment_ids.unwrap_or_default();
    check_message_content(&state, &body.content, !attachment_ids.is_empty())?;
    let created = state
        .storage
        .create_message(NewMessage {
            channel_id: thread.channel_id,
            thread_id: Some(thread.id),
            author_id: auth.user_id(),
            content: body.content,
            attachment_ids,
        })
        .await;
    let message = match created {
        Ok(message) => message,
        Err(StorageError::Conflict(Conflict::AttachmentUnavailable(id))) => return Err(attachment_conflict(id)),
        Err(StorageError::NotFound(Entity::Thread | Entity::Channel)) => {
            return Err(ApiError::not_found("thread not found"));
        }
        Err(err) => return Err(err.into()),
    };
    state
        .publish(
            Audience::Channel(thread.channel_id),
            "THREAD_MESSAGE_CREATE",
            serde_json::json!({"thread_id": thread.id, "message": dto::Message::for_broadcast(message.clone())}),
        )
        .await;
    if let Some(updated) = state.storage.get_thread(thread.id, None).await? {
        state
            .publish(
                Audience::Channel(updated.channel_id),
                "THREAD_UPDATE",
                serde_json::json!({
                    "thread_id": updated.id,
                    "reply_count": updated.reply_count,
                    "last_reply_at": updated.last_reply_at,
                }),
            )
            .await;
    }
    Ok(axum::Json(message.into()))
}

/// Follows a thread (READ_MESSAGES in its channel).
#[utoipa::path(put, path = "/threads/{thread_id}/follow", tag = "threads",
    params(("thread_id" = String, Path, description = "thread id")),
    security(("bearer" = [])),
    responses((status = 204, description = "following"),
              (status = 403, description = "missing read_messages permission"),
              (status = 404, description = "thread not found")))]
pub async fn follow_thread(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(thread_id): Path<ThreadId>,
) -> ApiResult<StatusCode> {
    let thread = thread(&state, thread_id, auth.user_id()).await?;
    auth.require_in_channel(&state, thread.channel_id, Permissions::READ_MESSAGES, "read_messages").await?;
    match state.storage.follow_thread(thread.id, auth.user_id()).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StorageError::NotFound(_)) => Err(ApiError::not_found("thread not found")),
        Err(err) => Err(err.into()),
    }
}

/// Stops following a thread (204 also when the caller did not follow it).
#[utoipa::path(delete, path = "/threads/{thread_id}/follow", tag = "threads",
    params(("thread_id" = String, Path, description = "thread id")),
    security(("bearer" = [])),
    responses((status = 204, description = "not following (also when it was not)"),
              (status = 404, description = "thread not found"), (status = 403, description = "membership required")))]
pub async fn unfollow_thread(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(thread_id): Path<ThreadId>,
) -> ApiResult<StatusCode> {
    let thread = thread(&state, thread_id, auth.user_id()).await?;
    state.storage.unfollow_thread(thread.id, auth.user_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the caller's read mark when it follows the thread; otherwise no effect.
#[utoipa::path(put, path = "/threads/{thread_id}/read", tag = "threads",
    params(("thread_id" = String, Path, description = "thread id")),
    security(("bearer" = [])),
    responses((status = 204, description = "read mark set if following"),
              (status = 404, description = "thread not found"), (status = 403, description = "membership required")))]
pub async fn mark_thread_read(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(thread_id): Path<ThreadId>,
) -> ApiResult<StatusCode> {
    let thread = thread(&state, thread_id, auth.user_id()).await?;
    state.storage.mark_thread_read(thread.id, auth.user_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}
