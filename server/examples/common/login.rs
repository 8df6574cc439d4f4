//! The real login flow for the benchmark examples (included with `#[path]`; not an example itself).

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

/// Challenge, sign the challenge text, verify; returns the session token.
pub async fn login(http: &reqwest::Client, base: &str, key: &SigningKey) -> String {
    let pubkey = bs58::encode(key.verifying_key().to_bytes()).into_string();
    let challenge: Value = http
        .post(format!("{base}/api/v1/auth/challenge"))
        .json(&json!({ "pubkey": pubkey }))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("challenge")
        .json()
        .await
        .expect("challenge body");
    let text = challenge["challenge"].as_str().expect("a challenge");
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(text.as_bytes()).to_bytes());
    let verify: Value = http
        .post(format!("{base}/api/v1/auth/verify"))
        .json(&json!({ "pubkey": pubkey, "signature": signature }))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("verify")
        .json()
        .await
        .expect("verify body");
    verify["token"].as_str().expect("a token").to_owned()
}
