//! ChannelStore: text channels, categories, the default channel.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn create_channel_round_trips_unicode_and_reuses_category(s: &dyn Storage) {
    let before = Timestamp::now();
    let ch = s
        .create_channel(NewChannel {
            name: "général-🎉".into(),
            topic: Some("נושא: مرحبا e\u{301}".into()),
            category: Some("Text Channels 💬".into()),
            position: 3,
        })
        .await
        .unwrap();
    let after = Timestamp::now();
    assert_eq!(ch.name, "général-🎉");
    assert_eq!(ch.topic.as_deref(), Some("נושא: مرحبا e\u{301}"));
    assert_eq!(ch.category.as_deref(), Some("Text Channels 💬"));
    assert_eq!(ch.position, 3);
    assert_between(ch.created_at, before, after);
    assert_between(ch.updated_at, before, after);
    assert_eq!(s.get_channel(ch.id).await.unwrap(), Some(ch.clone()));
    assert_eq!(s.channel_kind(ch.id).await.unwrap(), Some(ChannelKind::Text));

    let second = s
        .create_channel(NewChannel {
            name: "random".into(),
            topic: None,
            category: Some("Text Channels 💬".into()),
            position: 4,
        })
        .await
        .unwrap();
    assert_eq!(second.category.as_deref(), Some("Text Channels 💬"));
    let no_category = channel(s, "loose").await;
    assert_eq!(no_category.category, None);
    assert_eq!(no_category.topic, None);

    let categories = s.list_categories().await.unwrap();
    assert_eq!(
        categories.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["Text Channels 💬"],
        "the category is reused by name"
    );
    assert_between(categories[0].created_at, before, Timestamp::now());
}

pub async fn duplicate_channel_name_is_channel_name_conflict(s: &dyn Storage) {
    let ch = channel(s, "général").await;
    let again = s
        .create_channel(NewChannel { name: "général".into(), topic: Some("t".into()), category: None, position: 9 })
        .await;
    expect_conflict(again, Conflict::ChannelName);
    assert_eq!(s.list_channels().await.unwrap(), vec![ch]);
}

pub async fn list_channels_by_position_then_id_excludes_dms(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let mk = |name: &str, position: i64| NewChannel { name: name.into(), topic: None, category: None, position };
    let c1 = s.create_channel(mk("c1", 5)).await.unwrap();
    let c2 = s.create_channel(mk("c2", 1)).await.unwrap();
    let c3 = s.create_channel(mk("c3", 5)).await.unwrap();
    let c4 = s.create_channel(mk("c4", -2)).await.unwrap();
    s.open_dm(a.id, b.id).await.unwrap();
    assert_eq!(s.list_channels().await.unwrap(), vec![c4, c2, c1, c3]);
}

pub async fn get_channel_is_none_for_dm_and_unknown_ids(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let dm = s.open_dm(a.id, b.id).await.unwrap().dm;
    assert_eq!(s.get_channel(dm.channel_id).await.unwrap(), None);
    assert_eq!(s.channel_kind(dm.channel_id).await.unwrap(), Some(ChannelKind::Dm));
    assert_eq!(s.get_channel(ChannelId(9_999)).await.unwrap(), None);
    assert_eq!(s.channel_kind(ChannelId(9_999)).await.unwrap(), None);
}

pub async fn update_channel_patches_clears_and_conflicts(s: &dyn Storage) {
    let original = s
        .create_channel(NewChannel {
            name: "old".into(),
            topic: Some("topic".into()),
            category: Some("A".into()),
            position: 1,
        })
        .await
        .unwrap();
    let other = channel(s, "taken").await;

    let same = s.update_channel(original.id, ChannelPatch::default()).await.unwrap();
    assert_eq!(
        (same.name.as_str(), same.topic.as_deref(), same.category.as_deref(), same.position),
        ("old", Some("topic"), Some("A"), 1)
    );

    tick().await;
    let renamed = s
        .update_channel(original.id, ChannelPatch { name: Some("nouveau-✨".into()), ..ChannelPatch::default() })
        .await
        .unwrap();
    assert_eq!(renamed.name, "nouveau-✨");
    assert_eq!(renamed.topic.as_deref(), Some("topic"));
    assert_eq!(renamed.category.as_deref(), Some("A"));
    assert_eq!(renamed.position, 1);
    assert_eq!(renamed.created_at, original.created_at);
    assert!(renamed.updated_at > original.updated_at);

    let moved = s
        .update_channel(
            original.id,
            ChannelPatch { name: None, topic: Some(None), category: Some(Some("B 📁".into())), position: Some(-7) },
        )
        .await
        .unwrap();
    assert_eq!(moved.topic, None);
    assert_eq!(moved.category.as_deref(), Some("B 📁"));
    assert_eq!(moved.position, -7);
    assert_eq!(s.get_channel(original.id).await.unwrap(), Some(moved.clone()));
    let names: Vec<String> = s.list_categories().await.unwrap().into_iter().map(|c| c.name).collect();
    assert!(names.contains(&"B 📁".to_owned()), "setting a new category name creates it: {names:?}");

    let cleared =
        s.update_channel(original.id, ChannelPatch { category: Some(None), ..ChannelPatch::default() }).await.unwrap();
    assert_eq!(cleared.category, None);

    expect_conflict(
        s.update_channel(original.id, ChannelPatch { name: Some("taken".into()), ..ChannelPatch::default() }).await,
        Conflict::ChannelName,
    );
    assert_eq!(s.get_channel(other.id).await.unwrap(), Some(other));
    assert_eq!(s.get_channel(original.id).await.unwrap().unwrap().name, "nouveau-✨");
    expect_not_found(
        s.update_channel(ChannelId(9_999), ChannelPatch { topic: Some(Some("x".into())), ..ChannelPatch::default() })
            .await,
        Entity::Channel,
    );
}

pub async fn delete_channel_cascades_to_messages_threads_attachments_and_overrides(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "doomed").await;
    let kept = channel(s, "kept").await;
    let att = upload(s, ch.id, a.id, 1).await;
    let parent = post_with(s, ch.id, a.id, "needle parent", vec![att.id]).await.unwrap();
    let t = thread(s, parent.id, a.id).await;
    let r = reply(s, &t, a.id, "needle reply").await;
    s.toggle_reaction(parent.id, a.id, "👍").await.unwrap();
    s.put_override(Override {
        channel_id: ch.id,
        role_id: RoleId::EVERYONE,
        allow: Permissions::empty(),
        deny: Permissions::SEND_MESSAGES,
    })
    .await
    .unwrap();
    let survivor = post(s, kept.id, a.id, "needle elsewhere").await;

    assert!(s.delete_channel(ch.id).await.unwrap());
    assert_eq!(s.get_channel(ch.id).await.unwrap(), None);
    assert_eq!(s.channel_kind(ch.id).await.unwrap(), None);
    assert_eq!(s.get_message(parent.id, None).await.unwrap(), None);
    assert_eq!(s.get_message(r.id, None).await.unwrap(), None);
    assert_eq!(s.get_thread(t.id, None).await.unwrap(), None);
    assert_eq!(s.get_attachment(att.id).await.unwrap(), None);
    assert_eq!(s.list_overrides(ch.id).await.unwrap(), vec![]);
    assert_eq!(s.list_channels().await.unwrap(), vec![kept.clone()]);
    assert!(s.get_media(&hash(1)).await.unwrap().is_some(), "media rows are not removed");

    assert_eq!(search_ids(s, query("needle", &[ch.id, kept.id])).await, vec![survivor.id]);
    assert_eq!(s.get_message(survivor.id, None).await.unwrap(), Some(survivor));
    assert!(!s.delete_channel(ch.id).await.unwrap(), "already gone");
}

pub async fn ensure_default_channel_creates_only_when_no_text_channel_exists(s: &dyn Storage) {
    let created = s.ensure_default_channel("général").await.unwrap().expect("created on an empty server");
    assert_eq!(created.name, "général");
    assert_eq!(s.list_channels().await.unwrap(), vec![created.clone()]);
    assert_eq!(s.ensure_default_channel("général").await.unwrap(), None);
    assert_eq!(s.ensure_default_channel("another").await.unwrap(), None, "any text channel counts");
    assert_eq!(s.list_channels().await.unwrap(), vec![created]);
}

pub async fn ensure_default_channel_is_race_safe(s: &dyn Storage) {
    // a DM channel is not a text channel: it does not prevent the default channel
    let a = admin(s).await;
    let b = member(s).await;
    s.open_dm(a.id, b.id).await.unwrap();

    let results = futures::future::join_all((0..8).map(|_| s.ensure_default_channel("general"))).await;
    let created: Vec<Channel> = results.into_iter().filter_map(|r| r.expect("ensure_default_channel")).collect();
    assert_eq!(created.len(), 1, "exactly one call creates the channel");
    assert_eq!(s.list_channels().await.unwrap(), created);
}

pub async fn delete_category_not_found_in_use_and_unused(s: &dyn Storage) {
    expect_not_found(s.delete_category("nope").await, Entity::Category);
    let ch = s
        .create_channel(NewChannel { name: "c".into(), topic: None, category: Some("Voice 🔊".into()), position: 0 })
        .await
        .unwrap();
    s.create_channel(NewChannel { name: "d".into(), topic: None, category: Some("Other".into()), position: 0 })
        .await
        .unwrap();
    let names = |cs: Vec<Category>| cs.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(s.list_categories().await.unwrap()), vec!["Voice 🔊", "Other"], "by position, then id");

    expect_conflict(s.delete_category("Voice 🔊").await, Conflict::CategoryInUse);
    s.update_channel(ch.id, ChannelPatch { category: Some(None), ..ChannelPatch::default() }).await.unwrap();
    s.delete_category("Voice 🔊").await.unwrap();
    assert_eq!(names(s.list_categories().await.unwrap()), vec!["Other"]);
    expect_not_found(s.delete_category("Voice 🔊").await, Entity::Category);
}

pub async fn get_channel_access_loads_channel_and_positioned_overrides(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let new =
        NewChannel { name: "rules".into(), topic: Some("read me".into()), category: Some("info".into()), position: 3 };
    let ch = s.create_channel(new).await.unwrap();
    let other = channel(s, "other").await;
    let access = s.get_channel_access(ch.id).await.unwrap().expect("a text channel");
    assert_eq!(access, ChannelAccess { channel: ch.clone(), overrides: vec![] });

    let mods = s
        .create_role(NewRole { name: "mods".into(), color: None, permissions: Permissions::empty(), position: 7 })
        .await
        .unwrap();
    let on_mods = Override {
        channel_id: ch.id,
        role_id: mods.id,
        allow: Permissions::MANAGE_MESSAGES,
        deny: Permissions::empty(),
    };
    let on_everyone = Override {
        channel_id: ch.id,
        role_id: RoleId::EVERYONE,
        allow: Permissions::empty(),
        deny: Permissions::SEND_MESSAGES,
    };
    s.put_override(on_mods.clone()).await.unwrap();
    s.put_override(on_everyone.clone()).await.unwrap();
    s.put_override(Override { channel_id: other.id, ..on_mods.clone() }).await.unwrap();
    let access = s.get_channel_access(ch.id).await.unwrap().unwrap();
    assert_eq!(access.channel, ch);
    assert_eq!(access.overrides, vec![(on_everyone.clone(), 0), (on_mods, 7)], "by role id, with positions");
    assert_eq!(
        access.overrides.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>(),
        s.list_overrides(ch.id).await.unwrap()
    );

    let patch = RolePatch { name: None, color: None, permissions: None, position: Some(12) };
    s.update_role(mods.id, patch).await.unwrap();
    assert_eq!(s.get_channel_access(ch.id).await.unwrap().unwrap().overrides[1].1, 12, "a new position at once");
    assert!(s.delete_role(mods.id).await.unwrap());
    assert_eq!(s.get_channel_access(ch.id).await.unwrap().unwrap().overrides, vec![(on_everyone, 0)]);

    let dm = s.open_dm(a.id, b.id).await.unwrap().dm;
    assert_eq!(s.get_channel_access(dm.channel_id).await.unwrap(), None, "DM channels are not text channels");
    assert_eq!(s.get_channel_access(ChannelId(9_999)).await.unwrap(), None);
}
