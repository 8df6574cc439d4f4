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
/// An upload body that sends nothing for this long is abandoned (api.md §1.7).
pub const UPLOAD_IDLE: Duration = Duration::from_secs(30);

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
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
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

fn is_upload(path: &str) -> bool {
    path.ends_with("/attachments") || path == "/api/v1/profile/avatar"
}

/// Whether the 30 s request timeout applies: not to uploads, media downloads or the gateway.
fn timeout_applies(path: &str) -> bool {
    !(path.starts_with("/api/v1/media/") || path == "/api/v1/gateway" || is_upload(path))
}

/// 408 `request timed out` after 30 s, where the timeout applies; uploads instead fail when
/// their body sends nothing for [`UPLOAD_IDLE`] (see [`UploadStalled`]).
pub async fn timeout(mut req: Request, next: Next) -> Response {
    if is_upload(req.uri().path()) {
        let body = std::mem::take(req.body_mut());
        *req.body_mut() = idle_limited(body, UPLOAD_IDLE);
        return next.run(req).await;
    }
    if !timeout_applies(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
    }
}

/// The error an upload body yields when no byte arrived for [`UPLOAD_IDLE`]; handlers find it
/// in their multipart errors with [`upload_stalled`] and answer 408 (the connection closes).
#[derive(Debug, thiserror::Error)]
#[error("no data received for {} s", UPLOAD_IDLE.as_secs())]
pub struct UploadStalled;

/// Whether `err` (or one of its causes) is [`UploadStalled`].
pub fn upload_stalled(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<UploadStalled>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// 408 for a stalled upload.
pub fn upload_timed_out() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!("upload timed out: no data received for {} s", UPLOAD_IDLE.as_secs()),
    )
}

/// `body`, failing with [`UploadStalled`] when no data arrives for `idle`.
fn idle_limited(body: axum::body::Body, idle: Duration) -> axum::body::Body {
    use futures::StreamExt;
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let stream = body.into_data_stream();
    axum::body::Body::from_stream(futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(BoxError::from), Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(BoxError::from(UploadStalled)), None)),
        }
    }))
}

/// Answers 503 `database unavailable` for a request still running `storage.acquire_timeout_seconds`
/// after it started while the database does not answer (api.md §1.5): a request stuck on a
/// connection that went silent would otherwise hang until the network gives up. Its work is
/// abandoned (an open transaction rolls back); its response is never sent.
pub async fn fail_fast(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let patience = Duration::from_secs(state.config.storage.acquire_timeout_seconds);
    let database = state.database.clone();
    let give_up = async move {
        tokio::time::sleep(patience).await;
        database.wait_down().await;
    };
    tokio::select! {
        response = next.run(req) => response,
        () = give_up => ApiError::database_unavailable().into_response(),
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
