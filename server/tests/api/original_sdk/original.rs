//! The wire types of the original clients, written from their definitions (the SDK's
//! `rest/models.rs` and `rest/reactions.rs`, `shared/src/{lib,auth,gateway}.rs`, and the web
//! client's TypeScript interfaces where it reads more or other fields than the SDK). Names are
//! ours; field names and types are theirs.
//!
//! One deliberate difference: the SDK reads a missing nullable key as `None`, which would let a
//! key it reads vanish unnoticed. Here every nullable key must be present (api.md §0: keys are
//! never omitted), with `null` still decoding as `None`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

pub type Time = DateTime<Utc>;

/// A nullable key: must be present, may be `null` (serde's `Option` alone allows absence).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

// ── shared crate: auth, server info, health ────────────────────────────────────────────────

#[derive(Debug, Deserialize)]
pub struct Challenge {
    pub challenge: String,
}

/// The SDK reads `expires_at` as a string and defaults `is_read_only` when absent; it is
/// required here because a bot would silently read `false` without it.
#[derive(Debug, Deserialize)]
pub struct Verified {
    pub token: String,
    pub user_id: String,
    pub expires_at: String,
    pub is_read_only: bool,
}

#[derive(Debug, Deserialize)]
pub struct Me {
    pub user_id: String,
}

/// The shared crate's server info; the web client reads the same three keys.
#[derive(Debug, Deserialize)]
pub struct ServerInfo {
    pub name: String,
    #[serde(deserialize_with = "present")]
    pub description: Option<String>,
    pub membership_mode: String,
}

#[derive(Debug, Deserialize)]
pub struct Health {
    pub status: String,
}

// ── shared crate: gateway ──────────────────────────────────────────────────────────────────

/// The op names the SDK knows. It drops a frame whose op it cannot parse, so a renamed op is
/// an event the original never sees.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Op {
    Hello,
    Ready,
    Heartbeat,
    MessageCreate,
    MessageUpdate,
    MessageDelete,
    ChannelCreate,
    ChannelUpdate,
    ChannelDelete,
    RoleCreate,
    RoleUpdate,
    RoleDelete,
    MemberRoleAdd,
    MemberRoleRemove,
    MemberJoin,
    MemberLeave,
    MemberKick,
    MemberBan,
    MemberUpdate,
}

/// The SDK reads `op` and `d`, and `t` as an i64.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub op: Op,
    pub d: serde_json::Value,
    pub t: i64,
}

#[derive(Debug, Deserialize)]
pub struct HelloUser {
    pub id: String,
    pub pubkey: String,
    #[serde(deserialize_with = "present")]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HelloChannel {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Hello {
    pub server_name: String,
    pub user: HelloUser,
    pub channels: Vec<HelloChannel>,
    pub heartbeat_interval_ms: u64,
}

/// MEMBER_JOIN as the web client's stores read it: role ids as strings (merged into its
/// role-id map), the profile fields optional there, present here.
#[derive(Debug, Deserialize)]
pub struct MemberJoinEvent {
    pub user_id: String,
    pub pubkey: String,
    #[serde(deserialize_with = "present")]
    pub display_name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub avatar_hash: Option<String>,
    pub is_bot: bool,
    pub joined_at: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct IdEvent {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct MessageDeleteEvent {
    pub id: String,
    pub channel_id: String,
}

#[derive(Debug, Deserialize)]
pub struct MemberRoleEvent {
    pub user_id: String,
    pub role_id: String,
}

#[derive(Debug, Deserialize)]
pub struct MemberLeaveEvent {
    pub user_id: String,
    pub pubkey: String,
    pub left_at: String,
}

#[derive(Debug, Deserialize)]
pub struct MemberKickEvent {
    pub user_id: String,
    pub pubkey: String,
    pub kicked_by: String,
    pub kicked_at: String,
}

#[derive(Debug, Deserialize)]
pub struct MemberBanEvent {
    pub pubkey: String,
    pub banned_by: String,
    #[serde(deserialize_with = "present")]
    pub reason: Option<String>,
    pub banned_at: String,
}

#[derive(Debug, Deserialize)]
pub struct MemberUpdateEvent {
    pub user_id: String,
    #[serde(deserialize_with = "present")]
    pub display_name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub avatar_hash: Option<String>,
}

// ── SDK rest models: channels and messages ─────────────────────────────────────────────────

/// Positions are i32 in the SDK (see `positions_stay_within_what_the_original_sdk_decodes`).
#[derive(Debug, Deserialize)]
pub struct Channel {
    pub id: String,
    pub name: String,
    #[serde(deserialize_with = "present")]
    pub topic: Option<String>,
    #[serde(deserialize_with = "present")]
    pub category: Option<String>,
    pub position: i32,
    pub created_at: Time,
    pub updated_at: Time,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

#[derive(Debug, Deserialize)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

#[derive(Debug, Deserialize)]
pub struct ThreadSummary {
    pub thread_id: String,
    pub reply_count: i64,
    #[serde(deserialize_with = "present")]
    pub last_reply_at: Option<Time>,
    #[serde(deserialize_with = "present")]
    pub last_reply_author_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Attachment {
    pub id: String,
    #[serde(deserialize_with = "present")]
    pub message_id: Option<String>,
    pub channel_id: String,
    pub uploader_id: String,
    pub filename: String,
    pub content_hash: String,
    pub size: i64,
    pub mime_type: String,
    #[serde(deserialize_with = "present")]
    pub width: Option<i32>,
    #[serde(deserialize_with = "present")]
    pub height: Option<i32>,
    pub created_at: Time,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub id: String,
    pub channel_id: String,
    pub author_id: String,
    pub content: String,
    pub created_at: Time,
    #[serde(deserialize_with = "present")]
    pub edited_at: Option<Time>,
    pub deleted: bool,
    pub attachments: Vec<Attachment>,
    pub reactions: Vec<ReactionSummary>,
    #[serde(deserialize_with = "present")]
    pub thread: Option<ThreadSummary>,
}

#[derive(Debug, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

// ── SDK rest models: threads and reactions ─────────────────────────────────────────────────

#[derive(Debug, Deserialize)]
pub struct ThreadCreated {
    pub thread_id: String,
    pub parent_message_id: String,
    pub channel_id: String,
    pub created_at: Time,
    pub reply_count: i64,
    pub follower_count: i64,
}

#[derive(Debug, Deserialize)]
pub struct Thread {
    pub id: String,
    pub channel_id: String,
    pub parent_message_id: String,
    pub creator_id: String,
    pub created_at: Time,
    #[serde(deserialize_with = "present")]
    pub last_reply_at: Option<Time>,
    pub reply_count: i64,
    pub follower_count: i64,
    pub is_following: bool,
}

#[derive(Debug, Deserialize)]
pub struct Reactor {
    pub id: String,
    #[serde(deserialize_with = "present")]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ReactorList {
    pub users: Vec<Reactor>,
    pub total: usize,
}

// ── SDK rest models: members, roles, profiles ──────────────────────────────────────────────

#[derive(Debug, Deserialize)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
    #[serde(deserialize_with = "present")]
    pub color: Option<String>,
    pub position: i32,
}

#[derive(Debug, Deserialize)]
pub struct Member {
    pub user_id: String,
    pub pubkey: String,
    #[serde(deserialize_with = "present")]
    pub display_name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub avatar_hash: Option<String>,
    pub is_bot: bool,
    pub joined_at: Time,
    pub roles: Vec<RoleRef>,
}

#[derive(Debug, Deserialize)]
pub struct MemberList {
    pub members: Vec<Member>,
}

/// `POST /members/join`: the full Member.
#[derive(Debug, Deserialize)]
pub struct MemberJoined {
    pub member: Member,
}

/// The invite join's member: role ids as strings. Decoding RoleRef objects here is the break
/// issue #17 reports.
#[derive(Debug, Deserialize)]
pub struct JoinedMember {
    pub pubkey: String,
    pub roles: Vec<String>,
    pub joined_at: Time,
}

#[derive(Debug, Deserialize)]
pub struct InviteJoined {
    pub member: JoinedMember,
}

#[derive(Debug, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
    #[serde(deserialize_with = "present")]
    pub color: Option<String>,
    pub permissions: i64,
    pub position: i32,
    pub is_builtin: bool,
    pub created_at: Time,
    pub updated_at: Time,
}

#[derive(Debug, Deserialize)]
pub struct RoleList {
    pub roles: Vec<Role>,
}

#[derive(Debug, Deserialize)]
pub struct Override {
    pub channel_id: String,
    pub role_id: String,
    pub allow: i64,
    pub deny: i64,
}

#[derive(Debug, Deserialize)]
pub struct OverrideList {
    pub overrides: Vec<Override>,
}

/// `joined_at` is a string the SDK does not parse (null for a non-member).
#[derive(Debug, Deserialize)]
pub struct Profile {
    pub user_id: String,
    pub pubkey: String,
    #[serde(deserialize_with = "present")]
    pub display_name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub avatar_hash: Option<String>,
    #[serde(deserialize_with = "present")]
    pub joined_at: Option<String>,
    pub roles: Vec<RoleRef>,
}

// ── SDK rest models: moderation ────────────────────────────────────────────────────────────

#[derive(Debug, Deserialize)]
pub struct Ban {
    pub pubkey: String,
    pub banned_by: String,
    #[serde(deserialize_with = "present")]
    pub reason: Option<String>,
    pub banned_at: Time,
}

#[derive(Debug, Deserialize)]
pub struct BanList {
    pub bans: Vec<Ban>,
}

#[derive(Debug, Deserialize)]
pub struct AllowlistEntry {
    pub pubkey: String,
    pub added_by: String,
    pub added_at: Time,
}

#[derive(Debug, Deserialize)]
pub struct Allowlist {
    pub entries: Vec<AllowlistEntry>,
}

#[derive(Debug, Deserialize)]
pub struct BotApproval {
    pub pubkey: String,
    #[serde(deserialize_with = "present")]
    pub approved_by: Option<String>,
    #[serde(deserialize_with = "present")]
    pub approved_at: Option<Time>,
    #[serde(deserialize_with = "present")]
    pub revoked_at: Option<Time>,
    #[serde(deserialize_with = "present")]
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PendingBots {
    pub bots: Vec<BotApproval>,
}

// ── SDK rest models: invites ───────────────────────────────────────────────────────────────

#[derive(Debug, Deserialize)]
pub struct Invite {
    pub code: String,
    pub created_by: String,
    #[serde(deserialize_with = "present")]
    pub grant_role_id: Option<String>,
    pub max_uses: i64,
    pub use_count: i64,
    #[serde(deserialize_with = "present")]
    pub expires_at: Option<Time>,
    pub created_at: Time,
    pub invite_link: String,
}

#[derive(Debug, Deserialize)]
pub struct InviteList {
    pub invites: Vec<Invite>,
}

#[derive(Debug, Deserialize)]
pub struct InvitePreview {
    pub code: String,
    pub server_name: String,
    #[serde(deserialize_with = "present")]
    pub server_icon: Option<String>,
    pub member_count: usize,
    #[serde(deserialize_with = "present")]
    pub expires_at: Option<Time>,
}
