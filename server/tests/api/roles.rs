//! Roles, role assignment and channel overrides (api.md §3.11, §5): CRUD, built-in role rules,
//! hierarchy, the grant rule, aliases and events.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::messages::{create_channel, general, grant_role};
use crate::support::TestServer;

api_tests!(
    builtin_roles_are_listed,
    create_update_delete,
    validation_and_builtin_rules,
    hierarchy_and_grant_rule,
    assignment,
    assignment_errors,
    overrides_crud_and_rules,
    override_hierarchy_and_grant_rule,
    role_events,
);

const MANAGE_ROLES: i64 = 16;
const MANAGE_CHANNELS: i64 = 8;
const EVERYONE_BITS: i64 = 1539;

fn role_names(body: &Value) -> Vec<String> {
    body["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

async fn builtin_roles_are_listed(server: TestServer) {
    let _admin = server.login(1).await;
    let user = server.login(2).await;
    let resp = user.get("/api/v1/roles").await;
    assert_eq!(resp.status, 200);
    let roles = resp.body["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 2);
    assert_eq!(
        (&roles[0]["id"], &roles[0]["name"], &roles[0]["permissions"], &roles[0]["position"], &roles[0]["is_builtin"]),
        (&json!("2"), &json!("@admin"), &json!(16383), &json!(1000), &json!(true))
    );
    assert_eq!(
        (&roles[1]["id"], &roles[1]["name"], &roles[1]["permissions"], &roles[1]["position"], &roles[1]["is_builtin"]),
        (&json!("1"), &json!("@everyone"), &json!(EVERYONE_BITS), &json!(0), &json!(true))
    );
    assert!(roles[0]["color"].is_null() && roles[0]["created_at"].is_string() && roles[0]["updated_at"].is_string());
}

async fn create_update_delete(server: TestServer) {
    let admin = server.login(1).await;
    let created =
        admin.post("/api/v1/roles", json!({"name": "Moderators", "color": "#00ff00", "permissions": 4})).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let role = &created.body;
    // The default position is the caller's highest position − 1.
    assert_eq!(
        (&role["name"], &role["color"], &role["permissions"], &role["position"], &role["is_builtin"]),
        (&json!("Moderators"), &json!("#00ff00"), &json!(4), &json!(999), &json!(false))
    );
    let id = role["id"].as_str().unwrap();
    assert!(id.parse::<i64>().unwrap() > 2);

    let low = admin.post("/api/v1/roles", json!({"name": "Low", "permissions": 0, "position": 3})).await;
    assert_eq!((low.status, &low.body["position"], &low.body["color"]), (200, &json!(3), &Value::Null));
    assert_eq!(role_names(&admin.get("/api/v1/roles").await.body), ["@admin", "Moderators", "Low", "@everyone"]);

    let path = format!("/api/v1/roles/{id}");
    let resp = admin.patch(&path, json!({"name": "Mods", "permissions": 6})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(
        (&resp.body["name"], &resp.body["color"], &resp.body["permissions"], &resp.body["position"]),
        (&json!("Mods"), &json!("#00ff00"), &json!(6), &json!(999))
    );
    let resp = admin.patch(&path, json!({"color": null, "position": 50})).await;
    assert_eq!(
        (&resp.body["color"], &resp.body["position"], &resp.body["name"]),
        (&Value::Null, &json!(50), &json!("Mods"))
    );

    let resp = admin.delete(&path).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    let resp = admin.delete(&path).await;
    assert_eq!((resp.status, resp.error()), (404, "role not found"));
    let resp = admin.patch(&path, json!({"name": "gone"})).await;
    assert_eq!((resp.status, resp.error()), (404, "role not found"));
    assert_eq!(role_names(&admin.get("/api/v1/roles").await.body), ["@admin", "Low", "@everyone"]);
}

async fn validation_and_builtin_rules(server: TestServer) {
    let admin = server.login(1).await;
    for bits in [16384_i64, -1, 1 << 40] {
        let resp = admin.post("/api/v1/roles", json!({"name": "x", "permissions": bits})).await;
        assert_eq!((resp.status, resp.error()), (400, "unknown permission bits"), "{bits}");
    }
    let resp = admin.post("/api/v1/roles", json!({"name": "x"})).await;
    assert_eq!(resp.status, 422);
    let resp = admin.post("/api/v1/roles", json!({"name": "x", "permissions": "1"})).await;
    assert_eq!(resp.status, 422);
    let resp = admin.patch("/api/v1/roles/everyone", json!({"permissions": 1 << 20})).await;
    assert_eq!((resp.status, resp.error()), (400, "unknown permission bits"));

    // Built-in rules, through the aliases and the numeric ids.
    let resp = admin.patch("/api/v1/roles/admin", json!({"permissions": 1})).await;
    assert_eq!((resp.status, resp.error()), (400, "@admin permissions cannot be modified"));
    let resp = admin.patch("/api/v1/roles/2", json!({"position": 5})).await;
    assert_eq!((resp.status, resp.error()), (400, "built-in role positions cannot be changed"));
    let resp = admin.patch("/api/v1/roles/everyone", json!({"position": 1})).await;
    assert_eq!((resp.status, resp.error()), (400, "built-in role positions cannot be changed"));
    for id in ["everyone", "admin", "1", "2"] {
        let resp = admin.delete(&format!("/api/v1/roles/{id}")).await;
        assert_eq!((resp.status, resp.error()), (400, "built-in roles cannot be deleted"), "{id}");
    }
    // @everyone's permissions, name and colour may change; responses carry numeric ids.
    let resp = admin.patch("/api/v1/roles/everyone", json!({"permissions": 3, "color": "#aaaaaa"})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(
        (&resp.body["id"], &resp.body["permissions"], &resp.body["position"]),
        (&json!("1"), &json!(3), &json!(0))
    );
    let resp = admin.patch("/api/v1/roles/admin", json!({"color": "#ff0000"})).await;
    assert_eq!((resp.status, &resp.body["id"], &resp.body["permissions"]), (200, &json!("2"), &json!(16383)));

    for bad in ["abc", "0", "Everyone"] {
        let resp = admin.patch(&format!("/api/v1/roles/{bad}"), json!({"name": "x"})).await;
        assert_eq!((resp.status, resp.error()), (400, "invalid id: role_id"), "{bad}");
    }
    let resp = admin.delete("/api/v1/roles/4242").await;
    assert_eq!((resp.status, resp.error()), (404, "role not found"));
}

async fn hierarchy_and_grant_rule(server: TestServer) {
    let admin = server.login(1).await;
    let manager = server.login(2).await;
    let plain = server.login(3).await;
    // The manager holds MANAGE_ROLES at position 10 (plus @everyone's bits).
    let managers = grant_role(&admin, &manager, "managers", MANAGE_ROLES, 10).await;
    let above = admin.post("/api/v1/roles", json!({"name": "above", "permissions": 0, "position": 20})).await;
    let above = above.body["id"].as_str().unwrap().to_owned();

    let missing = "missing manage_roles permission";
    let resp = plain.post("/api/v1/roles", json!({"name": "x", "permissions": 0})).await;
    assert_eq!((resp.status, resp.error()), (403, missing));
    let resp = plain.patch(&format!("/api/v1/roles/{above}"), json!({"name": "x"})).await;
    assert_eq!((resp.status, resp.error()), (403, missing));
    let resp = plain.delete(&format!("/api/v1/roles/{above}")).await;
    assert_eq!((resp.status, resp.error()), (403, missing));

    // Create: below the caller's highest position, only held bits.
    let resp = manager.post("/api/v1/roles", json!({"name": "peer", "permissions": 0, "position": 10})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot create role at or above your own role"));
    let resp = manager.post("/api/v1/roles", json!({"name": "peer", "permissions": 0, "position": 11})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot create role at or above your own role"));
    let resp = manager.post("/api/v1/roles", json!({"name": "banners", "permissions": 64})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot grant permissions you do not have"));
    let resp = manager.post("/api/v1/roles", json!({"name": "helpers", "permissions": MANAGE_ROLES | 1})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(resp.body["position"], 9);
    let helpers = resp.body["id"].as_str().unwrap().to_owned();

    // Edit and delete: only roles strictly below.
    let hierarchy = "cannot manage role at or above your highest role position";
    for role in [managers.as_str(), above.as_str(), "admin"] {
        let resp = manager.patch(&format!("/api/v1/roles/{role}"), json!({"name": "mine"})).await;
        assert_eq!((resp.status, resp.error()), (403, hierarchy), "{role}");
        let resp = manager.delete(&format!("/api/v1/roles/{role}")).await;
        assert_eq!((resp.status, resp.error()), (403, hierarchy), "{role}");
    }
    let resp = manager.patch(&format!("/api/v1/roles/{helpers}"), json!({"position": 10})).await;
    assert_eq!((resp.status, resp.error()), (403, hierarchy));
    let resp = manager.patch(&format!("/api/v1/roles/{helpers}"), json!({"permissions": 32})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot grant permissions you do not have"));
    let resp = manager.patch("/api/v1/roles/everyone", json!({"permissions": EVERYONE_BITS | 256})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot grant permissions you do not have"));
    let resp = manager.patch(&format!("/api/v1/roles/{helpers}"), json!({"name": "helpers-2", "position": 4})).await;
    assert_eq!((resp.status, &resp.body["position"]), (200, &json!(4)));
    // @everyone (position 0) is below the manager: its permissions may change within the grant rule.
    let resp = manager.patch("/api/v1/roles/everyone", json!({"permissions": EVERYONE_BITS | MANAGE_ROLES})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(manager.delete(&format!("/api/v1/roles/{helpers}")).await.status, 204);
}

async fn assignment(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let role =
        admin.post("/api/v1/roles", json!({"name": "crew", "color": "#123456", "permissions": 0, "position": 5})).await;
    let role = role.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/members/{}/roles/{role}", user.pubkey);

    let resp = admin.put_empty(&path).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    let member = admin.get(&format!("/api/v1/members/{}", user.pubkey)).await;
    if member.status == 200 {
        let roles: Vec<&str> =
            member.body["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(roles, ["crew", "@everyone"]);
    }
    let resp = admin.put_empty(&path).await;
    assert_eq!((resp.status, resp.error()), (409, "role already assigned"));
    let resp = admin.put_empty(&format!("/api/v1/members/{}/roles/everyone", user.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (409, "role already assigned"));

    let resp = admin.delete(&path).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    let resp = admin.delete(&path).await;
    assert_eq!((resp.status, resp.error()), (404, "role not assigned"));

    // The built-in roles stay.
    let resp = admin.delete(&format!("/api/v1/members/{}/roles/everyone", user.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (400, "@everyone cannot be removed"));
    let resp = admin.delete(&format!("/api/v1/members/{}/roles/1", admin.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (400, "@everyone cannot be removed"));
    let resp = admin.delete(&format!("/api/v1/members/{}/roles/admin", admin.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (403, "@admin role cannot be removed"));

    // The admin alias works for assignment: the user becomes an administrator.
    assert_eq!(admin.put_empty(&format!("/api/v1/members/{}/roles/admin", user.pubkey)).await.status, 204);
    assert_eq!(user.post("/api/v1/channels", json!({"name": "by-new-admin"})).await.status, 200);
}

async fn assignment_errors(server: TestServer) {
    let admin = server.login(1).await;
    let manager = server.login(2).await;
    let target = server.login(3).await;
    grant_role(&admin, &manager, "managers", MANAGE_ROLES, 10).await;
    let high = admin.post("/api/v1/roles", json!({"name": "high", "permissions": 0, "position": 10})).await;
    let high = high.body["id"].as_str().unwrap().to_owned();
    let low = admin.post("/api/v1/roles", json!({"name": "low", "permissions": 0, "position": 2})).await;
    let low = low.body["id"].as_str().unwrap().to_owned();

    let resp = target.put_empty(&format!("/api/v1/members/{}/roles/{low}", target.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (403, "missing manage_roles permission"));
    let resp = target.delete(&format!("/api/v1/members/{}/roles/{low}", target.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (403, "missing manage_roles permission"));

    let hierarchy = "cannot manage role at or above your highest role position";
    for role in [high.as_str(), "admin"] {
        let resp = manager.put_empty(&format!("/api/v1/members/{}/roles/{role}", target.pubkey)).await;
        assert_eq!((resp.status, resp.error()), (403, hierarchy), "{role}");
    }
    assert_eq!(admin.put_empty(&format!("/api/v1/members/{}/roles/{high}", target.pubkey)).await.status, 204);
    let resp = manager.delete(&format!("/api/v1/members/{}/roles/{high}", target.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (403, hierarchy));
    assert_eq!(manager.put_empty(&format!("/api/v1/members/{}/roles/{low}", target.pubkey)).await.status, 204);
    assert_eq!(manager.delete(&format!("/api/v1/members/{}/roles/{low}", target.pubkey)).await.status, 204);

    let resp = admin.put_empty(&format!("/api/v1/members/{}/roles/4242", target.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (404, "role not found"));
    let resp = admin.delete(&format!("/api/v1/members/{}/roles/4242", target.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (404, "role not found"));
    // A valid key that never logged in, and a user who is not a member.
    let stranger = crate::support::pubkey_of(&ed25519_dalek::SigningKey::from_bytes(&[77; 32]));
    let resp = admin.put_empty(&format!("/api/v1/members/{stranger}/roles/{low}")).await;
    assert_eq!((resp.status, resp.error()), (404, "member not found"));
    let resp = admin.delete(&format!("/api/v1/members/{stranger}/roles/{low}")).await;
    assert_eq!((resp.status, resp.error()), (404, "member not found"));
    let resp = admin.put_empty(&format!("/api/v1/members/not-a-key/roles/{low}")).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid public key format"));
    let resp = admin.put_empty(&format!("/api/v1/members/{}/roles/nope", target.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid id: role_id"));
}

async fn overrides_crud_and_rules(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let channel = general(&admin).await;
    let base = format!("/api/v1/channels/{channel}/overrides");

    let resp = admin.get(&base).await;
    assert_eq!((resp.status, &resp.body), (200, &json!({"overrides": []})));
    let role = admin.post("/api/v1/roles", json!({"name": "muted", "permissions": 0, "position": 1})).await;
    let role = role.body["id"].as_str().unwrap().to_owned();

    let resp = admin.put(&format!("{base}/{role}"), json!({"allow": 0, "deny": 1})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(resp.body, json!({"channel_id": channel, "role_id": role, "allow": 0, "deny": 1}));
    let resp = admin.put(&format!("{base}/everyone"), json!({"allow": 4, "deny": 2})).await;
    assert_eq!(resp.body, json!({"channel_id": channel, "role_id": "1", "allow": 4, "deny": 2}));
    // Replaced, not duplicated.
    let resp = admin.put(&format!("{base}/1"), json!({"allow": 0, "deny": 2})).await;
    assert_eq!(resp.body, json!({"channel_id": channel, "role_id": "1", "allow": 0, "deny": 2}));
    let resp = admin.get(&base).await;
    assert_eq!(
        resp.body,
        json!({"overrides": [
            {"channel_id": channel, "role_id": "1", "allow": 0, "deny": 2},
            {"channel_id": channel, "role_id": role, "allow": 0, "deny": 1},
        ]})
    );
    let resp = user.get(&format!("/api/v1/channels/{channel}/messages")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing read_messages permission"));

    // Validation.
    let admin_bit = "ADMINISTRATOR cannot be set in a channel override";
    for body in [json!({"allow": 8192, "deny": 0}), json!({"allow": 0, "deny": 8192})] {
        let resp = admin.put(&format!("{base}/{role}"), body).await;
        assert_eq!((resp.status, resp.error()), (400, admin_bit));
    }
    for body in [json!({"allow": 16384, "deny": 0}), json!({"allow": 0, "deny": 1 << 30})] {
        let resp = admin.put(&format!("{base}/{role}"), body).await;
        assert_eq!((resp.status, resp.error()), (400, "unknown permission bits"));
    }
    for body in [json!({"allow": 1}), json!({"deny": 1}), json!({"allow": "1", "deny": 0})] {
        assert_eq!(admin.put(&format!("{base}/{role}"), body).await.status, 422);
    }
    let resp = admin.put(&format!("{base}/4242"), json!({"allow": 0, "deny": 1})).await;
    assert_eq!((resp.status, resp.error()), (404, "role not found"));
    let resp = admin.put(&format!("/api/v1/channels/4242/overrides/{role}"), json!({"allow": 0, "deny": 1})).await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    let resp = admin.get("/api/v1/channels/4242/overrides").await;
    assert_eq!((resp.status, resp.error()), (404, "channel not found"));
    let other = create_channel(&admin, "empty").await;
    let resp = admin.delete(&format!("/api/v1/channels/{other}/overrides/{role}")).await;
    assert_eq!((resp.status, resp.error()), (404, "override not found"));
    let resp = admin.delete(&format!("{base}/4242")).await;
    assert_eq!((resp.status, resp.error()), (404, "override not found"));

    // Permission.
    let missing = "missing manage_channels permission";
    let resp = user.get(&base).await;
    assert_eq!((resp.status, resp.error()), (403, missing));
    let resp = user.put(&format!("{base}/everyone"), json!({"allow": 2, "deny": 0})).await;
    assert_eq!((resp.status, resp.error()), (403, missing));
    let resp = user.delete(&format!("{base}/everyone")).await;
    assert_eq!((resp.status, resp.error()), (403, missing));

    // Removing the @everyone override gives reading back; deleting a role drops its overrides.
    let resp = admin.delete(&format!("{base}/everyone")).await;
    assert_eq!((resp.status, resp.bytes.len()), (204, 0));
    assert_eq!(user.get(&format!("/api/v1/channels/{channel}/messages")).await.status, 200);
    assert_eq!(admin.delete(&format!("/api/v1/roles/{role}")).await.status, 204);
    assert_eq!(admin.get(&base).await.body, json!({"overrides": []}));
}

async fn override_hierarchy_and_grant_rule(server: TestServer) {
    let admin = server.login(1).await;
    let manager = server.login(2).await;
    let channel = general(&admin).await;
    let base = format!("/api/v1/channels/{channel}/overrides");
    let own = grant_role(&admin, &manager, "channel-managers", MANAGE_CHANNELS, 10).await;
    let low = admin.post("/api/v1/roles", json!({"name": "low", "permissions": 0, "position": 3})).await;
    let low = low.body["id"].as_str().unwrap().to_owned();

    let hierarchy = "cannot manage role at or above your highest role position";
    let resp = manager.put(&format!("{base}/{own}"), json!({"allow": 0, "deny": 1})).await;
    assert_eq!((resp.status, resp.error()), (403, hierarchy));
    let resp = manager.put(&format!("{base}/admin"), json!({"allow": 0, "deny": 1})).await;
    assert_eq!((resp.status, resp.error()), (403, hierarchy));
    // `allow` only with held bits; `deny` is unrestricted.
    let resp = manager.put(&format!("{base}/{low}"), json!({"allow": 4, "deny": 0})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot grant permissions you do not have"));
    let resp = manager.put(&format!("{base}/{low}"), json!({"allow": 1 | 8, "deny": 4 | 64})).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(manager.get(&base).await.body["overrides"].as_array().unwrap().len(), 1);

    assert_eq!(admin.put(&format!("{base}/{own}"), json!({"allow": 0, "deny": 1})).await.status, 200);
    let resp = manager.delete(&format!("{base}/{own}")).await;
    assert_eq!((resp.status, resp.error()), (403, hierarchy));
    assert_eq!(manager.delete(&format!("{base}/{low}")).await.status, 204);
}

async fn role_events(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let mut gateway = server.gateway(user.token()).await;

    let created = admin.post("/api/v1/roles", json!({"name": "evented", "permissions": 1, "position": 7})).await;
    assert_eq!(gateway.expect_op("ROLE_CREATE").await["d"], created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let updated = admin.patch(&format!("/api/v1/roles/{id}"), json!({"name": "renamed"})).await;
    assert_eq!(gateway.expect_op("ROLE_UPDATE").await["d"], updated.body);

    assert_eq!(admin.put_empty(&format!("/api/v1/members/{}/roles/{id}", user.pubkey)).await.status, 204);
    let event = gateway.expect_op("MEMBER_ROLE_ADD").await;
    assert_eq!(event["d"], json!({"user_id": user.user_id, "role_id": id}));
    assert_eq!(admin.delete(&format!("/api/v1/members/{}/roles/{id}", user.pubkey)).await.status, 204);
    let event = gateway.expect_op("MEMBER_ROLE_REMOVE").await;
    assert_eq!(event["d"], json!({"user_id": user.user_id, "role_id": id}));

    assert_eq!(admin.delete(&format!("/api/v1/roles/{id}")).await.status, 204);
    assert_eq!(gateway.expect_op("ROLE_DELETE").await["d"], json!({"id": id}));
}
