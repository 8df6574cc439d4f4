//! Extractors that turn framework rejections into api.md's JSON errors (§1.5): wrappers around
//! axum's `Json`, `Path` and `Query`, and helpers for ids given as text.

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::middleware::JsonBodyLimit;
use crate::storage::types::INVALID_ID;

/// A JSON body. Missing/wrong content type → 415; syntax → 400; missing or mistyped fields → 422;
/// a malformed id in a field → 400 `invalid id: <field>`; too large → 413.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<JsonBodyLimit>().map(|l| l.0);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection, limit)),
        }
    }
}

/// An optional JSON body: an empty body (no Content-Length, or 0) counts as `{}`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<JsonBodyLimit>().map(|l| l.0);
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, limit.unwrap_or(usize::MAX)).await.map_err(|_| too_large(limit))?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        Json::<T>::from_request(req, state).await.map(|Json(v)| OptionalJson(v))
    }
}

fn json_rejection(rejection: JsonRejection, limit: Option<usize>) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json")
        }
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
