//! RoleStore: roles, assignments, built-in rules, channel overrides.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

/// (id, name, colour, permissions, position, is_builtin)
type RoleSummary<'a> = (RoleId, &'a str, Option<&'a str>, Permissions, i64, bool);

pub async fn builtin_roles_are_seeded(s: &dyn Storage) {
    let roles = s.list_roles().await.unwrap();
    let summary: Vec<RoleSummary> = roles
        .iter()
        .map(|r| (r.id, r.name.as_str(), r.color.as_deref(), r.permissions, r.position, r.is_builtin))
        .collect();
    assert_eq!(
        summary,
        vec![
            (RoleId::ADMIN, "@admin", None, Permissions::all(), 1000, true),
            (RoleId::EVERYONE, "@everyone", None, everyone_permissions(), 0, true),
        ]
    );
    assert_eq!(everyone_permissions().bits(), 1539);
    assert_eq!(Permissions::all().bits(), 16383);
    assert_eq!(s.get_role(RoleId::EVERYONE).await.unwrap().as_ref(), roles.get(1));
    assert_eq!(s.get_role(RoleId::ADMIN).await.unwrap().as_ref(), roles.first());
}

pub async fn create_role_round_trips_and_lists_by_position_desc_then_id(s: &dyn Storage) {
    let before = Timestamp::now();
    let low_a = s
        .create_role(NewRole {
            name: "Modérateur 🛡️".into(),
            color: Some("#ff00aa".into()),
            permissions: Permissions::KICK_MEMBERS | Permissions::MANAGE_MESSAGES,
            position: 10,
        })
        .await
        .unwrap();
    let after = Timestamp::now();
    assert!(low_a.id.0 > 2, "custom role ids start after the built-in ones");
    assert_eq!(low_a.name, "Modérateur 🛡️");
    assert_eq!(low_a.color.as_deref(), Some("#ff00aa"));
    assert_eq!(low_a.permissions, Permissions::KICK_MEMBERS | Permissions::MANAGE_MESSAGES);
    assert_eq!(low_a.position, 10);
    assert!(!low_a.is_builtin);
    assert_between(low_a.created_at, before, after);
    assert_between(low_a.updated_at, before, after);
    assert_eq!(s.get_role(low_a.id).await.unwrap(), Some(low_a.clone()));

    let high = s.create_role(new_role("مشرف", 500, Permissions::empty())).await.unwrap();
    assert_eq!(high.permissions, Permissions::empty());
    let low_b =
        s.create_role(new_role("e\u{301}quipe", 10, Permissions::all() - Permissions::ADMINISTRATOR)).await.unwrap();
    assert_eq!(low_b.permissions, Permissions::all() - Permissions::ADMINISTRATOR);
    assert!(low_a.id < high.id && high.id < low_b.id);

    let order: Vec<RoleId> = s.list_roles().await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(order, vec![RoleId::ADMIN, high.id, low_a.id, low_b.id, RoleId::EVERYONE]);
    let listed = s.list_roles().await.unwrap();
    assert_eq!(listed[1], high);
    assert_eq!(listed[3], low_b);
}

pub async fn get_role_unknown_is_none(s: &dyn Storage) {
    assert_eq!(s.get_role(RoleId(9_999)).await.unwrap(), None);
}

pub async fn update_role_patches_only_given_fields(s: &dyn Storage) {
    let original = s
        .create_role(NewRole {
            name: "old".into(),
            color: Some("#123456".into()),
            permissions: Permissions::SEND_MESSAGES,
            position: 5,
        })
        .await
        .unwrap();

    // an empty patch changes nothing visible
    let same = s.update_role(original.id, RolePatch::default()).await.unwrap();
    assert_eq!(
        (same.name.as_str(), same.color.as_deref(), same.permissions, same.position),
        ("old", Some("#123456"), Permissions::SEND_MESSAGES, 5)
    );

    tick().await;
    let renamed =
        s.update_role(original.id, RolePatch { name: Some("新しい 🎨".into()), ..RolePatch::default() }).await.unwrap();
    assert_eq!(renamed.name, "新しい 🎨");
    assert_eq!(renamed.color.as_deref(), Some("#123456"));
    assert_eq!(renamed.permissions, Permissions::SEND_MESSAGES);
    assert_eq!(renamed.position, 5);
    assert_eq!(renamed.created_at, original.created_at);
    assert!(renamed.updated_at > original.updated_at, "updated_at moves forward");

    let patched = s
        .update_role(
            original.id,
            RolePatch {
                name: None,
                color: Some(None),
                permissions: Some(Permissions::BAN_MEMBERS | Permissions::VIEW_AUDIT_LOG),
                position: Some(42),
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name, "新しい 🎨");
    assert_eq!(patched.color, None);
    assert_eq!(patched.permissions, Permissions::BAN_MEMBERS | Permissions::VIEW_AUDIT_LOG);
    assert_eq!(patched.position, 42);
    assert_eq!(s.get_role(original.id).await.unwrap(), Some(patched.clone()));

    let recoloured = s
        .update_role(original.id, RolePatch { color: Some(Some("#abcdef".into())), ..RolePatch::default() })
        .await
        .unwrap();
    assert_eq!(recoloured.color.as_deref(), Some("#abcdef"));
    assert_eq!(recoloured.permissions, patched.permissions);
}

pub async fn update_role_unknown_is_not_found(s: &dyn Storage) {
    expect_not_found(
        s.update_role(RoleId(9_999), RolePatch { name: Some("x".into()), ..RolePatch::default() }).await,
        Entity::Role,
    );
}

pub async fn builtin_role_rules_are_enforced_on_update(s: &dyn Storage) {
    // @everyone's permissions may change
    let everyone = s
        .update_role(
            RoleId::EVERYONE,
            RolePatch { permissions: Some(Permissions::READ_MESSAGES), ..RolePatch::default() },
        )
        .await
        .unwrap();
    assert_eq!(everyone.permissions, Permissions::READ_MESSAGES);
    assert_eq!(everyone.position, 0);
    assert!(everyone.is_builtin);
    assert_eq!(s.get_role(RoleId::EVERYONE).await.unwrap().unwrap().permissions, Permissions::READ_MESSAGES);

    // positions of built-in roles and @admin's permissions may not
    expect_invalid_input(
        s.update_role(RoleId::EVERYONE, RolePatch { position: Some(5), ..RolePatch::default() }).await,
    );
    expect_invalid_input(
        s.update_role(RoleId::ADMIN, RolePatch { position: Some(2000), ..RolePatch::default() }).await,
    );
    expect_invalid_input(
        s.update_role(
            RoleId::ADMIN,
            RolePatch { permissions: Some(Permissions::SEND_MESSAGES), ..RolePatch::default() },
        )
        .await,
    );

    let admin_role = s.get_role(RoleId::ADMIN).await.unwrap().unwrap();
    assert_eq!((admin_role.permissions, admin_role.position), (Permissions::all(), 1000));
    assert_eq!(s.get_role(RoleId::EVERYONE).await.unwrap().unwrap().position, 0);
}

pub async fn delete_role_removes_assignments_and_overrides(s: &dyn Storage) {
    admin(s).await;
    let user = member(s).await;
    let doomed = role(s, "doomed", 20).await;
    let kept = role(s, "kept", 10).await;
    s.assign_role(user.id, doomed.id).await.unwrap();
    s.assign_role(user.id, kept.id).await.unwrap();
    let ch = channel(s, "general").await;
    let keep_override =
        Override { channel_id: ch.id, role_id: kept.id, allow: Permissions::empty(), deny: Permissions::SEND_MESSAGES };
    s.put_override(Override {
        channel_id: ch.id,
        role_id: doomed.id,
        allow: Permissions::SEND_MESSAGES,
        deny: Permissions::empty(),
    })
    .await
    .unwrap();
    s.put_override(keep_override.clone()).await.unwrap();

    assert!(s.delete_role(doomed.id).await.unwrap());
    assert_eq!(s.get_role(doomed.id).await.unwrap(), None);
    assert!(!s.list_roles().await.unwrap().iter().any(|r| r.id == doomed.id));
    let member = s.get_member(user.id).await.unwrap().unwrap();
    assert_eq!(member.roles, vec![role_ref(&kept), everyone_ref()]);
    let held: Vec<RoleId> = s.member_roles(user.id).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(held, vec![kept.id, RoleId::EVERYONE]);
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![keep_override]);

    assert!(!s.delete_role(doomed.id).await.unwrap(), "already gone");
    assert!(!s.delete_role(RoleId(9_999)).await.unwrap());
}

pub async fn delete_builtin_role_is_invalid_input(s: &dyn Storage) {
    expect_invalid_input(s.delete_role(RoleId::EVERYONE).await);
    expect_invalid_input(s.delete_role(RoleId::ADMIN).await);
    assert_eq!(s.list_roles().await.unwrap().len(), 2, "both built-in roles remain");
}

pub async fn assign_role_errors_not_member_unknown_role_and_duplicate(s: &dyn Storage) {
    admin(s).await;
    let user = member(s).await;
    let stranger = outsider(s).await;
    let r = role(s, "r", 10).await;

    expect_not_found(s.assign_role(stranger.id, r.id).await, Entity::Member);
    expect_not_found(s.assign_role(UserId(9_999), r.id).await, Entity::Member);
    expect_not_found(s.assign_role(user.id, RoleId(9_999)).await, Entity::Role);
    expect_conflict(s.assign_role(user.id, RoleId::EVERYONE).await, Conflict::RoleAssigned);

    s.assign_role(user.id, r.id).await.unwrap();
    expect_conflict(s.assign_role(user.id, r.id).await, Conflict::RoleAssigned);
    assert_eq!(s.get_member(user.id).await.unwrap().unwrap().roles, vec![role_ref(&r), everyone_ref()]);
    assert_eq!(s.member_roles(stranger.id).await.unwrap(), vec![]);
}

pub async fn unassign_role_and_member_roles_order(s: &dyn Storage) {
    admin(s).await;
    let user = member(s).await;
    let low = role(s, "low", 10).await;
    let high = role(s, "high", 500).await;
    let tie = role(s, "tie", 10).await;
    for r in [&low, &tie, &high] {
        s.assign_role(user.id, r.id).await.unwrap();
    }
    let member = s.get_member(user.id).await.unwrap().unwrap();
    assert_eq!(member.roles, vec![role_ref(&high), role_ref(&low), role_ref(&tie), everyone_ref()]);

    assert!(s.unassign_role(user.id, low.id).await.unwrap());
    assert!(!s.unassign_role(user.id, low.id).await.unwrap(), "not assigned any more");
    assert!(!s.unassign_role(user.id, RoleId(9_999)).await.unwrap());
    let member = s.get_member(user.id).await.unwrap().unwrap();
    assert_eq!(member.roles, vec![role_ref(&high), role_ref(&tie), everyone_ref()]);
}

pub async fn member_roles_carry_permissions_and_are_empty_for_non_members(s: &dyn Storage) {
    admin(s).await;
    let user = member(s).await;
    let r = s.create_role(new_role("mods", 50, Permissions::KICK_MEMBERS | Permissions::MANAGE_INVITES)).await.unwrap();
    s.assign_role(user.id, r.id).await.unwrap();
    let held = s.member_roles(user.id).await.unwrap();
    let mut pairs: Vec<(RoleId, Permissions)> = held.iter().map(|r| (r.id, r.permissions)).collect();
    pairs.sort_by_key(|(id, _)| *id);
    assert_eq!(
        pairs,
        vec![
            (RoleId::EVERYONE, everyone_permissions()),
            (r.id, Permissions::KICK_MEMBERS | Permissions::MANAGE_INVITES)
        ]
    );
    assert!(held.contains(&r));

    assert_eq!(s.member_roles(outsider(s).await.id).await.unwrap(), vec![]);
    assert_eq!(s.member_roles(UserId(9_999)).await.unwrap(), vec![]);
}

pub async fn put_override_creates_replaces_and_lists_by_role_id(s: &dyn Storage) {
    let ch = channel(s, "general").await;
    let other = channel(s, "other").await;
    let r = role(s, "r", 10).await;
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![]);

    let o1 = Override {
        channel_id: ch.id,
        role_id: r.id,
        allow: Permissions::SEND_MESSAGES,
        deny: Permissions::READ_MESSAGES,
    };
    assert_eq!(s.put_override(o1.clone()).await.unwrap(), o1);
    let everyone = Override {
        channel_id: ch.id,
        role_id: RoleId::EVERYONE,
        allow: Permissions::empty(),
        deny: Permissions::all() - Permissions::ADMINISTRATOR,
    };
    assert_eq!(s.put_override(everyone.clone()).await.unwrap(), everyone);
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![everyone.clone(), o1.clone()], "by role id");
    assert_eq!(s.list_overrides(other.id).await.unwrap(), vec![]);

    let replaced = Override {
        allow: Permissions::ADD_REACTIONS | Permissions::ATTACH_FILES,
        deny: Permissions::empty(),
        ..o1.clone()
    };
    assert_eq!(s.put_override(replaced.clone()).await.unwrap(), replaced);
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![everyone.clone(), replaced]);

    assert!(s.delete_override(ch.id, r.id).await.unwrap());
    assert!(!s.delete_override(ch.id, r.id).await.unwrap());
    assert!(!s.delete_override(other.id, RoleId::EVERYONE).await.unwrap());
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![everyone]);
}

pub async fn override_for_unknown_role_or_channel_is_invalid_reference(s: &dyn Storage) {
    let ch = channel(s, "general").await;
    let unknown_role = Override {
        channel_id: ch.id,
        role_id: RoleId(9_999),
        allow: Permissions::SEND_MESSAGES,
        deny: Permissions::empty(),
    };
    expect_invalid_reference(s.put_override(unknown_role).await);
    let unknown_channel = Override {
        channel_id: ChannelId(9_999),
        role_id: RoleId::EVERYONE,
        allow: Permissions::empty(),
        deny: Permissions::SEND_MESSAGES,
    };
    expect_invalid_reference(s.put_override(unknown_channel).await);
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![]);
}
