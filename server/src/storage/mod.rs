//! The storage contract: one trait per domain, combined in [`Storage`], with a SQLite and a
//! PostgreSQL backend behind it. The server holds an `Arc<dyn Storage>` and never sees SQL.
//!
//! Rules every backend follows (the conformance suite in `server/tests/conformance/` checks them):
//! - operations documented as one transaction are all-or-nothing;
//! - concurrent callers are safe (single-statement conditional updates or row locks, never a
//!   read-then-write race);
//! - timestamps are set by the backend with [`Timestamp::now`] unless a parameter says otherwise;
//! - `search_text` is always [`search::normalise`] of the content, written with it.

pub mod assemble;
pub mod error;
pub mod health;
pub mod model;
pub mod schema;
pub mod search;
pub mod types;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use async_trait::async_trait;

pub use error::{Conflict, Entity, StorageError, StorageResult};
pub use model::*;
pub use types::*;

#[async_trait]
pub trait UserStore {
    /// Creates a user at first login and, in the same transaction, makes the first user of the
    /// server a member with @everyone and @admin, a non-bot in open mode a member with
    /// @everyone, and a later bot a pending bot approval. Safe against concurrent first logins:
    /// exactly one user is ever the first. Conflict(UserPubkey) if the key exists.
    async fn register_user(&self, new: NewUser) -> StorageResult<Registration>;
    async fn get_user(&self, id: UserId) -> StorageResult<Option<User>>;
    async fn get_user_by_pubkey(&self, pubkey: &PublicKey) -> StorageResult<Option<User>>;
    /// NotFound(User) for an unknown id.
    async fn set_display_name(&self, id: UserId, name: Option<String>) -> StorageResult<User>;
    /// The media row must exist (InvalidReference otherwise). NotFound(User) for an unknown id.
    async fn set_avatar(&self, id: UserId, avatar: Option<ContentHash>) -> StorageResult<User>;
}

#[async_trait]
pub trait MemberStore {
    /// Adds the member row and the @everyone assignment in one transaction; a no-op for a member.
    async fn join(&self, user: UserId) -> StorageResult<Joined>;
    /// Removes the member's roles and membership. False if it was not a member.
    async fn leave(&self, user: UserId) -> StorageResult<bool>;
    /// In one transaction: removes roles and membership and deletes every session of the user.
    /// False if it was not a member (its sessions are deleted all the same).
    async fn kick(&self, user: UserId) -> StorageResult<bool>;
    async fn get_member(&self, user: UserId) -> StorageResult<Option<Member>>;
    /// By joined_at, then user id.
    async fn list_members(&self) -> StorageResult<Vec<Member>>;
    async fn member_count(&self) -> StorageResult<i64>;

    /// Records the ban and, in the same transaction, kicks the user holding that key if there is
    /// one (roles, membership, sessions). Returns the ban and the kicked user.
    /// Conflict(AlreadyBanned) if the key is banned.
    async fn ban(&self, ban: NewBan) -> StorageResult<(Ban, Option<UserId>)>;
    /// False if there was no ban.
    async fn unban(&self, pubkey: &PublicKey) -> StorageResult<bool>;
    async fn is_banned(&self, pubkey: &PublicKey) -> StorageResult<bool>;
    /// Newest first.
    async fn list_bans(&self) -> StorageResult<Vec<Ban>>;

    /// Conflict(AlreadyAllowlisted) if present.
    async fn allowlist_add(&self, pubkey: &PublicKey, added_by: UserId) -> StorageResult<AllowlistEntry>;
    async fn allowlist_remove(&self, pubkey: &PublicKey) -> StorageResult<bool>;
    async fn allowlist_contains(&self, pubkey: &PublicKey) -> StorageResult<bool>;
    /// Oldest first.
    async fn list_allowlist(&self) -> StorageResult<Vec<AllowlistEntry>>;

    /// Bots neither approved nor revoked, oldest request first.
    async fn list_pending_bots(&self) -> StorageResult<Vec<BotApproval>>;
    async fn get_bot_approval(&self, user: UserId) -> StorageResult<Option<BotApproval>>;
    /// Approves (clearing a revocation) and, in the same transaction, makes the bot a member with
    /// @everyone if it is not one. NotFound(Bot) without an approval row.
    async fn approve_bot(&self, user: UserId, by: UserId, note: Option<String>)
    -> StorageResult<(BotApproval, Joined)>;
    /// NotFound(Bot) without an approval row.
    async fn revoke_bot(&self, user: UserId) -> StorageResult<BotApproval>;
}

#[async_trait]
pub trait RoleStore {
    /// By position descending, then id.
    async fn list_roles(&self) -> StorageResult<Vec<Role>>;
    async fn get_role(&self, id: RoleId) -> StorageResult<Option<Role>>;
    async fn create_role(&self, new: NewRole) -> StorageResult<Role>;
    /// NotFound(Role). Built-in roles: only @everyone's permissions and name/colour may change
    /// (InvalidInput otherwise); the API checks this first, the storage enforces it too.
    async fn update_role(&self, id: RoleId, patch: RolePatch) -> StorageResult<Role>;
    /// Removes the role with its assignments and overrides. False if unknown; InvalidInput for a
    /// built-in role.
    async fn delete_role(&self, id: RoleId) -> StorageResult<bool>;
    /// NotFound(Member) / NotFound(Role); Conflict(RoleAssigned).
    async fn assign_role(&self, user: UserId, role: RoleId) -> StorageResult<()>;
    /// False if not assigned.
    async fn unassign_role(&self, user: UserId, role: RoleId) -> StorageResult<bool>;
    /// The roles a member holds (with permissions), for permission evaluation. Empty for a
    /// non-member.
    async fn member_roles(&self, user: UserId) -> StorageResult<Vec<Role>>;

    /// By role id.
    async fn list_overrides(&self, channel: ChannelId) -> StorageResult<Vec<Override>>;
    /// Creates or replaces. InvalidReference for an unknown channel or role.
    async fn put_override(&self, o: Override) -> StorageResult<Override>;
    async fn delete_override(&self, channel: ChannelId, role: RoleId) -> StorageResult<bool>;
}

#[async_trait]
pub trait ChannelStore {
    /// Text channels by position, then id.
    async fn list_channels(&self) -> StorageResult<Vec<Channel>>;
    /// A text channel (None for DM channels and unknown ids).
    async fn get_channel(&self, id: ChannelId) -> StorageResult<Option<Channel>>;
    /// In one statement: a text channel (as [`ChannelStore::get_channel`]) with its overrides and
    /// their roles' positions. None for DM channels and unknown ids.
    async fn get_channel_access(&self, id: ChannelId) -> StorageResult<Option<ChannelAccess>>;
    /// The kind of any channel id.
    async fn channel_kind(&self, id: ChannelId) -> StorageResult<Option<ChannelKind>>;
    /// Conflict(ChannelName). The category is reused or created by name.
    async fn create_channel(&self, new: NewChannel) -> StorageResult<Channel>;
    /// NotFound(Channel); Conflict(ChannelName).
    async fn update_channel(&self, id: ChannelId, patch: ChannelPatch) -> StorageResult<Channel>;
    /// Removes a text channel with its messages, threads, attachments, reactions and overrides.
    async fn delete_channel(&self, id: ChannelId) -> StorageResult<bool>;
    /// Creates a text channel `name` when no text channel exists; safe with several processes.
    /// Returns the channel if this call created it.
    async fn ensure_default_channel(&self, name: &str) -> StorageResult<Option<Channel>>;
    /// By position, then id.
    async fn list_categories(&self) -> StorageResult<Vec<Category>>;
    /// NotFound(Category); Conflict(CategoryInUse) while a channel uses it.
    async fn delete_category(&self, name: &str) -> StorageResult<()>;
}

#[async_trait]
pub trait MessageStore {
    /// Inserts a channel message or thread reply and links its attachments, in one transaction
    /// (Conflict(AttachmentUnavailable) on the first unusable attachment: nothing is stored).
    /// A reply also increments the thread's reply_count, sets last_reply_at/author and makes the
    /// author a follower. NotFound(Channel) / NotFound(Thread) for unknown targets.
    async fn create_message(&self, new: NewMessage) -> StorageResult<Message>;
    async fn get_message(&self, id: MessageId, viewer: Option<UserId>) -> StorageResult<Option<Message>>;
    /// A page per api.md §1.6, with attachments, reactions and thread summaries (no N+1).
    async fn list_messages(
        &self,
        scope: MessageScope,
        cursor: PageCursor,
        limit: u32,
        viewer: Option<UserId>,
    ) -> StorageResult<MessagePage>;
    /// Sets content, search_text and edited_at. NotFound(Message); Conflict(MessageDeleted).
    async fn edit_message(&self, id: MessageId, content: String) -> StorageResult<Message>;
    /// Soft delete: content and search_text emptied, deleted_at set, attachments soft-deleted.
    /// True if this call deleted it; false if it already was deleted. NotFound(Message).
    async fn delete_message(&self, id: MessageId) -> StorageResult<bool>;
    /// Non-deleted messages of the given channels matching every term, newest first.
    async fn search_messages(&self, query: SearchQuery) -> StorageResult<SearchPage>;
    /// Bulk load: plain messages (no attachments, no thread) into one channel, in order, in one
    /// transaction; returns how many were inserted. Backends override this with a single
    /// multi-row statement; the default inserts them one by one.
    async fn create_messages_batch(&self, channel: ChannelId, messages: Vec<(UserId, String)>) -> StorageResult<u64> {
        let count = messages.len() as u64;
        for (author_id, content) in messages {
            self.create_message(NewMessage {
                channel_id: channel,
                thread_id: None,
                author_id,
                content,
                attachment_ids: vec![],
            })
            .await?;
        }
        Ok(count)
    }
}

#[async_trait]
pub trait ReactionStore {
    /// No reaction → add; the same emoji → remove; another → replace. One transaction.
    /// NotFound(Message).
    async fn toggle_reaction(&self, message: MessageId, user: UserId, emoji: &str) -> StorageResult<ReactionChange>;
    /// Removes the user's reaction, returning its emoji.
    async fn remove_reaction(&self, message: MessageId, user: UserId) -> StorageResult<Option<String>>;
    /// Users holding `emoji` by user id descending, below `before` when given.
    async fn list_reactors(
        &self,
        message: MessageId,
        emoji: &str,
        before: Option<UserId>,
        limit: u32,
    ) -> StorageResult<ReactorPage>;
}

#[async_trait]
pub trait ThreadStore {
    /// Creates the thread of a parent message, or returns the existing one (created = false).
    /// The creator follows it. NotFound(Message); InvalidInput for a thread reply or DM message.
    async fn create_thread(&self, parent: MessageId, creator: UserId) -> StorageResult<(Thread, bool)>;
    async fn get_thread(&self, id: ThreadId, viewer: Option<UserId>) -> StorageResult<Option<Thread>>;
    /// Idempotent. NotFound(Thread).
    async fn follow_thread(&self, id: ThreadId, user: UserId) -> StorageResult<()>;
    async fn unfollow_thread(&self, id: ThreadId, user: UserId) -> StorageResult<bool>;
    /// Sets last_read_at = now if the user follows; false otherwise.
    async fn mark_thread_read(&self, id: ThreadId, user: UserId) -> StorageResult<bool>;
}

#[async_trait]
pub trait InviteStore {
    /// Conflict(InviteCode) on a collision (the caller draws a new code);
    /// InvalidReference for an unknown grant role.
    async fn create_invite(&self, new: NewInvite) -> StorageResult<Invite>;
    async fn get_invite(&self, code: &str) -> StorageResult<Option<Invite>>;
    /// Not expired at `now` and not used up, newest first.
    async fn list_active_invites(&self, now: Timestamp) -> StorageResult<Vec<Invite>>;
    async fn delete_invite(&self, code: &str) -> StorageResult<bool>;
    /// In one transaction: atomically consume one use (not expired at `now`, not used up), add
    /// the member with @everyone, assign the invite's role. A member consumes nothing.
    async fn join_via_invite(&self, code: &str, user: UserId, now: Timestamp) -> StorageResult<InviteJoin>;
    /// Deletes invites expired at `now`; returns how many.
    async fn purge_expired_invites(&self, now: Timestamp) -> StorageResult<u64>;
}

#[async_trait]
pub trait SessionStore {
    /// Stores a challenge, replacing any pending one for the same key.
    async fn put_challenge(
        &self,
        pubkey: &PublicKey,
        nonce: Nonce,
        is_bot: bool,
        expires_at: Timestamp,
    ) -> StorageResult<()>;
    /// Deletes and returns the pending challenge in one statement (single use on every process),
    /// or None when there is none or it expired at `now`.
    async fn take_challenge(&self, pubkey: &PublicKey, now: Timestamp) -> StorageResult<Option<Challenge>>;
    async fn purge_expired_challenges(&self, now: Timestamp) -> StorageResult<u64>;

    /// Conflict(SessionToken) on a hash collision.
    async fn create_session(&self, new: NewSession) -> StorageResult<Session>;
    /// The session whatever its expiry (the caller decides and deletes).
    async fn get_session(&self, token_hash: &TokenHash) -> StorageResult<Option<Session>>;
    /// In one statement: the session whatever its expiry (as [`SessionStore::get_session`]) and,
    /// when its user is a member, the member (as [`MemberStore::get_member`]), the roles it holds
    /// (as [`RoleStore::member_roles`]) and @everyone. None for an unknown token.
    async fn get_session_auth(&self, token_hash: &TokenHash) -> StorageResult<Option<SessionAuth>>;
    async fn delete_session(&self, id: SessionId) -> StorageResult<bool>;
    /// Deletes every session of the user; returns their ids.
    async fn delete_user_sessions(&self, user: UserId) -> StorageResult<Vec<SessionId>>;
    async fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<u64>;
}

#[async_trait]
pub trait MediaStore {
    /// Inserts the media row unless the hash exists (the first uploader and type win).
    async fn put_media(&self, media: NewMedia) -> StorageResult<Media>;
    async fn get_media(&self, hash: &ContentHash) -> StorageResult<Option<Media>>;
    /// Up to `limit` media rows with a content hash after `after`, in hash order (for
    /// `decentcom media check`).
    async fn list_media(&self, after: Option<&ContentHash>, limit: i64) -> StorageResult<Vec<Media>>;
    /// In one transaction: a media row per new hash and an unlinked attachment per file, in order.
    async fn record_uploads(
        &self,
        media: Vec<NewMedia>,
        attachments: Vec<NewAttachment>,
    ) -> StorageResult<Vec<Attachment>>;
    async fn get_attachment(&self, id: AttachmentId) -> StorageResult<Option<Attachment>>;
}

#[async_trait]
pub trait DmStore {
    /// Finds the pair's DM channel or creates it (race-safe: one per unordered pair) and opens it
    /// for `user`. InvalidInput when both are the same user.
    async fn open_dm(&self, user: UserId, recipient: UserId) -> StorageResult<DmOpened>;
    async fn get_dm(&self, channel: ChannelId) -> StorageResult<Option<Dm>>;
    /// `user`'s open DMs, most recent message first, never-used ones last (newest first).
    async fn list_dms(&self, user: UserId) -> StorageResult<Vec<DmChannel>>;
    /// Hides the DM from `user`'s list (messages kept). False if not a participant.
    async fn hide_dm(&self, channel: ChannelId, user: UserId) -> StorageResult<bool>;
    /// In one transaction: inserts the message, sets last_message_at, reopens the DM for both
    /// participants and sets the sender's last_read_at. NotFound(Dm).
    async fn send_dm_message(&self, channel: ChannelId, author: UserId, content: String) -> StorageResult<DmSent>;
    /// Sets `user`'s last_read_at to now.
    async fn mark_dm_read(&self, channel: ChannelId, user: UserId) -> StorageResult<()>;
}

#[async_trait]
pub trait DeviceStore {
    async fn get_device_key(&self, device_pubkey: &PublicKey) -> StorageResult<Option<DeviceKey>>;
    /// Registers or re-certifies a device key atomically (see [`DeviceRegistration`]).
    async fn register_device_key(&self, new: NewDeviceKey) -> StorageResult<DeviceRegistration>;
    /// The user's devices neither revoked nor expired at `now`, oldest first.
    async fn list_device_keys(&self, user: UserId, now: Timestamp) -> StorageResult<Vec<DeviceKey>>;
    /// Sets revoked_at (once) and deletes the sessions created with the key, in one transaction.
    /// None for an unknown key or another user's.
    async fn revoke_device_key(
        &self,
        user: UserId,
        device_pubkey: &PublicKey,
    ) -> StorageResult<Option<DeviceRevocation>>;
}

/// Everything the server needs from a database. Implemented by `SqliteBackend` and
/// `PostgresBackend`; the server holds `Arc<dyn Storage>`.
#[async_trait]
pub trait Storage:
    UserStore
    + MemberStore
    + RoleStore
    + ChannelStore
    + MessageStore
    + ReactionStore
    + ThreadStore
    + InviteStore
    + SessionStore
    + MediaStore
    + DmStore
    + DeviceStore
    + Send
    + Sync
{
    /// A trivial round trip, for health checks.
    async fn ping(&self) -> StorageResult<()>;
    /// Which backend this is, for logs.
    fn backend_name(&self) -> &'static str;
}

/// Connection pool settings, from `[storage]`.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: std::time::Duration,
    /// None = idle connections are kept forever.
    pub idle_timeout: Option<std::time::Duration>,
    /// PostgreSQL only; None = no statement timeout.
    pub statement_timeout: Option<std::time::Duration>,
}

impl PoolSettings {
    pub fn from_config(config: &crate::config::StorageConfig) -> Self {
        use std::time::Duration;
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        PoolSettings {
            max_connections: config.max_connections,
            min_connections: config.min_connections,
            acquire_timeout: Duration::from_secs(config.acquire_timeout_seconds),
            idle_timeout: secs(config.idle_timeout_seconds),
            statement_timeout: secs(config.statement_timeout_seconds),
        }
    }
}

/// Why a backend could not be opened. Every message is for the operator and never contains a
/// password (URLs are shown through `config::redact_url`).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot reach the database server at {host}:{port}: {reason}")]
    Unreachable { host: String, port: u16, reason: String },
    #[error("the database server refused the credentials of user `{user}`")]
    AuthenticationFailed { user: String },
    #[error("database `{name}` does not exist (create it first, e.g. `createdb {name}`)")]
    DatabaseMissing { name: String },
    #[error(
        "the database holds migration {version}, which this binary does not know: it was written \
         by a newer decentcom; refusing to start"
    )]
    NewerSchema { version: i64 },
    #[error("cannot open the SQLite database {path}: {reason}")]
    Sqlite { path: String, reason: String },
    #[error("running migrations failed: {0}")]
    Migration(String),
    #[error("cannot open the database: {0}")]
    Other(String),
}

/// Opens the configured backend, running its embedded migrations. Errors are operator-facing
/// and never contain a password.
pub async fn open(config: &crate::config::StorageConfig) -> Result<std::sync::Arc<dyn Storage>, OpenError> {
    #[allow(unused_imports)]
    use crate::config::Backend;
    #[allow(unused_variables)]
    let settings = PoolSettings::from_config(config);
    match config.backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            Ok(std::sync::Arc::new(sqlite::SqliteBackend::open(&config.database_path, &settings).await?))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let url = config.database_url.as_deref().unwrap_or_default();
            Ok(std::sync::Arc::new(postgres::PostgresBackend::open(url, &settings).await?))
        }
        #[allow(unreachable_patterns)]
        other => Err(OpenError::Other(format!("this build of decentcom has no {} backend", other.as_str()))),
    }
}
