//! Channel messages (api.md §3.4): create with attachments, pagination (§1.6), read, edit, soft
//! delete, permissions, read-only sessions and gateway delivery.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::support::{Gateway, TestServer, User};

api_tests!(
    create_get_and_list,
    content_rules,
    pagination_before_after_and_limits,
    pagination_rejects_bad_queries,
    edit_rules,
    soft_delete_rules,
    channel_overrides_gate_reading_and_sending,
    attachments_are_linked_once,
    unknown_and_dm_channels_are_not_found,
    read_only_sessions_cannot_write,
    thread_replies_are_edited_through_the_channel,
    gateway_delivers_message_events,
);

/// The id of the default `general` channel.
pub async fn general(user: &User) -> String {
    let list = user.get("/api/v1/channels").await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    list.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "general")
        .expect("the default channel")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a text channel as `admin`.
pub async fn create_channel(admin: &User, name: &str) -> String {
    let resp = admin.post("/api/v1/channels", json!({"name": name})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    resp.body["id"].as_str().unwrap().to_owned()
}

/// Posts `content` to `channel` and returns the Message.
pub async fn post(user: &User, channel: &str, content: &str) -> Value {
    let resp = user.post(&format!("/api/v1/channels/{channel}/messages"), json!({"content": content})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    resp.body
}

/// Creates a role with `permissions` at `position` (as an administrator) and gives it to `user`.
pub async fn grant_role(admin: &User, user: &User, name: &str, permissions: i64, position: i64) -> String {
    let role =
        admin.post("/api/v1/roles", json!({"name": name, "permissions": permissions, "position": position})).await;
    assert_eq!(role.status, 200, "{:?}", role.body);
    let id = role.body["id"].as_str().unwrap().to_owned();
    let assign = admin.put_empty(&format!("/api/v1/members/{}/roles/{id}", user.pubkey)).await;
    assert_eq!(assign.status, 204, "{:?}", assign.body);
    id
}

/// A gateway connection subscribed to `channel`.
pub async fn subscribed(server: &TestServer, user: &User, channel: &str) -> Gateway {
    let mut gateway = server.gateway(user.token()).await;
    gateway.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": channel}})).await;
    // SUBSCRIBE has no acknowledgement; give the connection a moment to register it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway
}

/// Uploads one small text file to `channel`; returns the attachment id.
pub async fn upload(user: &User, channel: &str, content: &str) -> String {
    let boundary = "decentcomtestboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"note.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    let req = user
        .request(reqwest::Method::POST, &format!("/api/v1/channels/{channel}/attachments"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body);
    let resp = user.send(req).await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    resp.body[0]["id"].as_str().unwrap().to_owned()
}

/// The contents of a page's messages, in order.
fn contents(page: &Value) -> Vec<&str> {
    page["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect()
}

async fn create_get_and_list(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;

    let message = post(&user, &channel, "hello there").await;
    assert_eq!(message["channel_id"], channel.as_str());
    assert_eq!(message["author_id"], user.user_id.as_str());
    assert_eq!(message["content"], "hello there");
    assert_eq!(message["deleted"], false);
    assert_eq!(message["edited_at"], Value::Null);
    assert_eq!(message["thread_id"], Value::Null);
    assert_eq!(message["thread"], Value::Null);
    assert_eq!(message["attachments"], json!([]));
    assert_eq!(message["reactions"], json!([]));
    let created = message["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 27, "{created}");

    let id = message["id"].as_str().unwrap();
    let fetched = admin.get(&format!("/api/v1/channels/{channel}/messages/{id}")).await;
    assert_eq!((fetched.status, &fetched.body), (200, &message));

    let list = admin.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body, json!({"messages": [message], "has_more": false}));

    // A message of another channel is not found through this one.
    let other = create_channel(&admin, "other").await;
    let resp = admin.get(&format!("/api/v1/channels/{other}/messages/{id}")).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = admin.get(&format!("/api/v1/channels/{channel}/messages/999999")).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = admin.get(&format!("/api/v1/channels/{channel}/messages/abc")).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: message_id"));

    let anon = server.anonymous();
    assert_eq!(anon.get(&format!("/api/v1/channels/{channel}/messages")).await.status, 401);
}

async fn content_rules(server: TestServer) {
    let server_with_limit = TestServer::start_with(server.backend, |c| c.content.max_message_length = 10).await;
    drop(server);
    let server = server_with_limit;
    let admin = server.login(1).await;
    let channel = general(&admin).await;
    let path = format!("/api/v1/channels/{channel}/messages");

    for content in ["", "   \n\t "] {
        let resp = admin.post(&path, json!({"content": content})).await;
        assert_eq!((resp.status, resp.error()), (422, "message content must not be empty"));
    }
    let resp = admin.post(&path, json!({"content": "12345678901"})).await;
    assert_eq!((resp.status, resp.error()), (422, "message content must be at most 10 characters"));
    // Length counts Unicode scalar values, not bytes; content is stored as sent.
    let message = post(&admin, &channel, " ééééééééé").await;
    assert_eq!(message["content"], " ééééééééé");

    let resp = admin.post(&path, json!({})).await;
    assert_eq!(resp.status, 422);
    assert!(resp.error().starts_with("invalid request body"), "{}", resp.error());
    let resp = admin.post(&path, json!({"content": 5})).await;
    assert_eq!(resp.status, 422);
    let resp = admin.post(&path, json!({"content": "x", "attachment_ids": ["abc"]})).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: attachment_ids"));
    let resp = admin.post(&path, json!({"content": "x", "attachment_ids": [5]})).await;
    assert_eq!(resp.status, 422);
    let resp = admin.send(admin.request(reqwest::Method::POST, &path).body("{\"content\": ")).await;
    assert_eq!(resp.status, 415);
    let resp = admin
        .send(admin.request(reqwest::Method::POST, &path).header("content-type", "application/json").body("{"))
        .await;
    assert_eq!(resp.status, 400);
    assert!(resp.error().starts_with("invalid JSON"), "{}", resp.error());
}

async fn pagination_before_after_and_limits(server: TestServer) {
    // Posts 117 messages as fast as it can: a flood to the rate limits (tests/api/limits.rs).
    let server = TestServer::start_with(server.backend, |c| c.limits = decentcom::config::LimitsConfig::off()).await;
    let admin = server.login(1).await;
    let channel = general(&admin).await;
    let mut posted = Vec::new();
    for i in 0..7 {
        posted.push(post(&admin, &channel, &format!("m{i}")).await["id"].as_str().unwrap().to_owned());
    }
    let path = format!("/api/v1/channels/{channel}/messages");

    // Newest first, paging back with `before`.
    let page = admin.get(&format!("{path}?limit=3")).await;
    assert_eq!(page.status, 200);
    assert_eq!((contents(&page.body), &page.body["has_more"]), (vec!["m6", "m5", "m4"], &json!(true)));
    let page = admin.get(&format!("{path}?limit=3&before={}", posted[4])).await;
    assert_eq!((contents(&page.body), &page.body["has_more"]), (vec!["m3", "m2", "m1"], &json!(true)));
    let page = admin.get(&format!("{path}?limit=3&before={}", posted[1])).await;
    assert_eq!((contents(&page.body), &page.body["has_more"]), (vec!["m0"], &json!(false)));

    // Oldest first, paging forward with `after`.
    let page = admin.get(&format!("{path}?limit=4&after={}", posted[0])).await;
    assert_eq!((contents(&page.body), &page.body["has_more"]), (vec!["m1", "m2", "m3", "m4"], &json!(true)));
    let page = admin.get(&format!("{path}?limit=4&after={}", posted[4])).await;
    assert_eq!((contents(&page.body), &page.body["has_more"]), (vec!["m5", "m6"], &json!(false)));

    // A cursor need not be an existing message.
    let page = admin.get(&format!("{path}?after=9000000000")).await;
    assert_eq!((contents(&page.body).len(), &page.body["has_more"]), (0, &json!(false)));
    let page = admin.get(&format!("{path}?before=9000000000&limit=2")).await;
    assert_eq!(contents(&page.body), vec!["m6", "m5"]);

    // Limits are clamped to 1..=100.
    let page = admin.get(&format!("{path}?limit=0")).await;
    assert_eq!((contents(&page.body), &page.body["has_more"]), (vec!["m6"], &json!(true)));
    let page = admin.get(&format!("{path}?limit=-5")).await;
    assert_eq!(contents(&page.body), vec!["m6"]);
    let page = admin.get(&format!("{path}?limit=100000000000000000000000")).await;
    assert_eq!((contents(&page.body).len(), &page.body["has_more"]), (7, &json!(false)));

    // The default limit is 50 and the maximum 100.
    for i in 0..110 {
        post(&admin, &channel, &format!("b{i}")).await;
    }
    let page = admin.get(&path).await;
    assert_eq!((contents(&page.body).len(), &page.body["has_more"]), (50, &json!(true)));
    let page = admin.get(&format!("{path}?limit=1000")).await;
    assert_eq!((contents(&page.body).len(), &page.body["has_more"]), (100, &json!(true)));
    assert_eq!(contents(&page.body)[0], "b109");
}

async fn pagination_rejects_bad_queries(server: TestServer) {
    let admin = server.login(1).await;
    let channel = general(&admin).await;
    let path = format!("/api/v1/channels/{channel}/messages");
    let resp = admin.get(&format!("{path}?before=1&after=2")).await;
    assert_eq!((resp.status, resp.error()), (400, "before and after are mutually exclusive"));
    for bad in ["abc", "1.5", ""] {
        let resp = admin.get(&format!("{path}?limit={bad}")).await;
        assert_eq!(resp.status, 400, "limit={bad}: {:?}", resp.body);
    }
    for (name, bad) in [("before", "abc"), ("before", "0"), ("after", "-3"), ("after", "007")] {
        let resp = admin.get(&format!("{path}?{name}={bad}")).await;
        assert_eq!((resp.status, resp.error()), (400, format!("invalid id: {name}").as_str()));
    }
}

async fn edit_rules(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let other = server.login(3).await;
    let channel = general(&admin).await;
    let message = post(&user, &channel, "first").await;
    let id = message["id"].as_str().unwrap();
    let path = format!("/api/v1/channels/{channel}/messages/{id}");

    let edited = user.patch(&path, json!({"content": "second"})).await;
    assert_eq!(edited.status, 200, "{:?}", edited.body);
    assert_eq!(edited.body["content"], "second");
    assert!(edited.body["edited_at"].is_string());
    assert_eq!(edited.body["created_at"], message["created_at"]);
    assert_eq!(user.get(&path).await.body["content"], "second");

    // Someone else needs MANAGE_MESSAGES.
    let resp = other.patch(&path, json!({"content": "hijack"})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot edit another user's message"));
    let resp = admin.patch(&path, json!({"content": "moderated"})).await;
    assert_eq!((resp.status, &resp.body["content"]), (200, &json!("moderated")));

    let resp = user.patch(&path, json!({"content": "  "})).await;
    assert_eq!((resp.status, resp.error()), (422, "message content must not be empty"));
    let resp = user.patch(&path, json!({})).await;
    assert_eq!(resp.status, 422);
    let resp = user.patch(&format!("/api/v1/channels/{channel}/messages/424242"), json!({"content": "x"})).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = user.patch(&format!("/api/v1/channels/424242/messages/{id}"), json!({"content": "x"})).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));

    assert_eq!(user.delete(&path).await.status, 204);
    let resp = user.patch(&path, json!({"content": "again"})).await;
    assert_eq!((resp.status, resp.error()), (409, "cannot edit a deleted message"));
}

async fn soft_delete_rules(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let other = server.login(3).await;
    let channel = general(&admin).await;
    let message = post(&user, &channel, "to be removed").await;
    let id = message["id"].as_str().unwrap();
    let path = format!("/api/v1/channels/{channel}/messages/{id}");

    let resp = other.delete(&path).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot delete another user's message"));
    let resp = user.delete(&path).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    let fetched = user.get(&path).await;
    assert_eq!((fetched.status, &fetched.body["deleted"], &fetched.body["content"]), (200, &json!(true), &json!("")));
    // Deleting again is fine; a deleted message stays in listings.
    assert_eq!(user.delete(&path).await.status, 204);
    let list = user.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!(list.body["messages"][0]["deleted"], true);

    // MANAGE_MESSAGES deletes anyone's message.
    let second = post(&user, &channel, "moderate me").await;
    let resp = admin.delete(&format!("/api/v1/channels/{channel}/messages/{}", second["id"].as_str().unwrap())).await;
    assert_eq!(resp.status, 204);
    let resp = admin.delete(&format!("/api/v1/channels/{channel}/messages/99999")).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
}

async fn channel_overrides_gate_reading_and_sending(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = create_channel(&admin, "secret").await;
    let message = post(&admin, &channel, "for admins").await;
    let id = message["id"].as_str().unwrap();

    let resp =
        admin.put(&format!("/api/v1/channels/{channel}/overrides/everyone"), json!({"allow": 0, "deny": 2})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let resp = user.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing read_messages permission"));
    let resp = user.get(&format!("/api/v1/channels/{channel}/messages/{id}")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing read_messages permission"));
    // Administrators bypass overrides; the channel itself stays visible to everyone.
    assert_eq!(admin.get(&format!("/api/v1/channels/{channel}/messages")).await.status, 200);
    assert_eq!(user.get(&format!("/api/v1/channels/{channel}")).await.status, 200);

    // A role above @everyone can give reading back.
    let readers = grant_role(&admin, &user, "readers", 0, 5).await;
    let resp =
        admin.put(&format!("/api/v1/channels/{channel}/overrides/{readers}"), json!({"allow": 2, "deny": 1})).await;
    assert_eq!(resp.status, 200);
    let resp = user.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!(resp.status, 200);
    let resp = user.post(&format!("/api/v1/channels/{channel}/messages"), json!({"content": "hi"})).await;
    assert_eq!((resp.status, resp.error()), (403, "missing send_messages permission"));
    let resp = user.delete(&format!("/api/v1/channels/{channel}/messages/{id}")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing send_messages permission"));
}

async fn attachments_are_linked_once(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let other_channel = create_channel(&admin, "elsewhere").await;
    let path = format!("/api/v1/channels/{channel}/messages");

    // Attachment-only messages may have empty content.
    let attachment = upload(&user, &channel, "file body").await;
    let resp = user.post(&path, json!({"content": "", "attachment_ids": [attachment]})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let message_id = resp.body["id"].as_str().unwrap().to_owned();
    let linked = &resp.body["attachments"];
    assert_eq!(linked.as_array().unwrap().len(), 1);
    assert_eq!(linked[0]["id"], attachment.as_str());
    assert_eq!(linked[0]["message_id"], message_id.as_str());
    assert_eq!(linked[0]["filename"], "note.txt");

    let unavailable = |id: &str| format!("attachment {id} not found, not yours, already used, or from another channel");
    // Already used.
    let resp = user.post(&path, json!({"content": "again", "attachment_ids": [attachment]})).await;
    assert_eq!((resp.status, resp.error()), (409, unavailable(&attachment).as_str()));
    // Unknown.
    let resp = user.post(&path, json!({"content": "x", "attachment_ids": ["987654"]})).await;
    assert_eq!((resp.status, resp.error()), (409, unavailable("987654").as_str()));
    // Not the sender's.
    let admins = upload(&admin, &channel, "admin file").await;
    let resp = user.post(&path, json!({"content": "x", "attachment_ids": [admins]})).await;
    assert_eq!((resp.status, resp.error()), (409, unavailable(&admins).as_str()));
    // From another channel; nothing is stored when one link fails.
    let fresh = upload(&user, &channel, "fresh").await;
    let foreign = upload(&user, &other_channel, "foreign").await;
    let before = user.get(&path).await.body["messages"].as_array().unwrap().len();
    let resp = user.post(&path, json!({"content": "x", "attachment_ids": [fresh, foreign]})).await;
    assert_eq!((resp.status, resp.error()), (409, unavailable(&foreign).as_str()));
    assert_eq!(user.get(&path).await.body["messages"].as_array().unwrap().len(), before);
    let resp = user.post(&path, json!({"content": "x", "attachment_ids": [fresh]})).await;
    assert_eq!(resp.status, 200, "the failed request linked nothing: {:?}", resp.body);

    // Deleting the message drops its attachments from it.
    assert_eq!(user.delete(&format!("{path}/{message_id}")).await.status, 204);
    assert_eq!(user.get(&format!("{path}/{message_id}")).await.body["attachments"], json!([]));
}

async fn unknown_and_dm_channels_are_not_found(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let dm = admin.post("/api/v1/dms", json!({"recipient_pubkey": user.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm_channel = dm.body["channel_id"].as_str().unwrap().to_owned();
    let sent = admin.post(&format!("/api/v1/dms/{dm_channel}/messages"), json!({"content": "psst"})).await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    let dm_message = sent.body["id"].as_str().unwrap().to_owned();

    for channel in [dm_channel.as_str(), "777777"] {
        let base = format!("/api/v1/channels/{channel}/messages");
        let responses = [
            admin.get(&base).await,
            admin.post(&base, json!({"content": "hi"})).await,
            admin.get(&format!("{base}/{dm_message}")).await,
            admin.patch(&format!("{base}/{dm_message}"), json!({"content": "edit"})).await,
            admin.delete(&format!("{base}/{dm_message}")).await,
        ];
        for resp in responses {
            assert_eq!((resp.status, resp.error()), (404, "channel not found"));
        }
    }
    // A DM message is not reachable through a text channel either.
    let general = general(&admin).await;
    let resp = admin.get(&format!("/api/v1/channels/{general}/messages/{dm_message}")).await;
    assert_eq!((resp.status, resp.error()), (404, "message not found"));
    let resp = admin.get("/api/v1/channels/0/messages").await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: channel_id"));
}

async fn read_only_sessions_cannot_write(server: TestServer) {
    let admin = server.login(1).await;
    let channel = general(&admin).await;
    let bot = server.login_bot(9).await;
    // In open mode an unapproved bot may join, but its session stays read-only.
    let joined = bot.post_empty("/api/v1/members/join").await;
    assert_eq!(joined.status, 200, "{:?}", joined.body);
    let resp = bot.post(&format!("/api/v1/channels/{channel}/messages"), json!({"content": "beep"})).await;
    assert_eq!((resp.status, resp.error()), (403, "read-only session: bot requires admin approval"));
    // Reading is fine.
    assert_eq!(bot.get(&format!("/api/v1/channels/{channel}/messages")).await.status, 200);
}

async fn thread_replies_are_edited_through_the_channel(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let parent = post(&admin, &channel, "parent").await;
    let parent_id = parent["id"].as_str().unwrap();
    let thread = admin.post_empty(&format!("/api/v1/channels/{channel}/messages/{parent_id}/threads")).await;
    assert_eq!(thread.status, 200, "{:?}", thread.body);
    let thread_id = thread.body["thread_id"].as_str().unwrap();
    let reply = user.post(&format!("/api/v1/threads/{thread_id}/messages"), json!({"content": "reply"})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply_id = reply.body["id"].as_str().unwrap();

    // Replies are listed under their thread, not the channel.
    let list = admin.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!(contents(&list.body), vec!["parent"]);

    let path = format!("/api/v1/channels/{channel}/messages/{reply_id}");
    let fetched = user.get(&path).await;
    assert_eq!((fetched.status, &fetched.body["thread_id"]), (200, &json!(thread_id)));
    let edited = user.patch(&path, json!({"content": "reply, edited"})).await;
    assert_eq!((edited.status, &edited.body["content"]), (200, &json!("reply, edited")));
    assert_eq!(user.delete(&path).await.status, 204);
    assert_eq!(user.get(&path).await.body["deleted"], true);
}

async fn gateway_delivers_message_events(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let mut gateway = subscribed(&server, &user, &channel).await;

    let message = post(&admin, &channel, "live").await;
    let id = message["id"].as_str().unwrap();
    let event = gateway.expect_op("MESSAGE_CREATE").await;
    assert_eq!(event["d"], message);
    assert!(event["t"].is_i64());

    let edited = admin.patch(&format!("/api/v1/channels/{channel}/messages/{id}"), json!({"content": "edited"})).await;
    let event = gateway.expect_op("MESSAGE_UPDATE").await;
    assert_eq!(event["d"], edited.body);

    assert_eq!(admin.delete(&format!("/api/v1/channels/{channel}/messages/{id}")).await.status, 204);
    let event = gateway.expect_op("MESSAGE_DELETE").await;
    assert_eq!(event["d"], json!({"id": id, "channel_id": channel}));

    // Messages of channels the connection is not subscribed to are not delivered.
    let other = create_channel(&admin, "unsubscribed").await;
    post(&admin, &other, "quiet").await;
    gateway.expect_no_op("MESSAGE_CREATE", Duration::from_millis(300)).await;
}
