//! Invites: create, list, preview, revoke, join (api.md §3.13).

use decentcom::config::MembershipMode;
use pretty_assertions::assert_eq;
use serde_json::json;

use crate::api_tests;
use crate::support::TestServer;

api_tests!(
    create_list_preview_and_delete,
    create_validation_and_permissions,
    join_through_an_invite,
    expired_and_exhausted_invites,
    invite_join_policy,
    concurrent_joins_never_exceed_max_uses,
    invites_grant_roles_below_the_creator,
);

fn public_url(config: &mut decentcom::config::Config) {
    config.server.public_url = "https://chat.example".into();
}

async fn create_list_preview_and_delete(server: TestServer) {
    let server = TestServer::start_with(server.backend, public_url).await;
    let admin = server.login(1).await;
    let _user = server.login(2).await;

    let created = admin.post("/api/v1/invites", json!({})).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let code = created.body["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
    let created_at = created.body["created_at"].clone();
    assert_eq!(
        created.body,
        json!({
            "code": code,
            "created_by": admin.user_id,
            "grant_role_id": null,
            "max_uses": 0,
            "use_count": 0,
            "expires_at": null,
            "created_at": created_at,
            "invite_link": format!("https://chat.example/invite/{code}"),
        })
    );
    let second = admin.post("/api/v1/invites", json!({"max_uses": 3, "expires_in_seconds": 3600})).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["max_uses"], 3);
    assert!(second.body["expires_at"].is_string());
    // Optional fields may be null.
    let third = admin.post("/api/v1/invites", json!({"max_uses": null, "grant_role_id": null})).await;
    assert_eq!(third.status, 200);

    let list = admin.get("/api/v1/invites").await;
    let codes: Vec<&str> =
        list.body["invites"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(codes, [third.body["code"].as_str().unwrap(), second.body["code"].as_str().unwrap(), code.as_str()]);

    let preview = server.anonymous().get(&format!("/api/v1/invites/{code}")).await;
    assert_eq!(preview.status, 200);
    assert_eq!(
        preview.body,
        json!({
            "code": code,
            "server_name": "decentcom",
            "server_icon": null,
            "member_count": 2,
            "expires_at": null,
            "invite_link": format!("https://chat.example/invite/{code}"),
        })
    );

    assert_eq!(admin.delete(&format!("/api/v1/invites/{code}")).await.status, 204);
    let gone = server.anonymous().get(&format!("/api/v1/invites/{code}")).await;
    assert_eq!((gone.status, gone.error()), (404, "invite not found"));
    let again = admin.delete(&format!("/api/v1/invites/{code}")).await;
    assert_eq!((again.status, again.error()), (404, "invite not found"));
    assert_eq!(admin.get("/api/v1/invites").await.body["invites"].as_array().unwrap().len(), 2);
}

async fn create_validation_and_permissions(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let code = admin.post("/api/v1/invites", json!({})).await.body["code"].as_str().unwrap().to_owned();

    for resp in [
        user.post("/api/v1/invites", json!({})).await,
        user.get("/api/v1/invites").await,
        user.delete(&format!("/api/v1/invites/{code}")).await,
    ] {
        assert_eq!((resp.status, resp.error()), (403, "missing manage_invites permission"));
    }
    let cases = [
        (json!({"max_uses": -1}), 400, "max_uses must be >= 0"),
        (json!({"expires_in_seconds": 0}), 400, "expires_in_seconds must be > 0 when provided"),
        (json!({"expires_in_seconds": -5}), 400, "expires_in_seconds must be > 0 when provided"),
        (json!({"grant_role_id": "999"}), 400, "grant_role_id does not exist"),
        (json!({"grant_role_id": "abc"}), 400, "invalid id: grant_role_id"),
        (json!({"grant_role_id": "admin"}), 403, "cannot grant a role at or above your highest role"),
        (json!({"grant_role_id": "2"}), 403, "cannot grant a role at or above your highest role"),
    ];
    for (body, status, message) in cases {
        let resp = admin.post("/api/v1/invites", body.clone()).await;
        assert_eq!((resp.status, resp.error()), (status, message), "{body}");
    }
    for body in [json!({"grant_role_id": 1}), json!({"max_uses": "3"})] {
        assert_eq!(admin.post("/api/v1/invites", body.clone()).await.status, 422, "{body}");
    }
    let everyone = admin.post("/api/v1/invites", json!({"grant_role_id": "everyone"})).await;
    assert_eq!(everyone.status, 200);
    assert_eq!(everyone.body["grant_role_id"], "1");
    // Non-members are refused before anything else.
    let outsider_server =
        TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let _admin = outsider_server.login(1).await;
    let outsider = outsider_server.login(2).await;
    let resp = outsider.post("/api/v1/invites", json!({"max_uses": -1})).await;
    assert_eq!((resp.status, resp.error()), (403, "membership required"));
}

async fn join_through_an_invite(server: TestServer) {
    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let mut gateway = server.gateway(admin.token()).await;
    let invite = admin.post("/api/v1/invites", json!({"max_uses": 2})).await;
    let code = invite.body["code"].as_str().unwrap().to_owned();

    let resp = server.anonymous().post_empty(&format!("/api/v1/invites/{code}/join")).await;
    assert_eq!(resp.status, 401);
    let unknown = user.post_empty("/api/v1/invites/ZZZZZZZZ/join").await;
    assert_eq!((unknown.status, unknown.error()), (404, "invite not found"));

    let joined = user.post_empty(&format!("/api/v1/invites/{code}/join")).await;
    assert_eq!(joined.status, 200, "{:?}", joined.body);
    // JoinedMember: role ids, not RoleRefs (the shape the original SDK decodes).
    let joined_at = joined.body["member"]["joined_at"].clone();
    assert!(joined_at.is_string(), "{:?}", joined.body);
    assert_eq!(
        joined.body,
        json!({"member": {
            "user_id": user.user_id,
            "pubkey": user.pubkey,
            "display_name": null,
            "avatar_hash": null,
            "is_bot": false,
            "joined_at": joined_at,
            "roles": ["1"],
        }})
    );
    let event = gateway.expect_op("MEMBER_JOIN").await;
    assert_eq!(event["d"], joined.body["member"]);
    let member = user.get(&format!("/api/v1/members/{}", user.pubkey)).await;
    assert_eq!(member.body["joined_at"], joined_at);

    // Already a member: 200 with the JoinedMember, no use consumed, no event.
    let again = user.post_empty(&format!("/api/v1/invites/{code}/join")).await;
    assert_eq!((again.status, &again.body), (200, &joined.body));
    gateway.expect_no_op("MEMBER_JOIN", std::time::Duration::from_millis(300)).await;
    let list = admin.get("/api/v1/invites").await;
    assert_eq!(list.body["invites"][0]["use_count"], 1);
    let preview = server.anonymous().get(&format!("/api/v1/invites/{code}")).await;
    assert_eq!(preview.body["member_count"], 2);
}

async fn expired_and_exhausted_invites(server: TestServer) {
    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = server.login(1).await;
    let first = server.login(2).await;
    let second = server.login(3).await;
    let anon = server.anonymous();

    let single = admin.post("/api/v1/invites", json!({"max_uses": 1})).await.body["code"].as_str().unwrap().to_owned();
    assert_eq!(first.post_empty(&format!("/api/v1/invites/{single}/join")).await.status, 200);
    let resp = anon.get(&format!("/api/v1/invites/{single}")).await;
    assert_eq!((resp.status, resp.error()), (410, "invite has been exhausted"));
    let resp = second.post_empty(&format!("/api/v1/invites/{single}/join")).await;
    assert_eq!((resp.status, resp.error()), (410, "invite has been exhausted"));
    // Used-up invites are not listed.
    let list = admin.get("/api/v1/invites").await;
    assert_eq!(list.body["invites"], json!([]));

    let short =
        admin.post("/api/v1/invites", json!({"expires_in_seconds": 1})).await.body["code"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let resp = anon.get(&format!("/api/v1/invites/{short}")).await;
    assert_eq!((resp.status, resp.error()), (410, "invite has expired"));
    let resp = second.post_empty(&format!("/api/v1/invites/{short}/join")).await;
    assert_eq!((resp.status, resp.error()), (410, "invite has expired"));
    assert_eq!(admin.get("/api/v1/invites").await.body["invites"], json!([]));
    // Expired and used-up invites can still be deleted.
    assert_eq!(admin.delete(&format!("/api/v1/invites/{short}")).await.status, 204);
    assert_eq!(admin.delete(&format!("/api/v1/invites/{single}")).await.status, 204);
}

async fn invite_join_policy(server: TestServer) {
    let allowlist = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::Allowlist).await;
    let admin = allowlist.login(1).await;
    let user = allowlist.login(2).await;
    let code = admin.post("/api/v1/invites", json!({})).await.body["code"].as_str().unwrap().to_owned();
    let resp = user.post_empty(&format!("/api/v1/invites/{code}/join")).await;
    assert_eq!((resp.status, resp.error()), (403, "pubkey is not on the allowlist"));
    assert_eq!(admin.post("/api/v1/allowlist", json!({"pubkey": user.pubkey})).await.status, 200);
    assert_eq!(user.post_empty(&format!("/api/v1/invites/{code}/join")).await.status, 200);

    // Open mode: invites work as well (the user is a member already: nothing consumed).
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let code = admin.post("/api/v1/invites", json!({"max_uses": 1})).await.body["code"].as_str().unwrap().to_owned();
    assert_eq!(user.post_empty(&format!("/api/v1/invites/{code}/join")).await.status, 200);
    assert_eq!(admin.get("/api/v1/invites").await.body["invites"][0]["use_count"], 0);
}

async fn concurrent_joins_never_exceed_max_uses(server: TestServer) {
    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = server.login(1).await;
    let mut users = Vec::new();
    for seed in 10..30 {
        users.push(server.login(seed).await);
    }
    let code = admin.post("/api/v1/invites", json!({"max_uses": 5})).await.body["code"].as_str().unwrap().to_owned();
    let joins = users.iter().map(|u| {
        let path = format!("/api/v1/invites/{code}/join");
        async move { u.post_empty(&path).await.status }
    });
    let statuses = futures::future::join_all(joins).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 410).count(), 15, "{statuses:?}");
    let members = admin.get("/api/v1/members").await;
    assert_eq!(members.body["members"].as_array().unwrap().len(), 6);
    let preview = server.anonymous().get(&format!("/api/v1/invites/{code}")).await;
    assert_eq!(preview.status, 410);
}

/// Needs the role routes for a custom role.
async fn invites_grant_roles_below_the_creator(server: TestServer) {
    let server = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let role = admin.post("/api/v1/roles", json!({"name": "guests", "permissions": 0, "position": 5})).await;
    assert_eq!(role.status, 200, "{:?}", role.body);
    let role_id = role.body["id"].as_str().unwrap().to_owned();
    let invite = admin.post("/api/v1/invites", json!({"grant_role_id": role_id})).await;
    assert_eq!(invite.status, 200);
    assert_eq!(invite.body["grant_role_id"], role_id.as_str());
    let code = invite.body["code"].as_str().unwrap();
    let joined = user.post_empty(&format!("/api/v1/invites/{code}/join")).await;
    assert_eq!(joined.status, 200);
    // By position descending: the granted role (5), then @everyone (0).
    assert_eq!(joined.body["member"]["roles"], json!([role_id, "1"]));

    // A member whose highest role is the granted one cannot grant it.
    let managers = admin.post("/api/v1/roles", json!({"name": "inviters", "permissions": 128, "position": 5})).await;
    let managers_id = managers.body["id"].as_str().unwrap();
    assert_eq!(admin.put_empty(&format!("/api/v1/members/{}/roles/{managers_id}", user.pubkey)).await.status, 204);
    let resp = user.post("/api/v1/invites", json!({"grant_role_id": role_id})).await;
    assert_eq!((resp.status, resp.error()), (403, "cannot grant a role at or above your highest role"));
    assert_eq!(user.post("/api/v1/invites", json!({"grant_role_id": "everyone"})).await.status, 200);
}
