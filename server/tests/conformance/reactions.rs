//! ReactionStore: one reaction per user per message, toggled; reactor lists.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

fn change(removed: Option<&str>, added: Option<&str>) -> ReactionChange {
    ReactionChange { removed: removed.map(str::to_owned), added: added.map(str::to_owned) }
}

pub async fn toggle_reaction_adds_removes_and_replaces(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "react to me").await;

    assert_eq!(s.toggle_reaction(m.id, a.id, "👍").await.unwrap(), change(None, Some("👍")));
    let summary = s.get_message(m.id, Some(a.id)).await.unwrap().unwrap().reactions;
    assert_eq!(summary, vec![ReactionSummary { emoji: "👍".into(), count: 1, me: true }]);

    assert_eq!(s.toggle_reaction(m.id, a.id, "👍").await.unwrap(), change(Some("👍"), None), "same emoji removes");
    assert_eq!(s.get_message(m.id, Some(a.id)).await.unwrap().unwrap().reactions, vec![]);

    assert_eq!(s.toggle_reaction(m.id, a.id, "👍").await.unwrap(), change(None, Some("👍")));
    assert_eq!(
        s.toggle_reaction(m.id, a.id, "❤️").await.unwrap(),
        change(Some("👍"), Some("❤️")),
        "another emoji replaces"
    );
    let summary = s.get_message(m.id, Some(a.id)).await.unwrap().unwrap().reactions;
    assert_eq!(summary, vec![ReactionSummary { emoji: "❤️".into(), count: 1, me: true }]);
    assert_eq!(s.list_reactors(m.id, "👍", None, 10).await.unwrap(), ReactorPage { users: vec![], total: 0 });
    assert_eq!(s.list_reactors(m.id, "❤️", None, 10).await.unwrap().total, 1);
}

pub async fn toggle_reaction_on_unknown_message_is_not_found(s: &dyn Storage) {
    let a = admin(s).await;
    expect_not_found(s.toggle_reaction(MessageId(9_999), a.id, "👍").await, Entity::Message);
}

pub async fn reaction_emoji_round_trip_unicode(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let emojis = [
        "👩\u{200d}👩\u{200d}👧\u{200d}👦", // ZWJ family
        "👍🏽",                               // skin tone modifier
        "🇯🇵",                               // regional indicator pair
        "1\u{fe0f}\u{20e3}",                // keycap
        "❤\u{fe0f}",                        // variation selector
        "e\u{301}",                         // combining mark
        "ש",                                // RTL letter
    ];
    let mut users = vec![a];
    for _ in 1..emojis.len() {
        users.push(member(s).await);
    }
    let m = post(s, ch.id, users[0].id, "emoji test").await;
    for (user, emoji) in users.iter().zip(emojis) {
        assert_eq!(s.toggle_reaction(m.id, user.id, emoji).await.unwrap(), change(None, Some(emoji)));
    }
    let summary = s.get_message(m.id, None).await.unwrap().unwrap().reactions;
    let got: Vec<(&str, i64)> = summary.iter().map(|r| (r.emoji.as_str(), r.count)).collect();
    let expected: Vec<(&str, i64)> = emojis.iter().map(|e| (*e, 1)).collect();
    assert_eq!(got, expected, "byte-exact emoji, in order of first reaction");
    for (user, emoji) in users.iter().zip(emojis) {
        let page = s.list_reactors(m.id, emoji, None, 10).await.unwrap();
        assert_eq!(page.users.iter().map(|r| r.user_id).collect::<Vec<_>>(), vec![user.id], "{emoji:?}");
        assert_eq!(page.total, 1);
    }
    // a differently composed "é" is another emoji
    assert_eq!(s.list_reactors(m.id, "é", None, 10).await.unwrap().total, 0);
    assert_eq!(s.remove_reaction(m.id, users[0].id).await.unwrap().as_deref(), Some(emojis[0]));
}

pub async fn reaction_summaries_order_by_earliest_reaction_with_me_flag(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let c = member(s).await;
    let d = member(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "hello").await;
    for (user, emoji) in [(&c, "🔥"), (&a, "👍"), (&b, "🔥"), (&d, "😂")] {
        s.toggle_reaction(m.id, user.id, emoji).await.unwrap();
        tick().await;
    }
    let mid = m.id;
    let summary = |viewer| async move { s.get_message(mid, viewer).await.unwrap().unwrap().reactions };
    let r = |emoji: &str, count, me| ReactionSummary { emoji: emoji.into(), count, me };
    assert_eq!(summary(None).await, vec![r("🔥", 2, false), r("👍", 1, false), r("😂", 1, false)]);
    assert_eq!(summary(Some(b.id)).await, vec![r("🔥", 2, true), r("👍", 1, false), r("😂", 1, false)]);
    assert_eq!(summary(Some(a.id)).await, vec![r("🔥", 2, false), r("👍", 1, true), r("😂", 1, false)]);

    // c moves from 🔥 to 😂: 🔥's earliest remaining reaction is now b's, later than a's 👍
    assert_eq!(s.toggle_reaction(m.id, c.id, "😂").await.unwrap(), change(Some("🔥"), Some("😂")));
    assert_eq!(summary(Some(c.id)).await, vec![r("👍", 1, false), r("🔥", 1, false), r("😂", 2, true)]);
}

pub async fn remove_reaction_returns_the_emoji(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "hello").await;
    s.toggle_reaction(m.id, a.id, "👍").await.unwrap();
    s.toggle_reaction(m.id, b.id, "👍").await.unwrap();
    assert_eq!(s.remove_reaction(m.id, a.id).await.unwrap().as_deref(), Some("👍"));
    assert_eq!(s.remove_reaction(m.id, a.id).await.unwrap(), None, "nothing left to remove");
    assert_eq!(
        s.get_message(m.id, Some(a.id)).await.unwrap().unwrap().reactions,
        vec![ReactionSummary { emoji: "👍".into(), count: 1, me: false }]
    );
    // after removal a toggle adds again
    assert_eq!(s.toggle_reaction(m.id, a.id, "👍").await.unwrap(), change(None, Some("👍")));
}

pub async fn list_reactors_by_user_id_desc_with_before_and_total(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "popular").await;
    let mut users = vec![a.clone()];
    for i in 0..4 {
        let u = member(s).await;
        let name = format!("user {i} 🎈");
        s.set_display_name(u.id, Some(name)).await.unwrap();
        users.push(u);
    }
    // react in an order unrelated to the ids
    for i in [2, 0, 4, 1, 3] {
        s.toggle_reaction(m.id, users[i].id, "⭐").await.unwrap();
    }
    let other = member(s).await;
    s.toggle_reaction(m.id, other.id, "🌙").await.unwrap();

    let reactor = |u: &User, name: Option<String>| Reactor { user_id: u.id, display_name: name };
    let named = |i: usize| reactor(&users[i], Some(format!("user {} 🎈", i - 1)));

    let p1 = s.list_reactors(m.id, "⭐", None, 2).await.unwrap();
    assert_eq!(p1, ReactorPage { users: vec![named(4), named(3)], total: 5 });
    let p2 = s.list_reactors(m.id, "⭐", Some(users[3].id), 2).await.unwrap();
    assert_eq!(p2, ReactorPage { users: vec![named(2), named(1)], total: 5 });
    let p3 = s.list_reactors(m.id, "⭐", Some(users[1].id), 2).await.unwrap();
    assert_eq!(p3, ReactorPage { users: vec![reactor(&a, None)], total: 5 });
    let p4 = s.list_reactors(m.id, "⭐", Some(a.id), 2).await.unwrap();
    assert_eq!(p4, ReactorPage { users: vec![], total: 5 });
    let all = s.list_reactors(m.id, "⭐", None, 100).await.unwrap();
    assert_eq!(
        all.users.iter().map(|r| r.user_id).collect::<Vec<_>>(),
        users.iter().rev().map(|u| u.id).collect::<Vec<_>>()
    );
    assert_eq!(
        s.list_reactors(m.id, "🌙", None, 10).await.unwrap(),
        ReactorPage { users: vec![reactor(&other, None)], total: 1 }
    );
    assert_eq!(s.list_reactors(m.id, "🚀", None, 10).await.unwrap(), ReactorPage { users: vec![], total: 0 });
}

pub async fn concurrent_toggles_keep_one_reaction_per_user(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "race").await;
    let emojis = ["🍎", "🍐", "🍊", "🍋", "🍌", "🍉", "🍇", "🍓", "🫐", "🍒"];
    let results = futures::future::join_all(emojis.iter().map(|e| s.toggle_reaction(m.id, a.id, e))).await;
    let changes: Vec<ReactionChange> = results.into_iter().map(|r| r.expect("toggle_reaction")).collect();
    let added = changes.iter().filter(|c| c.added.is_some()).count();
    let removed = changes.iter().filter(|c| c.removed.is_some()).count();
    let reactions = s.get_message(m.id, Some(a.id)).await.unwrap().unwrap().reactions;
    assert!(reactions.len() <= 1, "one reaction per user per message: {reactions:?}");
    assert_eq!(added - removed, reactions.len(), "the reported changes add up to the final state: {changes:?}");
    if let Some(r) = reactions.first() {
        assert_eq!((r.count, r.me), (1, true));
    }

    // many users on one emoji at once: every reaction counts
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(member(s).await);
    }
    let results = futures::future::join_all(users.iter().map(|u| s.toggle_reaction(m.id, u.id, "🏁"))).await;
    assert!(results.into_iter().all(|r| r.expect("toggle_reaction") == change(None, Some("🏁"))));
    assert_eq!(s.list_reactors(m.id, "🏁", None, 100).await.unwrap().total, 12);
}
