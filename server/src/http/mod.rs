//! The HTTP server: REST API v1 and gateway over `Arc<dyn Storage>`.

use crate::config::Config;

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub async fn serve(_config: Config) -> eyre::Result<()> {
    eyre::bail!("not yet")
}
