//! Authentication levels (api.md §1.2, §2.4) as extractors. They only read headers, so handlers
//! list them before any body extractor and authentication wins over body errors.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::auth::hash_token;
use crate::permissions::MemberAccess;
use crate::storage::{ChannelId, Member, MemberAuth, Override, Permissions, RoleId, Session, Timestamp, UserId};

/// 403 `missing <name> permission`.
fn missing(name: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, format!("missing {name} permission"))
}

/// `bits` when they hold `p`, else 403 `missing <name> permission`.
fn holding(bits: Permissions, p: Permissions, name: &str) -> ApiResult<Permissions> {
    if crate::permissions::has(bits, p) { Ok(bits) } else { Err(missing(name)) }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Resolves a bearer token to its live session; an expired one is deleted first.
pub async fn session_for_token(state: &AppState, token: &str) -> ApiResult<Session> {
    let session =
        state.storage.get_session(&hash_token(token)).await?.ok_or_else(|| unauthorized("invalid session token"))?;
    live(state, session).await
}

/// The session if it has not expired; an expired one is deleted and answers 401.
async fn live(state: &AppState, session: Session) -> ApiResult<Session> {
    if session.expires_at <= Timestamp::now() {
        state.storage.delete_session(session.id).await?;
        return Err(unauthorized("session token expired"));
    }
    Ok(session)
}

/// The bearer token of a request, checked in api.md's order.
pub fn bearer_token(parts: &Parts) -> ApiResult<&str> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| unauthorized("missing authorization header"))?;
    let value = header.to_str().map_err(|_| unauthorized("invalid authorization header"))?;
    if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(unauthorized("invalid authorization header"));
    }
    match value.strip_prefix("Bearer ") {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(unauthorized("invalid bearer token")),
    }
}

/// Level "session": a valid, unexpired session.
pub struct Authed(pub Session);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer_token(parts)?;
        let session = session_for_token(state, token).await?;
        super::limits::charge_user(parts, session.user_id)?;
        Ok(Authed(session))
    }
}

/// Level "member": a session whose user is a member, with its server-wide access.
pub struct AuthedMember {
    pub session: Session,
    pub member: Member,
    pub access: MemberAccess,
}

impl AuthedMember {
    pub fn user_id(&self) -> UserId {
        self.session.user_id
    }

    /// 403 `read-only session: bot requires admin approval` for an unapproved bot's session.
    pub fn require_writable(&self) -> ApiResult<()> {
        if self.session.is_read_only {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "read-only session: bot requires admin approval"));
        }
        Ok(())
    }

    /// 403 `missing <name> permission` unless the base permissions hold `p`.
    pub fn require(&self, p: Permissions, name: &str) -> ApiResult<()> {
        if self.access.has(p) { Ok(()) } else { Err(missing(name)) }
    }

    /// The member's channel-effective permissions.
    pub async fn in_channel(&self, state: &AppState, channel: ChannelId) -> ApiResult<Permissions> {
        if self.access.is_admin() {
            return Ok(crate::permissions::ALL);
        }
        let overrides = state.storage.list_overrides(channel).await?;
        if overrides.is_empty() {
            return Ok(self.access.base);
        }
        let roles = state.storage.list_roles().await?;
        let position = |id: RoleId| roles.iter().find(|r| r.id == id).map(|r| r.position);
        Ok(self.access.in_channel(&overrides, position))
    }

    /// The member's permissions in a text channel, loaded with the channel in one storage call;
    /// 404 `channel not found` for an unknown or DM channel.
    pub async fn in_text_channel(&self, state: &AppState, channel: ChannelId) -> ApiResult<Permissions> {
        let access =
            state.storage.get_channel_access(channel).await?.ok_or_else(|| ApiError::not_found("channel not found"))?;
        if self.access.is_admin() {
            return Ok(crate::permissions::ALL);
        }
        let overrides: Vec<Override> = access.overrides.iter().map(|(o, _)| o.clone()).collect();
        let position = |id: RoleId| access.overrides.iter().find(|(o, _)| o.role_id == id).map(|(_, p)| *p);
        Ok(self.access.in_channel(&overrides, position))
    }

    /// 404 `channel not found` unless `channel` is a text channel, then 403 `missing <name>
    /// permission` unless the member's permissions in it hold `p`: the checks of
    /// `common::text_channel` and [`Self::require_in_channel`] in one storage call.
    pub async fn require_in_text_channel(
        &self,
        state: &AppState,
        channel: ChannelId,
        p: Permissions,
        name: &str,
    ) -> ApiResult<Permissions> {
        holding(self.in_text_channel(state, channel).await?, p, name)
    }

    /// 403 `missing <name> permission` unless the channel-effective permissions hold `p`.
    pub async fn require_in_channel(
        &self,
        state: &AppState,
        channel: ChannelId,
        p: Permissions,
        name: &str,
    ) -> ApiResult<Permissions> {
        holding(self.in_channel(state, channel).await?, p, name)
    }
}

impl FromRequestParts<AppState> for AuthedMember {
    type Rejection = ApiError;

    /// Session, membership and roles in one storage call (one statement): the same checks, in the
    /// same order, as [`Authed`] followed by the member and role lookups.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer_token(parts)?;
        let auth = state
            .storage
            .get_session_auth(&hash_token(token))
            .await?
            .ok_or_else(|| unauthorized("invalid session token"))?;
        let session = live(state, auth.session).await?;
        let MemberAuth { member, roles, everyone } =
            auth.member.ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "membership required"))?;
        let everyone = everyone.ok_or_else(ApiError::internal)?;
        super::limits::charge_user(parts, session.user_id)?;
        Ok(AuthedMember { session, member, access: MemberAccess::new(&everyone, roles) })
    }
}

/// A member's server-wide access from its roles and @everyone.
pub async fn member_access(state: &AppState, user: UserId) -> ApiResult<MemberAccess> {
    let roles = state.storage.member_roles(user).await?;
    let everyone = match roles.iter().find(|r| r.id == RoleId::EVERYONE) {
        Some(role) => role.clone(),
        None => state.storage.get_role(RoleId::EVERYONE).await?.ok_or_else(ApiError::internal)?,
    };
    Ok(MemberAccess::new(&everyone, roles))
}

/// Level "master": a session created by a master-key login.
pub struct AuthedMaster(pub Session);

impl FromRequestParts<AppState> for AuthedMaster {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Authed(session) = Authed::from_request_parts(parts, state).await?;
        if session.device_key_id.is_some() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "device sessions cannot manage devices"));
        }
        Ok(AuthedMaster(session))
    }
}
