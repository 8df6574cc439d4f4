//! Text channels (api.md §3.3): list, create, read, PATCH semantics, delete, name rule,
//! permissions and CHANNEL_* events.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::messages::{general, post, subscribed};
use crate::support::TestServer;

api_tests!(
    create_list_and_get,
    patch_semantics,
    name_rule_and_conflicts,
    managing_requires_manage_channels,
    delete_cascades,
    unknown_and_dm_channels_are_not_found,
    events_reach_every_member,
);

async fn create_list_and_get(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;

    let list = user.get("/api/v1/channels").await;
    assert_eq!(list.status, 200);
    let channels = list.body["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0]["name"], "general");

    let created =
        admin.post("/api/v1/channels", json!({"name": "dev-talk-2", "category": "Work", "position": 5})).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let channel = &created.body;
    assert_eq!(channel["name"], "dev-talk-2");
    assert_eq!(channel["topic"], Value::Null);
    assert_eq!(channel["category"], "Work");
    assert_eq!(channel["position"], 5);
    assert_eq!(channel["type"], "text");
    assert!(channel["id"].is_string() && channel["created_at"].is_string() && channel["updated_at"].is_string());

    // Defaults: no category, position 0; ordering by position, then id.
    let plain = admin.post("/api/v1/channels", json!({"name": "plain", "category": null})).await;
    assert_eq!((plain.status, &plain.body["category"], &plain.body["position"]), (200, &Value::Null, &json!(0)));
    let names: Vec<Value> = user.get("/api/v1/channels").await.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("general"), json!("plain"), json!("dev-talk-2")]);

    let id = channel["id"].as_str().unwrap();
    let fetched = user.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!((fetched.status, &fetched.body), (200, channel));
}

async fn patch_semantics(server: TestServer) {
    let admin = server.login(1).await;
    let created = admin.post("/api/v1/channels", json!({"name": "news", "category": "Info", "position": 3})).await;
    let id = created.body["id"].as_str().unwrap();
    let path = format!("/api/v1/channels/{id}");

    let resp = admin.patch(&path, json!({"topic": "Daily news"})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(
        (&resp.body["name"], &resp.body["topic"], &resp.body["category"], &resp.body["position"]),
        (&json!("news"), &json!("Daily news"), &json!("Info"), &json!(3))
    );
    // Absent fields are unchanged; `null` for non-nullable fields counts as absent.
    let resp = admin.patch(&path, json!({"name": null, "position": null})).await;
    assert_eq!(
        (&resp.body["name"], &resp.body["topic"], &resp.body["position"]),
        (&json!("news"), &json!("Daily news"), &json!(3))
    );
    let resp = admin.patch(&path, json!({"name": "headlines", "position": 7, "category": "Other"})).await;
    assert_eq!(
        (&resp.body["name"], &resp.body["topic"], &resp.body["category"], &resp.body["position"]),
        (&json!("headlines"), &json!("Daily news"), &json!("Other"), &json!(7))
    );
    // `null` clears topic and category.
    let resp = admin.patch(&path, json!({"topic": null, "category": null})).await;
    assert_eq!(resp.status, 200);
    assert_eq!((&resp.body["topic"], &resp.body["category"]), (&Value::Null, &Value::Null));
    let fetched = admin.get(&path).await;
    assert_eq!(fetched.body, resp.body);
    // An empty patch is fine.
    assert_eq!(admin.patch(&path, json!({})).await.status, 200);
}

async fn name_rule_and_conflicts(server: TestServer) {
    let admin = server.login(1).await;
    let rule = "channel name must be 1-100 characters of a-z, 0-9 and -";
    let long = "a".repeat(101);
    for name in ["", "Upper", "with space", "under_score", "émoji", long.as_str()] {
        let resp = admin.post("/api/v1/channels", json!({"name": name})).await;
        assert_eq!((resp.status, resp.error()), (400, rule), "{name:?}");
    }
    let max = "a".repeat(100);
    assert_eq!(admin.post("/api/v1/channels", json!({"name": max})).await.status, 200);

    let resp = admin.post("/api/v1/channels", json!({"name": "general"})).await;
    assert_eq!((resp.status, resp.error()), (409, "channel name already exists"));
    let other = admin.post("/api/v1/channels", json!({"name": "other"})).await;
    let path = format!("/api/v1/channels/{}", other.body["id"].as_str().unwrap());
    let resp = admin.patch(&path, json!({"name": "general"})).await;
    assert_eq!((resp.status, resp.error()), (409, "channel name already exists"));
    let resp = admin.patch(&path, json!({"name": "Bad Name"})).await;
    assert_eq!((resp.status, resp.error()), (400, rule));

    let resp = admin.post("/api/v1/channels", json!({})).await;
    assert_eq!(resp.status, 422);
    let resp = admin.post("/api/v1/channels", json!({"name": "x", "position": "high"})).await;
    assert_eq!(resp.status, 422);
    let resp = admin.patch(&path, json!({"topic": 5})).await;
    assert_eq!(resp.status, 422);
}

async fn managing_requires_manage_channels(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let general = general(&admin).await;
    let missing = "missing manage_channels permission";
    let resp = user.post("/api/v1/channels", json!({"name": "mine"})).await;
    assert_eq!((resp.status, resp.error()), (403, missing));
    let resp = user.patch(&format!("/api/v1/channels/{general}"), json!({"topic": "x"})).await;
    assert_eq!((resp.status, resp.error()), (403, missing));
    let resp = user.delete(&format!("/api/v1/channels/{general}")).await;
    assert_eq!((resp.status, resp.error()), (403, missing));

    // A role with MANAGE_CHANNELS is enough.
    crate::messages::grant_role(&admin, &user, "channel-admins", 8, 10).await;
    let resp = user.post("/api/v1/channels", json!({"name": "mine"})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let id = resp.body["id"].as_str().unwrap();
    assert_eq!(user.patch(&format!("/api/v1/channels/{id}"), json!({"topic": "ok"})).await.status, 200);
    assert_eq!(user.delete(&format!("/api/v1/channels/{id}")).await.status, 204);

    // Unauthenticated callers are refused before anything else.
    let anon = server.anonymous();
    assert_eq!(anon.get("/api/v1/channels").await.status, 401);
    assert_eq!(anon.post("/api/v1/channels", json!({"name": "x"})).await.status, 401);
}

async fn delete_cascades(server: TestServer) {
    let admin = server.login(1).await;
    let created = admin.post("/api/v1/channels", json!({"name": "doomed"})).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let message = post(&admin, &id, "bye").await;
    let resp = admin.delete(&format!("/api/v1/channels/{id}")).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    let resp = admin.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    let resp = admin.get(&format!("/api/v1/channels/{id}/messages/{}", message["id"].as_str().unwrap())).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    let resp = admin.delete(&format!("/api/v1/channels/{id}")).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    // The name is free again.
    assert_eq!(admin.post("/api/v1/channels", json!({"name": "doomed"})).await.status, 200);
}

async fn unknown_and_dm_channels_are_not_found(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let dm = admin.post("/api/v1/dms", json!({"recipient_pubkey": user.pubkey})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let dm_channel = dm.body["channel_id"].as_str().unwrap().to_owned();
    for id in [dm_channel.as_str(), "424242"] {
        let path = format!("/api/v1/channels/{id}");
        for resp in [admin.get(&path).await, admin.patch(&path, json!({"topic": "x"})).await, admin.delete(&path).await]
        {
            assert_eq!((resp.status, resp.error()), (404, "channel not found"), "{path}");
        }
    }
    // DM channels never appear among text channels.
    let list = admin.get("/api/v1/channels").await;
    assert!(list.body["channels"].as_array().unwrap().iter().all(|c| c["id"] != dm_channel.as_str()));

    for bad in ["abc", "0", "01", "-1", "99999999999999999999"] {
        let resp = admin.get(&format!("/api/v1/channels/{bad}")).await;
        assert_eq!((resp.status, resp.error()), (400, "invalid id: channel_id"), "{bad}");
    }
}

async fn events_reach_every_member(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let general = general(&admin).await;
    // CHANNEL_* events need no subscription; the subscription to the deleted channel is dropped.
    let mut gateway = server.gateway(user.token()).await;

    let created = admin.post("/api/v1/channels", json!({"name": "announcements"})).await;
    let event = gateway.expect_op("CHANNEL_CREATE").await;
    assert_eq!(event["d"], created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let updated = admin.patch(&format!("/api/v1/channels/{id}"), json!({"topic": "read me"})).await;
    let event = gateway.expect_op("CHANNEL_UPDATE").await;
    assert_eq!(event["d"], updated.body);

    assert_eq!(admin.delete(&format!("/api/v1/channels/{id}")).await.status, 204);
    let event = gateway.expect_op("CHANNEL_DELETE").await;
    assert_eq!(event["d"], json!({"id": id}));

    // A subscriber of a deleted channel keeps its other subscriptions.
    let doomed =
        admin.post("/api/v1/channels", json!({"name": "doomed"})).await.body["id"].as_str().unwrap().to_owned();
    let mut sub = subscribed(&server, &user, &doomed).await;
    sub.send(json!({"op": "SUBSCRIBE", "d": {"channel_id": general}})).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(admin.delete(&format!("/api/v1/channels/{doomed}")).await.status, 204);
    assert_eq!(sub.expect_op("CHANNEL_DELETE").await["d"], json!({"id": doomed}));
    let message = post(&admin, &general, "still here").await;
    assert_eq!(sub.expect_op("MESSAGE_CREATE").await["d"], message);
}
