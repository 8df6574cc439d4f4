//! `GET`/`HEAD /api/v1/media/{media_id}` (api.md §3.5 "Serving"): no authentication; the media
//! row decides existence; the bytes come from [`crate::media::Blobs`] — streamed, never buffered —
//! or, for a provider that serves media itself, as a 302 to a pre-signed URL.

use std::ops::Range;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_SECURITY_POLICY,
    CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION, RANGE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use crate::media::{BlobError, content_disposition};
use crate::storage::ContentHash;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_media))
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn media_not_found() -> ApiError {
    ApiError::not_found("media not found")
}

fn store_unavailable(err: BlobError) -> ApiError {
    tracing::error!(error = %err, "media store unavailable");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "media store unavailable")
}

/// The bytes of an attachment, avatar or the server icon, by content hash.
#[utoipa::path(method(get, head), path = "/media/{media_id}", tag = "media",
    params(
        ("media_id" = String, Path, description = "SHA-256 of the bytes, 64 lowercase hex characters"),
        ("Range" = Option<String>, Header,
            description = "one range: `bytes=a-b`, `bytes=a-` or `bytes=-n` (anything else: the whole file)"),
        ("If-None-Match" = Option<String>, Header, description = "the ETag of a copy the client holds"),
    ),
    responses(
        (status = 200, description = "the whole file (local disk)", content_type = "application/octet-stream",
            headers(
                ("Content-Type" = String, description = "the stored type"),
                ("Content-Length" = u64),
                ("ETag" = String, description = "the content hash, quoted"),
                ("Cache-Control" = String, description = "public, max-age=31536000, immutable"),
                ("Accept-Ranges" = String, description = "bytes"),
                ("Content-Disposition" = String, description = "inline for images, video and audio; attachment otherwise"),
                ("X-Content-Type-Options" = String, description = "nosniff"),
                ("Content-Security-Policy" = String, description = "sandbox"),
            )),
        (status = 206, description = "the requested range (local disk)", content_type = "application/octet-stream",
            headers(
                ("Content-Range" = String, description = "bytes a-b/size"),
                ("Content-Length" = u64),
                ("ETag" = String, description = "the content hash, quoted"),
            )),
        (status = 302, description = "a pre-signed GET URL of the object (S3 provider)",
            headers(
                ("Location" = String, description = "valid for storage.media.presign_ttl_seconds"),
                ("Cache-Control" = String, description = "private, max-age=<presign_ttl_seconds / 2>"),
            )),
        (status = 304, description = "If-None-Match matched the ETag",
            headers(("ETag" = String, description = "the content hash, quoted"))),
        (status = 404, description = "media not found (also for a malformed id)"),
        (status = 416, description = "unsatisfiable range",
            headers(("Content-Range" = String, description = "bytes */<size>"))),
        (status = 503, description = "database or media store unavailable"),
    ))]
pub async fn get_media(
    State(state): State<AppState>,
    method: Method,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let hash = ContentHash::parse(&media_id).ok_or_else(media_not_found)?;
    let media = state.storage.get_media(&hash).await?.ok_or_else(media_not_found)?;
    let mime = media.mime_type.as_str();

    if let Some(redirect) = state.media.redirect_for(&hash, mime).await.map_err(store_unavailable)? {
        let mut response = StatusCode::FOUND.into_response();
        let headers = response.headers_mut();
        headers.insert(LOCATION, header_value(&redirect.location)?);
        headers.insert(CACHE_CONTROL, header_value(&format!("private, max-age={}", redirect.max_age_seconds))?);
        return Ok(response);
    }

    let etag = format!("\"{hash}\"");
    let size = u64::try_from(media.size_bytes).map_err(|_| ApiError::internal())?;
    if if_none_match(&headers, &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        let h = response.headers_mut();
        h.insert(ETAG, header_value(&etag)?);
        h.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        return Ok(response);
    }

    let range = match headers.get(RANGE).map(|v| parse_range(v.as_bytes(), size)) {
        None | Some(RangeRequest::Whole) => None,
        Some(RangeRequest::Partial(range)) => Some(range),
        Some(RangeRequest::Unsatisfiable) => {
            let mut response =
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable").into_response();
            response.headers_mut().insert(CONTENT_RANGE, header_value(&format!("bytes */{size}"))?);
            return Ok(response);
        }
    };

    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let stream = state.media.open(&hash, range.clone()).await.map_err(store_unavailable)?;
        match stream {
            Some(stream) => Body::from_stream(stream),
            None => {
                tracing::warn!(hash = %hash, "media row without its blob");
                return Err(media_not_found());
            }
        }
    };

    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, header_value(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(ETAG, header_value(&etag)?);
    h.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    h.insert(CONTENT_DISPOSITION, HeaderValue::from_static(content_disposition(mime)));
    if let Some(r) = &range {
        h.insert(CONTENT_RANGE, header_value(&format!("bytes {}-{}/{size}", r.start, r.end - 1))?);
    }
    Ok(response)
}

fn header_value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| ApiError::internal())
}

/// Whether `If-None-Match` names this ETag (or is `*`); weak validators compare equal.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
    })
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Several ranges or a malformed header: the whole file with 200.
    Whole,
    /// One satisfiable range (end exclusive).
    Partial(Range<u64>),
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `size` bytes.
fn parse_range(header: &[u8], size: u64) -> RangeRequest {
    let Some(spec) = std::str::from_utf8(header).ok().and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial(size.saturating_sub(n)..size),
        },
        (start, "") => match number(start) {
            None => RangeRequest::Whole,
            Some(a) if a >= size => RangeRequest::Unsatisfiable,
            Some(a) => RangeRequest::Partial(a..size),
        },
        (start, end) => match (number(start), number(end)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= size {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Partial(a..b.min(size - 1) + 1)
                }
            }
            _ => RangeRequest::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"bytes=0-9", 100), Partial(0..10));
        assert_eq!(parse_range(b"bytes=90-200", 100), Partial(90..100));
        assert_eq!(parse_range(b"bytes=90-", 100), Partial(90..100));
        assert_eq!(parse_range(b"bytes=-10", 100), Partial(90..100));
        assert_eq!(parse_range(b"bytes=-1000", 100), Partial(0..100));
        assert_eq!(parse_range(b"bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=100-120", 100), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range(b"bytes=5-1", 100), Whole);
        assert_eq!(parse_range(b"bytes=x-1", 100), Whole);
        assert_eq!(parse_range(b"items=0-1", 100), Whole);
        assert_eq!(parse_range(b"bytes=-", 100), Whole);
    }

    #[test]
    fn etags() {
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(if_none_match(&headers, "\"b\""));
        assert!(!if_none_match(&headers, "\"c\""));
    }
}
