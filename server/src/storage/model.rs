//! The records the storage contract reads and writes. These are storage shapes, not HTTP shapes:
//! the API layer maps them to the JSON objects of api.md §4.

use bitflags::bitflags;

use super::types::*;

bitflags! {
    /// Permission flags (api.md §5.1). Stored one row per flag in `role_permissions` (by name)
    /// and as bitmasks in channel overrides.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Permissions: i64 {
        const SEND_MESSAGES = 1;
        const READ_MESSAGES = 1 << 1;
        const MANAGE_MESSAGES = 1 << 2;
        const MANAGE_CHANNELS = 1 << 3;
        const MANAGE_ROLES = 1 << 4;
        const KICK_MEMBERS = 1 << 5;
        const BAN_MEMBERS = 1 << 6;
        const MANAGE_INVITES = 1 << 7;
        const MANAGE_SERVER = 1 << 8;
        const ATTACH_FILES = 1 << 9;
        const ADD_REACTIONS = 1 << 10;
        const MENTION_EVERYONE = 1 << 11;
        const VIEW_AUDIT_LOG = 1 << 12;
        const ADMINISTRATOR = 1 << 13;
    }
}

impl Permissions {
    /// The names used in `role_permissions.permission`, in bit order.
    pub const NAMES: [(&'static str, Permissions); 14] = [
        ("send_messages", Permissions::SEND_MESSAGES),
        ("read_messages", Permissions::READ_MESSAGES),
        ("manage_messages", Permissions::MANAGE_MESSAGES),
        ("manage_channels", Permissions::MANAGE_CHANNELS),
        ("manage_roles", Permissions::MANAGE_ROLES),
        ("kick_members", Permissions::KICK_MEMBERS),
        ("ban_members", Permissions::BAN_MEMBERS),
        ("manage_invites", Permissions::MANAGE_INVITES),
        ("manage_server", Permissions::MANAGE_SERVER),
        ("attach_files", Permissions::ATTACH_FILES),
        ("add_reactions", Permissions::ADD_REACTIONS),
        ("mention_everyone", Permissions::MENTION_EVERYONE),
        ("view_audit_log", Permissions::VIEW_AUDIT_LOG),
        ("administrator", Permissions::ADMINISTRATOR),
    ];

    /// The flag stored under `name`, if it is one.
    pub fn from_stored_name(name: &str) -> Option<Permissions> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    /// The names of the flags set, in bit order.
    pub fn stored_names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES.into_iter().filter(move |(_, p)| self.contains(*p)).map(|(n, _)| n)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    pub avatar_hash: Option<ContentHash>,
    pub is_bot: bool,
    pub created_at: Timestamp,
}

/// A new user at first login. `open_membership` says whether a non-bot becomes a member at once
/// (membership mode `open`); the very first user of the server always does, with @admin.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub pubkey: PublicKey,
    pub is_bot: bool,
    pub open_membership: bool,
}

/// What registering a user did, all in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub user: User,
    /// Set when the user became a member (first user, or a non-bot in open mode).
    pub member: Option<Member>,
    /// The first user of the server: member with @everyone and @admin.
    pub is_first_user: bool,
}

/// A role as members carry it (api.md RoleRef).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRef {
    pub id: RoleId,
    pub name: String,
    pub color: Option<String>,
    pub position: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user: User,
    pub joined_at: Timestamp,
    /// Every role held, @everyone included, by position descending then id.
    pub roles: Vec<RoleRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub color: Option<String>,
    pub permissions: Permissions,
    pub position: i64,
    pub is_builtin: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewRole {
    pub name: String,
    pub color: Option<String>,
    pub permissions: Permissions,
    pub position: i64,
}

/// A partial role update: `None` leaves a field unchanged; `Some(None)` clears the colour.
#[derive(Clone, Debug, Default)]
pub struct RolePatch {
    pub name: Option<String>,
    pub color: Option<Option<String>>,
    pub permissions: Option<Permissions>,
    pub position: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub channel_id: ChannelId,
    pub role_id: RoleId,
    pub allow: Permissions,
    pub deny: Permissions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Text,
    Dm,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Text => "text",
            ChannelKind::Dm => "dm",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(ChannelKind::Text),
            "dm" => Some(ChannelKind::Dm),
            _ => None,
        }
    }
}

/// A text channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub id: ChannelId,
    pub name: String,
    pub topic: Option<String>,
    /// The category's name; setting a name reuses or creates the category.
    pub category: Option<String>,
    pub position: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewChannel {
    pub name: String,
    pub topic: Option<String>,
    pub category: Option<String>,
    pub position: i64,
}

/// A partial channel update: `None` leaves a field unchanged; `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub topic: Option<Option<String>>,
    pub category: Option<Option<String>>,
    pub position: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    pub position: i64,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub author_id: UserId,
    /// Empty once deleted.
    pub content: String,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    /// Set on thread replies.
    pub thread_id: Option<ThreadId>,
    /// Linked, non-deleted attachments by id (none once the message is deleted).
    pub attachments: Vec<Attachment>,
    /// One entry per emoji, ordered by each emoji's earliest reaction.
    pub reactions: Vec<ReactionSummary>,
    /// Set when the message is a thread's parent.
    pub thread: Option<ThreadSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: i64,
    /// Whether the viewer the message was loaded for holds this reaction.
    pub me: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSummary {
    pub thread_id: ThreadId,
    pub reply_count: i64,
    pub last_reply_at: Option<Timestamp>,
    pub last_reply_author_id: Option<UserId>,
}

/// A channel message or a thread reply. The insert and every attachment link are one
/// transaction; a reply also bumps its thread's counters and makes its author a follower.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub channel_id: ChannelId,
    pub thread_id: Option<ThreadId>,
    pub author_id: UserId,
    pub content: String,
    pub attachment_ids: Vec<AttachmentId>,
}

/// Where a page of messages comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageScope {
    /// A text or DM channel's own messages (thread replies excluded).
    Channel(ChannelId),
    /// A thread's replies.
    Thread(ThreadId),
}

/// A page request (api.md §1.6). The limit is already clamped by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageCursor {
    /// The newest messages, newest first.
    Latest,
    /// Messages with id < cursor, newest first.
    Before(MessageId),
    /// Messages with id > cursor, oldest first.
    After(MessageId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// At least one more message exists beyond the page in the same direction.
    pub has_more: bool,
}

/// A full-text search (api.md §3.9). Terms are already tokenised by `storage::search`.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub terms: Vec<super::search::Term>,
    /// Only messages of these channels (the caller's readable text channels).
    pub channel_ids: Vec<ChannelId>,
    pub author_id: Option<UserId>,
    /// Exclusive bounds on `created_at`.
    pub created_before: Option<Timestamp>,
    pub created_after: Option<Timestamp>,
    /// Only ids below this one (the previous page's last result).
    pub cursor: Option<MessageId>,
    pub limit: u32,
    /// Whose `me` flags the returned messages carry.
    pub viewer: Option<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    /// Newest first.
    pub messages: Vec<Message>,
    /// More results exist below the last one.
    pub has_more: bool,
    /// The exact match count for the query and filters (ignoring the cursor), capped at 1000.
    pub total_estimate: i64,
}

/// What a reaction PUT did (api.md §3.6): add, remove, or replace (both set).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReactionChange {
    pub removed: Option<String>,
    pub added: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reactor {
    pub user_id: UserId,
    pub display_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactorPage {
    /// By user id descending.
    pub users: Vec<Reactor>,
    /// Users holding that emoji on the message, overall.
    pub total: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    pub id: ThreadId,
    pub channel_id: ChannelId,
    pub parent_message_id: MessageId,
    pub creator_id: UserId,
    pub created_at: Timestamp,
    pub last_reply_at: Option<Timestamp>,
    pub last_reply_author_id: Option<UserId>,
    pub reply_count: i64,
    pub follower_count: i64,
    /// Whether the viewer it was loaded for follows it.
    pub is_following: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub content_hash: ContentHash,
    pub object_key: String,
    pub bucket: Option<String>,
    pub size_bytes: i64,
    pub mime_type: String,
    pub uploaded_by: Option<UserId>,
    pub uploaded_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewMedia {
    pub content_hash: ContentHash,
    pub object_key: String,
    pub bucket: Option<String>,
    pub size_bytes: i64,
    pub mime_type: String,
    pub uploaded_by: Option<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub message_id: Option<MessageId>,
    pub channel_id: ChannelId,
    pub uploader_id: UserId,
    pub filename: String,
    pub content_hash: ContentHash,
    pub size: i64,
    pub mime_type: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewAttachment {
    pub channel_id: ChannelId,
    pub uploader_id: UserId,
    pub filename: String,
    pub content_hash: ContentHash,
    pub size: i64,
    pub mime_type: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    pub code: String,
    pub created_by: UserId,
    pub grant_role_id: Option<RoleId>,
    /// 0 = unlimited.
    pub max_uses: i64,
    pub use_count: i64,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewInvite {
    pub code: String,
    pub created_by: UserId,
    pub grant_role_id: Option<RoleId>,
    pub max_uses: i64,
    pub expires_at: Option<Timestamp>,
}

/// The outcome of joining through an invite; all of it happens in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteJoin {
    /// One use consumed; the user became a member (with the invite's role, if any).
    Joined(Member),
    /// Already a member: nothing consumed.
    AlreadyMember(Member),
    NotFound,
    Expired,
    Exhausted,
}

/// The outcome of a plain join (`POST /members/join`, bot approval).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub member: Member,
    /// False when the user already was a member (nothing changed).
    pub newly_joined: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub pubkey: PublicKey,
    pub banned_by: UserId,
    pub reason: Option<String>,
    pub banned_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewBan {
    pub pubkey: PublicKey,
    pub banned_by: UserId,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowlistEntry {
    pub pubkey: PublicKey,
    pub added_by: UserId,
    pub added_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotApproval {
    pub user_id: UserId,
    pub pubkey: PublicKey,
    pub requested_at: Timestamp,
    pub approved_by: Option<UserId>,
    pub approved_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub note: Option<String>,
}

impl BotApproval {
    /// Approved and not revoked: the bot's new sessions are not read-only.
    pub fn is_approved(&self) -> bool {
        self.approved_at.is_some() && self.revoked_at.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub pubkey: PublicKey,
    pub nonce: Nonce,
    pub is_bot: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub token_hash: TokenHash,
    pub user_id: UserId,
    pub device_key_id: Option<DeviceKeyId>,
    pub is_read_only: bool,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub token_hash: TokenHash,
    pub user_id: UserId,
    pub device_key_id: Option<DeviceKeyId>,
    /// The device key the session was created with, if any.
    pub device_pubkey: Option<PublicKey>,
    pub is_read_only: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A text channel with what evaluating a member's permissions in it needs, loaded by
/// [`ChannelStore::get_channel_access`] in one statement.
///
/// [`ChannelStore::get_channel_access`]: super::ChannelStore::get_channel_access
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelAccess {
    pub channel: Channel,
    /// As [`super::RoleStore::list_overrides`] returns them (by role id), each with its role's
    /// position.
    pub overrides: Vec<(Override, i64)>,
}

/// What authenticating a request needs, loaded by [`SessionStore::get_session_auth`] in one
/// statement: the session and, when its user is a member, the member with its roles.
///
/// [`SessionStore::get_session_auth`]: super::SessionStore::get_session_auth
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAuth {
    pub session: Session,
    /// None when the session's user is not a member.
    pub member: Option<MemberAuth>,
}

/// A member as loaded for authentication, with what permission evaluation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAuth {
    /// As [`super::MemberStore::get_member`] returns it.
    pub member: Member,
    /// The roles held, with permissions, as [`super::RoleStore::member_roles`] returns them.
    pub roles: Vec<Role>,
    /// The @everyone role, held or not (None only if its row were missing).
    pub everyone: Option<Role>,
}

bitflags! {
    /// Device certificate permissions (api.md §2.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct DevicePermissions: i64 {
        const SIGN_AUTH = 1;
        const SIGN_MESSAGES = 1 << 1;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    pub id: DeviceKeyId,
    pub device_pubkey: PublicKey,
    pub user_id: UserId,
    pub device_name: String,
    pub permissions: DevicePermissions,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The canonical certificate bytes the master signed.
    pub certificate: Vec<u8>,
    pub signature: Signature,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub struct NewDeviceKey {
    pub device_pubkey: PublicKey,
    pub user_id: UserId,
    pub device_name: String,
    pub permissions: DevicePermissions,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub certificate: Vec<u8>,
    pub signature: Signature,
}

/// The outcome of registering a device certificate (api.md §3.2), decided atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceRegistration {
    /// A new device key.
    Created(DeviceKey),
    /// The caller's own key, re-certified with a later `issued_at`.
    Recertified(DeviceKey),
    /// Registered to another user.
    OwnedByOther,
    /// The caller's key, but the presented certificate is not newer than the stored one.
    NotNewer,
    /// Revoked keys can never be registered again.
    Revoked,
}

/// A device revocation: the key and the sessions that were ended with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRevocation {
    pub device: DeviceKey,
    pub ended_sessions: Vec<SessionId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmUser {
    pub user_id: UserId,
    pub pubkey: PublicKey,
    pub display_name: Option<String>,
    pub avatar_hash: Option<ContentHash>,
}

/// A DM channel from one participant's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmChannel {
    pub channel_id: ChannelId,
    /// The other participant.
    pub recipient: DmUser,
    pub created_at: Timestamp,
    pub last_message_at: Option<Timestamp>,
    /// The viewer's read mark.
    pub last_read_at: Option<Timestamp>,
}

/// A DM channel's two participants, lower user id first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dm {
    pub channel_id: ChannelId,
    pub participants: [UserId; 2],
    pub created_at: Timestamp,
    pub last_message_at: Option<Timestamp>,
}

impl Dm {
    pub fn has_participant(&self, user: UserId) -> bool {
        self.participants.contains(&user)
    }

    /// The participant that is not `user`.
    pub fn other(&self, user: UserId) -> UserId {
        if self.participants[0] == user { self.participants[1] } else { self.participants[0] }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmOpened {
    /// From the opener's side.
    pub dm: DmChannel,
    pub created: bool,
}

/// A sent DM message and who had the DM hidden (and so sees it reappear, DM_CREATE first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmSent {
    pub message: Message,
    pub reopened_for: Vec<UserId>,
}
