//! Full-text search (api.md §3.9): non-deleted messages and thread replies of the text channels
//! the caller can read; DM messages are never searched.

use std::collections::HashMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, forbidden, text_channel, unprocessable};
use super::dto;
use super::error::ApiResult;
use super::extract::{Query, parse_opt_id};
use super::messages::parse_limit;
use super::session::AuthedMember;
use crate::permissions::has;
use crate::storage::search::{highlight, parse_query};
use crate::storage::{Channel, ChannelId, MessageId, Permissions, SearchQuery, Timestamp, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query: every term must match a token; `term*` is a prefix term. 1 to 16 distinct
    /// terms of at most 64 characters.
    #[param(required = true, min_length = 1, max_length = 256)]
    q: Option<String>,
    /// Only this text channel.
    channel_id: Option<String>,
    /// Only this author's messages.
    author_id: Option<String>,
    /// RFC 3339; only messages created strictly before.
    #[param(format = DateTime)]
    before: Option<String>,
    /// RFC 3339; only messages created strictly after.
    #[param(format = DateTime)]
    after: Option<String>,
    /// Default 25, clamped to 1..=50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 50)]
    limit: Option<String>,
    /// The previous response's `cursor`.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchChannel {
    #[schema(value_type = String)]
    id: ChannelId,
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    message: dto::Message,
    channel: SearchChannel,
    highlight: String,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    results: Vec<SearchResult>,
    /// Pass back as `cursor` for the next page; null on the last page.
    cursor: Option<String>,
    /// The exact match count (ignoring the cursor), capped at 1000.
    total_estimate: i64,
}

fn timestamp(name: &str, raw: Option<&str>) -> ApiResult<Option<Timestamp>> {
    raw.map(|raw| Timestamp::parse_rfc3339(raw).ok_or_else(|| bad_request(format!("invalid timestamp: {name}"))))
        .transpose()
}

/// The text channels whose channel-effective permissions include READ_MESSAGES.
async fn readable_channels(state: &AppState, auth: &AuthedMember) -> ApiResult<Vec<Channel>> {
    let channels = state.storage.list_channels().await?;
    if auth.access.is_admin() {
        return Ok(channels);
    }
    let roles = state.storage.list_roles().await?;
    let position = |id| roles.iter().find(|r| r.id == id).map(|r| r.position);
    let mut readable = Vec::with_capacity(channels.len());
    for channel in channels {
        let overrides = state.storage.list_overrides(channel.id).await?;
        if has(auth.access.in_channel(&overrides, position), Permissions::READ_MESSAGES) {
            readable.push(channel);
        }
    }
    Ok(readable)
}

/// Searches the messages of every channel the caller can read, newest first.
#[utoipa::path(get, path = "/search", tag = "search", params(SearchParams),
    security(("bearer" = [])),
    responses((status = 200, body = SearchResponse),
              (status = 400, description = "malformed id, timestamp, limit or cursor"),
              (status = 403, description = "search disabled or channel not readable"),
              (status = 404, description = "channel not found"),
              (status = 422, description = "empty, too long or too many terms")))]
pub async fn search(
    State(state): State<AppState>,
    auth: AuthedMember,
    Query(params): Query<SearchParams>,
) -> ApiResult<axum::Json<SearchResponse>> {
    if !state.config.features.message_search {
        return Err(forbidden("message search is disabled on this server"));
    }
    let channel_id: Option<ChannelId> = parse_opt_id("channel_id", params.channel_id.as_deref())?;
    let author_id: Option<UserId> = parse_opt_id("author_id", params.author_id.as_deref())?;
    let created_before = timestamp("before", params.before.as_deref())?;
    let created_after = timestamp("after", params.after.as_deref())?;
    let cursor = params
        .cursor
        .as_deref()
        .map(|raw| raw.parse::<MessageId>().map_err(|_| bad_request("invalid cursor")))
        .transpose()?;
    let limit = parse_limit(params.limit.as_deref(), 25, 50)?;
    let terms = parse_query(params.q.as_deref().unwrap_or("")).map_err(|e| unprocessable(e.to_string()))?;

    let channels = match channel_id {
        Some(id) => {
            let channel = text_channel(&state, id).await?;
            auth.require_in_channel(&state, id, Permissions::READ_MESSAGES, "read_messages").await?;
            vec![channel]
        }
        None => readable_channels(&state, &auth).await?,
    };
    if channels.is_empty() {
        return Ok(axum::Json(SearchResponse { results: Vec::new(), cursor: None, total_estimate: 0 }));
    }
    let names: HashMap<ChannelId, String> = channels.iter().map(|c| (c.id, c.name.clone())).collect();
    let page = state
        .storage
        .search_messages(SearchQuery {
            terms: terms.clone(),
            channel_ids: channels.iter().map(|c| c.id).collect(),
            author_id,
            created_before,
            created_after,
            cursor,
            limit,
            viewer: Some(auth.user_id()),
        })
        .await?;
    let next = if page.has_more { page.messages.last().map(|m| m.id.to_string()) } else { None };
    let results = page
        .messages
        .into_iter()
        .map(|message| {
            let channel = SearchChannel {
                id: message.channel_id,
                name: names.get(&message.channel_id).cloned().unwrap_or_default(),
            };
            let highlight = highlight(&message.content, &terms);
            SearchResult { message: message.into(), channel, highlight }
        })
        .collect();
    Ok(axum::Json(SearchResponse { results, cursor: next, total_estimate: page.total_estimate }))
}
