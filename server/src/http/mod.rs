//! The HTTP server: REST API v1 and gateway over `Arc<dyn Storage>`.
//!
//! Handlers are grouped by resource (`meta.rs`, …), stay thin, and never see SQL: they call the
//! storage contract and map its results through [`error::ApiError`].

mod attachments;
mod auth;
mod channels;
pub mod common;
mod devices;
mod dms;
mod docs;
pub mod dto;
pub mod error;
pub mod extract;
mod gateway;
mod invites;
pub mod limits;
pub mod listener;
mod media;
mod members;
mod messages;
mod meta;
pub mod middleware;
pub mod openapi;
mod profiles;
mod reactions;
mod roles;
mod search;
pub mod session;
mod threads;
mod typing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::bus::{Audience, BusMessage, EventBus};
use crate::config::Config;
use crate::media::{Blobs, S3Credentials};
use crate::storage::health::DatabaseHealth;
use crate::storage::{self, ContentHash, Storage};
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub storage: Arc<dyn Storage>,
    pub events: Arc<EventBus>,
    pub media: Blobs,
    /// The server icon's media id, imported at startup.
    pub icon: Option<ContentHash>,
    /// Whether the database answers (requests stuck on a silent one fail fast, api.md §1.5).
    pub database: DatabaseHealth,
    /// The OpenAPI document of this server (its limits come from the configuration).
    pub openapi: Arc<serde_json::Value>,
    /// Cancelled when graceful shutdown begins: gateway connections close with 1001.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Publishes an event to the connections in `audience` (after the change is committed).
    pub async fn publish(&self, audience: Audience, op: &str, data: impl serde::Serialize) {
        self.events.publish(BusMessage::event(audience, op, data)).await;
    }
}

/// Text logs to stderr; `RUST_LOG` filters (default `info`). `serve` uses [`crate::logging::init`]
/// with its configuration.
pub fn init_tracing() {
    crate::logging::init(&Config::default());
}

/// The document's tags, in the order readers meet them (the viewer and `docs/api/routes.md`
/// follow it); every operation carries one of them.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "decentcom REST API", version = "1"),
    tags(
        (name = "meta", description = "Health, server information, this document and the page that renders it."),
        (name = "auth", description = "Logging in with an Ed25519 key: challenge, signature, session."),
        (name = "devices", description = "Device keys that act for a user through a delegation certificate."),
        (name = "channels", description = "Text channels."),
        (name = "messages", description = "Channel messages (and thread replies, edited and deleted through their channel)."),
        (name = "attachments", description = "File uploads, linked to a message when it is posted."),
        (name = "media", description = "Stored files by content hash: attachments, avatars, the server icon."),
        (name = "reactions", description = "One emoji reaction per user per message."),
        (name = "threads", description = "Threads on channel messages, their replies and followers."),
        (name = "typing", description = "Typing indicators (never stored)."),
        (name = "search", description = "Full-text search of the channels the caller can read."),
        (name = "dms", description = "Direct messages between two members."),
        (name = "roles", description = "Roles, role assignment and per-channel permission overrides."),
        (name = "members", description = "Joining and leaving, members, moderation, the allowlist and bot approval."),
        (name = "invites", description = "Invite codes and joining through them."),
        (name = "profiles", description = "Display names and avatars."),
        (name = "gateway", description = "The WebSocket that delivers events."),
    )
)]
struct ApiDoc;

/// The API routes under `/api/v1` with their OpenAPI description, built from the same
/// registrations so the document cannot miss a route.
fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            OpenApiRouter::new()
                .routes(routes!(meta::server_info))
                .routes(routes!(meta::openapi_json))
                .merge(docs::router())
                .merge(auth::router())
                .merge(devices::router())
                .merge(members::router())
                .merge(invites::router())
                .merge(profiles::router())
                .merge(channels::router())
                .merge(messages::router())
                .merge(reactions::router())
                .merge(threads::router())
                .merge(search::router())
                .merge(typing::router())
                .merge(dms::router())
                .merge(roles::router())
                .merge(attachments::router())
                .merge(media::router())
                .merge(gateway::router()),
        )
        .routes(routes!(meta::health))
        .split_for_parts()
}

/// The application: routes, JSON fallbacks and middleware.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes();
    let cors = cors(&state.config.network.allowed_origins);
    let rate_limits = Arc::new(limits::RateLimits::new(&state.config.limits, &state.config.network.trusted_proxies));
    rate_limits.spawn_cleaner(state.shutdown.clone());
    routes
        .fallback(|| async { ApiError::not_found("not found") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(axum::middleware::from_fn_with_state(rate_limits, limits::rate_limit))
        .layer(axum::extract::DefaultBodyLimit::max(middleware::json_body_limit(&state)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::body_limit))
        .layer(axum::middleware::from_fn(middleware::timeout))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::fail_fast))
        .layer(cors)
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

/// CORS (api.md §1.7): any origin when the list is empty, otherwise exactly the listed ones.
fn cors(origins: &[String]) -> CorsLayer {
    use axum::http::{HeaderName, Method, header};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE, header::IF_NONE_MATCH])
        .expose_headers([
            header::ETAG,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::CONTENT_LENGTH,
            header::RETRY_AFTER,
            HeaderName::from_static(middleware::REQUEST_ID),
        ]);
    if origins.is_empty() {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list = origins.iter().filter_map(|o| o.parse().ok()).collect::<Vec<axum::http::HeaderValue>>();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

/// Everything `decentcom serve` does before accepting connections (api.md §8): open the
/// database (migrations run there), open the media store (S3 credentials from the `AWS_*`
/// environment) and create the default channel.
pub async fn prepare(config: Config) -> eyre::Result<AppState> {
    let credentials = S3Credentials::for_provider(config.storage.media.provider);
    prepare_with_credentials(config, credentials).await
}

/// [`prepare`] with the S3 credentials given instead of read from the environment (tests run
/// several servers in one process).
pub async fn prepare_with_credentials(config: Config, s3_credentials: Option<S3Credentials>) -> eyre::Result<AppState> {
    let storage = storage::open(&config.storage).await?;
    tracing::info!(backend = storage.backend_name(), "storage ready");
    let media = Blobs::from_config(&config.storage.media, s3_credentials.as_ref()).await?;
    // What a crash or an outage left behind (api.md §1.7: a failed upload leaves nothing).
    match media.sweep(media.stale_after()).await {
        Ok(removed) if !removed.is_empty() => tracing::info!(
            removed = removed.len(),
            bytes = removed.iter().map(|t| t.bytes).sum::<u64>(),
            "removed stale temporary uploads"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot sweep temporary uploads at startup"),
    }
    if let Some(channel) = storage.ensure_default_channel("general").await? {
        tracing::info!(channel = %channel.name, "created the default channel");
    }
    let icon = match &config.server.icon_path {
        Some(path) => Some(import_icon(storage.as_ref(), &media, path).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let provider = crate::bus::open(&config)
        .await
        .map_err(|e| eyre::eyre!("cannot start the event bus ({}): {e}", crate::bus::describe(&config)))?;
    let events = EventBus::start(provider, shutdown.clone())
        .await
        .map_err(|e| eyre::eyre!("cannot start the event bus ({}): {e}", crate::bus::describe(&config)))?;
    let database = DatabaseHealth::spawn(storage.clone(), shutdown.clone());
    let openapi = Arc::new(openapi::document(&config));
    Ok(AppState { config: Arc::new(config), storage, events, media, icon, database, openapi, shutdown })
}

/// Reads `server.icon_path` into the media store and the `media` table; returns its media id.
async fn import_icon(storage: &dyn Storage, media: &Blobs, path: &std::path::Path) -> eyre::Result<ContentHash> {
    let bytes = std::fs::read(path).map_err(|e| eyre::eyre!("cannot read server.icon_path {}: {e}", path.display()))?;
    let mime = crate::media::sniff_mime(&bytes).unwrap_or("application/octet-stream");
    let size = bytes.len() as i64;
    let hash = media.put_bytes(bytes.into()).await?;
    storage
        .put_media(storage::NewMedia {
            object_key: media.object_key(&hash),
            bucket: media.bucket().map(str::to_owned),
            content_hash: hash.clone(),
            size_bytes: size,
            mime_type: mime.to_owned(),
            uploaded_by: None,
        })
        .await?;
    Ok(hash)
}

/// Binds `network.bind_address` and serves until SIGINT/SIGTERM, then finishes in-flight
/// requests and closes the pool.
pub async fn serve(config: Config) -> eyre::Result<()> {
    let bind = config.network.bind_address;
    listener::raise_open_file_limit(config.network.max_connections)?;
    let state = prepare(config).await?;
    let listener = TcpListener::bind(bind).await.map_err(|e| eyre::eyre!("cannot listen on {bind}: {e}"))?;
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves on an already bound listener until `shutdown` resolves (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> eyre::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    crate::jobs::spawn_all(state.storage.clone(), state.shutdown.clone());
    let sweep_every = (state.media.stale_after() / 2).clamp(Duration::from_secs(1), Duration::from_secs(600));
    crate::media::spawn_sweeper(state.media.clone(), sweep_every, state.shutdown.clone());
    tracing::info!(%addr, "listening");
    let gateways = state.shutdown.clone();
    let shutdown = async move {
        shutdown.await;
        // Gateway connections are not in-flight requests: tell them to close (1001).
        gateways.cancel();
    };
    let limits = listener::Limits::new(usize::try_from(state.config.network.max_connections).unwrap_or(usize::MAX));
    listener::serve(listener, router(state), limits, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
