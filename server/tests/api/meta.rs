//! Health, server info, JSON errors for unknown routes and methods, request ids.

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::api_tests;
use crate::support::TestServer;

api_tests!(health_and_server_info, unknown_routes_and_methods_answer_json, request_ids_are_echoed_or_drawn);

async fn health_and_server_info(server: TestServer) {
    let anon = server.anonymous();
    let health = anon.get("/health").await;
    assert_eq!((health.status, health.body), (200, json!({"status": "ok"})));
    let info = anon.get("/api/v1/server/info").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body, json!({"name": "decentcom", "description": null, "membership_mode": "open", "icon": null}));
}

async fn unknown_routes_and_methods_answer_json(server: TestServer) {
    let anon = server.anonymous();
    let missing = anon.get("/api/v1/nope").await;
    assert_eq!((missing.status, missing.error()), (404, "not found"));
    assert_eq!(missing.headers["content-type"], "application/json");
    let wrong_method = anon.delete("/api/v1/server/info").await;
    assert_eq!((wrong_method.status, wrong_method.error()), (405, "method not allowed"));
}

async fn request_ids_are_echoed_or_drawn(server: TestServer) {
    let anon = server.anonymous();
    let echoed = anon.send(anon.request(reqwest::Method::GET, "/health").header("x-request-id", "abc-123")).await;
    assert_eq!(echoed.headers["x-request-id"], "abc-123");
    let drawn = anon.get("/health").await;
    let id = drawn.headers["x-request-id"].to_str().unwrap();
    assert!(!id.is_empty() && id != "abc-123");
    let too_long = "x".repeat(129);
    let replaced = anon.send(anon.request(reqwest::Method::GET, "/health").header("x-request-id", &too_long)).await;
    assert_ne!(replaced.headers["x-request-id"], too_long.as_str());
}
