//! Membership, moderation, allowlist and bot approval (api.md §3.12, §5.5).

use decentcom::config::MembershipMode;
use ed25519_dalek::SigningKey;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::auth::try_login;
use crate::support::{TestServer, pubkey_of};

api_tests!(
    members_list_get_leave_and_rejoin,
    join_policy_per_mode,
    kick_removes_the_member_and_its_sessions,
    ban_blocks_joining_until_unbanned,
    moderation_respects_the_hierarchy,
    the_server_always_keeps_an_administrator,
    allowlist_routes,
    bot_approval_routes,
);

fn role_ids(member: &Value) -> Vec<&str> {
    member["roles"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

fn other_pubkey(seed: u8) -> String {
    pubkey_of(&SigningKey::from_bytes(&[seed; 32]))
}

async fn members_list_get_leave_and_rejoin(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let mut gateway = server.gateway(admin.token()).await;
    let mut user_gateway = server.gateway(user.token()).await;

    let list = user.get("/api/v1/members").await;
    assert_eq!(list.status, 200);
    let members = list.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["user_id"], admin.user_id.as_str());
    assert_eq!(members[1]["user_id"], user.user_id.as_str());
    let member = user.get(&format!("/api/v1/members/{}", user.pubkey)).await;
    assert_eq!(member.status, 200);
    let joined_at = member.body["joined_at"].clone();
    assert_eq!(
        member.body,
        json!({
            "user_id": user.user_id,
            "pubkey": user.pubkey,
            "display_name": null,
            "avatar_hash": null,
            "is_bot": false,
            "joined_at": joined_at,
            "roles": [{"id": "1", "name": "@everyone", "color": null, "position": 0}],
        })
    );
    let bad = user.get("/api/v1/members/not-a-key").await;
    assert_eq!((bad.status, bad.error()), (400, "invalid public key format"));
    let unknown = user.get(&format!("/api/v1/members/{}", other_pubkey(9))).await;
    assert_eq!((unknown.status, unknown.error()), (404, "member not found"));

    // Leaving: MEMBER_LEAVE to everyone, the leaver's connections closed with 4004.
    let left = user.delete("/api/v1/members/me").await;
    assert_eq!(left.status, 204);
    let event = gateway.expect_op("MEMBER_LEAVE").await;
    assert_eq!(event["d"]["user_id"], user.user_id.as_str());
    assert_eq!(event["d"]["pubkey"], user.pubkey.as_str());
    assert!(event["d"]["left_at"].is_string());
    assert_eq!(user_gateway.expect_close().await, 4004);
    let refused = user.get("/api/v1/members").await;
    assert_eq!((refused.status, refused.error()), (403, "membership required"));
    assert_eq!(user.delete("/api/v1/members/me").await.status, 403);
    // The session stays valid.
    assert_eq!(user.get("/api/v1/auth/me").await.status, 200);
    assert_eq!(admin.get("/api/v1/members").await.body["members"].as_array().unwrap().len(), 1);

    // Rejoining (open mode): the full Member in the answer, MEMBER_JOIN with the JoinedMember
    // (role ids, not RoleRefs); a second join changes nothing.
    let joined = user.post_empty("/api/v1/members/join").await;
    assert_eq!(joined.status, 200, "{:?}", joined.body);
    assert_eq!(joined.body["member"]["user_id"], user.user_id.as_str());
    assert_eq!(role_ids(&joined.body["member"]), ["1"]);
    assert_eq!(joined.body["member"]["roles"][0]["name"], "@everyone");
    let event = gateway.expect_op("MEMBER_JOIN").await;
    let mut joined_member = joined.body["member"].clone();
    joined_member["roles"] = json!(role_ids(&joined.body["member"]));
    assert_eq!(event["d"], joined_member);
    let again = user.post_empty("/api/v1/members/join").await;
    assert_eq!((again.status, &again.body), (200, &joined.body));
    gateway.expect_no_op("MEMBER_JOIN", std::time::Duration::from_millis(300)).await;
    assert_eq!(admin.post_empty("/api/v1/members/join").await.status, 200);
}

async fn join_policy_per_mode(server: TestServer) {
    // invite_only: only invites let new users in.
    let invite_only = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::InviteOnly).await;
    let admin = invite_only.login(1).await;
    let user = invite_only.login(2).await;
    let resp = user.post_empty("/api/v1/members/join").await;
    assert_eq!((resp.status, resp.error()), (403, "server is invite-only"));
    // An existing member joining is a no-op in every mode.
    assert_eq!(admin.post_empty("/api/v1/members/join").await.status, 200);

    // allowlist: allowlisted keys only.
    let allowlist = TestServer::start_with(server.backend, |c| c.membership.mode = MembershipMode::Allowlist).await;
    let admin = allowlist.login(1).await;
    let user = allowlist.login(2).await;
    let resp = user.post_empty("/api/v1/members/join").await;
    assert_eq!((resp.status, resp.error()), (403, "pubkey is not on the allowlist"));
    assert_eq!(admin.post("/api/v1/allowlist", json!({"pubkey": user.pubkey})).await.status, 200);
    let resp = user.post_empty("/api/v1/members/join").await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(user.get("/api/v1/members").await.status, 200);

    // open: a new user is a member at once (a bot is not, see auth.rs).
    let _admin = server.login(1).await;
    let user = server.login(2).await;
    assert_eq!(user.get("/api/v1/members").await.status, 200);
}

async fn kick_removes_the_member_and_its_sessions(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let bystander = server.login(3).await;
    let mut gateway = server.gateway(bystander.token()).await;
    let mut user_gateway = server.gateway(user.token()).await;

    let resp = bystander.post_empty(&format!("/api/v1/members/{}/kick", user.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (403, "missing kick_members permission"));
    let resp = admin.post_empty("/api/v1/members/bad/kick").await;
    assert_eq!((resp.status, resp.error()), (400, "invalid public key format"));
    let resp = admin.post_empty(&format!("/api/v1/members/{}/kick", other_pubkey(9))).await;
    assert_eq!((resp.status, resp.error()), (404, "member not found"));

    let resp = admin.post_empty(&format!("/api/v1/members/{}/kick", user.pubkey)).await;
    assert_eq!(resp.status, 204);
    let event = gateway.expect_op("MEMBER_KICK").await;
    assert_eq!(event["d"]["user_id"], user.user_id.as_str());
    assert_eq!(event["d"]["pubkey"], user.pubkey.as_str());
    assert_eq!(event["d"]["kicked_by"], admin.user_id.as_str());
    assert!(event["d"]["kicked_at"].is_string());
    assert_eq!(user_gateway.expect_close().await, 4004);
    let resp = user.get("/api/v1/auth/me").await;
    assert_eq!((resp.status, resp.error()), (401, "invalid session token"));
    let members = admin.get("/api/v1/members").await;
    assert!(members.body["members"].as_array().unwrap().iter().all(|m| m["user_id"] != user.user_id.as_str()));
    let resp = admin.post_empty(&format!("/api/v1/members/{}/kick", user.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (404, "member not found"));

    // A kicked user may log in and (open mode) join again.
    let user = server.login(2).await;
    assert_eq!(user.get("/api/v1/members").await.status, 403);
    assert_eq!(user.post_empty("/api/v1/members/join").await.status, 200);
}

async fn ban_blocks_joining_until_unbanned(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let bystander = server.login(3).await;
    let mut gateway = server.gateway(bystander.token()).await;
    let mut user_gateway = server.gateway(user.token()).await;

    let resp = bystander.post(&format!("/api/v1/members/{}/ban", user.pubkey), json!({})).await;
    assert_eq!((resp.status, resp.error()), (403, "missing ban_members permission"));
    assert_eq!(bystander.get("/api/v1/bans").await.status, 403);
    let resp = admin.post("/api/v1/members/xyz/ban", json!({})).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid public key format"));

    let ban = admin.post(&format!("/api/v1/members/{}/ban", user.pubkey), json!({"reason": "spam"})).await;
    assert_eq!(ban.status, 200, "{:?}", ban.body);
    let banned_at = ban.body["banned_at"].clone();
    assert_eq!(
        ban.body,
        json!({"pubkey": user.pubkey, "banned_by": admin.user_id, "reason": "spam", "banned_at": banned_at})
    );
    let event = gateway.expect_op("MEMBER_BAN").await;
    assert_eq!(event["d"], ban.body);
    assert_eq!(user_gateway.expect_close().await, 4004);
    assert_eq!(user.get("/api/v1/auth/me").await.status, 401);
    let resp = admin.post_empty(&format!("/api/v1/members/{}/ban", user.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (409, "pubkey is already banned"));

    // A key that never logged in can be banned too (no body at all).
    let stranger = other_pubkey(9);
    let resp = admin.post_empty(&format!("/api/v1/members/{stranger}/ban")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body["reason"], Value::Null);
    let bans = admin.get("/api/v1/bans").await;
    let keys: Vec<&str> = bans.body["bans"].as_array().unwrap().iter().map(|b| b["pubkey"].as_str().unwrap()).collect();
    assert_eq!(keys, [stranger.as_str(), user.pubkey.as_str()]);

    // Banned: a session, but neither join route.
    let user = server.login(2).await;
    let resp = user.post_empty("/api/v1/members/join").await;
    assert_eq!((resp.status, resp.error()), (403, "this pubkey is banned from the server"));
    let invite = admin.post("/api/v1/invites", json!({})).await;
    let code = invite.body["code"].as_str().unwrap();
    let resp = user.post_empty(&format!("/api/v1/invites/{code}/join")).await;
    assert_eq!((resp.status, resp.error()), (403, "this pubkey is banned from the server"));

    // Unban: membership is not restored, but joining works again.
    assert_eq!(bystander.delete(&format!("/api/v1/bans/{}", user.pubkey)).await.status, 403);
    assert_eq!(admin.delete(&format!("/api/v1/bans/{}", user.pubkey)).await.status, 204);
    let resp = admin.delete(&format!("/api/v1/bans/{}", user.pubkey)).await;
    assert_eq!((resp.status, resp.error()), (404, "ban not found"));
    assert_eq!(admin.delete("/api/v1/bans/bad").await.status, 400);
    assert_eq!(user.get("/api/v1/members").await.status, 403);
    assert_eq!(user.post_empty("/api/v1/members/join").await.status, 200);
}

/// Needs the role routes: a moderator role that may kick and ban but sits below @admin.
async fn moderation_respects_the_hierarchy(server: TestServer) {
    let admin = server.login(1).await;
    let moderator = server.login(2).await;
    let peer = server.login(3).await;
    let user = server.login(4).await;
    let role = admin.post("/api/v1/roles", json!({"name": "mods", "permissions": 32 | 64, "position": 10})).await;
    assert_eq!(role.status, 200, "{:?}", role.body);
    let role_id = role.body["id"].as_str().unwrap();
    for member in [&moderator, &peer] {
        let resp = admin.put_empty(&format!("/api/v1/members/{}/roles/{role_id}", member.pubkey)).await;
        assert_eq!(resp.status, 204, "{:?}", resp.body);
    }
    let message = "cannot manage a member with an equal or higher role";
    for target in [&admin.pubkey, &peer.pubkey] {
        let resp = moderator.post_empty(&format!("/api/v1/members/{target}/kick")).await;
        assert_eq!((resp.status, resp.error()), (403, message));
        let resp = moderator.post_empty(&format!("/api/v1/members/{target}/ban")).await;
        assert_eq!((resp.status, resp.error()), (403, message));
    }
    assert_eq!(moderator.post_empty(&format!("/api/v1/members/{}/kick", user.pubkey)).await.status, 204);
    // The target is no longer a member: a ban needs no hierarchy check.
    assert_eq!(moderator.post_empty(&format!("/api/v1/members/{}/ban", user.pubkey)).await.status, 200);
    // An administrator outranks everyone.
    assert_eq!(admin.post_empty(&format!("/api/v1/members/{}/kick", peer.pubkey)).await.status, 204);
}

async fn the_server_always_keeps_an_administrator(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    // No self-removal, whatever the rank.
    let r = admin.post_empty(&format!("/api/v1/members/{}/kick", admin.pubkey)).await;
    assert_eq!((r.status, r.error()), (400, "cannot kick yourself"));
    let r = admin.post_empty(&format!("/api/v1/members/{}/ban", admin.pubkey)).await;
    assert_eq!((r.status, r.error()), (400, "cannot ban yourself"));
    // The last administrator cannot leave, nor lose @admin.
    let last = "the server must keep at least one administrator";
    let r = admin.delete("/api/v1/members/me").await;
    assert_eq!((r.status, r.error()), (409, last));
    let r = admin.delete(&format!("/api/v1/members/{}/roles/admin", admin.pubkey)).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(admin.get("/api/v1/bans").await.body, json!({"bans": []}));
    assert_eq!(admin.get(&format!("/api/v1/members/{}", admin.pubkey)).await.status, 200, "still a member");

    // With a second administrator, one of them may go; then the other is the last.
    assert_eq!(admin.put_empty(&format!("/api/v1/members/{}/roles/admin", user.pubkey)).await.status, 204);
    assert_eq!(user.post_empty(&format!("/api/v1/members/{}/kick", admin.pubkey)).await.status, 204);
    let r = user.delete("/api/v1/members/me").await;
    assert_eq!((r.status, r.error()), (409, last));
    let admins: Vec<Value> = user.get("/api/v1/members").await.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| role_ids(m).contains(&"2"))
        .cloned()
        .collect();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0]["user_id"], user.user_id.as_str());
}

async fn allowlist_routes(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let first = other_pubkey(7);
    let second = other_pubkey(8);

    for resp in [
        user.get("/api/v1/allowlist").await,
        user.post("/api/v1/allowlist", json!({"pubkey": first})).await,
        user.delete(&format!("/api/v1/allowlist/{first}")).await,
    ] {
        assert_eq!((resp.status, resp.error()), (403, "missing manage_server permission"));
    }
    let resp = admin.post("/api/v1/allowlist", json!({"pubkey": "nope"})).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid public key format"));
    assert_eq!(admin.post("/api/v1/allowlist", json!({})).await.status, 422);

    let added = admin.post("/api/v1/allowlist", json!({"pubkey": first})).await;
    assert_eq!(added.status, 200);
    let added_at = added.body["added_at"].clone();
    assert_eq!(added.body, json!({"pubkey": first, "added_by": admin.user_id, "added_at": added_at}));
    let resp = admin.post("/api/v1/allowlist", json!({"pubkey": first})).await;
    assert_eq!((resp.status, resp.error()), (409, "pubkey is already on the allowlist"));
    assert_eq!(admin.post("/api/v1/allowlist", json!({"pubkey": second})).await.status, 200);
    let list = admin.get("/api/v1/allowlist").await;
    let keys: Vec<&str> =
        list.body["entries"].as_array().unwrap().iter().map(|e| e["pubkey"].as_str().unwrap()).collect();
    assert_eq!(keys, [first.as_str(), second.as_str()]);

    assert_eq!(admin.delete(&format!("/api/v1/allowlist/{first}")).await.status, 204);
    let resp = admin.delete(&format!("/api/v1/allowlist/{first}")).await;
    assert_eq!((resp.status, resp.error()), (404, "allowlist entry not found"));
    assert_eq!(admin.delete("/api/v1/allowlist/0").await.status, 400);
    assert_eq!(admin.get("/api/v1/allowlist").await.body["entries"].as_array().unwrap().len(), 1);
}

async fn bot_approval_routes(server: TestServer) {
    let admin = server.login(1).await;
    let user = server.login(2).await;
    let mut gateway = server.gateway(admin.token()).await;
    let bot_key = SigningKey::from_bytes(&[5; 32]);
    let bot_pubkey = pubkey_of(&bot_key);
    let login = try_login(&server, &bot_key, true, None).await;
    assert_eq!(login.body["is_read_only"], true);

    assert_eq!(user.get("/api/v1/admin/bots/pending").await.status, 403);
    let resp = user.post_empty(&format!("/api/v1/admin/bots/{bot_pubkey}/approve")).await;
    assert_eq!((resp.status, resp.error()), (403, "missing manage_server permission"));
    assert_eq!(user.post_empty(&format!("/api/v1/admin/bots/{bot_pubkey}/revoke")).await.status, 403);

    let pending = admin.get("/api/v1/admin/bots/pending").await;
    assert_eq!(
        pending.body,
        json!({"bots": [{"pubkey": bot_pubkey, "approved_by": null, "approved_at": null, "revoked_at": null, "note": null}]})
    );
    for unknown in [other_pubkey(9), user.pubkey.clone()] {
        let resp = admin.post_empty(&format!("/api/v1/admin/bots/{unknown}/approve")).await;
        assert_eq!((resp.status, resp.error()), (404, "bot not found"));
        let resp = admin.post_empty(&format!("/api/v1/admin/bots/{unknown}/revoke")).await;
        assert_eq!((resp.status, resp.error()), (404, "bot not found"));
    }
    assert_eq!(admin.post_empty("/api/v1/admin/bots/x/approve").await.status, 400);

    let approved = admin.post(&format!("/api/v1/admin/bots/{bot_pubkey}/approve"), json!({"note": "ci bot"})).await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert_eq!(approved.body["approved_by"], admin.user_id.as_str());
    assert_eq!(approved.body["note"], "ci bot");
    assert!(approved.body["approved_at"].is_string());
    assert_eq!(approved.body["revoked_at"], Value::Null);
    let event = gateway.expect_op("MEMBER_JOIN").await;
    assert_eq!(event["d"]["pubkey"], bot_pubkey.as_str());
    assert_eq!(event["d"]["is_bot"], true);
    assert_eq!(event["d"]["roles"], json!(["1"]));
    assert_eq!(admin.get("/api/v1/admin/bots/pending").await.body, json!({"bots": []}));
    let member = admin.get(&format!("/api/v1/members/{bot_pubkey}")).await;
    assert_eq!(member.status, 200);

    let revoked = admin.post_empty(&format!("/api/v1/admin/bots/{bot_pubkey}/revoke")).await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.body["revoked_at"].is_string());
    // Membership is unchanged.
    assert_eq!(admin.get(&format!("/api/v1/members/{bot_pubkey}")).await.status, 200);
    // Re-approval clears the revocation; the bot is already a member, so no MEMBER_JOIN.
    let again = admin.post_empty(&format!("/api/v1/admin/bots/{bot_pubkey}/approve")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["revoked_at"], Value::Null);
    gateway.expect_no_op("MEMBER_JOIN", std::time::Duration::from_millis(300)).await;
}
