//! The one API error type, mapped to an HTTP status and a JSON body `{"error": "..."}` in one
//! place (api.md §1.5). Storage errors are translated here; database text never reaches a client.

use axum::Json;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::storage::{Conflict, StorageError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    pub fn database_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

impl From<StorageError> for ApiError {
    /// The generic translation; handlers that know which entity or conflict they risk map those
    /// cases to api.md's fixed messages before falling back to this.
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(source) => {
                tracing::error!(error = %source, "database unavailable");
                ApiError::database_unavailable()
            }
            StorageError::NotFound(entity) => ApiError::not_found(format!("{entity} not found")),
            StorageError::Conflict(Conflict::LastAdmin) => {
                ApiError::new(StatusCode::CONFLICT, "the server must keep at least one administrator")
            }
            other => {
                tracing::error!(error = ?other, "storage error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // A request that timed out may have left part of its body unread: the connection
            // cannot carry another request.
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
