//! The project's API reference (`docs/api/`) held to the code: its route tables are the OpenAPI
//! document's, its worked examples compute, and the page at `/api/v1/docs` renders that document
//! in a real browser.

#[path = "../common/server_process.rs"]
mod server_process;

mod examples;
mod routes;
mod viewer;
