//! `GET /health` and `GET /api/v1/server/info`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::config::MembershipMode;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// How long `/health` waits for each dependency: a load balancer's probe gets its answer within
/// 2 s even while the database or the media store does not answer at all (api.md §3.1).
const HEALTH_BUDGET: Duration = Duration::from_millis(1500);

/// 200 after a trivial database query and a media store request; 503 naming what is down.
#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, body = Health),
        (status = 503, description = "database unavailable / media store unavailable / both")))]
pub async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    let (database, media) = tokio::join!(
        tokio::time::timeout(HEALTH_BUDGET, state.storage.ping()),
        tokio::time::timeout(HEALTH_BUDGET, state.media.check()),
    );
    let database_up = matches!(database, Ok(Ok(())));
    let media_up = matches!(media, Ok(Ok(())));
    let down = match (database_up, media_up) {
        (true, true) => return Ok(Json(Health { status: "ok" })),
        (false, true) => "database unavailable",
        (true, false) => "media store unavailable",
        (false, false) => "database and media store unavailable",
    };
    tracing::warn!(database_up, media_up, "health check failed");
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, down))
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

/// The server's name, description, membership mode and icon.
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
pub async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi.as_ref().clone())
}
