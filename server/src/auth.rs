//! Identity cryptography (api.md §2): challenge texts, strict Ed25519 verification, session
//! tokens, and the fixed binary encoding of device delegation certificates.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature as DalekSignature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::storage::{DevicePermissions, Nonce, PublicKey, Signature, Timestamp, TokenHash};

/// Challenges are valid for this long.
pub const CHALLENGE_TTL_SECONDS: i64 = 300;
/// Tolerated clock skew for a certificate's `issued_at`.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// Parses a base58 public key that must be 32 bytes forming a valid Ed25519 point.
pub fn parse_public_key(s: &str) -> Option<PublicKey> {
    let key = PublicKey::from_base58(s)?;
    VerifyingKey::from_bytes(&key.0).ok()?;
    Some(key)
}

/// Parses a standard, padded base64 signature of exactly 64 bytes.
pub fn parse_signature(s: &str) -> Option<Signature> {
    Signature::from_slice(&BASE64.decode(s).ok()?)
}

pub fn encode_signature(signature: &Signature) -> String {
    BASE64.encode(signature.0)
}

/// The text the client signs: base64 of the nonce, plus `|bot` for a bot login.
pub fn challenge_text(nonce: &Nonce, is_bot: bool) -> String {
    let mut text = BASE64.encode(nonce.0);
    if is_bot {
        text.push_str("|bot");
    }
    text
}

/// Strict Ed25519 verification (`verify_strict`) of `message` by `key`.
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&key.0) else { return false };
    key.verify_strict(message, &DalekSignature::from_bytes(&signature.0)).is_ok()
}

/// A new session token (16 CSPRNG bytes as 32 lowercase hex characters) and its stored hash.
pub fn new_session_token() -> (String, TokenHash) {
    let token = hex::encode(rand::random::<[u8; 16]>());
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// A fresh challenge nonce from the OS CSPRNG.
pub fn new_nonce() -> Nonce {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random source is available");
    Nonce(bytes)
}

/// A delegation certificate's signed fields (api.md §2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub master_pubkey: PublicKey,
    pub device_pubkey: PublicKey,
    /// Whole seconds.
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub permissions: DevicePermissions,
    /// 1–64 bytes of UTF-8, byte for byte.
    pub device_name: String,
}

const MAGIC: &[u8; 21] = b"decentcom-device-cert";
const VERSION: u8 = 1;

impl DeviceCertificate {
    /// The canonical bytes the master key signs: big-endian integers, no padding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let name = self.device_name.as_bytes();
        let mut out = Vec::with_capacity(109 + name.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.master_pubkey.0);
        out.extend_from_slice(&self.device_pubkey.0);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.push(u8::from(self.expires_at.is_some()));
        out.extend_from_slice(&self.expires_at.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&(self.permissions.bits() as u32).to_be_bytes());
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out
    }

    /// Decodes canonical bytes, rejecting any other magic, version, length, unknown permission
    /// bits, or a non-zero expiry without has_expiry.
    pub fn decode(bytes: &[u8]) -> Option<DeviceCertificate> {
        if bytes.len() < 109 || &bytes[..21] != MAGIC || bytes[21] != VERSION {
            return None;
        }
        let key = |at: usize| PublicKey::from_slice(&bytes[at..at + 32]);
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let has_expiry = bytes[94];
        let expires_raw = i64_at(95);
        let expires_at = match has_expiry {
            0 if expires_raw == 0 => None,
            1 => Some(expires_raw),
            _ => return None,
        };
        let permissions = u32::from_be_bytes(bytes[103..107].try_into().expect("4 bytes"));
        let permissions = DevicePermissions::from_bits(i64::from(permissions))?;
        let name_len = usize::from(u16::from_be_bytes([bytes[107], bytes[108]]));
        if !(1..=64).contains(&name_len) || bytes.len() != 109 + name_len {
            return None;
        }
        Some(DeviceCertificate {
            master_pubkey: key(22)?,
            device_pubkey: key(54)?,
            issued_at: i64_at(86),
            expires_at,
            permissions,
            device_name: String::from_utf8(bytes[109..].to_vec()).ok()?,
        })
    }

    pub fn issued_at_timestamp(&self) -> Option<Timestamp> {
        Timestamp::from_micros(self.issued_at.checked_mul(1_000_000)?)
    }

    pub fn expires_at_timestamp(&self) -> Option<Option<Timestamp>> {
        match self.expires_at {
            None => Some(None),
            Some(s) => Timestamp::from_micros(s.checked_mul(1_000_000)?).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn challenge_test_vector() {
        let nonce = Nonce(std::array::from_fn(|i| i as u8));
        let text = challenge_text(&nonce, false);
        assert_eq!(text, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        assert_eq!(challenge_text(&nonce, true), format!("{text}|bot"));

        let signing = SigningKey::from_bytes(&[1; 32]);
        let key = parse_public_key("AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9").unwrap();
        assert_eq!(key.0, signing.verifying_key().to_bytes());
        let signature =
            parse_signature("mDS/JqGu19H7NfCXc0qJRBXcj4ocsqrfnZtZOWeRUHWQx7sRL1WTRDTY7EVzrt/7F5LnF7g+fRcSzIHl46CJDg==")
                .unwrap();
        assert_eq!(signature.0, signing.sign(text.as_bytes()).to_bytes());
        assert!(verify(&key, text.as_bytes(), &signature));
        assert!(!verify(&key, b"something else", &signature));
    }

    #[test]
    fn device_certificate_test_vector() {
        let master = SigningKey::from_bytes(&[1; 32]);
        let device = SigningKey::from_bytes(&[2; 32]);
        let cert = DeviceCertificate {
            master_pubkey: PublicKey(master.verifying_key().to_bytes()),
            device_pubkey: PublicKey(device.verifying_key().to_bytes()),
            issued_at: Timestamp::parse_rfc3339("2026-04-10T00:00:00Z").unwrap().as_micros() / 1_000_000,
            expires_at: Some(Timestamp::parse_rfc3339("2027-04-10T00:00:00Z").unwrap().as_micros() / 1_000_000),
            permissions: DevicePermissions::SIGN_AUTH | DevicePermissions::SIGN_MESSAGES,
            device_name: "Laptop".into(),
        };
        let expected = concat!(
            "646563656e74636f6d2d6465766963652d63657274",
            "01",
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
            "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
            "0000000069d83d80",
            "01",
            "000000006bb97100",
            "00000003",
            "0006",
            "4c6170746f70"
        );
        let bytes = cert.canonical_bytes();
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(cert.device_pubkey.to_base58(), "9hSR6S7WPtxmTojgo6GG3k4yDPecgJY292j7xrsUGWBu");
        let signature =
            parse_signature("S1B3GRS4Ny8v1mw7MgW9LB3mZ90z2FA0c/ZNmigEZmdRS8GixSclYiut1IBtu6Pa4zt3JtoEkaJVrl1XwhwzCA==")
                .unwrap();
        assert!(verify(&cert.master_pubkey, &bytes, &signature));
        assert_eq!(DeviceCertificate::decode(&bytes), Some(cert));
    }

    #[test]
    fn decoder_rejects_malformed_certificates() {
        let cert = DeviceCertificate {
            master_pubkey: PublicKey([1; 32]),
            device_pubkey: PublicKey([2; 32]),
            issued_at: 1,
            expires_at: None,
            permissions: DevicePermissions::SIGN_AUTH,
            device_name: "x".into(),
        };
        let good = cert.canonical_bytes();
        assert!(DeviceCertificate::decode(&good).is_some());
        let mut bad_magic = good.clone();
        bad_magic[0] = b'D';
        let mut bad_version = good.clone();
        bad_version[21] = 2;
        let mut stray_expiry = good.clone();
        stray_expiry[102] = 1;
        let mut unknown_bits = good.clone();
        unknown_bits[106] = 4;
        let mut long = good.clone();
        long.push(b'y');
        for bad in [bad_magic, bad_version, stray_expiry, unknown_bits, long, good[..108].to_vec()] {
            assert_eq!(DeviceCertificate::decode(&bad), None);
        }
    }

    #[test]
    fn session_tokens_are_32_hex_and_hashed() {
        let (token, hash) = new_session_token();
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(hash_token(&token), hash);
        assert_ne!(new_nonce(), new_nonce());
    }

    #[test]
    fn keys_must_be_curve_points_and_signatures_64_bytes() {
        // Not every 32-byte string decompresses to a curve point; find one that does not.
        let off_curve = (0u8..=255)
            .map(|b| PublicKey([b; 32]))
            .find(|k| VerifyingKey::from_bytes(&k.0).is_err())
            .expect("some repeated byte is off the curve");
        assert_eq!(parse_public_key(&off_curve.to_base58()), None);
        assert_eq!(parse_public_key("3yZe7d"), None, "too short");
        assert!(parse_signature("AAAA").is_none());
        assert!(parse_signature("not base64!").is_none());
    }
}
