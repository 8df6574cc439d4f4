//! Roles, role assignment and channel permission overrides (api.md §3.11, §5.2, §5.4).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::channels::nullable;
use super::common::{bad_request, conflict, forbidden, parse_pubkey, text_channel};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{self, Path, parse_id};
use super::session::AuthedMember;
use crate::bus::Audience;
use crate::permissions::ALL;
use crate::storage::{
    ChannelId, Conflict, Entity, NewRole, Override, Permissions, Role, RoleId, RolePatch, StorageError, User,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role))
        .routes(routes!(update_role, delete_role))
        .routes(routes!(assign_role, unassign_role))
        .routes(routes!(list_overrides))
        .routes(routes!(put_override, delete_override))
}

const HIERARCHY: &str = "cannot manage role at or above your highest role position";
const GRANT: &str = "cannot grant permissions you do not have";

/// A role id from a path: canonical id, or the aliases `everyone` and `admin`.
fn parse_role_id(raw: &str) -> ApiResult<RoleId> {
    match raw {
        "everyone" => Ok(RoleId::EVERYONE),
        "admin" => Ok(RoleId::ADMIN),
        _ => parse_id("role_id", raw),
    }
}

/// A permission bitfield within ALL_PERMISSIONS, else 400 `unknown permission bits`.
fn parse_bits(bits: i64) -> ApiResult<Permissions> {
    Permissions::from_bits(bits).filter(|p| ALL.contains(*p)).ok_or_else(|| bad_request("unknown permission bits"))
}

async fn find_role(state: &AppState, id: RoleId) -> ApiResult<Role> {
    state.storage.get_role(id).await?.ok_or_else(|| ApiError::not_found("role not found"))
}

/// The user behind a member's public key, or 404 `member not found`.
async fn find_member(state: &AppState, raw_pubkey: &str) -> ApiResult<User> {
    let pubkey = parse_pubkey(raw_pubkey)?;
    let user = state.storage.get_user_by_pubkey(&pubkey).await?;
    match user {
        Some(user) if state.storage.get_member(user.id).await?.is_some() => Ok(user),
        _ => Err(ApiError::not_found("member not found")),
    }
}

fn require_outranks(member: &AuthedMember, role: &Role) -> ApiResult<()> {
    if member.access.outranks(role.position) { Ok(()) } else { Err(forbidden(HIERARCHY)) }
}

fn require_grantable(member: &AuthedMember, requested: Permissions) -> ApiResult<()> {
    if member.access.may_grant(requested) { Ok(()) } else { Err(forbidden(GRANT)) }
}

#[derive(Serialize, ToSchema)]
pub struct RoleList {
    roles: Vec<dto::Role>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateRole {
    name: String,
    #[serde(default)]
    color: Option<String>,
    /// Bitfield within ALL_PERMISSIONS (16383).
    #[serde(deserialize_with = "extract::integer")]
    #[schema(minimum = 0, maximum = 16383)]
    permissions: i64,
    /// Defaults to the caller's highest position − 1. 32-bit (422 beyond): the original SDK decodes
    /// positions as i32, and one larger position would make every role and member list undecodable
    /// for it.
    #[serde(default, deserialize_with = "extract::optional_i32")]
    position: Option<i32>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateRole {
    #[serde(default)]
    name: Option<String>,
    /// `null` clears the colour.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    color: Option<Option<String>>,
    #[serde(default, deserialize_with = "extract::optional_integer")]
    #[schema(minimum = 0, maximum = 16383)]
    permissions: Option<i64>,
    /// 32-bit, as on create.
    #[serde(default, deserialize_with = "extract::optional_i32")]
    position: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct OverrideList {
    overrides: Vec<dto::Override>,
}

#[derive(Deserialize, ToSchema)]
pub struct PutOverride {
    /// Bits to grant; ADMINISTRATOR (8192) is never valid in an override.
    #[serde(deserialize_with = "extract::integer")]
    #[schema(minimum = 0, maximum = 8191)]
    allow: i64,
    /// Bits to withhold; ADMINISTRATOR (8192) is never valid in an override.
    #[serde(deserialize_with = "extract::integer")]
    #[schema(minimum = 0, maximum = 8191)]
    deny: i64,
}

/// Every role, by position descending, then id.
#[utoipa::path(get, path = "/roles", tag = "roles", security(("bearer" = [])),
    responses((status = 200, body = RoleList), (status = 403, description = "membership required")))]
pub async fn list_roles(State(state): State<AppState>, _member: AuthedMember) -> ApiResult<Json<RoleList>> {
    let roles = state.storage.list_roles().await?;
    Ok(Json(RoleList { roles: roles.into_iter().map(Into::into).collect() }))
}

/// Creates a role (MANAGE_ROLES) below the caller's highest position, granting only permissions
/// the caller holds; ROLE_CREATE to everyone.
#[utoipa::path(post, path = "/roles", tag = "roles", request_body = CreateRole,
    security(("bearer" = [])),
    responses((status = 200, body = dto::Role), (status = 400, description = "unknown permission bits"),
        (status = 403, description = "missing permission, hierarchy or grant rule")))]
pub async fn create_role(
    State(state): State<AppState>,
    member: AuthedMember,
    extract::Json(body): extract::Json<CreateRole>,
) -> ApiResult<Json<dto::Role>> {
    member.require(Permissions::MANAGE_ROLES, "manage_roles")?;
    let permissions = parse_bits(body.permissions)?;
    let highest = member.access.highest_position;
    let position = body.position.map_or(highest.saturating_sub(1), i64::from);
    if !member.access.is_admin() && position >= highest {
        return Err(forbidden("cannot create role at or above your own role"));
    }
    require_grantable(&member, permissions)?;
    let role = state.storage.create_role(NewRole { name: body.name, color: body.color, permissions, position }).await?;
    state.publish(Audience::All, "ROLE_CREATE", dto::Role::from(role.clone())).await;
    Ok(Json(role.into()))
}

/// Updates a role the caller outranks (MANAGE_ROLES); ROLE_UPDATE to everyone.
#[utoipa::path(patch, path = "/roles/{role_id}", tag = "roles", request_body = UpdateRole,
    params(("role_id" = String, Path, description = "role id, or `everyone` / `admin`")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Role), (status = 400, description = "built-in role rules or unknown bits"),
        (status = 403, description = "missing permission, hierarchy or grant rule"),
        (status = 404, description = "role not found")))]
pub async fn update_role(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(role_id): Path<String>,
    extract::Json(body): extract::Json<UpdateRole>,
) -> ApiResult<Json<dto::Role>> {
    member.require(Permissions::MANAGE_ROLES, "manage_roles")?;
    let role = find_role(&state, parse_role_id(&role_id)?).await?;
    require_outranks(&member, &role)?;
    let permissions = body.permissions.map(parse_bits).transpose()?;
    let position = body.position.map(i64::from);
    if role.is_builtin {
        if role.id != RoleId::EVERYONE && permissions.is_some_and(|p| p != role.permissions) {
            return Err(bad_request("@admin permissions cannot be modified"));
        }
        if position.is_some_and(|p| p != role.position) {
            return Err(bad_request("built-in role positions cannot be changed"));
        }
    }
    if let Some(permissions) = permissions {
        require_grantable(&member, permissions)?;
    }
    if let Some(position) = position
        && position != role.position
        && !member.access.outranks(position)
    {
        return Err(forbidden(HIERARCHY));
    }
    let patch = RolePatch { name: body.name, color: body.color, permissions, position };
    let role = state.storage.update_role(role.id, patch).await.map_err(|err| match err {
        StorageError::NotFound(_) => ApiError::not_found("role not found"),
        StorageError::InvalidInput(message) => bad_request(message),
        other => other.into(),
    })?;
    state.publish(Audience::All, "ROLE_UPDATE", dto::Role::from(role.clone())).await;
    Ok(Json(role.into()))
}

/// Deletes a custom role the caller outranks (MANAGE_ROLES), with its assignments and overrides;
/// ROLE_DELETE to everyone.
#[utoipa::path(delete, path = "/roles/{role_id}", tag = "roles",
    params(("role_id" = String, Path, description = "role id, or `everyone` / `admin`")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 400, description = "built-in roles cannot be deleted"),
        (status = 403, description = "missing permission or hierarchy"), (status = 404, description = "role not found")))]
pub async fn delete_role(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(role_id): Path<String>,
) -> ApiResult<StatusCode> {
    member.require(Permissions::MANAGE_ROLES, "manage_roles")?;
    let role = find_role(&state, parse_role_id(&role_id)?).await?;
    require_outranks(&member, &role)?;
    if role.is_builtin {
        return Err(bad_request("built-in roles cannot be deleted"));
    }
    let deleted = state.storage.delete_role(role.id).await.map_err(|err| match err {
        StorageError::InvalidInput(_) => bad_request("built-in roles cannot be deleted"),
        other => other.into(),
    })?;
    if !deleted {
        return Err(ApiError::not_found("role not found"));
    }
    state.publish(Audience::All, "ROLE_DELETE", json!({ "id": role.id })).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Assigns a role the caller outranks to a member (MANAGE_ROLES); MEMBER_ROLE_ADD to everyone.
#[utoipa::path(put, path = "/members/{pubkey}/roles/{role_id}", tag = "roles",
    params(("pubkey" = String, Path, description = "the member's public key (base58)"),
        ("role_id" = String, Path, description = "role id, or `everyone` / `admin`")),
    security(("bearer" = [])),
    responses((status = 204, description = "assigned"), (status = 403, description = "missing permission or hierarchy"),
        (status = 404, description = "member not found / role not found"),
        (status = 409, description = "role already assigned")))]
pub async fn assign_role(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((pubkey, role_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    member.require(Permissions::MANAGE_ROLES, "manage_roles")?;
    let role_id = parse_role_id(&role_id)?;
    let target = find_member(&state, &pubkey).await?;
    let role = find_role(&state, role_id).await?;
    require_outranks(&member, &role)?;
    state.storage.assign_role(target.id, role.id).await.map_err(|err| match err {
        StorageError::Conflict(Conflict::RoleAssigned) => conflict("role already assigned"),
        StorageError::NotFound(Entity::Member) => ApiError::not_found("member not found"),
        StorageError::NotFound(Entity::Role) => ApiError::not_found("role not found"),
        other => other.into(),
    })?;
    state.publish(Audience::All, "MEMBER_ROLE_ADD", json!({ "user_id": target.id, "role_id": role.id })).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a role the caller outranks from a member (MANAGE_ROLES); MEMBER_ROLE_REMOVE to
/// everyone. The built-in roles cannot be removed.
#[utoipa::path(delete, path = "/members/{pubkey}/roles/{role_id}", tag = "roles",
    params(("pubkey" = String, Path, description = "the member's public key (base58)"),
        ("role_id" = String, Path, description = "role id, or `everyone` / `admin`")),
    security(("bearer" = [])),
    responses((status = 204, description = "removed"), (status = 400, description = "@everyone cannot be removed"),
        (status = 403, description = "missing permission, hierarchy, or @admin"),
        (status = 404, description = "member not found / role not found / role not assigned")))]
pub async fn unassign_role(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((pubkey, role_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    member.require(Permissions::MANAGE_ROLES, "manage_roles")?;
    let role_id = parse_role_id(&role_id)?;
    let target = find_member(&state, &pubkey).await?;
    let role = find_role(&state, role_id).await?;
    if role.id == RoleId::EVERYONE {
        return Err(bad_request("@everyone cannot be removed"));
    }
    if role.id == RoleId::ADMIN {
        return Err(forbidden("@admin role cannot be removed"));
    }
    require_outranks(&member, &role)?;
    if !state.storage.unassign_role(target.id, role.id).await? {
        return Err(ApiError::not_found("role not assigned"));
    }
    state.publish(Audience::All, "MEMBER_ROLE_REMOVE", json!({ "user_id": target.id, "role_id": role.id })).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A channel's permission overrides, by role id (MANAGE_CHANNELS).
#[utoipa::path(get, path = "/channels/{channel_id}/overrides", tag = "roles",
    params(("channel_id" = String, Path, description = "channel id")),
    security(("bearer" = [])),
    responses((status = 200, body = OverrideList), (status = 403, description = "missing manage_channels permission"),
        (status = 404, description = "channel not found")))]
pub async fn list_overrides(
    State(state): State<AppState>,
    member: AuthedMember,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<Json<OverrideList>> {
    member.require(Permissions::MANAGE_CHANNELS, "manage_channels")?;
    text_channel(&state, channel_id).await?;
    let overrides = state.storage.list_overrides(channel_id).await?;
    Ok(Json(OverrideList { overrides: overrides.into_iter().map(Into::into).collect() }))
}

/// Creates or replaces a role's override on a channel (MANAGE_CHANNELS, outranks the role; the
/// grant rule applies to `allow`; ADMINISTRATOR is never valid).
#[utoipa::path(put, path = "/channels/{channel_id}/overrides/{role_id}", tag = "roles", request_body = PutOverride,
    params(("channel_id" = String, Path, description = "channel id"),
        ("role_id" = String, Path, description = "role id, or `everyone` / `admin`")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Override), (status = 400, description = "ADMINISTRATOR or unknown bits"),
        (status = 403, description = "missing permission, hierarchy or grant rule"),
        (status = 404, description = "channel not found / role not found")))]
pub async fn put_override(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, role_id)): Path<(ChannelId, String)>,
    extract::Json(body): extract::Json<PutOverride>,
) -> ApiResult<Json<dto::Override>> {
    member.require(Permissions::MANAGE_CHANNELS, "manage_channels")?;
    let role_id = parse_role_id(&role_id)?;
    text_channel(&state, channel_id).await?;
    let role = find_role(&state, role_id).await?;
    require_outranks(&member, &role)?;
    let admin = Permissions::ADMINISTRATOR.bits();
    if body.allow & admin != 0 || body.deny & admin != 0 {
        return Err(bad_request("ADMINISTRATOR cannot be set in a channel override"));
    }
    let allow = parse_bits(body.allow)?;
    let deny = parse_bits(body.deny)?;
    require_grantable(&member, allow)?;
    let stored =
        state.storage.put_override(Override { channel_id, role_id: role.id, allow, deny }).await.map_err(|err| {
            match err {
                StorageError::InvalidReference(Some(name)) if name.contains("role") => {
                    ApiError::not_found("role not found")
                }
                StorageError::InvalidReference(_) | StorageError::NotFound(Entity::Channel) => {
                    ApiError::not_found("channel not found")
                }
                StorageError::NotFound(Entity::Role) => ApiError::not_found("role not found"),
                other => other.into(),
            }
        })?;
    Ok(Json(stored.into()))
}

/// Removes a role's override on a channel (MANAGE_CHANNELS, outranks the role).
#[utoipa::path(delete, path = "/channels/{channel_id}/overrides/{role_id}", tag = "roles",
    params(("channel_id" = String, Path, description = "channel id"),
        ("role_id" = String, Path, description = "role id, or `everyone` / `admin`")),
    security(("bearer" = [])),
    responses((status = 204, description = "removed"), (status = 403, description = "missing permission or hierarchy"),
        (status = 404, description = "channel not found / override not found")))]
pub async fn delete_override(
    State(state): State<AppState>,
    member: AuthedMember,
    Path((channel_id, role_id)): Path<(ChannelId, String)>,
) -> ApiResult<StatusCode> {
    member.require(Permissions::MANAGE_CHANNELS, "manage_channels")?;
    let role_id = parse_role_id(&role_id)?;
    text_channel(&state, channel_id).await?;
    // An override cannot exist for an unknown role.
    let role = state.storage.get_role(role_id).await?.ok_or_else(|| ApiError::not_found("override not found"))?;
    require_outranks(&member, &role)?;
    if !state.storage.delete_override(channel_id, role.id).await? {
        return Err(ApiError::not_found("override not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
