//! Value types shared by every backend: newtype ids, timestamps, keys and hashes.
//!
//! Each type knows how it is stored in both dialects (sqlx `Type`/`Encode`/`Decode` for SQLite and
//! PostgreSQL), so the backends can use them directly as query-macro overrides
//! (`id AS "id: UserId"`) and a wrong kind of id is a compile error, not a bug.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

/// Declares a 64-bit entity id. Ids are decimal strings in JSON (api.md §0.1) and plain integers
/// in both databases.
macro_rules! entity_id {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Canonical ids only: `[1-9][0-9]*` within i64 (api.md §1.3).
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                parse_canonical_id(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            /// From a decimal string only (a JSON number is a type error). The parse happens
            /// inside the visitor so extractors can report which field held the bad id.
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(IdVisitor).map($name)
            }
        }
    )*};
}

entity_id! {
    /// A user: a master public key that has logged in at least once.
    UserId;
    /// A text channel or a DM channel (they share one id space).
    ChannelId;
    /// A channel category.
    CategoryId;
    /// A message, thread reply or DM message. Ids order messages by creation.
    MessageId;
    /// A thread hanging off a parent message.
    ThreadId;
    /// A role; 1 and 2 are the built-in @everyone and @admin.
    RoleId;
    /// An uploaded file.
    AttachmentId;
    /// A login session.
    SessionId;
    /// A registered device key.
    DeviceKeyId;
}

impl RoleId {
    /// The built-in role every member holds.
    pub const EVERYONE: RoleId = RoleId(1);
    /// The built-in administrator role.
    pub const ADMIN: RoleId = RoleId(2);
}

struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<i64, E> {
        parse_canonical_id(s).map_err(|_| E::custom(INVALID_ID))
    }
}

/// The message of an id deserialization error; the HTTP layer turns it into
/// `400 invalid id: <field>`.
pub const INVALID_ID: &str = "invalid id";

/// An id that is not a canonical positive decimal integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a canonical id")]
pub struct InvalidId;

fn parse_canonical_id(s: &str) -> Result<i64, InvalidId> {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes[0] == b'0' || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(InvalidId);
    }
    s.parse::<i64>().map_err(|_| InvalidId)
}

/// A UTC instant with exactly microsecond precision — what both databases keep. Constructors
/// truncate, so a value always survives a round trip through either backend unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Timestamp(at.trunc_subsecs(6))
    }

    /// Microseconds since the Unix epoch (the SQLite representation).
    pub fn from_micros(micros: i64) -> Option<Self> {
        Utc.timestamp_micros(micros).single().map(Timestamp)
    }

    pub fn as_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0 + chrono::Duration::seconds(seconds))
    }

    /// RFC 3339 in UTC with exactly six fractional digits and `Z` (api.md §1.4).
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// Any RFC 3339 timestamp with an offset, converted to UTC, sub-microsecond digits dropped.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s).ok().map(|at| Self::from_datetime(at.with_timezone(&Utc)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode_by_ref(&self.as_micros(), buf)
    }
}

impl Decode<'_, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'_>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        Timestamp::from_micros(micros).ok_or_else(|| format!("timestamp out of range: {micros}").into())
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Decode<'_, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        Ok(Timestamp::from_datetime(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

/// Implements storage as raw bytes of a fixed length in both dialects.
macro_rules! fixed_bytes {
    ($name:ident, $len:expr) => {
        impl $name {
            pub const LEN: usize = $len;

            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map($name)
            }

            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl Type<Sqlite> for $name {
            fn type_info() -> SqliteTypeInfo {
                <Vec<u8> as Type<Sqlite>>::type_info()
            }
            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <Vec<u8> as Type<Sqlite>>::compatible(ty)
            }
        }

        impl Decode<'_, Sqlite> for $name {
            fn decode(value: SqliteValueRef<'_>) -> Result<Self, BoxDynError> {
                let bytes = <&[u8] as Decode<Sqlite>>::decode(value)?;
                $name::from_slice(bytes).ok_or_else(|| {
                    format!(concat!(stringify!($name), " must be {} bytes, got {}"), $len, bytes.len()).into()
                })
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <Vec<u8> as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <Vec<u8> as Type<Postgres>>::compatible(ty)
            }
        }

        impl Decode<'_, Postgres> for $name {
            fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
                let bytes = <&[u8] as Decode<Postgres>>::decode(value)?;
                $name::from_slice(bytes).ok_or_else(|| {
                    format!(concat!(stringify!($name), " must be {} bytes, got {}"), $len, bytes.len()).into()
                })
            }
        }
    };
}

/// A raw 32-byte Ed25519 public key; base58 at the API edge (api.md §2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);
fixed_bytes!(PublicKey, 32);

impl PublicKey {
    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).into_string()
    }

    /// Decodes base58 to exactly 32 bytes (whether they form a valid curve point is the
    /// authentication layer's concern).
    pub fn from_base58(s: &str) -> Option<Self> {
        let bytes = bs58::decode(s).into_vec().ok()?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base58())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base58())
    }
}

/// The SHA-256 of a session token: only this is stored, never the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TokenHash(pub [u8; 32]);
fixed_bytes!(TokenHash, 32);

/// A 32-byte challenge nonce.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Nonce(pub [u8; 32]);
fixed_bytes!(Nonce, 32);

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);
fixed_bytes!(Signature, 64);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// The SHA-256 of a media blob as 64 lowercase hex characters: the media id of the API and the
/// blob's key in the media store.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    /// Only 64 lowercase hex characters are a content hash.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| ContentHash(s.to_owned()))
    }

    pub fn from_digest(digest: [u8; 32]) -> Self {
        ContentHash(hex::encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_canonical() {
        assert_eq!("42".parse::<UserId>(), Ok(UserId(42)));
        assert_eq!("9223372036854775807".parse::<UserId>(), Ok(UserId(i64::MAX)));
        for bad in ["", "0", "042", "-1", "+1", "1.0", "9223372036854775808", "12a", " 1"] {
            assert_eq!(bad.parse::<UserId>(), Err(InvalidId), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_keep_microseconds_only() {
        let at = Timestamp::parse_rfc3339("2026-04-10T10:15:30.123456789+02:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-04-10T08:15:30.123456Z");
        assert_eq!(Timestamp::from_micros(at.as_micros()), Some(at));
        assert_eq!(Timestamp::from_micros(0).unwrap().to_rfc3339(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn content_hash_is_lowercase_hex_of_64() {
        assert!(ContentHash::parse(&"a".repeat(64)).is_some());
        assert!(ContentHash::parse(&"A".repeat(64)).is_none());
        assert!(ContentHash::parse(&"a".repeat(63)).is_none());
        assert!(ContentHash::parse(&"g".repeat(64)).is_none());
    }

    #[test]
    fn public_key_base58_round_trip() {
        let key = PublicKey::from_base58("AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9").unwrap();
        assert_eq!(key.to_base58(), "AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9");
        assert!(PublicKey::from_base58("abc").is_none());
    }
}
