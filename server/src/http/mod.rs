//! The HTTP server: REST API v1 and gateway over `Arc<dyn Storage>`.
//!
//! Handlers are grouped by resource (`meta.rs`, …), stay thin, and never see SQL: they call the
//! storage contract and map its results through [`error::ApiError`].

pub mod error;
mod meta;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::storage::{self, ContentHash, Storage};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub storage: Arc<dyn Storage>,
    /// The server icon's media id, imported at startup.
    pub icon: Option<ContentHash>,
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new().route("/server/info", get(meta::server_info));
    Router::new()
        .route("/health", get(meta::health))
        .nest("/api/v1", api)
        .with_state(state)
}

/// Everything `decentcom serve` does before accepting connections (api.md §8): open the
/// database (migrations run there), create the media directory and the default channel.
pub async fn prepare(config: Config) -> eyre::Result<AppState> {
    let storage = storage::open(&config.storage).await?;
    tracing::info!(backend = storage.backend_name(), "storage ready");
    if config.storage.media.provider == crate::config::MediaProvider::Local {
        let path = &config.storage.media.path;
        std::fs::create_dir_all(path)
            .map_err(|e| eyre::eyre!("cannot create the media directory {}: {e}", path.display()))?;
    }
    if let Some(channel) = storage.ensure_default_channel("general").await? {
        tracing::info!(channel = %channel.name, "created the default channel");
    }
    Ok(AppState { config: Arc::new(config), storage, icon: None })
}

/// Binds `network.bind_address` and serves until SIGINT/SIGTERM, then finishes in-flight
/// requests and closes the pool.
pub async fn serve(config: Config) -> eyre::Result<()> {
    let bind = config.network.bind_address;
    let state = prepare(config).await?;
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| eyre::eyre!("cannot listen on {bind}: {e}"))?;
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves on an already bound listener until `shutdown` resolves (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> eyre::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await?;
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
