//! MemberStore: join/leave/kick, bans, allowlist, bot approvals.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn join_adds_everyone_and_is_a_no_op_for_a_member(s: &dyn Storage) {
    admin(s).await;
    let user = outsider(s).await;
    let before = Timestamp::now();
    let joined = s.join(user.id).await.unwrap();
    let after = Timestamp::now();
    assert!(joined.newly_joined);
    assert_eq!(joined.member.user, user);
    assert_eq!(joined.member.roles, vec![everyone_ref()]);
    assert_between(joined.member.joined_at, before, after);
    assert_eq!(s.get_member(user.id).await.unwrap(), Some(joined.member.clone()));

    tick().await;
    let again = s.join(user.id).await.unwrap();
    assert!(!again.newly_joined);
    assert_eq!(again.member, joined.member, "joining again changes nothing (joined_at kept)");
    assert_eq!(s.member_count().await.unwrap(), 2);
}

pub async fn leave_removes_roles_and_membership_but_keeps_sessions(s: &dyn Storage) {
    admin(s).await;
    let user = member(s).await;
    let extra = role(s, "helper", 10).await;
    s.assign_role(user.id, extra.id).await.unwrap();
    let session = session(s, 0x11, user.id).await;

    assert!(s.leave(user.id).await.unwrap());
    assert_eq!(s.get_member(user.id).await.unwrap(), None);
    assert_eq!(s.member_roles(user.id).await.unwrap(), vec![]);
    assert_eq!(s.get_session(&session.token_hash).await.unwrap(), Some(session));
    assert_eq!(s.member_count().await.unwrap(), 1);
    assert!(s.get_user(user.id).await.unwrap().is_some(), "the user row stays");

    assert!(!s.leave(user.id).await.unwrap(), "not a member any more");

    // rejoining starts from @everyone only
    let rejoined = s.join(user.id).await.unwrap();
    assert!(rejoined.newly_joined);
    assert_eq!(rejoined.member.roles, vec![everyone_ref()]);
}

pub async fn kick_removes_membership_and_deletes_sessions(s: &dyn Storage) {
    let boss = admin(s).await;
    let user = member(s).await;
    let extra = role(s, "helper", 10).await;
    s.assign_role(user.id, extra.id).await.unwrap();
    let a = session(s, 0x21, user.id).await;
    let b = session(s, 0x22, user.id).await;
    let kept = session(s, 0x23, boss.id).await;

    assert!(s.kick(user.id).await.unwrap());
    assert_eq!(s.get_member(user.id).await.unwrap(), None);
    assert_eq!(s.member_roles(user.id).await.unwrap(), vec![]);
    assert_eq!(s.get_session(&a.token_hash).await.unwrap(), None);
    assert_eq!(s.get_session(&b.token_hash).await.unwrap(), None);
    assert_eq!(s.get_session(&kept.token_hash).await.unwrap(), Some(kept), "other users' sessions stay");
    assert!(!s.kick(user.id).await.unwrap());
}

pub async fn kick_of_non_member_still_deletes_sessions(s: &dyn Storage) {
    admin(s).await;
    let user = outsider(s).await;
    let session = session(s, 0x31, user.id).await;
    assert!(!s.kick(user.id).await.unwrap(), "not a member");
    assert_eq!(s.get_session(&session.token_hash).await.unwrap(), None);
}

pub async fn list_members_orders_by_joined_at_and_counts_members_only(s: &dyn Storage) {
    let boss = admin(s).await;
    let a = outsider(s).await;
    let b = outsider(s).await;
    let c = outsider(s).await;
    let _never = outsider(s).await;
    // join in the order c, a, b: joined_at decides, not the user id
    for u in [&c, &a, &b] {
        tick().await;
        s.join(u.id).await.unwrap();
    }
    let listed: Vec<UserId> = s.list_members().await.unwrap().iter().map(|m| m.user.id).collect();
    assert_eq!(listed, vec![boss.id, c.id, a.id, b.id]);
    assert_eq!(s.member_count().await.unwrap(), 4);

    let members = s.list_members().await.unwrap();
    assert_eq!(members[0].roles, vec![admin_ref(), everyone_ref()]);
    for m in &members[1..] {
        assert_eq!(m.roles, vec![everyone_ref()]);
        assert_eq!(Some(m.clone()), s.get_member(m.user.id).await.unwrap());
    }
}

pub async fn ban_records_ban_and_kicks_the_key_holder(s: &dyn Storage) {
    let boss = admin(s).await;
    let user = member(s).await;
    let session = session(s, 0x41, user.id).await;
    let reason = "spam 🚫 — ספאם";

    let before = Timestamp::now();
    let (ban, kicked) =
        s.ban(NewBan { pubkey: user.pubkey, banned_by: boss.id, reason: Some(reason.into()) }).await.unwrap();
    let after = Timestamp::now();
    assert_eq!(kicked, Some(user.id));
    assert_eq!(ban.pubkey, user.pubkey);
    assert_eq!(ban.banned_by, boss.id);
    assert_eq!(ban.reason.as_deref(), Some(reason));
    assert_between(ban.banned_at, before, after);

    assert!(s.is_banned(&user.pubkey).await.unwrap());
    assert_eq!(s.get_member(user.id).await.unwrap(), None);
    assert_eq!(s.member_roles(user.id).await.unwrap(), vec![]);
    assert_eq!(s.get_session(&session.token_hash).await.unwrap(), None);
    assert_eq!(s.list_bans().await.unwrap(), vec![ban]);
    assert!(s.get_user(user.id).await.unwrap().is_some(), "the user row stays");
}

pub async fn ban_of_unknown_key_kicks_nobody_and_duplicate_is_conflict(s: &dyn Storage) {
    let boss = admin(s).await;
    let stranger = PublicKey([0xff; 32]);
    let (ban, kicked) = s.ban(NewBan { pubkey: stranger, banned_by: boss.id, reason: None }).await.unwrap();
    assert_eq!(kicked, None);
    assert_eq!(ban.pubkey, stranger);
    assert_eq!(ban.reason, None);
    assert!(s.is_banned(&stranger).await.unwrap());
    assert!(!s.is_banned(&PublicKey([0x00; 32])).await.unwrap());

    let again = s.ban(NewBan { pubkey: stranger, banned_by: boss.id, reason: Some("twice".into()) }).await;
    expect_conflict(again, Conflict::AlreadyBanned);
    assert_eq!(s.list_bans().await.unwrap(), vec![ban], "the first ban is unchanged");
    assert_eq!(s.member_count().await.unwrap(), 1);
}

pub async fn unban_and_list_bans_newest_first(s: &dyn Storage) {
    let boss = admin(s).await;
    let user = member(s).await;
    let mut bans = Vec::new();
    for k in [key(50), user.pubkey, key(51)] {
        tick().await;
        bans.push(s.ban(NewBan { pubkey: k, banned_by: boss.id, reason: None }).await.unwrap().0);
    }
    let listed: Vec<PublicKey> = s.list_bans().await.unwrap().iter().map(|b| b.pubkey).collect();
    assert_eq!(listed, vec![key(51), user.pubkey, key(50)]);

    assert!(s.unban(&user.pubkey).await.unwrap());
    assert!(!s.is_banned(&user.pubkey).await.unwrap());
    assert!(!s.unban(&user.pubkey).await.unwrap(), "no ban any more");
    assert_eq!(s.get_member(user.id).await.unwrap(), None, "unban does not restore membership");
    let listed: Vec<PublicKey> = s.list_bans().await.unwrap().iter().map(|b| b.pubkey).collect();
    assert_eq!(listed, vec![key(51), key(50)]);
    assert!(!s.unban(&key(99)).await.unwrap());
}

pub async fn allowlist_add_contains_remove_and_list_oldest_first(s: &dyn Storage) {
    let boss = admin(s).await;
    let before = Timestamp::now();
    let first = s.allowlist_add(&PublicKey([0x00; 32]), boss.id).await.unwrap();
    let after = Timestamp::now();
    assert_eq!(first.pubkey, PublicKey([0x00; 32]));
    assert_eq!(first.added_by, boss.id);
    assert_between(first.added_at, before, after);
    tick().await;
    let second = s.allowlist_add(&PublicKey([0xff; 32]), boss.id).await.unwrap();
    tick().await;
    let third = s.allowlist_add(&key(3), boss.id).await.unwrap();

    expect_conflict(s.allowlist_add(&PublicKey([0xff; 32]), boss.id).await, Conflict::AlreadyAllowlisted);
    assert!(s.allowlist_contains(&PublicKey([0x00; 32])).await.unwrap());
    assert!(s.allowlist_contains(&PublicKey([0xff; 32])).await.unwrap());
    assert!(!s.allowlist_contains(&key(4)).await.unwrap());
    assert_eq!(s.list_allowlist().await.unwrap(), vec![first.clone(), second, third.clone()]);

    assert!(s.allowlist_remove(&PublicKey([0xff; 32])).await.unwrap());
    assert!(!s.allowlist_remove(&PublicKey([0xff; 32])).await.unwrap());
    assert!(!s.allowlist_contains(&PublicKey([0xff; 32])).await.unwrap());
    assert_eq!(s.list_allowlist().await.unwrap(), vec![first, third]);
}

pub async fn bot_approval_makes_member_and_revocation_keeps_membership(s: &dyn Storage) {
    let boss = admin(s).await;
    let bot = register(s, key(2), true, true).await.user;
    let requested_at = s.get_bot_approval(bot.id).await.unwrap().unwrap().requested_at;

    let before = Timestamp::now();
    let (approval, joined) = s.approve_bot(bot.id, boss.id, Some("trusted 🤖".into())).await.unwrap();
    let after = Timestamp::now();
    assert_eq!(approval.user_id, bot.id);
    assert_eq!(approval.pubkey, bot.pubkey);
    assert_eq!(approval.requested_at, requested_at);
    assert_eq!(approval.approved_by, Some(boss.id));
    assert_between(approval.approved_at.expect("approved_at set"), before, after);
    assert_eq!(approval.revoked_at, None);
    assert_eq!(approval.note.as_deref(), Some("trusted 🤖"));
    assert!(approval.is_approved());
    assert!(joined.newly_joined);
    assert_eq!(joined.member.user.id, bot.id);
    assert_eq!(joined.member.roles, vec![everyone_ref()]);
    assert_eq!(s.get_member(bot.id).await.unwrap(), Some(joined.member.clone()));
    assert_eq!(s.get_bot_approval(bot.id).await.unwrap(), Some(approval.clone()));
    assert_eq!(s.list_pending_bots().await.unwrap(), vec![]);

    let revoked = s.revoke_bot(bot.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(!revoked.is_approved());
    assert_eq!(s.get_bot_approval(bot.id).await.unwrap(), Some(revoked));
    assert_eq!(s.get_member(bot.id).await.unwrap(), Some(joined.member.clone()), "membership unchanged");
    assert_eq!(s.list_pending_bots().await.unwrap(), vec![], "a revoked bot is not pending");

    // approving again clears the revocation; already a member, so nothing joins
    let (again, rejoined) = s.approve_bot(bot.id, boss.id, None).await.unwrap();
    assert_eq!(again.revoked_at, None);
    assert!(again.is_approved());
    assert!(!rejoined.newly_joined);
    assert_eq!(rejoined.member, joined.member);
}

pub async fn list_pending_bots_oldest_first_excludes_approved_and_revoked(s: &dyn Storage) {
    let boss = admin(s).await;
    let mut bots = Vec::new();
    for i in 0..4 {
        tick().await;
        bots.push(register(s, key(10 + i), true, i % 2 == 0).await.user);
    }
    let pending: Vec<UserId> = s.list_pending_bots().await.unwrap().iter().map(|b| b.user_id).collect();
    assert_eq!(pending, bots.iter().map(|b| b.id).collect::<Vec<_>>());

    s.approve_bot(bots[1].id, boss.id, None).await.unwrap();
    s.revoke_bot(bots[2].id).await.unwrap();
    let pending: Vec<UserId> = s.list_pending_bots().await.unwrap().iter().map(|b| b.user_id).collect();
    assert_eq!(pending, vec![bots[0].id, bots[3].id]);
    assert_eq!(s.get_member(bots[2].id).await.unwrap(), None, "revoking does not make a member");
}

pub async fn bot_approval_of_non_bot_is_not_found(s: &dyn Storage) {
    let boss = admin(s).await;
    let human = member(s).await;
    assert_eq!(s.get_bot_approval(human.id).await.unwrap(), None);
    expect_not_found(s.approve_bot(human.id, boss.id, None).await, Entity::Bot);
    expect_not_found(s.revoke_bot(human.id).await, Entity::Bot);
    expect_not_found(s.approve_bot(UserId(777_777), boss.id, None).await, Entity::Bot);
    expect_not_found(s.revoke_bot(UserId(777_777)).await, Entity::Bot);
}
