//! The one error type of the storage contract. Database errors never leave a backend as opaque
//! text: unique and foreign-key violations become [`StorageError::Conflict`] and
//! [`StorageError::InvalidReference`], connection trouble becomes [`StorageError::Unavailable`].

use std::fmt;

use super::types::AttachmentId;

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} not found")]
    NotFound(Entity),
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// A foreign key pointed at nothing. PostgreSQL names the constraint; SQLite cannot.
    #[error("invalid reference{}", .0.map(|c| format!(" ({c})")).unwrap_or_default())]
    InvalidReference(Option<&'static str>),
    /// Input the storage refuses whatever the database state (a caller bug or a rule such as
    /// "built-in roles cannot be deleted").
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database cannot be reached or did not answer in time.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else the database reported; the detail is for logs only.
    #[error("database error")]
    Backend(#[source] sqlx::Error),
}

/// What was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    User,
    Member,
    Channel,
    Category,
    Message,
    Thread,
    Role,
    RoleAssignment,
    Override,
    Invite,
    Ban,
    AllowlistEntry,
    Bot,
    Device,
    Dm,
    Media,
    Attachment,
    Session,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Entity::User => "user",
            Entity::Member => "member",
            Entity::Channel => "channel",
            Entity::Category => "category",
            Entity::Message => "message",
            Entity::Thread => "thread",
            Entity::Role => "role",
            Entity::RoleAssignment => "role assignment",
            Entity::Override => "override",
            Entity::Invite => "invite",
            Entity::Ban => "ban",
            Entity::AllowlistEntry => "allowlist entry",
            Entity::Bot => "bot",
            Entity::Device => "device",
            Entity::Dm => "dm",
            Entity::Media => "media",
            Entity::Attachment => "attachment",
            Entity::Session => "session",
        };
        f.write_str(name)
    }
}

/// A duplicate or a state conflict. Unique constraints map here by name (PostgreSQL) or by
/// table and columns (SQLite), through [`UNIQUE_CONSTRAINTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    UserPubkey,
    ChannelName,
    CategoryName,
    /// A category still used by a channel cannot be removed.
    CategoryInUse,
    MediaContentHash,
    RoleAssigned,
    AlreadyBanned,
    AlreadyAllowlisted,
    InviteCode,
    DeviceKey,
    SessionToken,
    DmPair,
    ThreadParent,
    Reaction,
    /// A deleted message cannot be edited.
    MessageDeleted,
    /// The change would leave the server with no member holding @admin.
    LastAdmin,
    /// The attachment is unknown, not the sender's, already linked, deleted, or from another
    /// channel.
    AttachmentUnavailable(AttachmentId),
    /// A unique constraint this table does not know (a bug: add it to [`UNIQUE_CONSTRAINTS`]).
    Other,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::AttachmentUnavailable(id) => write!(f, "attachment {id} unavailable"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Unique constraints of both schemas: the PostgreSQL constraint name, the SQLite
/// `table.column[, table.column]` text of its "UNIQUE constraint failed" message, and the conflict.
pub const UNIQUE_CONSTRAINTS: &[(&str, &str, Conflict)] = &[
    ("users_pubkey_key", "users.pubkey", Conflict::UserPubkey),
    ("channels_name_key", "channels.name", Conflict::ChannelName),
    ("categories_name_key", "categories.name", Conflict::CategoryName),
    ("media_content_hash_key", "media.content_hash", Conflict::MediaContentHash),
    ("member_roles_pkey", "member_roles.user_id, member_roles.role_id", Conflict::RoleAssigned),
    ("bans_pkey", "bans.pubkey", Conflict::AlreadyBanned),
    ("allowlist_pkey", "allowlist.pubkey", Conflict::AlreadyAllowlisted),
    ("invites_pkey", "invites.code", Conflict::InviteCode),
    ("device_keys_device_pubkey_key", "device_keys.device_pubkey", Conflict::DeviceKey),
    ("sessions_token_hash_key", "sessions.token_hash", Conflict::SessionToken),
    ("dms_pair_key", "dms.user_low, dms.user_high", Conflict::DmPair),
    ("threads_parent_message_id_key", "threads.parent_message_id", Conflict::ThreadParent),
    ("reactions_message_user_key", "reactions.message_id, reactions.user_id", Conflict::Reaction),
];

impl Conflict {
    pub fn from_pg_constraint(name: &str) -> Conflict {
        UNIQUE_CONSTRAINTS.iter().find(|(pg, _, _)| *pg == name).map_or(Conflict::Other, |(_, _, c)| *c)
    }

    /// `message` is SQLite's text, e.g. `UNIQUE constraint failed: users.pubkey`.
    pub fn from_sqlite_message(message: &str) -> Conflict {
        let columns = message.rsplit(": ").next().unwrap_or_default();
        UNIQUE_CONSTRAINTS.iter().find(|(_, sqlite, _)| *sqlite == columns).map_or(Conflict::Other, |(_, _, c)| *c)
    }
}

/// Foreign-key constraint names of the PostgreSQL schema, interned so errors can carry them.
pub fn pg_foreign_key_name(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "users_avatar_hash_fkey",
        "members_user_id_fkey",
        "member_roles_user_id_fkey",
        "member_roles_role_id_fkey",
        "role_permissions_role_id_fkey",
        "channels_category_id_fkey",
        "channel_permission_overrides_channel_id_fkey",
        "channel_permission_overrides_role_id_fkey",
        "dms_channel_id_fkey",
        "dms_user_low_fkey",
        "dms_user_high_fkey",
        "dm_participants_channel_id_fkey",
        "dm_participants_user_id_fkey",
        "messages_channel_id_fkey",
        "messages_author_id_fkey",
        "messages_thread_id_fkey",
        "threads_channel_id_fkey",
        "threads_parent_message_id_fkey",
        "threads_creator_id_fkey",
        "threads_last_reply_author_id_fkey",
        "thread_followers_thread_id_fkey",
        "thread_followers_user_id_fkey",
        "reactions_message_id_fkey",
        "reactions_user_id_fkey",
        "attachments_message_id_fkey",
        "attachments_channel_id_fkey",
        "attachments_uploader_id_fkey",
        "attachments_content_hash_fkey",
        "device_keys_user_id_fkey",
        "sessions_user_id_fkey",
        "sessions_device_key_id_fkey",
        "bans_banned_by_fkey",
        "allowlist_added_by_fkey",
        "bot_approvals_user_id_fkey",
        "bot_approvals_approved_by_fkey",
        "invites_created_by_fkey",
        "invites_grant_role_id_fkey",
    ];
    NAMES.iter().copied().find(|n| *n == name)
}

impl StorageError {
    /// Classifies a driver error. Backends call this through their own `From` conversions.
    pub fn from_sqlx(err: sqlx::Error) -> StorageError {
        use sqlx::error::ErrorKind;
        match &err {
            sqlx::Error::RowNotFound => return StorageError::Backend(err),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => return StorageError::Unavailable(err),
            _ => {}
        }
        let Some(db) = err.as_database_error() else {
            return StorageError::Backend(err);
        };
        if db.code().as_deref().is_some_and(is_unavailable_sqlstate) {
            return StorageError::Unavailable(err);
        }
        if db.code().as_deref().is_some_and(is_unstorable_text_sqlstate) {
            return StorageError::InvalidInput(format!("text the database cannot store: {}", db.message()));
        }
        match db.kind() {
            ErrorKind::UniqueViolation => StorageError::Conflict(match db.constraint() {
                Some(name) => Conflict::from_pg_constraint(name),
                None => Conflict::from_sqlite_message(db.message()),
            }),
            ErrorKind::ForeignKeyViolation => {
                StorageError::InvalidReference(db.constraint().and_then(pg_foreign_key_name))
            }
            ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                StorageError::InvalidInput(format!("rejected by the schema: {}", db.message()))
            }
            _ => StorageError::Backend(err),
        }
    }
}

/// PostgreSQL states that mean the server is going away or not accepting work: a connection lost
/// to a restart (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now), any
/// connection exception (class 08), too many connections (53300). Not the request's fault.
fn is_unavailable_sqlstate(code: &str) -> bool {
    matches!(code, "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
}

/// Text PostgreSQL cannot store (U+0000: 22021, 22P05). The HTTP layer refuses such text
/// before it reaches a backend (api.md §1.1); this only keeps a missed path from being a 500.
fn is_unstorable_text_sqlstate(code: &str) -> bool {
    matches!(code, "22021" | "22P05")
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        StorageError::from_sqlx(err)
    }
}
