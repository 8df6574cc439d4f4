//! Full-text search (api.md §3.9). Every expectation is exact, and the same suite runs on both
//! backends, so passing on both means both backends give identical results.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::support::{TestServer, User};

api_tests!(
    search_matches_every_term_and_prefixes,
    search_highlights_matching_tokens,
    search_filters_by_channel_author_and_time,
    search_pages_with_a_cursor,
    search_only_sees_readable_channels,
    search_validates_its_query,
    search_requires_the_feature,
);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Searches (the query string is appended as given) and expects 200.
async fn search(user: &User, query: &str) -> Value {
    let r = user.get(&format!("/api/v1/search?{query}")).await;
    assert_eq!(r.status, 200, "search {query}: {:?}", r.body);
    r.body
}

/// The contents of the results, in order.
fn contents(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|r| r["message"]["content"].as_str().unwrap().to_owned()).collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn search_matches_every_term_and_prefixes(server: TestServer) {
    let admin = server.login(1).await;
    let channel = admin.create_channel("search").await;
    for content in [
        "Rust is great",
        "rusty nails everywhere",
        "Python and RUST together",
        "nothing to see",
        "Café Über straße",
        "snake_case and kebab-case",
        "AND OR \"quoted\" words",
        "trust the process",
    ] {
        admin.post_message(&channel, content).await;
    }
    let parent = admin.post_message(&channel, "thread parent").await;
    let thread = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{}/threads", id(&parent))).await;
    assert_eq!(thread.status, 200, "{:?}", thread.body);
    let thread_id = thread.body["thread_id"].as_str().unwrap().to_owned();
    let reply =
        admin.post(&format!("/api/v1/threads/{thread_id}/messages"), json!({"content": "rust in a thread"})).await;
    assert_eq!(reply.status, 200);
    let doomed = admin.post_message(&channel, "rust that gets deleted").await;
    assert_eq!(admin.delete(&format!("/api/v1/channels/{channel}/messages/{}", id(&doomed))).await.status, 204);
    let edited = admin.post_message(&channel, "before edit").await;
    let patched =
        admin.patch(&format!("/api/v1/channels/{channel}/messages/{}", id(&edited)), json!({"content": "zebra"})).await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);

    // Exact tokens, case-insensitive, newest first; thread replies included; deleted left out.
    let body = search(&admin, "q=rust").await;
    assert_eq!(contents(&body), vec!["rust in a thread", "Python and RUST together", "Rust is great"]);
    assert_eq!(body["total_estimate"], 3);
    assert_eq!(body["cursor"], Value::Null);
    assert_eq!(body["results"][0]["message"]["thread_id"], thread_id.as_str());
    assert_eq!(body["results"][0]["channel"], json!({"id": channel, "name": "search"}));

    // Prefix terms match the start of a token only ("trust" does not match "rust*").
    let body = search(&admin, &format!("q={}", enc("rust*"))).await;
    assert_eq!(
        contents(&body),
        vec!["rust in a thread", "Python and RUST together", "rusty nails everywhere", "Rust is great"]
    );
    // Every term must match.
    assert_eq!(contents(&search(&admin, "q=rust+great").await), vec!["Rust is great"]);
    assert_eq!(contents(&search(&admin, "q=rust+nothing").await), Vec::<String>::new());
    // Operators and quotes are plain text; punctuation separates.
    assert_eq!(
        contents(&search(&admin, &format!("q={}", enc("\"quoted\" OR"))).await),
        vec!["AND OR \"quoted\" words"]
    );
    assert_eq!(contents(&search(&admin, "q=snake").await), vec!["snake_case and kebab-case"]);
    assert_eq!(contents(&search(&admin, &format!("q={}", enc("kebab-case"))).await), vec!["snake_case and kebab-case"]);
    // Unicode: lowercased alphanumeric runs.
    assert_eq!(contents(&search(&admin, &format!("q={}", enc("CAFÉ über"))).await), vec!["Café Über straße"]);
    assert_eq!(contents(&search(&admin, &format!("q={}", enc("stra*"))).await), vec!["Café Über straße"]);
    // Edits are re-indexed.
    assert_eq!(contents(&search(&admin, "q=zebra").await), vec!["zebra"]);
    assert_eq!(contents(&search(&admin, "q=edit").await), Vec::<String>::new());
    // A long token is not indexed.
    let long = "y".repeat(65);
    admin.post_message(&channel, &format!("short {long}")).await;
    assert_eq!(contents(&search(&admin, "q=short").await), vec![format!("short {long}")]);
}

async fn search_highlights_matching_tokens(server: TestServer) {
    let admin = server.login(1).await;
    let channel = admin.create_channel("highlights").await;
    admin.post_message(&channel, "Rust is great; rusty too").await;
    let body = search(&admin, &format!("q={}", enc("rust*"))).await;
    assert_eq!(body["results"][0]["highlight"], "**Rust** is great; **rusty** too");

    let long = format!("{} needle {}", "a ".repeat(100), "b ".repeat(100));
    let message = admin.post_message(&channel, &long).await;
    let body = search(&admin, "q=needle").await;
    let result = &body["results"][0];
    assert_eq!(result["message"], message);
    let highlight = result["highlight"].as_str().unwrap();
    // 200 characters from 60 before the match, an ellipsis on each cut side, the match marked.
    let chars: Vec<char> = long.chars().collect();
    let start = long.find("needle").unwrap() - 60;
    let window: String = chars[start..start + 200].iter().collect();
    assert_eq!(highlight, format!("…{}…", window.replacen("needle", "**needle**", 1)));
}

async fn search_filters_by_channel_author_and_time(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let one = admin.create_channel("one").await;
    let two = admin.create_channel("two").await;
    let first = admin.post_message(&one, "apple one by admin").await;
    let second = bob.post_message(&one, "apple one by bob").await;
    let third = admin.post_message(&two, "apple two by admin").await;
    let fourth = bob.post_message(&two, "apple two by bob").await;

    let all = search(&bob, "q=apple").await;
    assert_eq!(all["total_estimate"], 4);
    let in_one = search(&bob, &format!("q=apple&channel_id={one}")).await;
    assert_eq!(contents(&in_one), vec!["apple one by bob", "apple one by admin"]);
    assert_eq!(in_one["total_estimate"], 2);
    let by_bob = search(&admin, &format!("q=apple&author_id={}", bob.user_id)).await;
    assert_eq!(contents(&by_bob), vec!["apple two by bob", "apple one by bob"]);
    let both = search(&admin, &format!("q=apple&author_id={}&channel_id={two}", bob.user_id)).await;
    assert_eq!(contents(&both), vec!["apple two by bob"]);

    // Exclusive time bounds on created_at, any offset accepted.
    let ts = |m: &Value| enc(m["created_at"].as_str().unwrap());
    let after = search(&admin, &format!("q=apple&after={}", ts(&second))).await;
    assert_eq!(contents(&after), vec!["apple two by bob", "apple two by admin"]);
    let before = search(&admin, &format!("q=apple&before={}", ts(&third))).await;
    assert_eq!(contents(&before), vec!["apple one by bob", "apple one by admin"]);
    let between = search(&admin, &format!("q=apple&after={}&before={}", ts(&first), ts(&fourth))).await;
    assert_eq!(contents(&between), vec!["apple two by admin", "apple one by bob"]);
    assert_eq!(between["total_estimate"], 2);
    let far = search(&admin, &format!("q=apple&before={}", enc("2000-01-01T01:00:00+01:00"))).await;
    assert_eq!(contents(&far), Vec::<String>::new());
    let future = search(&admin, &format!("q=apple&before={}", enc("2999-01-01T00:00:00-05:00"))).await;
    assert_eq!(future["total_estimate"], 4);

    // Bad filters.
    let r = admin.get("/api/v1/search?q=apple&before=yesterday").await;
    assert_eq!((r.status, r.error()), (400, "invalid timestamp: before"));
    let r = admin.get("/api/v1/search?q=apple&after=2026-01-01").await;
    assert_eq!((r.status, r.error()), (400, "invalid timestamp: after"));
    let r = admin.get("/api/v1/search?q=apple&channel_id=abc").await;
    assert_eq!((r.status, r.error()), (400, "invalid id: channel_id"));
    let r = admin.get("/api/v1/search?q=apple&author_id=01").await;
    assert_eq!((r.status, r.error()), (400, "invalid id: author_id"));
    let r = admin.get("/api/v1/search?q=apple&channel_id=999999").await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));
    let unknown_author = search(&admin, "q=apple&author_id=999999").await;
    assert_eq!(unknown_author["results"], json!([]));
}

async fn search_pages_with_a_cursor(server: TestServer) {
    // Posts 60 messages as fast as it can: a flood to the rate limits (tests/api/limits.rs).
    let server = TestServer::start_with(server.backend, |c| c.limits = decentcom::config::LimitsConfig::off()).await;
    let admin = server.login(1).await;
    let channel = admin.create_channel("paging").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(id(&admin.post_message(&channel, &format!("page item {i}")).await));
    }
    admin.post_message(&channel, "unrelated").await;
    ids.reverse(); // newest first

    let result_ids =
        |b: &Value| -> Vec<String> { b["results"].as_array().unwrap().iter().map(|r| id(&r["message"])).collect() };
    let first = search(&admin, "q=item&limit=3").await;
    assert_eq!(result_ids(&first), ids[0..3].to_vec());
    assert_eq!(first["cursor"], ids[2].as_str());
    assert_eq!(first["total_estimate"], 7);
    let second = search(&admin, &format!("q=item&limit=3&cursor={}", ids[2])).await;
    assert_eq!(result_ids(&second), ids[3..6].to_vec());
    assert_eq!(second["cursor"], ids[5].as_str());
    assert_eq!(second["total_estimate"], 7, "the cursor does not change the estimate");
    let last = search(&admin, &format!("q=item&limit=3&cursor={}", ids[5])).await;
    assert_eq!(result_ids(&last), ids[6..].to_vec());
    assert_eq!(last["cursor"], Value::Null);
    // An exactly full last page has no cursor either.
    let exact = search(&admin, "q=item&limit=7").await;
    assert_eq!(exact["cursor"], Value::Null);

    // Limits are clamped to 1..=50, default 25.
    assert_eq!(result_ids(&search(&admin, "q=item&limit=0").await).len(), 1);
    assert_eq!(result_ids(&search(&admin, "q=item&limit=-4").await).len(), 1);
    for i in 7..60 {
        admin.post_message(&channel, &format!("item {i}")).await;
    }
    let default = search(&admin, "q=item").await;
    assert_eq!(result_ids(&default).len(), 25);
    assert_eq!(default["total_estimate"], 60);
    assert_eq!(result_ids(&search(&admin, "q=item&limit=500").await).len(), 50);

    for bad in ["abc", "0", "-1", "1.5"] {
        let r = admin.get(&format!("/api/v1/search?q=item&cursor={bad}")).await;
        assert_eq!((r.status, r.error()), (400, "invalid cursor"), "{bad}");
    }
    let r = admin.get("/api/v1/search?q=item&limit=lots").await;
    assert_eq!(r.status, 400);
}

async fn search_only_sees_readable_channels(server: TestServer) {
    let admin = server.login(1).await;
    let bob = server.login(2).await;
    let public = admin.create_channel("public").await;
    let secret = admin.create_channel("secret").await;
    admin.post_message(&public, "banana split").await;
    admin.post_message(&secret, "classified banana").await;
    let r = admin.put(&format!("/api/v1/channels/{secret}/overrides/everyone"), json!({"allow": 0, "deny": 2})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // DM messages are never searched.
    let dm = bob.post("/api/v1/dms", json!({"recipient_pubkey": admin.pubkey})).await;
    let dm_id = dm.body["channel_id"].as_str().unwrap().to_owned();
    assert_eq!(bob.post(&format!("/api/v1/dms/{dm_id}/messages"), json!({"content": "banana dm"})).await.status, 200);

    let for_bob = search(&bob, "q=banana").await;
    assert_eq!(contents(&for_bob), vec!["banana split"]);
    assert_eq!(for_bob["total_estimate"], 1);
    let r = bob.get(&format!("/api/v1/search?q=banana&channel_id={secret}")).await;
    assert_eq!((r.status, r.error()), (403, "missing read_messages permission"));
    let r = bob.get(&format!("/api/v1/search?q=banana&channel_id={dm_id}")).await;
    assert_eq!((r.status, r.error()), (404, "channel not found"));

    // The administrator reads everything (overrides do not apply to it), but not DMs.
    let for_admin = search(&admin, "q=banana").await;
    assert_eq!(contents(&for_admin), vec!["classified banana", "banana split"]);
    assert_eq!(for_admin["results"][0]["channel"], json!({"id": secret, "name": "secret"}));

    // A role override can grant it back.
    let role = admin.post("/api/v1/roles", json!({"name": "insiders", "permissions": 0, "position": 5})).await;
    assert_eq!(role.status, 200, "{:?}", role.body);
    let role_id = role.body["id"].as_str().unwrap().to_owned();
    let r = admin.put(&format!("/api/v1/channels/{secret}/overrides/{role_id}"), json!({"allow": 2, "deny": 0})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = admin.put_empty(&format!("/api/v1/members/{}/roles/{role_id}", bob.pubkey)).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(contents(&search(&bob, "q=banana").await), vec!["classified banana", "banana split"]);
}

async fn search_validates_its_query(server: TestServer) {
    let admin = server.login(1).await;
    let empty = (422, "search query must not be empty");
    for query in ["", "q=", "q=+++", &format!("q={}", enc("*** ?! --"))] {
        let r = admin.get(&format!("/api/v1/search?{query}")).await;
        assert_eq!((r.status, r.error()), empty, "{query}");
    }
    let r = admin.get(&format!("/api/v1/search?q={}", "a".repeat(257))).await;
    assert_eq!((r.status, r.error()), (422, "search query is too long"));
    let seventeen: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    let r = admin.get(&format!("/api/v1/search?q={}", seventeen.join("+"))).await;
    assert_eq!((r.status, r.error()), (422, "too many search terms (max 16)"));
    // Sixteen distinct terms (duplicates collapse) are fine.
    let sixteen: Vec<String> = (0..16).map(|i| format!("t{i}")).chain(["t0".to_owned()]).collect();
    assert_eq!(admin.get(&format!("/api/v1/search?q={}", sixteen.join("+"))).await.status, 200);
    let r = admin.get(&format!("/api/v1/search?q={}", "x".repeat(65))).await;
    assert_eq!((r.status, r.error()), (422, "search term too long (max 64 characters)"));
    let ok = search(&admin, &format!("q={}", "x".repeat(64))).await;
    assert_eq!(ok, json!({"results": [], "cursor": null, "total_estimate": 0}));

    let anonymous = server.anonymous().get("/api/v1/search?q=x").await;
    assert_eq!(anonymous.status, 401);
}

async fn search_requires_the_feature(server: TestServer) {
    let backend = server.backend;
    drop(server);
    let server = TestServer::start_with(backend, |c| c.features.message_search = false).await;
    let admin = server.login(1).await;
    let r = admin.get("/api/v1/search?q=anything").await;
    assert_eq!((r.status, r.error()), (403, "message search is disabled on this server"));
}
