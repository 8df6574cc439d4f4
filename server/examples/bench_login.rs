//! Used by `just bench-api`: logs in to a running server with a fixed Ed25519 key (the real
//! challenge/verify flow), creates a channel with a few messages, and prints
//! `<token> <channel_id>` for the load generator.
//!
//!     bench_login http://127.0.0.1:8080

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

#[path = "common/login.rs"]
mod login;

#[tokio::main]
async fn main() {
    let base = std::env::args().nth(1).expect("usage: bench_login <base url>");
    let http = reqwest::Client::new();
    // The first user of a fresh server is its admin.
    let token = login::login(&http, &base, &SigningKey::from_bytes(&[42; 32])).await;

    let channel: Value = http
        .post(format!("{base}/api/v1/channels"))
        .bearer_auth(&token)
        .json(&json!({ "name": "bench" }))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("create channel")
        .json()
        .await
        .unwrap();
    let channel_id = channel["id"].as_str().unwrap().to_owned();
    for i in 0..100 {
        http.post(format!("{base}/api/v1/channels/{channel_id}/messages"))
            .bearer_auth(&token)
            .json(&json!({ "content": format!("warm-up message {i}") }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("post message");
    }
    println!("{token} {channel_id}");
}
