//! Membership, moderation, allowlist and bot approval (api.md §3.12, §5.5).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, conflict, forbidden, parse_pubkey};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{OptionalJson, Path};
use super::gateway::close;
use super::session::{Authed, AuthedMember};
use crate::bus::{Audience, BusMessage};
use crate::config::MembershipMode;
use crate::storage::{self, Conflict, NewBan, Permissions, PublicKey, StorageError, Timestamp, User, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(list_members))
        .routes(routes!(get_member))
        .routes(routes!(kick))
        .routes(routes!(ban))
        .routes(routes!(list_bans))
        .routes(routes!(unban))
        .routes(routes!(list_allowlist, add_to_allowlist))
        .routes(routes!(remove_from_allowlist))
        .routes(routes!(list_pending_bots))
        .routes(routes!(approve_bot))
        .routes(routes!(revoke_bot))
}

#[derive(Serialize, ToSchema)]
pub struct MemberResponse {
    pub member: dto::Member,
}

/// The caller's user record (a session's user always exists).
pub async fn session_user(state: &AppState, id: UserId) -> ApiResult<User> {
    state.storage.get_user(id).await?.ok_or_else(ApiError::internal)
}

/// 403 `this pubkey is banned from the server` for a banned key.
pub async fn refuse_banned(state: &AppState, pubkey: &PublicKey) -> ApiResult<()> {
    if state.storage.is_banned(pubkey).await? {
        return Err(forbidden("this pubkey is banned from the server"));
    }
    Ok(())
}

/// 403 `pubkey is not on the allowlist` unless allowlisted.
pub async fn require_allowlisted(state: &AppState, pubkey: &PublicKey) -> ApiResult<()> {
    if !state.storage.allowlist_contains(pubkey).await? {
        return Err(forbidden("pubkey is not on the allowlist"));
    }
    Ok(())
}

/// MEMBER_JOIN to everyone, carrying the JoinedMember shape (api.md §6.4) whichever way the
/// member joined.
pub async fn publish_member_join(state: &AppState, member: storage::Member) {
    state.publish(Audience::All, "MEMBER_JOIN", dto::JoinedMember::from(member)).await;
}

/// Closes every gateway connection of `user` with 4004.
pub async fn close_user(state: &AppState, user: UserId, reason: &str) {
    state
        .events
        .publish(BusMessage::CloseUser { user, code: close::REMOVED_FROM_SERVER, reason: reason.to_owned() })
        .await;
}

/// Joins the server, as far as the membership mode allows.
#[utoipa::path(post, path = "/members/join", tag = "members",
    security(("bearer" = [])),
    responses((status = 200, body = MemberResponse), (status = 403)))]
pub async fn join(Authed(session): Authed, State(state): State<AppState>) -> ApiResult<axum::Json<MemberResponse>> {
    let user = session_user(&state, session.user_id).await?;
    refuse_banned(&state, &user.pubkey).await?;
    if let Some(member) = state.storage.get_member(user.id).await? {
        return Ok(axum::Json(MemberResponse { member: member.into() }));
    }
    match state.config.membership_mode() {
        MembershipMode::Open => {}
        MembershipMode::InviteOnly => return Err(forbidden("server is invite-only")),
        MembershipMode::Allowlist => require_allowlisted(&state, &user.pubkey).await?,
        MembershipMode::Closed => return Err(forbidden("server membership is closed")),
    }
    let joined = state.storage.join(user.id).await?;
    if joined.newly_joined {
        publish_member_join(&state, joined.member.clone()).await;
    }
    Ok(axum::Json(MemberResponse { member: joined.member.into() }))
}

/// Leaves the server: roles and membership removed, gateway connections closed (4004). The last
/// administrator cannot leave (409).
#[utoipa::path(delete, path = "/members/me", tag = "members", security(("bearer" = [])),
    responses((status = 204), (status = 409), (status = 403, description = "membership required")))]
pub async fn leave(auth: AuthedMember, State(state): State<AppState>) -> ApiResult<StatusCode> {
    let user = auth.member.user;
    if state.storage.leave(user.id).await? {
        state
            .publish(
                Audience::All,
                "MEMBER_LEAVE",
                serde_json::json!({ "user_id": user.id, "pubkey": user.pubkey, "left_at": Timestamp::now() }),
            )
            .await;
        close_user(&state, user.id, "left the server").await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<dto::Member>,
}

/// Every member, in order of joining.
#[utoipa::path(get, path = "/members", tag = "members", security(("bearer" = [])),
    responses((status = 200, body = MemberList), (status = 403, description = "membership required")))]
pub async fn list_members(_auth: AuthedMember, State(state): State<AppState>) -> ApiResult<axum::Json<MemberList>> {
    let members = state.storage.list_members().await?;
    Ok(axum::Json(MemberList { members: members.into_iter().map(Into::into).collect() }))
}

/// The member holding `pubkey`, or 404 `member not found`.
async fn member_by_pubkey(state: &AppState, pubkey: &PublicKey) -> ApiResult<storage::Member> {
    let not_found = || ApiError::not_found("member not found");
    let user = state.storage.get_user_by_pubkey(pubkey).await?.ok_or_else(not_found)?;
    state.storage.get_member(user.id).await?.ok_or_else(not_found)
}

/// One member, by public key.
#[utoipa::path(get, path = "/members/{pubkey}", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Member), (status = 400), (status = 404), (status = 403, description = "membership required")))]
pub async fn get_member(
    _auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
) -> ApiResult<axum::Json<dto::Member>> {
    let pubkey = parse_pubkey(&pubkey)?;
    Ok(axum::Json(member_by_pubkey(&state, &pubkey).await?.into()))
}

/// The highest position among a member's roles (0 with none).
fn highest_position(member: &storage::Member) -> i64 {
    member.roles.iter().map(|r| r.position).max().unwrap_or(0).max(0)
}

fn require_outranks(auth: &AuthedMember, target: &storage::Member) -> ApiResult<()> {
    if auth.access.outranks(highest_position(target)) {
        Ok(())
    } else {
        Err(forbidden("cannot manage a member with an equal or higher role"))
    }
}

/// Kicks a member: roles, membership and sessions removed; MEMBER_KICK; connections closed (4004).
#[utoipa::path(post, path = "/members/{pubkey}/kick", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    security(("bearer" = [])),
    responses((status = 204), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn kick(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Permissions::KICK_MEMBERS, "kick_members")?;
    let pubkey = parse_pubkey(&pubkey)?;
    if pubkey == auth.member.user.pubkey {
        return Err(bad_request("cannot kick yourself"));
    }
    let target = member_by_pubkey(&state, &pubkey).await?;
    require_outranks(&auth, &target)?;
    let user = target.user;
    if !state.storage.kick(user.id).await? {
        return Err(ApiError::not_found("member not found"));
    }
    state
        .publish(
            Audience::All,
            "MEMBER_KICK",
            serde_json::json!({
                "user_id": user.id,
                "pubkey": user.pubkey,
                "kicked_by": auth.user_id(),
                "kicked_at": Timestamp::now(),
            }),
        )
        .await;
    close_user(&state, user.id, "kicked").await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, ToSchema)]
pub struct BanRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Bans a key (the user need not exist) and kicks its user; MEMBER_BAN; connections closed (4004).
#[utoipa::path(post, path = "/members/{pubkey}/ban", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    request_body(content = Option<BanRequest>),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Ban), (status = 400), (status = 403), (status = 409)))]
pub async fn ban(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
    OptionalJson(body): OptionalJson<BanRequest>,
) -> ApiResult<axum::Json<dto::Ban>> {
    auth.require(Permissions::BAN_MEMBERS, "ban_members")?;
    let pubkey = parse_pubkey(&pubkey)?;
    if pubkey == auth.member.user.pubkey {
        return Err(bad_request("cannot ban yourself"));
    }
    if let Some(user) = state.storage.get_user_by_pubkey(&pubkey).await?
        && let Some(target) = state.storage.get_member(user.id).await?
    {
        require_outranks(&auth, &target)?;
    }
    let new = NewBan { pubkey, banned_by: auth.user_id(), reason: body.reason };
    let (ban, kicked) = match state.storage.ban(new).await {
        Ok(done) => done,
        Err(StorageError::Conflict(Conflict::AlreadyBanned)) => return Err(conflict("pubkey is already banned")),
        Err(err) => return Err(err.into()),
    };
    let ban = dto::Ban::from(ban);
    state.publish(Audience::All, "MEMBER_BAN", &ban).await;
    if let Some(user) = kicked {
        close_user(&state, user, "banned").await;
    }
    Ok(axum::Json(ban))
}

#[derive(Serialize, ToSchema)]
pub struct BanList {
    pub bans: Vec<dto::Ban>,
}

/// Every ban, newest first (BAN_MEMBERS).
#[utoipa::path(get, path = "/bans", tag = "members", security(("bearer" = [])),
    responses((status = 200, body = BanList), (status = 403)))]
pub async fn list_bans(auth: AuthedMember, State(state): State<AppState>) -> ApiResult<axum::Json<BanList>> {
    auth.require(Permissions::BAN_MEMBERS, "ban_members")?;
    let bans = state.storage.list_bans().await?;
    Ok(axum::Json(BanList { bans: bans.into_iter().map(Into::into).collect() }))
}

/// Lifts a ban (membership is not restored).
#[utoipa::path(delete, path = "/bans/{pubkey}", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    security(("bearer" = [])),
    responses((status = 204), (status = 400), (status = 403), (status = 404)))]
pub async fn unban(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Permissions::BAN_MEMBERS, "ban_members")?;
    let pubkey = parse_pubkey(&pubkey)?;
    if !state.storage.unban(&pubkey).await? {
        return Err(ApiError::not_found("ban not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Allowlist {
    pub entries: Vec<dto::AllowlistEntry>,
}

/// The allowlist, oldest entry first (MANAGE_SERVER).
#[utoipa::path(get, path = "/allowlist", tag = "members",
    security(("bearer" = [])),
    responses((status = 200, body = Allowlist), (status = 403)))]
pub async fn list_allowlist(auth: AuthedMember, State(state): State<AppState>) -> ApiResult<axum::Json<Allowlist>> {
    auth.require(Permissions::MANAGE_SERVER, "manage_server")?;
    let entries = state.storage.list_allowlist().await?;
    Ok(axum::Json(Allowlist { entries: entries.into_iter().map(Into::into).collect() }))
}

#[derive(Deserialize, ToSchema)]
pub struct AllowlistAdd {
    pub pubkey: String,
}

/// Adds a key to the allowlist (MANAGE_SERVER).
#[utoipa::path(post, path = "/allowlist", tag = "members", request_body = AllowlistAdd,
    security(("bearer" = [])),
    responses((status = 200, body = dto::AllowlistEntry), (status = 400), (status = 403), (status = 409)))]
pub async fn add_to_allowlist(
    auth: AuthedMember,
    State(state): State<AppState>,
    super::extract::Json(body): super::extract::Json<AllowlistAdd>,
) -> ApiResult<axum::Json<dto::AllowlistEntry>> {
    auth.require(Permissions::MANAGE_SERVER, "manage_server")?;
    let pubkey = parse_pubkey(&body.pubkey)?;
    match state.storage.allowlist_add(&pubkey, auth.user_id()).await {
        Ok(entry) => Ok(axum::Json(entry.into())),
        Err(StorageError::Conflict(Conflict::AlreadyAllowlisted)) => {
            Err(conflict("pubkey is already on the allowlist"))
        }
        Err(err) => Err(err.into()),
    }
}

/// Removes a key from the allowlist (MANAGE_SERVER).
#[utoipa::path(delete, path = "/allowlist/{pubkey}", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    security(("bearer" = [])),
    responses((status = 204), (status = 400), (status = 403), (status = 404)))]
pub async fn remove_from_allowlist(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Permissions::MANAGE_SERVER, "manage_server")?;
    let pubkey = parse_pubkey(&pubkey)?;
    if !state.storage.allowlist_remove(&pubkey).await? {
        return Err(ApiError::not_found("allowlist entry not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct PendingBots {
    pub bots: Vec<dto::BotApproval>,
}

/// Bots waiting for approval: neither approved nor revoked (MANAGE_SERVER).
#[utoipa::path(get, path = "/admin/bots/pending", tag = "members",
    security(("bearer" = [])),
    responses((status = 200, body = PendingBots), (status = 403)))]
pub async fn list_pending_bots(
    auth: AuthedMember,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<PendingBots>> {
    auth.require(Permissions::MANAGE_SERVER, "manage_server")?;
    let bots = state.storage.list_pending_bots().await?;
    Ok(axum::Json(PendingBots { bots: bots.into_iter().map(Into::into).collect() }))
}

/// The bot holding `pubkey`, or 404 `bot not found`.
async fn bot_by_pubkey(state: &AppState, raw: &str) -> ApiResult<User> {
    let pubkey = parse_pubkey(raw)?;
    state.storage.get_user_by_pubkey(&pubkey).await?.ok_or_else(|| ApiError::not_found("bot not found"))
}

fn bot_not_found(err: StorageError) -> ApiError {
    match err {
        StorageError::NotFound(_) => ApiError::not_found("bot not found"),
        other => other.into(),
    }
}

#[derive(Deserialize, Default, ToSchema)]
pub struct ApproveBot {
    #[serde(default)]
    pub note: Option<String>,
}

/// Approves a bot; it becomes a member with @everyone if it is not one (MEMBER_JOIN).
#[utoipa::path(post, path = "/admin/bots/{pubkey}/approve", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    request_body(content = Option<ApproveBot>),
    security(("bearer" = [])),
    responses((status = 200, body = dto::BotApproval), (status = 400), (status = 403), (status = 404)))]
pub async fn approve_bot(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
    OptionalJson(body): OptionalJson<ApproveBot>,
) -> ApiResult<axum::Json<dto::BotApproval>> {
    auth.require(Permissions::MANAGE_SERVER, "manage_server")?;
    let bot = bot_by_pubkey(&state, &pubkey).await?;
    let (approval, joined) =
        state.storage.approve_bot(bot.id, auth.user_id(), body.note).await.map_err(bot_not_found)?;
    if joined.newly_joined {
        publish_member_join(&state, joined.member).await;
    }
    Ok(axum::Json(approval.into()))
}

/// Revokes a bot's approval: membership unchanged, later sessions read-only.
#[utoipa::path(post, path = "/admin/bots/{pubkey}/revoke", tag = "members",
    params(("pubkey" = String, Path, description = "base58 public key")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::BotApproval), (status = 400), (status = 403), (status = 404)))]
pub async fn revoke_bot(
    auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
) -> ApiResult<axum::Json<dto::BotApproval>> {
    auth.require(Permissions::MANAGE_SERVER, "manage_server")?;
    let bot = bot_by_pubkey(&state, &pubkey).await?;
    let approval = state.storage.revoke_bot(bot.id).await.map_err(bot_not_found)?;
    Ok(axum::Json(approval.into()))
}
