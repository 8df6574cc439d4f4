//! Cross-cutting request handling (api.md §1.7): request ids, the request timeout, and the JSON
//! body limit carried to the JSON extractor so its 413 can name the limit.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

pub const REQUEST_ID: &str = "x-request-id";
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request id of a request, as put in its extensions by [`request_id`].
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Keeps the client's `x-request-id` when it is 1–128 visible ASCII characters, otherwise draws
/// a new one; the id goes on the request's log span and back on the response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = {
        let _enter = span.enter();
        tracing::debug!("started");
        drop(_enter);
        tracing::Instrument::instrument(next.run(req), span.clone()).await
    };
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "finished"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Whether the 30 s request timeout applies: not to uploads, media downloads or the gateway.
fn timeout_applies(path: &str) -> bool {
    !(path.starts_with("/api/v1/media/")
        || path == "/api/v1/gateway"
        || path.ends_with("/attachments")
        || path == "/api/v1/profile/avatar")
}

/// 408 `request timed out` after 30 s, where the timeout applies.
pub async fn timeout(req: Request, next: Next) -> Response {
    if !timeout_applies(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
    }
}

/// The JSON body limit in force, for the 413 message.
#[derive(Clone, Copy, Debug)]
pub struct JsonBodyLimit(pub usize);

/// 65536 + 4 × `content.max_message_length` bytes.
pub fn json_body_limit(state: &AppState) -> usize {
    65_536 + 4 * state.config.content.max_message_length
}

pub async fn body_limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(JsonBodyLimit(json_body_limit(&state)));
    next.run(req).await
}
