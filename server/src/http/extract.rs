//! Extractors that turn framework rejections into api.md's JSON errors (§1.5): wrappers around
//! axum's `Json`, `Path` and `Query`, and helpers for ids given as text.
//!
//! They are also the one place where text input is checked for U+0000 (api.md §1.1), which
//! PostgreSQL cannot store: every JSON body, path parameter and query parameter passes through
//! [`refuse_nul`] or [`refuse_nul_in_json`] before a handler sees it, so both backends answer alike.

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::error::ApiError;
use super::middleware::JsonBodyLimit;
use crate::storage::types::INVALID_ID;

/// A JSON body. Missing/wrong content type → 415; syntax → 400; anything but an object, missing
/// or mistyped fields, or U+0000 in a string → 422; a malformed id in a field → 400
/// `invalid id: <field>`; too large → 413.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<JsonBodyLimit>().map(|l| l.0);
        if !is_json_content_type(req.headers()) {
            return Err(not_json());
        }
        let bytes = read_body(req, state, limit).await?;
        parse_json_object(&bytes, limit).map(Json)
    }
}

/// An optional JSON body: an empty body (no Content-Length, or 0) counts as `{}`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<JsonBodyLimit>().map(|l| l.0);
        let content_type_ok = is_json_content_type(req.headers());
        let bytes = read_body(req, state, limit).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if !content_type_ok {
            return Err(not_json());
        }
        parse_json_object(&bytes, limit).map(OptionalJson)
    }
}

fn not_json() -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json")
}

/// The whole body, within the JSON body limit (413 naming it).
async fn read_body<S: Send + Sync>(req: Request, state: &S, limit: Option<usize>) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(limit),
        status => ApiError::new(status, rejection.body_text()),
    })
}

/// `application/json`, or any `application/*+json`, parameters allowed (as axum's `Json`).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body as `T`, after the checks of api.md §1.1: it must be a JSON object (never matched by
/// position) and no string in it may hold U+0000.
fn parse_json_object<T: DeserializeOwned>(bytes: &[u8], limit: Option<usize>) -> Result<T, ApiError> {
    let starts_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !starts_object {
        // Not an object: say whether it is JSON at all before anything reads it as a struct
        // (serde would match an array's items to fields by position).
        return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid request body: expected a JSON object"),
            Err(err) => ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {err}")),
        });
    }
    // A NUL can only arrive escaped (`\u0000`): look for the escape before walking the body.
    if memchr::memmem::find(bytes, b"\\u0000").is_some()
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        refuse_nul_in_json(&value, &mut String::new())?;
    }
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => Err(json_rejection(rejection, limit)),
    }
}

/// 422 `<field> must not contain NUL characters` when `value` holds U+0000 (api.md §1.1).
pub fn refuse_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field} must not contain NUL characters"),
        ));
    }
    Ok(())
}

/// [`refuse_nul`] over every string of a JSON value; `path` names where it stands
/// (`delegation_certificate.device_name`, `attachment_ids[0]`).
fn refuse_nul_in_json(value: &serde_json::Value, path: &mut String) -> Result<(), ApiError> {
    use serde_json::Value;
    match value {
        Value::String(text) => refuse_nul(if path.is_empty() { "body" } else { path }, text),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let checked = refuse_nul_in_json(item, path);
            path.truncate(len);
            checked
        }),
        Value::Object(fields) => fields.iter().try_for_each(|(name, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            let checked = refuse_nul(path, name).and_then(|()| refuse_nul_in_json(item, path));
            path.truncate(len);
            checked
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn json_rejection(rejection: JsonRejection, limit: Option<usize>) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => not_json(),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {}", source_text(&e)))
        }
        JsonRejection::JsonDataError(e) => {
            let detail = source_text(&e);
            match invalid_id_field(&detail) {
                Some(field) => ApiError::new(StatusCode::BAD_REQUEST, format!("invalid id: {field}")),
                None => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid request body: {detail}")),
            }
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(limit),
        other => ApiError::new(other.status(), other.body_text()),
    }
}

fn too_large(limit: Option<usize>) -> ApiError {
    let message = match limit {
        Some(n) => format!("request body too large (limit {n} bytes)"),
        None => "request body too large".to_owned(),
    };
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
}

/// The innermost error text (serde's message with its field path), without axum's prefix.
fn source_text(err: &dyn std::error::Error) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `attachment_ids[0]: invalid id at line 1 column 9` → `attachment_ids`.
fn invalid_id_field(detail: &str) -> Option<String> {
    let (path, rest) = detail.split_once(": ")?;
    if !rest.starts_with(INVALID_ID) {
        return None;
    }
    let field = path.rsplit('.').next().unwrap_or(path);
    Some(field.split('[').next().unwrap_or(field).to_owned())
}

/// Path parameters. A malformed id → 400 `invalid id: <name>`; anything else →
/// 400 `invalid path parameter: …`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            raw.iter().try_for_each(|(name, value)| refuse_nul(name, value))?;
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(match e.into_kind() {
                ErrorKind::DeserializeError { key, message, .. } if message == INVALID_ID => {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("invalid id: {key}"))
                }
                kind => ApiError::new(StatusCode::BAD_REQUEST, format!("invalid path parameter: {kind}")),
            }),
            Err(other) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, format!("invalid path parameter: {}", other.body_text())))
            }
        }
    }
}

/// A query string; any rejection → 400 `invalid query string: …`. Ids in queries are taken as
/// text and parsed with [`parse_id`] so the error can name the parameter.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        url::form_urlencoded::parse(raw.as_bytes()).try_for_each(|(name, value)| refuse_nul(&name, &value))?;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, format!("invalid query string: {}", source_text(&e))))
            }
            Err(other) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, format!("invalid query string: {}", other.body_text())))
            }
        }
    }
}

/// Parses an id given as text; 400 `invalid id: <name>` otherwise.
pub fn parse_id<T: FromStr>(name: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid id: {name}")))
}

/// Parses an optional id query parameter.
pub fn parse_opt_id<T: FromStr>(name: &str, raw: Option<&str>) -> Result<Option<T>, ApiError> {
    raw.map(|raw| parse_id(name, raw)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_id_errors_name_the_field() {
        assert_eq!(
            invalid_id_field("attachment_ids[0]: invalid id at line 1 column 9").as_deref(),
            Some("attachment_ids")
        );
        assert_eq!(invalid_id_field("grant_role_id: invalid id at line 1 column 3").as_deref(), Some("grant_role_id"));
        assert_eq!(invalid_id_field("content: invalid type: integer `1`, expected a string"), None);
    }
}
