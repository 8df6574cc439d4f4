//! The worked example of `docs/api/auth.md` is recomputed here with the server's own code: the
//! public key of the seed it names, the challenge of its nonce, the signature a client sends, and
//! the delegation certificate's canonical bytes and signature. A reader may use them as test
//! vectors, so they must be right.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use decentcom::auth::{DeviceCertificate, challenge_text};
use decentcom::storage::{DevicePermissions, Nonce};
use ed25519_dalek::{Signer, SigningKey};
use pretty_assertions::assert_eq;

const AUTH_MD: &str = include_str!("../../../docs/api/auth.md");

fn pubkey(key: &SigningKey) -> String {
    bs58::encode(key.verifying_key().to_bytes()).into_string()
}

/// Fails listing what the page does not say.
fn assert_page_says(values: &[(&str, String)]) {
    let missing: Vec<String> =
        values.iter().filter(|(_, v)| !AUTH_MD.contains(v.as_str())).map(|(what, v)| format!("{what}: {v}")).collect();
    assert_eq!(missing, Vec::<String>::new(), "docs/api/auth.md does not show these values");
}

#[test]
fn the_login_example_is_correct() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let nonce: [u8; 32] = std::array::from_fn(|i| i as u8);
    let challenge = challenge_text(&Nonce(nonce), false);
    let signature = BASE64.encode(key.sign(challenge.as_bytes()).to_bytes());
    assert_page_says(&[("public key of seed 01×32", pubkey(&key)), ("challenge", challenge), ("signature", signature)]);
}

#[test]
fn the_certificate_example_is_correct() {
    let master = SigningKey::from_bytes(&[1; 32]);
    let device = SigningKey::from_bytes(&[2; 32]);
    // The hex groups of the paragraph that spells the canonical bytes out.
    let paragraph =
        AUTH_MD.split("these are 115 bytes:").nth(1).expect("the canonical bytes").split("\n\n").next().unwrap();
    let hex: String = paragraph.split('`').skip(1).step_by(2).collect();
    let bytes = hex::decode(&hex).expect("hex");
    assert_eq!(bytes.len(), 115);
    let certificate = DeviceCertificate::decode(&bytes).expect("the server decodes the bytes");
    assert_eq!(certificate.canonical_bytes(), bytes);
    assert_eq!(certificate.master_pubkey.to_base58(), pubkey(&master));
    assert_eq!(certificate.device_pubkey.to_base58(), pubkey(&device));
    assert_eq!(certificate.device_name, "Laptop");
    assert_eq!(certificate.issued_at, 1_775_779_200, "2026-04-10T00:00:00Z");
    assert_eq!(certificate.expires_at, Some(1_807_315_200), "2027-04-10T00:00:00Z");
    assert_eq!(certificate.permissions, DevicePermissions::all());
    let signature = BASE64.encode(master.sign(&bytes).to_bytes());
    assert_page_says(&[
        ("master key", pubkey(&master)),
        ("device key", pubkey(&device)),
        ("certificate signature", signature),
    ]);
}
