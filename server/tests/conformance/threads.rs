//! ThreadStore and thread replies: creation, counters, followers, read marks.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn create_thread_is_idempotent_per_parent_and_creator_follows(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, b.id, "start a thread here").await;

    let before = Timestamp::now();
    let (t, created) = s.create_thread(parent.id, a.id).await.unwrap();
    let after = Timestamp::now();
    assert!(created);
    assert_eq!(t.channel_id, ch.id);
    assert_eq!(t.parent_message_id, parent.id);
    assert_eq!(t.creator_id, a.id);
    assert_between(t.created_at, before, after);
    assert_eq!((t.reply_count, t.last_reply_at, t.last_reply_author_id), (0, None, None));
    assert_eq!(t.follower_count, 1, "the creator follows");

    let seen_by_creator = s.get_thread(t.id, Some(a.id)).await.unwrap().unwrap();
    assert!(seen_by_creator.is_following);
    assert_eq!(Thread { is_following: t.is_following, ..seen_by_creator.clone() }, t);
    assert!(!s.get_thread(t.id, Some(b.id)).await.unwrap().unwrap().is_following);
    assert!(!s.get_thread(t.id, None).await.unwrap().unwrap().is_following);

    let (again, created) = s.create_thread(parent.id, a.id).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, t.id);
    assert_eq!(again.creator_id, a.id);
    assert_eq!(again.created_at, t.created_at);
    let (by_other, created) = s.create_thread(parent.id, b.id).await.unwrap();
    assert!(!created);
    assert_eq!((by_other.id, by_other.creator_id), (t.id, a.id), "the existing thread, its creator unchanged");

    let summary = s.get_message(parent.id, None).await.unwrap().unwrap().thread;
    assert_eq!(
        summary,
        Some(ThreadSummary { thread_id: t.id, reply_count: 0, last_reply_at: None, last_reply_author_id: None })
    );
}

pub async fn create_thread_errors_unknown_reply_and_dm_parents(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    expect_not_found(s.create_thread(MessageId(9_999), a.id).await, Entity::Message);

    let parent = post(s, ch.id, a.id, "parent").await;
    let t = thread(s, parent.id, a.id).await;
    let r = reply(s, &t, a.id, "a reply").await;
    expect_invalid_input(s.create_thread(r.id, a.id).await);

    let dm = s.open_dm(a.id, b.id).await.unwrap().dm;
    let dm_message = s.send_dm_message(dm.channel_id, a.id, "private".into()).await.unwrap().message;
    expect_invalid_input(s.create_thread(dm_message.id, a.id).await);
    assert_eq!(s.get_message(dm_message.id, None).await.unwrap().unwrap().thread, None);
}

pub async fn thread_reply_updates_counters_and_makes_author_follower(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let c = member(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent").await;
    let t = thread(s, parent.id, a.id).await;

    let r1 = reply(s, &t, b.id, "first reply 🧵").await;
    assert_eq!(r1.channel_id, ch.id);
    assert_eq!(r1.thread_id, Some(t.id));
    assert_eq!(r1.thread, None);
    assert_eq!(r1.content, "first reply 🧵");
    let after_one = s.get_thread(t.id, Some(b.id)).await.unwrap().unwrap();
    assert_eq!(after_one.reply_count, 1);
    assert_eq!(after_one.last_reply_at, Some(r1.created_at));
    assert_eq!(after_one.last_reply_author_id, Some(b.id));
    assert_eq!(after_one.follower_count, 2);
    assert!(after_one.is_following, "the reply's author follows");

    tick().await;
    let r2 = reply(s, &t, c.id, "second").await;
    let r3 = reply(s, &t, b.id, "third").await;
    let now = s.get_thread(t.id, Some(c.id)).await.unwrap().unwrap();
    assert_eq!(now.reply_count, 3);
    assert_eq!(now.last_reply_at, Some(r3.created_at));
    assert_eq!(now.last_reply_author_id, Some(b.id));
    assert_eq!(now.follower_count, 3, "b replying again does not follow twice");
    assert!(now.is_following);
    assert!(r2.created_at > r1.created_at);

    let summary = s.get_message(parent.id, None).await.unwrap().unwrap().thread.unwrap();
    assert_eq!(
        summary,
        ThreadSummary {
            thread_id: t.id,
            reply_count: 3,
            last_reply_at: Some(r3.created_at),
            last_reply_author_id: Some(b.id)
        }
    );
    assert_eq!(s.get_message(r2.id, None).await.unwrap(), Some(r2));
}

pub async fn thread_replies_page_like_channel_messages(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent").await;
    let t = thread(s, parent.id, a.id).await;
    let other_parent = post(s, ch.id, a.id, "other parent").await;
    let other = thread(s, other_parent.id, a.id).await;
    let mut r = Vec::new();
    for i in 0..4 {
        r.push(reply(s, &t, a.id, &format!("reply {i}")).await.id);
        reply(s, &other, a.id, "elsewhere").await;
    }
    let scope = MessageScope::Thread(t.id);
    let p = s.list_messages(scope, PageCursor::Latest, 3, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![r[3], r[2], r[1]], true));
    let p = s.list_messages(scope, PageCursor::Before(r[1]), 3, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![r[0]], false));
    let p = s.list_messages(scope, PageCursor::After(r[0]), 2, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![r[1], r[2]], true));
    let p = s.list_messages(scope, PageCursor::After(r[3]), 2, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![], false));
    assert!(p.messages.iter().all(|m| m.thread_id == Some(t.id)));
    let p = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(ids(&p.messages), vec![other_parent.id, parent.id]);
}

pub async fn follow_is_idempotent_and_unfollow_reports(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent").await;
    let t = thread(s, parent.id, a.id).await;

    s.follow_thread(t.id, b.id).await.unwrap();
    s.follow_thread(t.id, b.id).await.unwrap();
    let seen = s.get_thread(t.id, Some(b.id)).await.unwrap().unwrap();
    assert!(seen.is_following);
    assert_eq!(seen.follower_count, 2);

    assert!(s.unfollow_thread(t.id, b.id).await.unwrap());
    assert!(!s.unfollow_thread(t.id, b.id).await.unwrap());
    let seen = s.get_thread(t.id, Some(b.id)).await.unwrap().unwrap();
    assert!(!seen.is_following);
    assert_eq!(seen.follower_count, 1);

    assert!(s.unfollow_thread(t.id, a.id).await.unwrap(), "the creator can unfollow");
    assert_eq!(s.get_thread(t.id, None).await.unwrap().unwrap().follower_count, 0);
    assert!(!s.unfollow_thread(ThreadId(9_999), a.id).await.unwrap());
}

pub async fn follow_unknown_thread_is_not_found(s: &dyn Storage) {
    let a = admin(s).await;
    expect_not_found(s.follow_thread(ThreadId(9_999), a.id).await, Entity::Thread);
}

pub async fn mark_thread_read_only_for_followers(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent").await;
    let t = thread(s, parent.id, a.id).await;
    assert!(s.mark_thread_read(t.id, a.id).await.unwrap(), "the creator follows");
    assert!(!s.mark_thread_read(t.id, b.id).await.unwrap(), "b does not follow");
    s.follow_thread(t.id, b.id).await.unwrap();
    assert!(s.mark_thread_read(t.id, b.id).await.unwrap());
    assert!(!s.mark_thread_read(ThreadId(9_999), b.id).await.unwrap());
    // marking read changes nothing else
    assert_eq!(s.get_thread(t.id, None).await.unwrap().unwrap().follower_count, 2);
}

pub async fn get_thread_unknown_is_none(s: &dyn Storage) {
    assert_eq!(s.get_thread(ThreadId(9_999), None).await.unwrap(), None);
}

pub async fn concurrent_replies_are_all_counted(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent").await;
    let t = thread(s, parent.id, a.id).await;
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(member(s).await);
    }
    let replies = futures::future::join_all((0..24).map(|i| {
        s.create_message(NewMessage {
            channel_id: ch.id,
            thread_id: Some(t.id),
            author_id: users[i % users.len()].id,
            content: format!("reply {i}"),
            attachment_ids: vec![],
        })
    }))
    .await;
    let replies: Vec<Message> = replies.into_iter().map(|r| r.expect("create_message")).collect();
    let now = s.get_thread(t.id, None).await.unwrap().unwrap();
    assert_eq!(now.reply_count, 24, "no lost counter updates");
    assert_eq!(now.follower_count, 7, "the creator and each distinct author, once");
    let last = now.last_reply_at.expect("last_reply_at set");
    assert!(replies.iter().any(|m| m.created_at == last), "last_reply_at is a reply's created_at");
    assert!(users.iter().any(|u| Some(u.id) == now.last_reply_author_id));
    let page = s.list_messages(MessageScope::Thread(t.id), PageCursor::Latest, 100, None).await.unwrap();
    assert_eq!(page.messages.len(), 24);
}

pub async fn concurrent_create_thread_creates_one(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent").await;
    let results =
        futures::future::join_all((0..10).map(|i| s.create_thread(parent.id, if i % 2 == 0 { a.id } else { b.id })))
            .await;
    let results: Vec<(Thread, bool)> = results.into_iter().map(|r| r.expect("create_thread")).collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "exactly one call creates the thread");
    let id = results[0].0.id;
    assert!(results.iter().all(|(t, _)| t.id == id));
    assert_eq!(s.get_message(parent.id, None).await.unwrap().unwrap().thread.map(|t| t.thread_id), Some(id));
}
