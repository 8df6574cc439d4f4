//! decentcom: a self-hosted, Discord-like chat server.
//!
//! - [`config`]: layered configuration (defaults → TOML → `DECENTCOM_*` environment).
//! - [`storage`]: the storage contract and its SQLite and PostgreSQL backends.
//! - [`bus`]: the event bus between handlers and gateway connections, and its providers.
//! - [`http`]: the REST API and gateway served over `Arc<dyn Storage>`.
//! - [`migrate`]: `decentcom migrate`, SQLite ⇄ PostgreSQL with media, verified.
//! - [`cli`]: the `decentcom` command line.
//! - [`logging`]: text or JSON log lines, with secrets scrubbed.

pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod media;
pub mod migrate;
pub mod permissions;
pub mod storage;
#[doc(hidden)]
pub mod testing;
