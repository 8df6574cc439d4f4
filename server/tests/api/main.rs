//! The HTTP integration suite: the real server over real HTTP (and WebSockets), every test run
//! against SQLite and PostgreSQL. One module per resource; the harness is in `support.rs`.

mod support;

mod meta;
