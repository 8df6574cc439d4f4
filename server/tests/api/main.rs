//! The HTTP integration suite: the real server over real HTTP (and WebSockets), every test run
//! against SQLite and PostgreSQL. One module per resource; the harness is in `support.rs`.

#[path = "../common/nats_server.rs"]
mod nats_server;
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
mod gateway_resume;
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
