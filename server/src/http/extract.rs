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
use serde::Deserialize;
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
/// position) and no string that `T` reads may hold U+0000 (unknown fields are ignored, NUL or
/// not).
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
    // A NUL can only arrive escaped (`\\u0000`): without the escape, read the body directly.
    if memchr::memmem::find(bytes, b"\\u0000").is_none() {
        return match axum::Json::<T>::from_bytes(bytes) {
            Ok(axum::Json(value)) => Ok(value),
            Err(rejection) => Err(json_rejection(rejection, limit)),
        };
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {err}")))?;
    let mut ignored: Vec<Vec<String>> = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| ignored.push(segments(&path));
    let read = serde_ignored::Deserializer::new(&value, &mut note);
    let typed: T = serde_path_to_error::deserialize(read).map_err(|err| data_error(&err.to_string()))?;
    refuse_nul_in_json(&value, &mut Vec::new(), &ignored)?;
    Ok(typed)
}

/// The keys and indexes of a path serde_ignored reports.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(index.to_string()),
        Path::Map { key, .. } => out.push(key.clone()),
        _ => {}
    }
    out
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

/// [`refuse_nul`] over every string of a JSON value but those under `ignored` paths; `path` is
/// where `value` stands (keys and indexes), named in the error as
/// `delegation_certificate.device_name` or `attachment_ids[0]`.
fn refuse_nul_in_json(
    value: &serde_json::Value,
    path: &mut Vec<String>,
    ignored: &[Vec<String>],
) -> Result<(), ApiError> {
    refuse_nul_at(value, path, &mut String::new(), ignored)
}

fn refuse_nul_at(
    value: &serde_json::Value,
    path: &mut Vec<String>,
    shown: &mut String,
    ignored: &[Vec<String>],
) -> Result<(), ApiError> {
    use serde_json::Value;
    if ignored.contains(path) {
        return Ok(());
    }
    let step = |path: &mut Vec<String>, shown: &mut String, segment: String, display: String, item: &Value| {
        let len = shown.len();
        path.push(segment);
        shown.push_str(&display);
        let checked = refuse_nul_at(item, path, shown, ignored);
        path.pop();
        shown.truncate(len);
        checked
    };
    match value {
        Value::String(text) => refuse_nul(if shown.is_empty() { "body" } else { shown }, text),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, item)| step(path, shown, i.to_string(), format!("[{i}]"), item))
        }
        Value::Object(fields) => fields.iter().try_for_each(|(name, item)| {
            let display = if shown.is_empty() { name.clone() } else { format!(".{name}") };
            step(path, shown, name.clone(), display, item)
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
        JsonRejection::JsonDataError(e) => data_error(&source_text(&e)),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(limit),
        other => ApiError::new(other.status(), other.body_text()),
    }
}

/// A body of the wrong shape: 400 `invalid id: <field>` for a malformed id, else 422.
fn data_error(detail: &str) -> ApiError {
    match invalid_id_field(detail) {
        Some(field) => ApiError::new(StatusCode::BAD_REQUEST, format!("invalid id: {field}")),
        None => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid request body: {detail}")),
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

/// The largest integer every JSON reader holds exactly (JavaScript's `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// An integer field of a JSON body, within ±[`MAX_SAFE_INTEGER`]. JSON has one number type, and
/// JSON Schema's `integer` takes `51.0` as well as `51`: both are read as 51; `51.5` or a number
/// beyond the safe range (where `…808` and `…809` are the same float) is a type error.
pub fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::de::{Error, Unexpected};
    const SAFE: f64 = MAX_SAFE_INTEGER as f64;
    let number = serde_json::Number::deserialize(deserializer)?;
    let value = match (number.as_i64(), number.as_f64()) {
        (Some(n), _) => Some(n).filter(|n| n.abs() <= MAX_SAFE_INTEGER),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() <= SAFE => Some(f as i64),
        _ => None,
    };
    value.ok_or_else(|| match number.as_f64() {
        Some(f) => D::Error::invalid_value(Unexpected::Float(f), &"an integer within ±9007199254740991"),
        None => D::Error::invalid_value(Unexpected::Other("number"), &"an integer within ±9007199254740991"),
    })
}

/// [`integer`] for an optional field (`null` counts as absent, api.md §1.1).
pub fn optional_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Integer(#[serde(deserialize_with = "integer")] i64);
    Ok(Option::<Integer>::deserialize(deserializer)?.map(|Integer(n)| n))
}

/// [`optional_integer`] for a 32-bit field (a type error beyond it).
pub fn optional_i32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    use serde::de::{Error, Unexpected};
    optional_integer(deserializer)?
        .map(|n| i32::try_from(n).map_err(|_| D::Error::invalid_value(Unexpected::Signed(n), &"a 32-bit integer")))
        .transpose()
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
