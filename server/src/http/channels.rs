//! Text channels (api.md §3.3): list, create, read, update, delete.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, conflict, text_channel};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{self, Path};
use super::session::AuthedMember;
use crate::bus::{Audience, BusMessage};
use crate::storage::{ChannelId, ChannelPatch, Conflict, Entity, NewChannel, Permissions, StorageError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_channels, create_channel)).routes(routes!(
        get_channel,
        update_channel,
        delete_channel
    ))
}

/// A nullable PATCH field: absent → `None` (unchanged), `null` → `Some(None)` (clear),
/// a value → `Some(Some(v))`. Use with `#[serde(default, deserialize_with = "nullable")]`.
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

const NAME_RULE: &str = "channel name must be 1-100 characters of a-z, 0-9 and -";

/// 1–100 characters of `a-z`, `0-9`, `-`.
fn check_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid { Ok(()) } else { Err(bad_request(NAME_RULE)) }
}

/// Maps the storage errors a channel write risks to api.md's fixed messages.
fn channel_error(err: StorageError) -> ApiError {
    match err {
        StorageError::Conflict(Conflict::ChannelName) => conflict("channel name already exists"),
        StorageError::NotFound(Entity::Channel) => ApiError::not_found("channel not found"),
        other => other.into(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    channels: Vec<dto::Channel>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateChannel {
    #[schema(pattern = "^[a-z0-9-]{1,100}$")]
    name: String,
    /// A free-text label; reused or created by name.
    #[serde(default)]
    category: Option<String>,
    /// 32-bit (422 beyond): the original SDK decodes positions as i32, and one larger position
    /// would make every channel list undecodable for it.
    #[serde(default, deserialize_with = "extract::optional_i32")]
    position: Option<i32>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateChannel {
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9-]{1,100}$")]
    name: Option<String>,
    /// `null` clears the topic.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    topic: Option<Option<String>>,
    /// `null` clears the category.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    category: Option<Option<String>>,
    /// 32-bit, as on create.
    #[serde(default, deserialize_with = "extract::optional_i32")]
    position: Option<i32>,
}

/// Every text channel, by position, then id.
#[utoipa::path(get, path = "/channels", tag = "channels",
    security(("bearer" = [])),
    responses((status = 200, body = ChannelList), (status = 403, description = "membership required")))]
pub async fn list_channels(State(state): State<AppState>, _member: AuthedMember) -> ApiResult<Json<ChannelList>> {
    let channels = state.storage.list_channels().await?;
    Ok(Json(ChannelList { channels: channels.into_iter().map(Into::into).collect() }))
}

/// Creates a text channel (MANAGE_CHANNELS); CHANNEL_CREATE to everyone.
#[utoipa::path(post, path = "/channels", tag = "channels", request_body = CreateChannel,
    security(("bearer" = [])),
    responses((status = 200, body = dto::Channel), (status = 400, description = "name rule"),
        (status = 403, description = "missing manage_channels permission"),
        (status = 409, description = "channel name already exists")))]
pub async fn create_channel(
    State(state): State<AppState>,
    member: AuthedMember,
    extract::Json(body): extract::Json<CreateChannel>,
) -> ApiResult<Json<dto::Channel>> {
    member.require(Permissions::MANAGE_CHANNELS, "manage_channels")?;
    check_name(&body.name)?;
    let channel = state
        .storage
        .create_channel(NewChannel {
            name: body.name,
            topic: None,
            category: body.category,
            position: body.position.map_or(0, i64::from),
        })
        .await
        .map_err(channel_error)?;
    state.publish(Audience::All, "CHANNEL_CREATE", dto::Channel::from(channel.clone())).await;
    Ok(Json(channel.into()))
}

/// One text channel.
#[utoipa::path(get, path = "/channels/{channel_id}", tag = "channels",
    params(("channel_id" = String, Path, description = "channel id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Channel), (status = 404, description = "channel not found"), (status = 403, description = "membership required")))]
pub async fn get_channel(
    State(state): State<AppState>,
    _member: AuthedMember,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<Json<dto::Channel>> {
    Ok(Json(text_channel(&state, channel_id).await?.into()))
}

/// Updates a channel (MANAGE_CHANNELS). Absent fields are unchanged; `null` clears `topic` and
/// `category`. CHANNEL_UPDATE to everyone.
#[utoipa::path(patch, path = "/channels/{channel_id}", tag = "channels", request_body = UpdateChannel,
    params(("channel_id" = String, Path, description = "channel id")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Channel), (status = 400, description = "name rule"),
        (status = 403, description = "missing manage_channels permission"),
        (status = 404, description = "channel not found"), (status = 409, description = "channel name already exists")))]
pub async fn update_channel(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(channel_id): Path<ChannelId>,
    extract::Json(body): extract::Json<UpdateChannel>,
) -> ApiResult<Json<dto::Channel>> {
    member.require(Permissions::MANAGE_CHANNELS, "manage_channels")?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    text_channel(&state, channel_id).await?;
    let patch = ChannelPatch {
        name: body.name,
        topic: body.topic,
        category: body.category,
        position: body.position.map(i64::from),
    };
    let channel = state.storage.update_channel(channel_id, patch).await.map_err(channel_error)?;
    state.publish(Audience::All, "CHANNEL_UPDATE", dto::Channel::from(channel.clone())).await;
    Ok(Json(channel.into()))
}

/// Deletes a channel with everything in it (MANAGE_CHANNELS); CHANNEL_DELETE to everyone and
/// every gateway subscription to it dropped.
#[utoipa::path(delete, path = "/channels/{channel_id}", tag = "channels",
    params(("channel_id" = String, Path, description = "channel id")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 403, description = "missing manage_channels permission"),
        (status = 404, description = "channel not found")))]
pub async fn delete_channel(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<axum::http::StatusCode> {
    member.require(Permissions::MANAGE_CHANNELS, "manage_channels")?;
    if !state.storage.delete_channel(channel_id).await? {
        return Err(ApiError::not_found("channel not found"));
    }
    state.events.publish(BusMessage::ChannelDeleted { channel: channel_id }).await;
    state.publish(Audience::All, "CHANNEL_DELETE", json!({ "id": channel_id })).await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
