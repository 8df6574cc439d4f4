//! The OpenAPI document (api.md §3.1): every route of api.md §3 is described, and every route
//! exists on the live server (an unauthenticated call answers anything but the router's own
//! 404 `not found` or 405).

use std::collections::BTreeSet;

use pretty_assertions::assert_eq;
use reqwest::Method;

use crate::api_tests;
use crate::support::TestServer;

api_tests!(the_document_covers_every_route, every_route_exists_on_the_server);

const PUBKEY: &str = "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS";
const MEDIA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// api.md §3, in table order: (method, path relative to `/api/v1`, `/health` excepted).
const ROUTES: &[(&str, &str)] = &[
    // 3.1 Meta
    ("GET", "/health"),
    ("GET", "/server/info"),
    ("GET", "/openapi.json"),
    ("GET", "/gateway"),
    // 3.2 Auth and devices
    ("POST", "/auth/challenge"),
    ("POST", "/auth/verify"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
    ("POST", "/devices"),
    ("GET", "/devices"),
    ("DELETE", "/devices/{device_pubkey}"),
    // 3.3 Channels
    ("GET", "/channels"),
    ("POST", "/channels"),
    ("GET", "/channels/{channel_id}"),
    ("PATCH", "/channels/{channel_id}"),
    ("DELETE", "/channels/{channel_id}"),
    // 3.4 Messages
    ("POST", "/channels/{channel_id}/messages"),
    ("GET", "/channels/{channel_id}/messages"),
    ("GET", "/channels/{channel_id}/messages/{message_id}"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
    // 3.5 Attachments and media
    ("POST", "/channels/{channel_id}/attachments"),
    ("GET", "/media/{media_id}"),
    ("HEAD", "/media/{media_id}"),
    // 3.6 Reactions
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"),
    ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/users/{user_id}"),
    // 3.7 Threads
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads"),
    ("GET", "/threads/{thread_id}"),
    ("GET", "/threads/{thread_id}/messages"),
    ("POST", "/threads/{thread_id}/messages"),
    ("PUT", "/threads/{thread_id}/follow"),
    ("DELETE", "/threads/{thread_id}/follow"),
    ("PUT", "/threads/{thread_id}/read"),
    // 3.8 Typing
    ("POST", "/channels/{channel_id}/typing"),
    // 3.9 Search
    ("GET", "/search"),
    // 3.10 Direct messages
    ("POST", "/dms"),
    ("GET", "/dms"),
    ("GET", "/dms/{channel_id}/messages"),
    ("POST", "/dms/{channel_id}/messages"),
    ("DELETE", "/dms/{channel_id}/messages/{message_id}"),
    ("DELETE", "/dms/{channel_id}"),
    // 3.11 Roles and channel overrides
    ("GET", "/roles"),
    ("POST", "/roles"),
    ("PATCH", "/roles/{role_id}"),
    ("DELETE", "/roles/{role_id}"),
    ("PUT", "/members/{pubkey}/roles/{role_id}"),
    ("DELETE", "/members/{pubkey}/roles/{role_id}"),
    ("GET", "/channels/{channel_id}/overrides"),
    ("PUT", "/channels/{channel_id}/overrides/{role_id}"),
    ("DELETE", "/channels/{channel_id}/overrides/{role_id}"),
    // 3.12 Membership, moderation, allowlist, bots
    ("POST", "/members/join"),
    ("DELETE", "/members/me"),
    ("GET", "/members"),
    ("GET", "/members/{pubkey}"),
    ("POST", "/members/{pubkey}/kick"),
    ("POST", "/members/{pubkey}/ban"),
    ("GET", "/bans"),
    ("DELETE", "/bans/{pubkey}"),
    ("GET", "/allowlist"),
    ("POST", "/allowlist"),
    ("DELETE", "/allowlist/{pubkey}"),
    ("GET", "/admin/bots/pending"),
    ("POST", "/admin/bots/{pubkey}/approve"),
    ("POST", "/admin/bots/{pubkey}/revoke"),
    // 3.13 Invites
    ("POST", "/invites"),
    ("GET", "/invites"),
    ("GET", "/invites/{code}"),
    ("DELETE", "/invites/{code}"),
    ("POST", "/invites/{code}/join"),
    // 3.14 Profiles and avatars
    ("PATCH", "/profile"),
    ("PUT", "/profile/avatar"),
    ("DELETE", "/profile/avatar"),
    ("GET", "/members/{pubkey}/profile"),
];

/// The URL path of a route.
fn full_path(path: &str) -> String {
    if path == "/health" { path.to_owned() } else { format!("/api/v1{path}") }
}

/// A path with every `{parameter}` replaced by `{}` (parameter names are not part of the contract).
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The path with sample values for its parameters.
fn concrete(path: &str) -> String {
    path.replace("{device_pubkey}", PUBKEY)
        .replace("{pubkey}", PUBKEY)
        .replace("{media_id}", MEDIA)
        .replace("{emoji}", "%F0%9F%91%8D")
        .replace("{code}", "ABCDEFGH")
        .replace("{channel_id}", "1")
        .replace("{message_id}", "1")
        .replace("{thread_id}", "1")
        .replace("{role_id}", "1")
        .replace("{user_id}", "1")
}

async fn the_document_covers_every_route(server: TestServer) {
    let resp = server.anonymous().get("/api/v1/openapi.json").await;
    assert_eq!(resp.status, 200);
    let doc = &resp.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
            methods.into_iter().map(move |m| (m.to_uppercase(), shape(path)))
        })
        .collect();
    let missing: Vec<String> = ROUTES
        .iter()
        .filter(|(method, path)| !documented.contains(&(method.to_string(), shape(&full_path(path)))))
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert_eq!(missing, Vec::<String>::new(), "routes missing from the OpenAPI document");
    // Every operation names at least one response.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object();
            assert!(responses.is_some_and(|r| !r.is_empty()), "{method} {path} documents no response");
        }
    }
}

async fn every_route_exists_on_the_server(server: TestServer) {
    let anon = server.anonymous();
    let mut unrouted = Vec::new();
    for (method, path) in ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let resp = anon.send(anon.request(method.clone(), &full_path(&concrete(path)))).await;
        // A HEAD answer has no body to tell the router's 404 from the route's; 405 still shows.
        let router_404 = resp.status == 404 && method != Method::HEAD && resp.body["error"] == "not found";
        if router_404 || resp.status == 405 {
            unrouted.push(format!("{method} {path} -> {} {}", resp.status, resp.body));
        }
    }
    assert_eq!(unrouted, Vec::<String>::new(), "routes the server does not answer");
}
