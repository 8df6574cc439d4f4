//! Direct messages (api.md §3.10): two-user DM channels; events go to the two participants only.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, check_message_content, forbidden, parse_pubkey, unprocessable};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use super::messages::PageQuery;
use super::session::AuthedMember;
use crate::bus::Audience;
use crate::storage::{self, ChannelId, Dm, MessageId, MessageScope, PageCursor, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_dm, list_dms))
        .routes(routes!(list_dm_messages, send_dm_message))
        .routes(routes!(delete_dm_message))
        .routes(routes!(hide_dm))
}

/// The DM channel with the caller as a participant: 404 `dm not found`, 403 for an outsider.
async fn dm_of(state: &AppState, channel: ChannelId, user: UserId) -> ApiResult<Dm> {
    let dm = state.storage.get_dm(channel).await?.ok_or_else(|| ApiError::not_found("dm not found"))?;
    if !dm.has_participant(user) {
        return Err(forbidden("not a participant in this DM"));
    }
    Ok(dm)
}

#[derive(Deserialize, ToSchema)]
pub struct OpenDm {
    /// The recipient's base58 public key.
    recipient_pubkey: String,
}

/// Finds or creates the DM channel with a member and opens it for the caller; DM_CREATE to both
/// participants when it was created.
#[utoipa::path(post, path = "/dms", tag = "dms", request_body = OpenDm,
    security(("bearer" = [])),
    responses((status = 200, body = dto::DmChannel),
              (status = 400, description = "invalid public key format / cannot open a DM with yourself"),
              (status = 404, description = "user not found (unknown or not a member)"), (status = 403, description = "membership required")))]
pub async fn open_dm(
    State(state): State<AppState>,
    auth: AuthedMember,
    Json(body): Json<OpenDm>,
) -> ApiResult<axum::Json<dto::DmChannel>> {
    let pubkey = parse_pubkey(&body.recipient_pubkey)?;
    let me = &auth.member.user;
    if pubkey == me.pubkey {
        return Err(bad_request("cannot open a DM with yourself"));
    }
    let recipient =
        state.storage.get_user_by_pubkey(&pubkey).await?.ok_or_else(|| ApiError::not_found("user not found"))?;
    if state.storage.get_member(recipient.id).await?.is_none() {
        return Err(ApiError::not_found("user not found"));
    }
    let opened = state.storage.open_dm(me.id, recipient.id).await?;
    if opened.created {
        let theirs = storage::DmChannel {
            channel_id: opened.dm.channel_id,
            recipient: storage::DmUser {
                user_id: me.id,
                pubkey: me.pubkey,
                display_name: me.display_name.clone(),
                avatar_hash: me.avatar_hash.clone(),
            },
            created_at: opened.dm.created_at,
            last_message_at: opened.dm.last_message_at,
            last_read_at: None,
        };
        state.publish(Audience::Users(vec![me.id]), "DM_CREATE", dto::DmChannel::from(opened.dm.clone())).await;
        state.publish(Audience::Users(vec![recipient.id]), "DM_CREATE", dto::DmChannel::from(theirs)).await;
    }
    Ok(axum::Json(opened.dm.into()))
}

#[derive(Serialize, ToSchema)]
pub struct DmList {
    dms: Vec<dto::DmChannel>,
}

/// The caller's open DMs, most recent message first, never-used ones last (newest first).
#[utoipa::path(get, path = "/dms", tag = "dms", security(("bearer" = [])),
    responses((status = 200, body = DmList), (status = 403, description = "membership required")))]
pub async fn list_dms(State(state): State<AppState>, auth: AuthedMember) -> ApiResult<axum::Json<DmList>> {
    let dms = state.storage.list_dms(auth.user_id()).await?;
    Ok(axum::Json(DmList { dms: dms.into_iter().map(Into::into).collect() }))
}

/// A page of DM messages (paged like channel messages); the newest page (no cursor) sets the caller's read mark.
#[utoipa::path(get, path = "/dms/{channel_id}/messages", tag = "dms",
    params(("channel_id" = String, Path, description = "DM channel id"), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = dto::MessagePage),
              (status = 400, description = "bad cursor or limit"),
              (status = 403, description = "not a participant in this DM"),
              (status = 404, description = "dm not found")))]
pub async fn list_dm_messages(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(channel_id): Path<ChannelId>,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<dto::MessagePage>> {
    let (cursor, limit) = query.page()?;
    let dm = dm_of(&state, channel_id, auth.user_id()).await?;
    let page =
        state.storage.list_messages(MessageScope::Channel(dm.channel_id), cursor, limit, Some(auth.user_id())).await?;
    if cursor == PageCursor::Latest {
        state.storage.mark_dm_read(dm.channel_id, auth.user_id()).await?;
    }
    Ok(axum::Json(page.into()))
}

#[derive(Deserialize, ToSchema)]
pub struct NewDmMessage {
    content: String,
    /// Not supported in DMs: present and non-empty → 422.
    #[schema(value_type = Option<Vec<String>>)]
    attachment_ids: Option<Vec<serde_json::Value>>,
}

/// Sends a DM: reopens it for both (DM_CREATE first to whoever had it hidden), then
/// DM_MESSAGE_CREATE to both participants.
#[utoipa::path(post, path = "/dms/{channel_id}/messages", tag = "dms",
    params(("channel_id" = String, Path, description = "DM channel id")),
    request_body = NewDmMessage,
    security(("bearer" = [])),
    responses((status = 200, body = dto::Message),
              (status = 403, description = "not a participant / recipient is not a member / read-only"),
              (status = 404, description = "dm not found"),
              (status = 422, description = "content rules, or attachments are not supported")))]
pub async fn send_dm_message(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(channel_id): Path<ChannelId>,
    Json(body): Json<NewDmMessage>,
) -> ApiResult<axum::Json<dto::Message>> {
    let me = auth.user_id();
    let dm = dm_of(&state, channel_id, me).await?;
    auth.require_writable()?;
    if body.attachment_ids.as_ref().is_some_and(|ids| !ids.is_empty()) {
        return Err(unprocessable("attachments are not supported in direct messages"));
    }
    check_message_content(&state, &body.content, false)?;
    let other = dm.other(me);
    if state.storage.get_member(other).await?.is_none() {
        return Err(forbidden("recipient is not a member"));
    }
    let sent = match state.storage.send_dm_message(dm.channel_id, me, body.content).await {
        Ok(sent) => sent,
        Err(storage::StorageError::NotFound(_)) => return Err(ApiError::not_found("dm not found")),
        Err(err) => return Err(err.into()),
    };
    for user in &sent.reopened_for {
        let listed = state.storage.list_dms(*user).await?;
        if let Some(channel) = listed.into_iter().find(|d| d.channel_id == dm.channel_id) {
            state.publish(Audience::Users(vec![*user]), "DM_CREATE", dto::DmChannel::from(channel)).await;
        }
    }
    state
        .publish(
            Audience::Users(dm.participants.to_vec()),
            "DM_MESSAGE_CREATE",
            dto::Message::for_broadcast(sent.message.clone()),
        )
        .await;
    Ok(axum::Json(sent.message.into()))
}

/// Soft-deletes the caller's own DM message; DM_MESSAGE_DELETE to both when this call deleted it.
#[utoipa::path(delete, path = "/dms/{channel_id}/messages/{message_id}", tag = "dms",
    params(("channel_id" = String, Path, description = "DM channel id"),
           ("message_id" = String, Path, description = "message id")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted (also when it already was)"),
              (status = 403, description = "not a participant / cannot delete another user's message"),
              (status = 404, description = "dm or message not found")))]
pub async fn delete_dm_message(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    let me = auth.user_id();
    let dm = dm_of(&state, channel_id, me).await?;
    let message = match state.storage.get_message(message_id, Some(me)).await? {
        Some(message) if message.channel_id == dm.channel_id => message,
        _ => return Err(ApiError::not_found("message not found")),
    };
    if message.author_id != me {
        return Err(forbidden("cannot delete another user's message"));
    }
    let deleted = match state.storage.delete_message(message.id).await {
        Ok(deleted) => deleted,
        Err(storage::StorageError::NotFound(_)) => return Err(ApiError::not_found("message not found")),
        Err(err) => return Err(err.into()),
    };
    if deleted {
        state
            .publish(
                Audience::Users(dm.participants.to_vec()),
                "DM_MESSAGE_DELETE",
                serde_json::json!({"id": message.id, "channel_id": dm.channel_id}),
            )
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Hides the DM from the caller's list; messages are kept and a new message reopens it.
#[utoipa::path(delete, path = "/dms/{channel_id}", tag = "dms",
    params(("channel_id" = String, Path, description = "DM channel id")),
    security(("bearer" = [])),
    responses((status = 204, description = "hidden"),
              (status = 403, description = "not a participant in this DM"),
              (status = 404, description = "dm not found")))]
pub async fn hide_dm(
    State(state): State<AppState>,
    auth: AuthedMember,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    let dm = dm_of(&state, channel_id, auth.user_id()).await?;
    state.storage.hide_dm(dm.channel_id, auth.user_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}
