//! SessionStore: login challenges and sessions.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn challenge_take_is_single_use_and_round_trips_bytes_and_micros(s: &dyn Storage) {
    let now = ts("2030-01-01T00:00:00Z");
    let expires = ts("2030-01-01T00:05:00.654321Z");
    let mut nonce = [0u8; 32];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    let cases = [
        (PublicKey([0x00; 32]), Nonce([0xff; 32]), true),
        (PublicKey([0xff; 32]), Nonce([0x00; 32]), false),
        (key(3), Nonce(nonce), false),
    ];
    let before = Timestamp::now();
    for (pubkey, nonce, is_bot) in cases {
        s.put_challenge(&pubkey, nonce, is_bot, expires).await.unwrap();
    }
    let after = Timestamp::now();
    for (pubkey, nonce, is_bot) in cases {
        let taken = s.take_challenge(&pubkey, now).await.unwrap().expect("a pending challenge");
        assert_eq!(taken.pubkey, pubkey);
        assert_eq!(taken.nonce.as_bytes(), nonce.as_bytes());
        assert_eq!(taken.is_bot, is_bot);
        assert_eq!(taken.expires_at, expires);
        assert_eq!(taken.expires_at.as_micros() % 1_000_000, 654_321);
        assert_between(taken.created_at, before, after);
        assert_eq!(s.take_challenge(&pubkey, now).await.unwrap(), None, "single use");
    }
    assert_eq!(s.take_challenge(&key(4), now).await.unwrap(), None);
}

pub async fn expired_challenge_is_not_returned(s: &dyn Storage) {
    let expires = ts("2030-01-01T00:05:00.000001Z");
    s.put_challenge(&key(1), Nonce([1; 32]), false, expires).await.unwrap();
    let late = ts("2030-01-01T00:05:00.000002Z");
    assert_eq!(s.take_challenge(&key(1), late).await.unwrap(), None, "expired one microsecond ago");
    assert_eq!(s.take_challenge(&key(1), ts("2030-01-01T00:10:00Z")).await.unwrap(), None);

    s.put_challenge(&key(2), Nonce([2; 32]), false, expires).await.unwrap();
    let early = ts("2030-01-01T00:05:00Z");
    let taken = s.take_challenge(&key(2), early).await.unwrap().expect("still valid one microsecond before expiry");
    assert_eq!(taken.nonce, Nonce([2; 32]));
}

pub async fn put_challenge_replaces_pending_challenge(s: &dyn Storage) {
    let now = ts("2030-01-01T00:00:00Z");
    s.put_challenge(&key(1), Nonce([0xaa; 32]), false, ts("2030-01-01T00:01:00Z")).await.unwrap();
    s.put_challenge(&key(2), Nonce([0x22; 32]), false, ts("2030-01-01T00:01:00Z")).await.unwrap();
    s.put_challenge(&key(1), Nonce([0xbb; 32]), true, ts("2030-01-01T00:02:00.000007Z")).await.unwrap();
    let taken = s.take_challenge(&key(1), now).await.unwrap().unwrap();
    assert_eq!(
        (taken.nonce, taken.is_bot, taken.expires_at),
        (Nonce([0xbb; 32]), true, ts("2030-01-01T00:02:00.000007Z"))
    );
    assert_eq!(s.take_challenge(&key(1), now).await.unwrap(), None, "the replaced one is gone too");
    assert_eq!(s.take_challenge(&key(2), now).await.unwrap().unwrap().nonce, Nonce([0x22; 32]), "other keys untouched");
}

pub async fn purge_expired_challenges_deletes_only_expired(s: &dyn Storage) {
    let now = ts("2030-01-01T00:00:00.500000Z");
    s.put_challenge(&key(1), Nonce([1; 32]), false, ts("2029-12-31T23:00:00Z")).await.unwrap();
    s.put_challenge(&key(2), Nonce([2; 32]), false, ts("2030-01-01T00:00:00.499999Z")).await.unwrap();
    s.put_challenge(&key(3), Nonce([3; 32]), false, ts("2030-01-01T00:00:00.500001Z")).await.unwrap();
    assert_eq!(s.purge_expired_challenges(now).await.unwrap(), 2);
    assert_eq!(s.purge_expired_challenges(now).await.unwrap(), 0);
    let early = ts("2029-01-01T00:00:00Z");
    assert_eq!(s.take_challenge(&key(1), early).await.unwrap(), None, "purged");
    assert_eq!(s.take_challenge(&key(2), early).await.unwrap(), None, "purged");
    assert_eq!(s.take_challenge(&key(3), early).await.unwrap().unwrap().nonce, Nonce([3; 32]));
}

pub async fn session_round_trips_and_delete_reports(s: &dyn Storage) {
    let a = admin(s).await;
    let expires = ts("2031-02-03T04:05:06.789012Z");
    let before = Timestamp::now();
    let created = s
        .create_session(NewSession {
            token_hash: TokenHash([0xff; 32]),
            user_id: a.id,
            device_key_id: None,
            is_read_only: true,
            expires_at: expires,
        })
        .await
        .unwrap();
    let after = Timestamp::now();
    assert_eq!(created.token_hash, TokenHash([0xff; 32]));
    assert_eq!(created.user_id, a.id);
    assert_eq!((created.device_key_id, created.device_pubkey), (None, None));
    assert!(created.is_read_only);
    assert_between(created.created_at, before, after);
    assert_eq!(created.expires_at, expires);
    assert_eq!(s.get_session(&TokenHash([0xff; 32])).await.unwrap(), Some(created.clone()));

    let zero = session(s, 0x00, a.id).await;
    assert!(!zero.is_read_only);
    assert_ne!(zero.id, created.id);
    assert_eq!(s.get_session(&TokenHash([0x00; 32])).await.unwrap(), Some(zero.clone()));
    assert_eq!(s.get_session(&TokenHash([0x01; 32])).await.unwrap(), None);

    assert!(s.delete_session(created.id).await.unwrap());
    assert!(!s.delete_session(created.id).await.unwrap());
    assert_eq!(s.get_session(&TokenHash([0xff; 32])).await.unwrap(), None);
    assert_eq!(s.get_session(&TokenHash([0x00; 32])).await.unwrap(), Some(zero));
}

pub async fn duplicate_token_hash_is_session_token_conflict(s: &dyn Storage) {
    let a = admin(s).await;
    let first = session(s, 0x42, a.id).await;
    let again = s.create_session(new_session(0x42, a.id, Timestamp::now().plus_seconds(60))).await;
    expect_conflict(again, Conflict::SessionToken);
    assert_eq!(s.get_session(&TokenHash([0x42; 32])).await.unwrap(), Some(first));
}

pub async fn get_session_returns_expired_sessions(s: &dyn Storage) {
    let a = admin(s).await;
    let expired = s.create_session(new_session(0x01, a.id, ts("2000-01-01T00:00:00.000001Z"))).await.unwrap();
    assert_eq!(s.get_session(&TokenHash([0x01; 32])).await.unwrap(), Some(expired));
}

pub async fn delete_user_sessions_returns_their_ids(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let mut mine = vec![session(s, 1, b.id).await.id, session(s, 2, b.id).await.id, session(s, 3, b.id).await.id];
    let other = session(s, 4, a.id).await;
    let mut ended = s.delete_user_sessions(b.id).await.unwrap();
    ended.sort();
    mine.sort();
    assert_eq!(ended, mine);
    for token in 1..=3u8 {
        assert_eq!(s.get_session(&TokenHash([token; 32])).await.unwrap(), None);
    }
    assert_eq!(s.get_session(&other.token_hash).await.unwrap(), Some(other));
    assert_eq!(s.delete_user_sessions(b.id).await.unwrap(), vec![]);
}

pub async fn purge_expired_sessions_deletes_only_expired(s: &dyn Storage) {
    let a = admin(s).await;
    let now = ts("2030-01-01T00:00:00.500000Z");
    s.create_session(new_session(1, a.id, ts("2020-01-01T00:00:00Z"))).await.unwrap();
    s.create_session(new_session(2, a.id, ts("2030-01-01T00:00:00.499999Z"))).await.unwrap();
    let kept = s.create_session(new_session(3, a.id, ts("2030-01-01T00:00:00.500001Z"))).await.unwrap();
    assert_eq!(s.purge_expired_sessions(now).await.unwrap(), 2);
    assert_eq!(s.purge_expired_sessions(now).await.unwrap(), 0);
    assert_eq!(s.get_session(&TokenHash([1; 32])).await.unwrap(), None);
    assert_eq!(s.get_session(&TokenHash([2; 32])).await.unwrap(), None);
    assert_eq!(s.get_session(&TokenHash([3; 32])).await.unwrap(), Some(kept));
}

pub async fn session_with_device_key_carries_device_pubkey(s: &dyn Storage) {
    let a = admin(s).await;
    let device =
        match s.register_device_key(crate::devices::new_device(PublicKey([0x00; 32]), a.id, 1_000)).await.unwrap() {
            DeviceRegistration::Created(d) => d,
            other => panic!("expected Created, got {other:?}"),
        };
    let created = s
        .create_session(NewSession {
            token_hash: TokenHash([7; 32]),
            user_id: a.id,
            device_key_id: Some(device.id),
            is_read_only: false,
            expires_at: ts("2031-01-01T00:00:00Z"),
        })
        .await
        .unwrap();
    assert_eq!(created.device_key_id, Some(device.id));
    assert_eq!(created.device_pubkey, Some(PublicKey([0x00; 32])));
    assert_eq!(s.get_session(&TokenHash([7; 32])).await.unwrap(), Some(created));
}

pub async fn concurrent_takes_return_a_challenge_once(s: &dyn Storage) {
    let now = ts("2030-01-01T00:00:00Z");
    s.put_challenge(&key(1), Nonce([0x5a; 32]), false, ts("2030-01-01T00:05:00Z")).await.unwrap();
    let pubkey = key(1);
    let results = futures::future::join_all((0..10).map(|_| s.take_challenge(&pubkey, now))).await;
    let taken: Vec<Challenge> = results.into_iter().filter_map(|r| r.expect("take_challenge")).collect();
    assert_eq!(taken.len(), 1, "single use even under concurrency");
    assert_eq!(taken[0].nonce, Nonce([0x5a; 32]));
}

/// What `get_session_auth` must equal: the separate loads it replaces.
async fn separately(s: &dyn Storage, token: &TokenHash) -> Option<SessionAuth> {
    let session = s.get_session(token).await.unwrap()?;
    let member = match s.get_member(session.user_id).await.unwrap() {
        Some(member) => Some(MemberAuth {
            member,
            roles: s.member_roles(session.user_id).await.unwrap(),
            everyone: s.get_role(RoleId::EVERYONE).await.unwrap(),
        }),
        None => None,
    };
    Some(SessionAuth { session, member })
}

pub async fn session_auth_loads_session_member_and_roles_in_one_call(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let c = outsider(s).await;
    let mods =
        s.create_role(new_role("mods", 10, Permissions::MANAGE_MESSAGES | Permissions::KICK_MEMBERS)).await.unwrap();
    let helpers = s.create_role(new_role("helpers", 10, Permissions::empty())).await.unwrap();
    s.assign_role(b.id, helpers.id).await.unwrap();
    s.assign_role(b.id, mods.id).await.unwrap();
    let sa = session(s, 1, a.id).await;
    let sb = session(s, 2, b.id).await;
    let sc = session(s, 3, c.id).await;
    let expired = s.create_session(new_session(4, b.id, ts("2000-01-01T00:00:00.000001Z"))).await.unwrap();

    let admin_auth = s.get_session_auth(&sa.token_hash).await.unwrap().expect("admin session");
    assert_eq!(admin_auth.session, sa);
    let admin_member = admin_auth.member.clone().expect("the admin is a member");
    assert_eq!(admin_member.member.roles, vec![admin_ref(), everyone_ref()]);
    assert_eq!(role_ids_of(&admin_member.roles), vec![RoleId::ADMIN, RoleId::EVERYONE]);
    assert_eq!(admin_member.everyone.as_ref().map(|r| r.permissions), Some(everyone_permissions()));
    assert_eq!(Some(admin_auth), separately(s, &sa.token_hash).await);

    // Equal positions order by id; permissions come with each role.
    let member_auth = s.get_session_auth(&sb.token_hash).await.unwrap().expect("member session");
    let held = member_auth.member.clone().expect("b is a member");
    assert_eq!(held.member.user, b);
    assert_eq!(role_ids_of(&held.roles), vec![mods.id, helpers.id, RoleId::EVERYONE]);
    assert_eq!(held.roles[0].permissions, Permissions::MANAGE_MESSAGES | Permissions::KICK_MEMBERS);
    assert_eq!(Some(member_auth), separately(s, &sb.token_hash).await);

    assert_eq!(
        s.get_session_auth(&sc.token_hash).await.unwrap(),
        Some(SessionAuth { session: sc.clone(), member: None }),
        "an outsider's session has no member"
    );
    let expired_auth = s.get_session_auth(&expired.token_hash).await.unwrap().expect("expired sessions are returned");
    assert_eq!(expired_auth.session, expired);
    assert_eq!(s.get_session_auth(&TokenHash([0x99; 32])).await.unwrap(), None);
}

pub async fn session_auth_sees_every_change_at_once(s: &dyn Storage) {
    let _a = admin(s).await;
    let b = member(s).await;
    let sb = session(s, 2, b.id).await;
    let mods = s.create_role(new_role("mods", 10, Permissions::MANAGE_MESSAGES)).await.unwrap();

    s.assign_role(b.id, mods.id).await.unwrap();
    let auth = s.get_session_auth(&sb.token_hash).await.unwrap().unwrap();
    assert_eq!(role_ids_of(&auth.member.unwrap().roles), vec![mods.id, RoleId::EVERYONE]);

    let patch = RolePatch { name: None, color: None, permissions: Some(Permissions::BAN_MEMBERS), position: None };
    s.update_role(mods.id, patch).await.unwrap();
    let auth = s.get_session_auth(&sb.token_hash).await.unwrap().unwrap();
    assert_eq!(auth.member.unwrap().roles[0].permissions, Permissions::BAN_MEMBERS);

    // Without its assignment row @everyone is not held, but still loaded.
    s.unassign_role(b.id, RoleId::EVERYONE).await.unwrap();
    let auth = s.get_session_auth(&sb.token_hash).await.unwrap().unwrap();
    let held = auth.member.clone().unwrap();
    assert_eq!(role_ids_of(&held.roles), vec![mods.id]);
    assert_eq!(held.everyone.map(|r| r.id), Some(RoleId::EVERYONE));
    assert_eq!(Some(auth), separately(s, &sb.token_hash).await);

    assert!(s.leave(b.id).await.unwrap());
    assert_eq!(s.get_session_auth(&sb.token_hash).await.unwrap().unwrap().member, None, "left");

    s.join(b.id).await.unwrap();
    assert!(s.kick(b.id).await.unwrap());
    assert_eq!(s.get_session_auth(&sb.token_hash).await.unwrap(), None, "a kick ends the sessions");

    let again = session(s, 3, b.id).await;
    assert!(s.delete_session(again.id).await.unwrap());
    assert_eq!(s.get_session_auth(&again.token_hash).await.unwrap(), None, "deleted");
}

pub async fn session_auth_with_device_key_carries_device_pubkey(s: &dyn Storage) {
    let a = admin(s).await;
    let device =
        match s.register_device_key(crate::devices::new_device(PublicKey([0x05; 32]), a.id, 1_000)).await.unwrap() {
            DeviceRegistration::Created(d) => d,
            other => panic!("expected Created, got {other:?}"),
        };
    let mut new = new_session(7, a.id, ts("2031-01-01T00:00:00Z"));
    new.device_key_id = Some(device.id);
    let created = s.create_session(new).await.unwrap();
    let auth = s.get_session_auth(&TokenHash([7; 32])).await.unwrap().unwrap();
    assert_eq!(auth.session.device_pubkey, Some(PublicKey([0x05; 32])));
    assert_eq!(auth.session, created);
}

fn role_ids_of(roles: &[Role]) -> Vec<RoleId> {
    roles.iter().map(|r| r.id).collect()
}
