//! InviteStore: invites, atomic use counting, expiry, purge.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn invite_round_trips_expiry_at_microsecond_precision(s: &dyn Storage) {
    let a = admin(s).await;
    let r = role(s, "guest", 10).await;
    let expires = ts("2999-12-31T23:59:59.123457Z");
    assert_eq!(expires.as_micros() % 1_000_000, 123_457);
    let before = Timestamp::now();
    let invite = s.create_invite(new_invite("Ab3dEf9Z", a.id, 25, Some(expires), Some(r.id))).await.unwrap();
    let after = Timestamp::now();
    assert_eq!(invite.code, "Ab3dEf9Z");
    assert_eq!(invite.created_by, a.id);
    assert_eq!(invite.grant_role_id, Some(r.id));
    assert_eq!((invite.max_uses, invite.use_count), (25, 0));
    assert_eq!(invite.expires_at, Some(expires));
    assert_between(invite.created_at, before, after);
    let stored = s.get_invite("Ab3dEf9Z").await.unwrap().unwrap();
    assert_eq!(stored, invite);
    assert_eq!(stored.expires_at.unwrap().to_rfc3339(), "2999-12-31T23:59:59.123457Z");

    // codes are case-sensitive
    assert_eq!(s.get_invite("ab3def9z").await.unwrap(), None);
    assert_eq!(s.get_invite("nothere1").await.unwrap(), None);

    let unlimited = s.create_invite(new_invite(&code(2), a.id, 0, None, None)).await.unwrap();
    assert_eq!((unlimited.max_uses, unlimited.expires_at, unlimited.grant_role_id), (0, None, None));
    assert_eq!(s.get_invite(&code(2)).await.unwrap(), Some(unlimited));
}

pub async fn duplicate_invite_code_is_conflict(s: &dyn Storage) {
    let a = admin(s).await;
    let first = s.create_invite(new_invite(&code(1), a.id, 1, None, None)).await.unwrap();
    expect_conflict(s.create_invite(new_invite(&code(1), a.id, 5, None, None)).await, Conflict::InviteCode);
    assert_eq!(s.get_invite(&code(1)).await.unwrap(), Some(first));
}

pub async fn invite_with_unknown_grant_role_is_invalid_reference(s: &dyn Storage) {
    let a = admin(s).await;
    expect_invalid_reference(s.create_invite(new_invite(&code(1), a.id, 1, None, Some(RoleId(9_999)))).await);
    assert_eq!(s.get_invite(&code(1)).await.unwrap(), None);
}

pub async fn list_active_invites_excludes_expired_and_exhausted_newest_first(s: &dyn Storage) {
    let a = admin(s).await;
    let now = Timestamp::now();
    let unlimited = s.create_invite(new_invite(&code(1), a.id, 0, None, None)).await.unwrap();
    tick().await;
    let _expired = s.create_invite(new_invite(&code(2), a.id, 0, Some(now.plus_seconds(-60)), None)).await.unwrap();
    tick().await;
    let _exhausted = s.create_invite(new_invite(&code(3), a.id, 1, None, None)).await.unwrap();
    let joiner = outsider(s).await;
    assert!(matches!(s.join_via_invite(&code(3), joiner.id, now).await.unwrap(), InviteJoin::Joined(_)));
    tick().await;
    let later = s.create_invite(new_invite(&code(4), a.id, 2, Some(now.plus_seconds(3600)), None)).await.unwrap();
    tick().await;
    let partly_used = s.create_invite(new_invite(&code(5), a.id, 2, None, None)).await.unwrap();
    let joiner2 = outsider(s).await;
    assert!(matches!(s.join_via_invite(&code(5), joiner2.id, now).await.unwrap(), InviteJoin::Joined(_)));
    let partly_used = Invite { use_count: 1, ..partly_used };

    assert_eq!(s.list_active_invites(now).await.unwrap(), vec![partly_used.clone(), later.clone(), unlimited.clone()]);
    // at a later `now`, the one-hour invite has expired as well
    assert_eq!(s.list_active_invites(now.plus_seconds(7200)).await.unwrap(), vec![partly_used, unlimited]);
}

pub async fn delete_invite_reports_whether_it_existed(s: &dyn Storage) {
    let a = admin(s).await;
    s.create_invite(new_invite(&code(1), a.id, 0, None, None)).await.unwrap();
    let kept = s.create_invite(new_invite(&code(2), a.id, 0, None, None)).await.unwrap();
    assert!(s.delete_invite(&code(1)).await.unwrap());
    assert!(!s.delete_invite(&code(1)).await.unwrap());
    assert!(!s.delete_invite("nothere1").await.unwrap());
    assert_eq!(s.get_invite(&code(1)).await.unwrap(), None);
    assert_eq!(s.get_invite(&code(2)).await.unwrap(), Some(kept));
    let now = Timestamp::now();
    let joiner = outsider(s).await;
    assert_eq!(s.join_via_invite(&code(1), joiner.id, now).await.unwrap(), InviteJoin::NotFound);
}

pub async fn join_via_invite_assigns_granted_role_and_consumes_one_use(s: &dyn Storage) {
    let a = admin(s).await;
    let guest = role(s, "guest 🎟️", 10).await;
    s.create_invite(new_invite(&code(1), a.id, 3, None, Some(guest.id))).await.unwrap();
    let user = outsider(s).await;

    let before = Timestamp::now();
    let outcome = s.join_via_invite(&code(1), user.id, before).await.unwrap();
    let after = Timestamp::now();
    let InviteJoin::Joined(member) = outcome else { panic!("expected Joined, got {outcome:?}") };
    assert_eq!(member.user, user);
    assert_eq!(member.roles, vec![role_ref(&guest), everyone_ref()]);
    assert_between(member.joined_at, before, after);
    assert_eq!(s.get_member(user.id).await.unwrap(), Some(member));
    assert_eq!(s.get_invite(&code(1)).await.unwrap().unwrap().use_count, 1);

    // without a granted role: @everyone only
    s.create_invite(new_invite(&code(2), a.id, 0, None, None)).await.unwrap();
    let plain = outsider(s).await;
    let outcome = s.join_via_invite(&code(2), plain.id, Timestamp::now()).await.unwrap();
    let InviteJoin::Joined(member) = outcome else { panic!("expected Joined, got {outcome:?}") };
    assert_eq!(member.roles, vec![everyone_ref()]);
    assert_eq!(s.get_invite(&code(2)).await.unwrap().unwrap().use_count, 1, "unlimited invites count uses too");
    assert_eq!(s.member_count().await.unwrap(), 3);
}

pub async fn join_via_invite_not_found_expired_and_exhausted(s: &dyn Storage) {
    let a = admin(s).await;
    let now = ts("2030-06-01T12:00:00.000001Z");
    let user = outsider(s).await;
    assert_eq!(s.join_via_invite("nothere1", user.id, now).await.unwrap(), InviteJoin::NotFound);

    let expires = ts("2030-06-01T11:59:59.999999Z");
    s.create_invite(new_invite(&code(1), a.id, 0, Some(expires), None)).await.unwrap();
    assert_eq!(
        s.join_via_invite(&code(1), user.id, now).await.unwrap(),
        InviteJoin::Expired,
        "expired one microsecond ago"
    );
    assert_eq!(s.get_invite(&code(1)).await.unwrap().unwrap().use_count, 0);
    // the same invite before its expiry works
    let early = ts("2030-06-01T11:59:59.999998Z");
    assert!(matches!(s.join_via_invite(&code(1), user.id, early).await.unwrap(), InviteJoin::Joined(_)));

    s.create_invite(new_invite(&code(2), a.id, 1, None, None)).await.unwrap();
    let first = outsider(s).await;
    let second = outsider(s).await;
    assert!(matches!(s.join_via_invite(&code(2), first.id, now).await.unwrap(), InviteJoin::Joined(_)));
    assert_eq!(s.join_via_invite(&code(2), second.id, now).await.unwrap(), InviteJoin::Exhausted);
    assert_eq!(s.get_invite(&code(2)).await.unwrap().unwrap().use_count, 1);
    assert_eq!(s.get_member(second.id).await.unwrap(), None, "nothing joined");
}

pub async fn join_via_invite_as_member_consumes_nothing(s: &dyn Storage) {
    let a = admin(s).await;
    let guest = role(s, "guest", 10).await;
    s.create_invite(new_invite(&code(1), a.id, 5, None, Some(guest.id))).await.unwrap();
    let user = member(s).await;
    let existing = s.get_member(user.id).await.unwrap().unwrap();

    let outcome = s.join_via_invite(&code(1), user.id, Timestamp::now()).await.unwrap();
    assert_eq!(outcome, InviteJoin::AlreadyMember(existing.clone()));
    assert_eq!(s.get_invite(&code(1)).await.unwrap().unwrap().use_count, 0);
    assert_eq!(s.get_member(user.id).await.unwrap(), Some(existing), "no role granted either");

    let outcome = s.join_via_invite(&code(1), a.id, Timestamp::now()).await.unwrap();
    assert!(matches!(outcome, InviteJoin::AlreadyMember(ref m) if m.user.id == a.id), "{outcome:?}");
    assert_eq!(s.get_invite(&code(1)).await.unwrap().unwrap().use_count, 0);
    // A code that names no invite is not found, member or not.
    assert_eq!(s.join_via_invite("nothere1", user.id, Timestamp::now()).await.unwrap(), InviteJoin::NotFound);
}

pub async fn invite_join_consumes_exactly_max_uses_under_concurrency(s: &dyn Storage) {
    let a = admin(s).await;
    let guest = role(s, "guest", 10).await;
    s.create_invite(new_invite(&code(1), a.id, 10, None, Some(guest.id))).await.unwrap();
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(register(s, key(500 + i), false, false).await.user);
    }
    let now = Timestamp::now();
    let invite_code = code(1);
    let outcomes = futures::future::join_all(users.iter().map(|u| s.join_via_invite(&invite_code, u.id, now))).await;

    let mut joined = Vec::new();
    let mut exhausted = 0;
    for (user, outcome) in users.iter().zip(outcomes) {
        match outcome.expect("join_via_invite") {
            InviteJoin::Joined(member) => {
                assert_eq!(member.user.id, user.id);
                assert_eq!(role_ids(&member.roles), vec![guest.id, RoleId::EVERYONE]);
                joined.push(user.id);
            }
            InviteJoin::Exhausted => exhausted += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((joined.len(), exhausted), (10, 40));
    assert_eq!(s.get_invite(&code(1)).await.unwrap().unwrap().use_count, 10);
    assert_eq!(s.member_count().await.unwrap(), 11);
    let mut members: Vec<UserId> =
        s.list_members().await.unwrap().iter().map(|m| m.user.id).filter(|id| *id != a.id).collect();
    members.sort();
    joined.sort();
    assert_eq!(members, joined, "exactly the users told Joined are members");
}

pub async fn deleting_granted_role_leaves_invite_granting_nothing(s: &dyn Storage) {
    let a = admin(s).await;
    let guest = role(s, "guest", 10).await;
    s.create_invite(new_invite(&code(1), a.id, 0, None, Some(guest.id))).await.unwrap();
    assert!(s.delete_role(guest.id).await.unwrap());
    assert_eq!(s.get_invite(&code(1)).await.unwrap().unwrap().grant_role_id, None);
    let user = outsider(s).await;
    let outcome = s.join_via_invite(&code(1), user.id, Timestamp::now()).await.unwrap();
    let InviteJoin::Joined(member) = outcome else { panic!("expected Joined, got {outcome:?}") };
    assert_eq!(member.roles, vec![everyone_ref()]);
}

pub async fn purge_expired_invites_deletes_only_expired(s: &dyn Storage) {
    let a = admin(s).await;
    let now = ts("2030-01-01T00:00:00.500000Z");
    s.create_invite(new_invite(&code(1), a.id, 0, Some(ts("2029-12-31T00:00:00Z")), None)).await.unwrap();
    s.create_invite(new_invite(&code(2), a.id, 3, Some(ts("2030-01-01T00:00:00.499999Z")), None)).await.unwrap();
    let future =
        s.create_invite(new_invite(&code(3), a.id, 0, Some(ts("2030-01-01T00:00:00.500001Z")), None)).await.unwrap();
    let forever = s.create_invite(new_invite(&code(4), a.id, 1, None, None)).await.unwrap();

    assert_eq!(s.purge_expired_invites(now).await.unwrap(), 2);
    assert_eq!(s.get_invite(&code(1)).await.unwrap(), None);
    assert_eq!(s.get_invite(&code(2)).await.unwrap(), None);
    assert_eq!(s.get_invite(&code(3)).await.unwrap(), Some(future));
    assert_eq!(s.get_invite(&code(4)).await.unwrap(), Some(forever));
    assert_eq!(s.purge_expired_invites(now).await.unwrap(), 0, "nothing left to purge");
}
