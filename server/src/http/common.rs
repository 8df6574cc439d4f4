//! Checks and lookups shared by several route groups, written once.

use axum::http::StatusCode;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::storage::{Channel, ChannelId, Message, MessageId, PublicKey, UserId};

pub fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

pub fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

pub fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// A base58 public key from a path or body: 400 `invalid public key format` otherwise.
pub fn parse_pubkey(raw: &str) -> ApiResult<PublicKey> {
    crate::auth::parse_public_key(raw).ok_or_else(|| bad_request("invalid public key format"))
}

/// Content rules for channel messages, thread replies, DMs and edits (api.md §3.4): not blank
/// after trimming unless the message carries attachments; at most `max_message_length` Unicode
/// scalar values.
pub fn check_message_content(state: &AppState, content: &str, has_attachments: bool) -> ApiResult<()> {
    if content.trim().is_empty() && !has_attachments {
        return Err(unprocessable("message content must not be empty"));
    }
    let max = state.config.content.max_message_length;
    if content.chars().count() > max {
        return Err(unprocessable(format!("message content must be at most {max} characters")));
    }
    Ok(())
}

/// A text channel, or 404 `channel not found` (also for DM channel ids).
pub async fn text_channel(state: &AppState, id: ChannelId) -> ApiResult<Channel> {
    state.storage.get_channel(id).await?.ok_or_else(|| ApiError::not_found("channel not found"))
}

/// A message of `channel` (thread replies included), or 404 `message not found` — also when it
/// belongs to another channel.
pub async fn message_in_channel(
    state: &AppState,
    channel: ChannelId,
    id: MessageId,
    viewer: Option<UserId>,
) -> ApiResult<Message> {
    match state.storage.get_message(id, viewer).await? {
        Some(message) if message.channel_id == channel => Ok(message),
        _ => Err(ApiError::not_found("message not found")),
    }
}
