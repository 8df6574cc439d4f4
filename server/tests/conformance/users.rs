//! UserStore: registration (first-user bootstrap, membership modes, bots), lookups, profile.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn ping_answers_and_names_the_backend(s: &dyn Storage) {
    s.ping().await.expect("ping");
    let name = s.backend_name();
    assert!(["sqlite", "postgres"].contains(&name), "unexpected backend name {name:?}");
}

pub async fn first_user_becomes_member_with_everyone_and_admin(s: &dyn Storage) {
    let before = Timestamp::now();
    // even in a mode where new users are not members, the first one is
    let reg = register(s, key(1), false, false).await;
    let after = Timestamp::now();

    assert!(reg.is_first_user);
    assert_eq!(reg.user.pubkey, key(1));
    assert_eq!(reg.user.display_name, None);
    assert_eq!(reg.user.avatar_hash, None);
    assert!(!reg.user.is_bot);
    assert_between(reg.user.created_at, before, after);

    let member = reg.member.clone().expect("the first user is a member");
    assert_eq!(member.user, reg.user);
    assert_eq!(member.roles, vec![admin_ref(), everyone_ref()]);
    assert_between(member.joined_at, before, after);

    assert_eq!(s.get_member(reg.user.id).await.unwrap(), Some(member));
    let held: Vec<(RoleId, Permissions)> =
        s.member_roles(reg.user.id).await.unwrap().iter().map(|r| (r.id, r.permissions)).collect();
    assert_eq!(held, vec![(RoleId::ADMIN, Permissions::all()), (RoleId::EVERYONE, everyone_permissions())]);
    assert_eq!(s.member_count().await.unwrap(), 1);
}

pub async fn second_user_in_open_mode_becomes_member_with_everyone_only(s: &dyn Storage) {
    admin(s).await;
    let reg = register(s, key(2), false, true).await;
    assert!(!reg.is_first_user);
    let member = reg.member.clone().expect("open mode makes a non-bot a member");
    assert_eq!(member.user, reg.user);
    assert_eq!(member.roles, vec![everyone_ref()]);
    assert_eq!(s.get_member(reg.user.id).await.unwrap(), Some(member));
    assert_eq!(s.member_count().await.unwrap(), 2);
    assert_eq!(s.get_bot_approval(reg.user.id).await.unwrap(), None);
}

pub async fn user_registered_without_open_membership_is_not_a_member(s: &dyn Storage) {
    admin(s).await;
    let reg = register(s, key(2), false, false).await;
    assert!(!reg.is_first_user);
    assert_eq!(reg.member, None);
    assert_eq!(s.get_member(reg.user.id).await.unwrap(), None);
    assert_eq!(s.member_roles(reg.user.id).await.unwrap(), vec![]);
    assert_eq!(s.member_count().await.unwrap(), 1);
    assert_eq!(s.get_user(reg.user.id).await.unwrap(), Some(reg.user));
}

pub async fn bot_registration_creates_pending_approval_and_no_membership(s: &dyn Storage) {
    admin(s).await;
    let before = Timestamp::now();
    let reg = register(s, key(2), true, true).await;
    let after = Timestamp::now();
    assert!(reg.user.is_bot);
    assert!(!reg.is_first_user);
    assert_eq!(reg.member, None, "a bot is never a member at registration, even in open mode");
    assert_eq!(s.get_member(reg.user.id).await.unwrap(), None);

    let approval = s.get_bot_approval(reg.user.id).await.unwrap().expect("a pending bot approval");
    assert_eq!(approval.user_id, reg.user.id);
    assert_eq!(approval.pubkey, key(2));
    assert_eq!((approval.approved_by, approval.approved_at, approval.revoked_at), (None, None, None));
    assert!(!approval.is_approved());
    assert_between(approval.requested_at, before, after);
    assert_eq!(s.list_pending_bots().await.unwrap(), vec![approval]);
}

pub async fn concurrent_first_logins_make_exactly_one_first_user(s: &dyn Storage) {
    let registrations = futures::future::join_all(
        (0..12u32).map(|i| s.register_user(NewUser { pubkey: key(100 + i), is_bot: false, open_membership: false })),
    )
    .await;
    let registrations: Vec<Registration> = registrations.into_iter().map(|r| r.expect("register_user")).collect();
    let first: Vec<&Registration> = registrations.iter().filter(|r| r.is_first_user).collect();
    assert_eq!(first.len(), 1, "exactly one user is the first");
    let first = first[0];
    assert_eq!(
        role_ids(&first.member.as_ref().expect("first user is a member").roles),
        vec![RoleId::ADMIN, RoleId::EVERYONE]
    );
    assert!(registrations.iter().filter(|r| !r.is_first_user).all(|r| r.member.is_none()));
    assert_eq!(s.member_count().await.unwrap(), 1);
    let members = s.list_members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user.id, first.user.id);
}

pub async fn duplicate_pubkey_is_user_pubkey_conflict(s: &dyn Storage) {
    let first = register(s, key(7), false, true).await;
    let again = s.register_user(NewUser { pubkey: key(7), is_bot: true, open_membership: true }).await;
    expect_conflict(again, Conflict::UserPubkey);
    // nothing of the failed registration remains
    assert_eq!(s.get_user_by_pubkey(&key(7)).await.unwrap(), Some(first.user));
    assert_eq!(s.list_pending_bots().await.unwrap(), vec![]);
    assert_eq!(s.member_count().await.unwrap(), 1);
}

pub async fn get_user_by_id_and_pubkey_and_unknown_is_none(s: &dyn Storage) {
    let a = register(s, key(1), false, true).await.user;
    let b = register(s, key(2), true, true).await.user;
    assert_ne!(a.id, b.id);
    assert_eq!(s.get_user(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_user(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(s.get_user_by_pubkey(&key(1)).await.unwrap(), Some(a));
    assert_eq!(s.get_user_by_pubkey(&key(2)).await.unwrap(), Some(b));
    assert_eq!(s.get_user(UserId(987_654)).await.unwrap(), None);
    assert_eq!(s.get_user_by_pubkey(&key(3)).await.unwrap(), None);
}

pub async fn pubkey_bytes_round_trip_exactly(s: &dyn Storage) {
    let mut ascending = [0u8; 32];
    for (i, b) in ascending.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut high_bits = [0x80u8; 32];
    high_bits[0] = 0x00;
    high_bits[31] = 0xff;
    let keys = [PublicKey([0x00; 32]), PublicKey([0xff; 32]), PublicKey(ascending), PublicKey(high_bits)];
    let mut users = Vec::new();
    for k in keys {
        let user = register(s, k, false, true).await.user;
        assert_eq!(user.pubkey, k);
        users.push(user);
    }
    for (k, user) in keys.iter().zip(&users) {
        let found = s.get_user_by_pubkey(k).await.unwrap().expect("found by its exact bytes");
        assert_eq!(found.pubkey.as_bytes(), k.as_bytes());
        assert_eq!(&found, user);
        assert_eq!(s.get_user(user.id).await.unwrap().unwrap().pubkey, *k);
    }
    // a one-byte difference is another key
    let mut almost = [0x00u8; 32];
    almost[31] = 0x01;
    assert_eq!(s.get_user_by_pubkey(&PublicKey(almost)).await.unwrap(), None);
}

pub async fn display_name_round_trips_unicode_and_clears(s: &dyn Storage) {
    let user = admin(s).await;
    for name in ["Zoë 🦀", "שלום", "مرحبا بالعالم", "e\u{301}le\u{300}ve", "👩\u{200d}💻 dev", "  spaced  "]
    {
        let updated = s.set_display_name(user.id, Some(name.to_owned())).await.unwrap();
        assert_eq!(updated.display_name.as_deref(), Some(name));
        assert_eq!(updated.id, user.id);
        assert_eq!(updated.pubkey, user.pubkey);
        let stored = s.get_user(user.id).await.unwrap().unwrap();
        assert_eq!(stored.display_name.as_deref(), Some(name), "bytes kept exactly");
        let member = s.get_member(user.id).await.unwrap().unwrap();
        assert_eq!(member.user.display_name.as_deref(), Some(name));
    }
    let cleared = s.set_display_name(user.id, None).await.unwrap();
    assert_eq!(cleared.display_name, None);
    assert_eq!(s.get_user(user.id).await.unwrap().unwrap().display_name, None);
}

pub async fn set_display_name_unknown_user_is_not_found(s: &dyn Storage) {
    expect_not_found(s.set_display_name(UserId(424_242), Some("ghost".into())).await, Entity::User);
}

pub async fn avatar_requires_existing_media_and_clears(s: &dyn Storage) {
    let user = admin(s).await;
    expect_invalid_reference(s.set_avatar(user.id, Some(hash(9))).await);
    assert_eq!(s.get_user(user.id).await.unwrap().unwrap().avatar_hash, None);

    media(s, 9, Some(user.id)).await;
    let updated = s.set_avatar(user.id, Some(hash(9))).await.unwrap();
    assert_eq!(updated.avatar_hash, Some(hash(9)));
    assert_eq!(s.get_user(user.id).await.unwrap().unwrap().avatar_hash, Some(hash(9)));
    assert_eq!(s.get_member(user.id).await.unwrap().unwrap().user.avatar_hash, Some(hash(9)));

    let cleared = s.set_avatar(user.id, None).await.unwrap();
    assert_eq!(cleared.avatar_hash, None);
    assert_eq!(s.get_user(user.id).await.unwrap().unwrap().avatar_hash, None);
    // the blob's row is kept
    assert!(s.get_media(&hash(9)).await.unwrap().is_some());
}

pub async fn set_avatar_unknown_user_is_not_found(s: &dyn Storage) {
    media(s, 1, None).await;
    expect_not_found(s.set_avatar(UserId(424_242), Some(hash(1))).await, Entity::User);
    expect_not_found(s.set_avatar(UserId(424_242), None).await, Entity::User);
}
