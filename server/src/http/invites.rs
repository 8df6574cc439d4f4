//! Invites (api.md §3.13): create, list, preview, revoke, and join through a code.

use axum::extract::State;
use axum::http::StatusCode;
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, forbidden};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, parse_id};
use super::members;
use super::session::{Authed, AuthedMember};
use crate::config::MembershipMode;
use crate::storage::{Conflict, InviteJoin, NewInvite, Permissions, RoleId, StorageError, Timestamp};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_invite, list_invites))
        .routes(routes!(preview_invite, delete_invite))
        .routes(routes!(join_via_invite))
}

const CODE_LEN: usize = 8;

/// 8 random characters of `[0-9A-Za-z]`.
fn new_code() -> String {
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(CODE_LEN).map(char::from).collect()
}

/// A role id as accepted in inputs: canonical id, `everyone` or `admin`.
fn parse_role_id(name: &str, raw: &str) -> ApiResult<RoleId> {
    match raw {
        "everyone" => Ok(RoleId::EVERYONE),
        "admin" => Ok(RoleId::ADMIN),
        _ => parse_id(name, raw),
    }
}

/// The longest invite lifetime: 100 years (of 365.25 days).
pub const MAX_INVITE_SECONDS: i64 = 3_155_760_000;

#[derive(Deserialize, ToSchema)]
pub struct CreateInvite {
    /// 0 = unlimited (default).
    #[serde(default, deserialize_with = "super::extract::optional_integer")]
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub max_uses: Option<i64>,
    /// At most 100 years.
    #[serde(default, deserialize_with = "super::extract::optional_integer")]
    #[schema(minimum = 1, maximum = 3_155_760_000_i64)]
    pub expires_in_seconds: Option<i64>,
    /// A role id (`everyone` / `admin` accepted).
    #[serde(default)]
    pub grant_role_id: Option<String>,
}

/// Creates an invite (MANAGE_INVITES), optionally granting a role below the caller's highest.
#[utoipa::path(post, path = "/invites", tag = "invites", request_body = CreateInvite,
    security(("bearer" = [])),
    responses((status = 200, body = dto::Invite), (status = 400), (status = 403)))]
pub async fn create_invite(
    auth: AuthedMember,
    State(state): State<AppState>,
    Json(body): Json<CreateInvite>,
) -> ApiResult<axum::Json<dto::Invite>> {
    auth.require(Permissions::MANAGE_INVITES, "manage_invites")?;
    let max_uses = body.max_uses.unwrap_or(0);
    if max_uses < 0 {
        return Err(bad_request("max_uses must be >= 0"));
    }
    let expires_at = match body.expires_in_seconds {
        None => None,
        Some(secs) if secs <= 0 => return Err(bad_request("expires_in_seconds must be > 0 when provided")),
        Some(secs) if secs > MAX_INVITE_SECONDS => {
            return Err(bad_request(format!("expires_in_seconds must be at most {MAX_INVITE_SECONDS} (100 years)")));
        }
        Some(secs) => Some(Timestamp::now().plus_seconds(secs)),
    };
    let grant_role_id = match body.grant_role_id.as_deref() {
        None => None,
        Some(raw) => {
            let id = parse_role_id("grant_role_id", raw)?;
            let role = state.storage.get_role(id).await?.ok_or_else(|| bad_request("grant_role_id does not exist"))?;
            if role.position >= auth.access.highest_position {
                return Err(forbidden("cannot grant a role at or above your highest role"));
            }
            Some(role.id)
        }
    };
    let mut attempts = 0;
    let invite = loop {
        let new = NewInvite { code: new_code(), created_by: auth.user_id(), grant_role_id, max_uses, expires_at };
        match state.storage.create_invite(new).await {
            Ok(invite) => break invite,
            Err(StorageError::Conflict(Conflict::InviteCode)) if attempts < 10 => attempts += 1,
            Err(StorageError::InvalidReference(_)) => return Err(bad_request("grant_role_id does not exist")),
            Err(err) => return Err(err.into()),
        }
    };
    Ok(axum::Json(dto::Invite::new(invite, &state.config.server.public_url)))
}

#[derive(Serialize, ToSchema)]
pub struct InviteList {
    pub invites: Vec<dto::Invite>,
}

/// Active invites (not expired, not used up), newest first.
#[utoipa::path(get, path = "/invites", tag = "invites", security(("bearer" = [])),
    responses((status = 200, body = InviteList), (status = 403)))]
pub async fn list_invites(auth: AuthedMember, State(state): State<AppState>) -> ApiResult<axum::Json<InviteList>> {
    auth.require(Permissions::MANAGE_INVITES, "manage_invites")?;
    let invites = state.storage.list_active_invites(Timestamp::now()).await?;
    let url = &state.config.server.public_url;
    Ok(axum::Json(InviteList { invites: invites.into_iter().map(|i| dto::Invite::new(i, url)).collect() }))
}

fn expired() -> ApiError {
    ApiError::new(StatusCode::GONE, "invite has expired")
}

fn exhausted() -> ApiError {
    ApiError::new(StatusCode::GONE, "invite has been exhausted")
}

fn invite_not_found() -> ApiError {
    ApiError::not_found("invite not found")
}

/// A public preview of an invite.
#[utoipa::path(get, path = "/invites/{code}", tag = "invites",
    params(("code" = String, Path, description = "invite code")),
    responses((status = 200, body = dto::InvitePreview), (status = 404), (status = 410)))]
pub async fn preview_invite(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> ApiResult<axum::Json<dto::InvitePreview>> {
    let invite = state.storage.get_invite(&code).await?.ok_or_else(invite_not_found)?;
    if invite.expires_at.is_some_and(|at| at <= Timestamp::now()) {
        return Err(expired());
    }
    if invite.max_uses > 0 && invite.use_count >= invite.max_uses {
        return Err(exhausted());
    }
    let member_count = state.storage.member_count().await?;
    Ok(axum::Json(dto::InvitePreview {
        invite_link: dto::invite_link(&state.config.server.public_url, &invite.code),
        code: invite.code,
        server_name: state.config.server.name.clone(),
        server_icon: state.icon.as_ref().map(|hash| hash.to_string()),
        member_count,
        expires_at: invite.expires_at,
    }))
}

/// Deletes an invite (MANAGE_INVITES).
#[utoipa::path(delete, path = "/invites/{code}", tag = "invites",
    params(("code" = String, Path, description = "invite code")),
    security(("bearer" = [])),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_invite(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Permissions::MANAGE_INVITES, "manage_invites")?;
    if !state.storage.delete_invite(&code).await? {
        return Err(invite_not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The invite join's answer: `{member: JoinedMember}`, the shape the original SDK decodes.
#[derive(Serialize, ToSchema)]
pub struct JoinInviteResponse {
    pub member: dto::JoinedMember,
}

/// Joins through an invite: one use consumed, member with @everyone and the invite's role.
#[utoipa::path(post, path = "/invites/{code}/join", tag = "invites",
    params(("code" = String, Path, description = "invite code")),
    security(("bearer" = [])),
    responses((status = 200, body = JoinInviteResponse), (status = 403), (status = 404), (status = 410)))]
pub async fn join_via_invite(
    Authed(session): Authed,
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> ApiResult<axum::Json<JoinInviteResponse>> {
    let user = members::session_user(&state, session.user_id).await?;
    members::refuse_banned(&state, &user.pubkey).await?;
    match state.config.membership_mode() {
        MembershipMode::Open | MembershipMode::InviteOnly => {}
        MembershipMode::Allowlist => members::require_allowlisted(&state, &user.pubkey).await?,
        MembershipMode::Closed => return Err(forbidden("server membership is closed")),
    }
    let member = match state.storage.join_via_invite(&code, user.id, Timestamp::now()).await? {
        InviteJoin::Joined(member) => {
            members::publish_member_join(&state, member.clone()).await;
            member
        }
        InviteJoin::AlreadyMember(member) => member,
        InviteJoin::NotFound => return Err(invite_not_found()),
        InviteJoin::Expired => return Err(expired()),
        InviteJoin::Exhausted => return Err(exhausted()),
    };
    Ok(axum::Json(JoinInviteResponse { member: member.into() }))
}
