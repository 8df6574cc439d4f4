//! The fault suite: real components broken on purpose — PostgreSQL behind a proxy that is severed
//! and stalled, s3s-fs killed mid-upload, the server SIGKILLed mid-upload and run with a low
//! open-file limit under 2,000 silent sockets, text PostgreSQL cannot store on every route.
//! Every test owns what it breaks (a proxy, a child process, a store of its own), uses 127.0.0.1
//! only, is bounded in time, and fails (never skips) when a component cannot start.

#[path = "../api/s3.rs"]
mod s3;
#[path = "../common/server_process.rs"]
mod server_process;
#[path = "../api/support.rs"]
mod support;

mod connections;
mod database;
mod media;
mod nul;
mod proxy;
