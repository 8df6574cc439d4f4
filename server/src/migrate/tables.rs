//! The tables `decentcom migrate` copies, in foreign-key order, and the dialect-neutral row they
//! are read into.
//!
//! Both dialects read a table into the same canonical [`Row`]: integers and timestamps as `i64`
//! (timestamps in microseconds since the epoch, the SQLite storage form), text as `String`, bytes
//! as `Vec<u8>`, booleans as `bool`, NULL as [`Value::Null`]. Copying, resuming and digesting all
//! work on these rows, so the two sides are compared by the very values that were copied.
//! Generated columns (PostgreSQL's `messages.search_vector`) and derived tables (SQLite's
//! `messages_fts`) are never read: the target computes them itself.

use chrono::{DateTime, Utc};

/// One column value in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// One row: the table's columns in the order of [`Table::columns`].
pub type Row = Vec<Value>;

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

/// PostgreSQL `TIMESTAMPTZ` (microsecond precision) → microseconds since the epoch.
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Value {
        Value::Int(v.timestamp_micros())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

// Typed access to key and bookkeeping columns. A row always comes from this module's own
// SELECTs, so a value of another kind than the column's is a bug in the table definitions, not
// bad data.

fn wrong(v: &Value, want: &str) -> ! {
    panic!("migrate: expected {want}, found {v:?} (table definitions out of step)")
}

pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => wrong(other, "an integer"),
    }
}

pub fn opt_int(v: &Value) -> Option<i64> {
    match v {
        Value::Null => None,
        other => Some(int(other)),
    }
}

pub fn text(v: &Value) -> &str {
    match v {
        Value::Text(s) => s,
        other => wrong(other, "text"),
    }
}

pub fn bytes(v: &Value) -> &[u8] {
    match v {
        Value::Bytes(b) => b,
        other => wrong(other, "bytes"),
    }
}

/// Every table of the schema, in the order they are copied (a table after every table it
/// references). `threads` and `messages` reference each other: threads are copied together with
/// the batch of messages that holds their parent message (see `migrate::copy`).
// Ordered as declared, which is the copy order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Roles,
    RolePermissions,
    Media,
    Users,
    Members,
    MemberRoles,
    Categories,
    Channels,
    ChannelPermissionOverrides,
    Dms,
    DmParticipants,
    Messages,
    Threads,
    ThreadFollowers,
    Reactions,
    Attachments,
    DeviceKeys,
    Sessions,
    AuthChallenges,
    Bans,
    Allowlist,
    BotApprovals,
    Invites,
}

/// What a canonical column holds. `Int` and `Time` values are both `Value::Int`; the kind tells a
/// count from a timestamp (microseconds since the Unix epoch), which PostgreSQL stores differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Time,
    Text,
    Bytes,
    Bool,
}

/// How a table's primary key is ordered and paged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// One integer column.
    Int,
    /// Two integer columns.
    Int2,
    /// An integer then a text column (text in byte order).
    IntText,
    /// One bytes column.
    Bytes,
    /// One text column (byte order).
    Text,
}

impl Table {
    pub const ALL: [Table; 23] = [
        Table::Roles,
        Table::RolePermissions,
        Table::Media,
        Table::Users,
        Table::Members,
        Table::MemberRoles,
        Table::Categories,
        Table::Channels,
        Table::ChannelPermissionOverrides,
        Table::Dms,
        Table::DmParticipants,
        Table::Messages,
        Table::Threads,
        Table::ThreadFollowers,
        Table::Reactions,
        Table::Attachments,
        Table::DeviceKeys,
        Table::Sessions,
        Table::AuthChallenges,
        Table::Bans,
        Table::Allowlist,
        Table::BotApprovals,
        Table::Invites,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Roles => "roles",
            Table::RolePermissions => "role_permissions",
            Table::Media => "media",
            Table::Users => "users",
            Table::Members => "members",
            Table::MemberRoles => "member_roles",
            Table::Categories => "categories",
            Table::Channels => "channels",
            Table::ChannelPermissionOverrides => "channel_permission_overrides",
            Table::Dms => "dms",
            Table::DmParticipants => "dm_participants",
            Table::Messages => "messages",
            Table::Threads => "threads",
            Table::ThreadFollowers => "thread_followers",
            Table::Reactions => "reactions",
            Table::Attachments => "attachments",
            Table::DeviceKeys => "device_keys",
            Table::Sessions => "sessions",
            Table::AuthChallenges => "auth_challenges",
            Table::Bans => "bans",
            Table::Allowlist => "allowlist",
            Table::BotApprovals => "bot_approvals",
            Table::Invites => "invites",
        }
    }

    pub fn key(self) -> KeyKind {
        match self {
            Table::RolePermissions => KeyKind::IntText,
            Table::MemberRoles | Table::ChannelPermissionOverrides | Table::DmParticipants | Table::ThreadFollowers => {
                KeyKind::Int2
            }
            Table::AuthChallenges | Table::Bans | Table::Allowlist => KeyKind::Bytes,
            Table::Invites => KeyKind::Text,
            _ => KeyKind::Int,
        }
    }

    /// The columns of the primary key, in key order: always the first one or two columns of
    /// [`Table::columns`] (as [`Bound::after`] relies on).
    pub fn key_columns(self) -> &'static [(&'static str, Kind)] {
        let n = match self.key() {
            KeyKind::Int2 | KeyKind::IntText => 2,
            KeyKind::Int | KeyKind::Bytes | KeyKind::Text => 1,
        };
        &self.columns()[..n]
    }

    /// The columns of the canonical row, in order, with what their values mean. Both dialects'
    /// reads select exactly these (generated columns aside), and PostgreSQL's binary `COPY`
    /// encodes each value by its kind; `tests/schema_parity.rs` checks them against both schemas.
    pub fn columns(self) -> &'static [(&'static str, Kind)] {
        use Kind::*;
        match self {
            Table::Roles => &[
                ("id", Int),
                ("name", Text),
                ("color", Text),
                ("position", Int),
                ("is_builtin", Bool),
                ("created_at", Time),
                ("updated_at", Time),
            ],
            Table::RolePermissions => &[("role_id", Int), ("permission", Text)],
            Table::Media => &[
                ("id", Int),
                ("content_hash", Text),
                ("object_key", Text),
                ("bucket", Text),
                ("size_bytes", Int),
                ("mime_type", Text),
                ("uploaded_by", Int),
                ("uploaded_at", Time),
            ],
            Table::Users => &[
                ("id", Int),
                ("pubkey", Bytes),
                ("display_name", Text),
                ("avatar_hash", Text),
                ("is_bot", Bool),
                ("created_at", Time),
            ],
            Table::Members => &[("user_id", Int), ("joined_at", Time)],
            Table::MemberRoles => &[("user_id", Int), ("role_id", Int), ("assigned_at", Time)],
            Table::Categories => &[("id", Int), ("name", Text), ("position", Int), ("created_at", Time)],
            Table::Channels => &[
                ("id", Int),
                ("kind", Text),
                ("name", Text),
                ("topic", Text),
                ("category_id", Int),
                ("position", Int),
                ("created_at", Time),
                ("updated_at", Time),
            ],
            Table::ChannelPermissionOverrides => {
                &[("channel_id", Int), ("role_id", Int), ("allow_bits", Int), ("deny_bits", Int)]
            }
            Table::Dms => &[
                ("channel_id", Int),
                ("user_low", Int),
                ("user_high", Int),
                ("created_at", Time),
                ("last_message_at", Time),
            ],
            Table::DmParticipants => {
                &[("channel_id", Int), ("user_id", Int), ("is_open", Bool), ("last_read_at", Time)]
            }
            Table::Messages => &[
                ("id", Int),
                ("channel_id", Int),
                ("author_id", Int),
                ("thread_id", Int),
                ("content", Text),
                ("search_text", Text),
                ("created_at", Time),
                ("edited_at", Time),
                ("deleted_at", Time),
            ],
            Table::Threads => &[
                ("id", Int),
                ("channel_id", Int),
                ("parent_message_id", Int),
                ("creator_id", Int),
                ("created_at", Time),
                ("reply_count", Int),
                ("last_reply_at", Time),
                ("last_reply_author_id", Int),
            ],
            Table::ThreadFollowers => {
                &[("thread_id", Int), ("user_id", Int), ("followed_at", Time), ("last_read_at", Time)]
            }
            Table::Reactions => {
                &[("id", Int), ("message_id", Int), ("user_id", Int), ("emoji", Text), ("created_at", Time)]
            }
            Table::Attachments => &[
                ("id", Int),
                ("message_id", Int),
                ("channel_id", Int),
                ("uploader_id", Int),
                ("content_hash", Text),
                ("filename", Text),
                ("size_bytes", Int),
                ("mime_type", Text),
                ("width", Int),
                ("height", Int),
                ("created_at", Time),
                ("deleted_at", Time),
            ],
            Table::DeviceKeys => &[
                ("id", Int),
                ("device_pubkey", Bytes),
                ("user_id", Int),
                ("device_name", Text),
                ("permissions", Int),
                ("issued_at", Time),
                ("expires_at", Time),
                ("certificate", Bytes),
                ("signature", Bytes),
                ("created_at", Time),
                ("revoked_at", Time),
            ],
            Table::Sessions => &[
                ("id", Int),
                ("token_hash", Bytes),
                ("user_id", Int),
                ("device_key_id", Int),
                ("is_read_only", Bool),
                ("created_at", Time),
                ("expires_at", Time),
            ],
            Table::AuthChallenges => {
                &[("pubkey", Bytes), ("nonce", Bytes), ("is_bot", Bool), ("created_at", Time), ("expires_at", Time)]
            }
            Table::Bans => &[("pubkey", Bytes), ("banned_by", Int), ("reason", Text), ("banned_at", Time)],
            Table::Allowlist => &[("pubkey", Bytes), ("added_by", Int), ("added_at", Time)],
            Table::BotApprovals => &[
                ("user_id", Int),
                ("requested_at", Time),
                ("approved_by", Int),
                ("approved_at", Time),
                ("revoked_at", Time),
                ("note", Text),
            ],
            Table::Invites => &[
                ("code", Text),
                ("created_by", Int),
                ("grant_role_id", Int),
                ("max_uses", Int),
                ("use_count", Int),
                ("expires_at", Time),
                ("created_at", Time),
            ],
        }
    }

    /// Tables whose `id` comes from a sequence (PostgreSQL `BIGSERIAL`, SQLite `AUTOINCREMENT`).
    pub fn has_serial_id(self) -> bool {
        matches!(
            self,
            Table::Roles
                | Table::Media
                | Table::Users
                | Table::Categories
                | Table::Channels
                | Table::Messages
                | Table::Threads
                | Table::Reactions
                | Table::Attachments
                | Table::DeviceKeys
                | Table::Sessions
        )
    }
}

/// Index of `messages.thread_id` and of `threads.id` / `threads.parent_message_id` in their rows.
pub const MESSAGE_THREAD_ID: usize = 3;
pub const THREAD_ID: usize = 0;
pub const THREAD_PARENT_MESSAGE_ID: usize = 2;
/// Index of `media.content_hash` and `media.size_bytes`.
pub const MEDIA_CONTENT_HASH: usize = 1;
pub const MEDIA_SIZE_BYTES: usize = 4;

/// Where the next page of a table starts (keyset pagination in primary-key order). Integer keys
/// are inclusive lower bounds (`key >= bound`, so that every value including `i64::MIN` can be
/// reached); text and bytes keys are exclusive (`key > bound`, starting from the empty value,
/// which the schema's length checks exclude).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    Int(i64),
    Int2(i64, i64),
    IntText(i64, String),
    Bytes(Vec<u8>),
    Text(String),
}

impl Bound {
    /// The bound before a table's first row.
    pub fn start(kind: KeyKind) -> Bound {
        match kind {
            KeyKind::Int => Bound::Int(i64::MIN),
            KeyKind::Int2 => Bound::Int2(i64::MIN, i64::MIN),
            KeyKind::IntText => Bound::IntText(i64::MIN, String::new()),
            KeyKind::Bytes => Bound::Bytes(Vec::new()),
            KeyKind::Text => Bound::Text(String::new()),
        }
    }

    /// The bound of the rows after `row` (whose key columns lead the row), or `None` when no
    /// key can follow it.
    pub fn after(kind: KeyKind, row: &Row) -> Option<Bound> {
        Some(match kind {
            KeyKind::Int => Bound::Int(int(&row[0]).checked_add(1)?),
            KeyKind::Int2 => {
                let (a, b) = (int(&row[0]), int(&row[1]));
                match b.checked_add(1) {
                    Some(b) => Bound::Int2(a, b),
                    None => Bound::Int2(a.checked_add(1)?, i64::MIN),
                }
            }
            KeyKind::IntText => Bound::IntText(int(&row[0]), text(&row[1]).to_owned()),
            KeyKind::Bytes => Bound::Bytes(bytes(&row[0]).to_vec()),
            KeyKind::Text => Bound::Text(text(&row[0]).to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn integer_bounds_step_past_the_last_key_and_stop_at_the_end() {
        assert_eq!(Bound::after(KeyKind::Int, &vec![Value::Int(41)]), Some(Bound::Int(42)));
        assert_eq!(Bound::after(KeyKind::Int, &vec![Value::Int(i64::MAX)]), None);
        assert_eq!(
            Bound::after(KeyKind::Int2, &vec![Value::Int(3), Value::Int(i64::MAX)]),
            Some(Bound::Int2(4, i64::MIN))
        );
        assert_eq!(Bound::after(KeyKind::Int2, &vec![Value::Int(i64::MAX), Value::Int(i64::MAX)]), None);
        assert_eq!(Bound::after(KeyKind::Int2, &vec![Value::Int(3), Value::Int(9)]), Some(Bound::Int2(3, 10)));
    }

    #[test]
    fn every_table_is_listed_once_and_threads_follow_messages() {
        let names: std::collections::BTreeSet<_> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Table::ALL.len());
        let at = |t: Table| Table::ALL.iter().position(|x| *x == t).unwrap();
        assert_eq!(at(Table::Threads), at(Table::Messages) + 1);
    }
}
