//! The HTTP integration suite: the real server over real HTTP (and WebSockets), every test run
//! against SQLite and PostgreSQL. One module per resource; the harness is in `support.rs`.

mod s3;
mod scale_out;
#[path = "../common/server_process.rs"]
mod server_process;
mod support;

mod attachments;
mod auth;
mod channels;
mod devices;
mod dms;
mod gateway;
mod invites;
mod limits;
mod logs;
mod media;
mod media_s3;
mod members;
mod messages;
mod meta;
mod openapi;
mod original_sdk;
mod profiles;
mod reactions;
mod roles;
mod search;
mod threads;
mod typing;
