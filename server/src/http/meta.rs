//! `GET /health` and `GET /api/v1/server/info`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::config::MembershipMode;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// 200 after a trivial database query, 503 `database unavailable` when it fails.
#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, body = Health), (status = 503, description = "database unavailable")))]
pub async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    state.storage.ping().await.map_err(|err| {
        tracing::warn!(error = %err, "health check failed");
        ApiError::database_unavailable()
    })?;
    Ok(Json(Health { status: "ok" }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerInfo {
    name: String,
    description: Option<String>,
    /// `open`, `invite_only`, `allowlist` or `closed`.
    #[schema(value_type = String)]
    membership_mode: MembershipMode,
    /// The server icon's media id.
    icon: Option<String>,
}

#[utoipa::path(get, path = "/server/info", tag = "meta", responses((status = 200, body = ServerInfo)))]
pub async fn server_info(State(state): State<AppState>) -> Json<ServerInfo> {
    let config = &state.config;
    Json(ServerInfo {
        name: config.server.name.clone(),
        description: config.server.description.clone(),
        membership_mode: config.membership_mode(),
        icon: state.icon.as_ref().map(|hash| hash.to_string()),
    })
}

/// The OpenAPI 3.1 document of every route, generated from the same registrations as the router.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(super::openapi())
}
