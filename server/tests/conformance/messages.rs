//! MessageStore: create/get/edit/soft delete, attachments, and paging (api.md §1.6).

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn create_and_get_message_round_trip_unicode(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let before = Timestamp::now();
    let m = post(s, ch.id, a.id, UNICODE_TEXT).await;
    let after = Timestamp::now();
    assert_eq!(m.channel_id, ch.id);
    assert_eq!(m.author_id, a.id);
    assert_eq!(m.content, UNICODE_TEXT);
    assert_eq!(m.content.as_bytes(), UNICODE_TEXT.as_bytes(), "byte for byte (no normalisation)");
    assert_between(m.created_at, before, after);
    assert_eq!(m.edited_at, None);
    assert!(!m.deleted);
    assert_eq!(m.thread_id, None);
    assert_eq!(m.attachments, vec![]);
    assert_eq!(m.reactions, vec![]);
    assert_eq!(m.thread, None);
    assert_eq!(s.get_message(m.id, None).await.unwrap(), Some(m.clone()));
    assert_eq!(s.get_message(m.id, Some(a.id)).await.unwrap(), Some(m.clone()));

    let second = post(s, ch.id, a.id, "x").await;
    assert!(second.id > m.id, "ids order messages by creation");
    assert!(second.created_at >= m.created_at);
}

pub async fn create_message_in_unknown_channel_or_thread_is_not_found(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    expect_not_found(post_with(s, ChannelId(9_999), a.id, "hi", vec![]).await, Entity::Channel);
    let in_unknown_thread = s
        .create_message(NewMessage {
            channel_id: ch.id,
            thread_id: Some(ThreadId(9_999)),
            author_id: a.id,
            content: "hi".into(),
            attachment_ids: vec![],
        })
        .await;
    expect_not_found(in_unknown_thread, Entity::Thread);
    let page = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(page.messages, vec![]);
}

pub async fn get_message_unknown_is_none(s: &dyn Storage) {
    assert_eq!(s.get_message(MessageId(9_999), None).await.unwrap(), None);
}

pub async fn edit_message_sets_content_and_edited_at(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "first draft").await;
    tick().await;
    let before = Timestamp::now();
    let edited = s.edit_message(m.id, "second 🎉 שלום".into()).await.unwrap();
    let after = Timestamp::now();
    assert_eq!(edited.id, m.id);
    assert_eq!(edited.content, "second 🎉 שלום");
    assert_eq!(edited.created_at, m.created_at);
    assert_between(edited.edited_at.expect("edited_at set"), before, after);
    assert!(!edited.deleted);
    assert_eq!(s.get_message(m.id, None).await.unwrap(), Some(edited));
    // search_text follows the content
    assert_eq!(search_ids(s, query("draft", &[ch.id])).await, vec![]);
    assert_eq!(search_ids(s, query("second", &[ch.id])).await, vec![m.id]);
}

pub async fn edit_message_errors_unknown_and_deleted(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    expect_not_found(s.edit_message(MessageId(9_999), "x".into()).await, Entity::Message);
    let m = post(s, ch.id, a.id, "soon gone").await;
    assert!(s.delete_message(m.id).await.unwrap());
    expect_conflict(s.edit_message(m.id, "resurrected".into()).await, Conflict::MessageDeleted);
    let stored = s.get_message(m.id, None).await.unwrap().unwrap();
    assert_eq!((stored.content.as_str(), stored.deleted, stored.edited_at), ("", true, None));
}

pub async fn delete_message_is_soft_idempotent_and_hides_attachments(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let att = upload(s, ch.id, a.id, 1).await;
    let m = post_with(s, ch.id, a.id, "secret needle", vec![att.id]).await.unwrap();
    assert_eq!(m.attachments.len(), 1);
    s.toggle_reaction(m.id, a.id, "👍").await.unwrap();
    assert_eq!(search_ids(s, query("needle", &[ch.id])).await, vec![m.id]);

    assert!(s.delete_message(m.id).await.unwrap());
    let deleted = s.get_message(m.id, None).await.unwrap().expect("a soft-deleted message still exists");
    assert!(deleted.deleted);
    assert_eq!(deleted.content, "");
    assert_eq!(deleted.attachments, vec![], "a deleted message lists no attachments");
    assert_eq!(
        (deleted.id, deleted.channel_id, deleted.author_id, deleted.created_at),
        (m.id, ch.id, a.id, m.created_at)
    );
    assert_eq!(search_ids(s, query("needle", &[ch.id])).await, vec![], "no search hit any more");
    assert_eq!(search_ids(s, query("secret*", &[ch.id])).await, vec![]);

    assert!(!s.delete_message(m.id).await.unwrap(), "already deleted");
    let page = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(page.messages, vec![deleted]);
    // the soft-deleted attachment cannot be linked again
    expect_conflict(post_with(s, ch.id, a.id, "reuse", vec![att.id]).await, Conflict::AttachmentUnavailable(att.id));
}

pub async fn delete_message_unknown_is_not_found(s: &dyn Storage) {
    expect_not_found(s.delete_message(MessageId(9_999)).await, Entity::Message);
}

pub async fn list_messages_empty_channel(s: &dyn Storage) {
    let ch = channel(s, "empty").await;
    let empty = MessagePage { messages: vec![], has_more: false };
    for cursor in [
        PageCursor::Latest,
        PageCursor::Before(MessageId(1)),
        PageCursor::After(MessageId(1)),
        PageCursor::Before(MessageId(i64::MAX)),
    ] {
        let page = s.list_messages(MessageScope::Channel(ch.id), cursor, 50, None).await.unwrap();
        assert_eq!(page, empty, "{cursor:?}");
    }
}

pub async fn list_messages_exactly_one_page_has_no_more(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let ms = post_many(s, ch.id, a.id, 3).await;
    let newest_first: Vec<MessageId> = ids(&ms).into_iter().rev().collect();

    let page = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 3, None).await.unwrap();
    assert_eq!(ids(&page.messages), newest_first);
    assert!(!page.has_more, "exactly `limit` messages: nothing beyond");
    assert_eq!(page.messages[0], ms[2]);

    let page = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 2, None).await.unwrap();
    assert_eq!(ids(&page.messages), newest_first[..2].to_vec());
    assert!(page.has_more);

    let page = s.list_messages(MessageScope::Channel(ch.id), PageCursor::After(MessageId(0)), 3, None).await.unwrap();
    assert_eq!(ids(&page.messages), ids(&ms));
    assert!(!page.has_more);
}

pub async fn list_messages_pages_before_and_after_with_has_more(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = ids(&post_many(s, ch.id, a.id, 5).await);
    let page = |cursor| s.list_messages(MessageScope::Channel(ch.id), cursor, 2, None);

    // backwards from the newest, newest first
    let p = page(PageCursor::Latest).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[4], m[3]], true));
    let p = page(PageCursor::Before(m[3])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[2], m[1]], true));
    let p = page(PageCursor::Before(m[1])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[0]], false));

    // forwards from the oldest, oldest first
    let p = page(PageCursor::After(m[0])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[1], m[2]], true));
    let p = page(PageCursor::After(m[2])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[3], m[4]], false));
    let p = page(PageCursor::After(m[1])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[2], m[3]], true));

    // limit 1 and a large limit
    let p = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Before(m[2]), 1, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[1]], true));
    let p = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 100, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[4], m[3], m[2], m[1], m[0]], false));
}

pub async fn list_messages_cursors_at_first_and_last_id_and_beyond(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = ids(&post_many(s, ch.id, a.id, 3).await);
    let page = |cursor| s.list_messages(MessageScope::Channel(ch.id), cursor, 10, None);

    let p = page(PageCursor::Before(m[0])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![], false), "nothing before the first id");
    let p = page(PageCursor::After(m[2])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![], false), "nothing after the last id");
    let p = page(PageCursor::Before(m[2])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[1], m[0]], false));
    let p = page(PageCursor::After(m[0])).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[1], m[2]], false));

    // cursors need not be existing messages
    let p = page(PageCursor::Before(MessageId(i64::MAX))).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[2], m[1], m[0]], false));
    let p = page(PageCursor::After(MessageId(0))).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[0], m[1], m[2]], false));
    let p = s
        .list_messages(MessageScope::Channel(ch.id), PageCursor::Before(MessageId(m[2].0 + 1_000)), 2, None)
        .await
        .unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![m[2], m[1]], true));
}

pub async fn list_messages_is_per_channel_and_excludes_thread_replies(s: &dyn Storage) {
    let a = admin(s).await;
    let one = channel(s, "one").await;
    let two = channel(s, "two").await;
    let x1 = post(s, one.id, a.id, "x1").await;
    let y1 = post(s, two.id, a.id, "y1").await;
    let t = thread(s, x1.id, a.id).await;
    let r1 = reply(s, &t, a.id, "reply").await;
    let x2 = post(s, one.id, a.id, "x2").await;
    let y2 = post(s, two.id, a.id, "y2").await;

    let p = s.list_messages(MessageScope::Channel(one.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(ids(&p.messages), vec![x2.id, x1.id]);
    let p = s.list_messages(MessageScope::Channel(two.id), PageCursor::After(MessageId(0)), 50, None).await.unwrap();
    assert_eq!(ids(&p.messages), vec![y1.id, y2.id]);
    let p = s.list_messages(MessageScope::Channel(one.id), PageCursor::Before(x2.id), 1, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![x1.id], false), "the reply between them is not counted");
    let p = s.list_messages(MessageScope::Thread(t.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!((ids(&p.messages), p.has_more), (vec![r1.id], false));
}

pub async fn list_messages_keeps_deleted_messages(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let m = post_many(s, ch.id, a.id, 3).await;
    s.delete_message(m[1].id).await.unwrap();
    let p = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(ids(&p.messages), vec![m[2].id, m[1].id, m[0].id]);
    let flags: Vec<(bool, &str)> = p.messages.iter().map(|m| (m.deleted, m.content.as_str())).collect();
    assert_eq!(flags, vec![(false, "m3"), (true, ""), (false, "m1")]);
}

pub async fn attachments_are_linked_on_create_in_id_order(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let first = upload(s, ch.id, a.id, 1).await;
    let second = upload(s, ch.id, a.id, 2).await;
    assert_eq!((first.message_id, second.message_id), (None, None));

    // given in reverse order, listed by id; empty content is fine with attachments
    let m = post_with(s, ch.id, a.id, "", vec![second.id, first.id]).await.unwrap();
    let linked = vec![
        Attachment { message_id: Some(m.id), ..first.clone() },
        Attachment { message_id: Some(m.id), ..second.clone() },
    ];
    assert_eq!(m.attachments, linked);
    assert_eq!(s.get_message(m.id, None).await.unwrap().unwrap().attachments, linked);
    assert_eq!(s.get_attachment(first.id).await.unwrap(), Some(linked[0].clone()));
    assert_eq!(s.get_attachment(second.id).await.unwrap(), Some(linked[1].clone()));

    // a thread reply can claim an attachment uploaded to the thread's channel
    let t = thread(s, m.id, a.id).await;
    let third = upload(s, ch.id, a.id, 3).await;
    let r = s
        .create_message(NewMessage {
            channel_id: ch.id,
            thread_id: Some(t.id),
            author_id: a.id,
            content: "see".into(),
            attachment_ids: vec![third.id],
        })
        .await
        .unwrap();
    assert_eq!(r.attachments, vec![Attachment { message_id: Some(r.id), ..third }]);
}

pub async fn unusable_attachment_is_conflict_and_stores_nothing(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let other = channel(s, "other").await;
    let good = upload(s, ch.id, a.id, 1).await;
    let used = upload(s, ch.id, a.id, 2).await;
    post_with(s, ch.id, a.id, "claims it", vec![used.id]).await.unwrap();
    let not_mine = upload(s, ch.id, b.id, 3).await;
    let elsewhere = upload(s, other.id, a.id, 4).await;
    let unknown = AttachmentId(9_999);

    for bad in [used.id, not_mine.id, elsewhere.id, unknown] {
        let before = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, None).await.unwrap();
        let result = post_with(s, ch.id, a.id, "attempt", vec![good.id, bad]).await;
        expect_conflict(result, Conflict::AttachmentUnavailable(bad));
        let after = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, None).await.unwrap();
        assert_eq!(after, before, "no message stored when linking {bad:?} fails");
        assert_eq!(s.get_attachment(good.id).await.unwrap(), Some(good.clone()), "the good attachment stays unlinked");
    }
    assert_eq!(s.get_attachment(not_mine.id).await.unwrap(), Some(not_mine));
    assert_eq!(s.get_attachment(elsewhere.id).await.unwrap(), Some(elsewhere));
    // the same attachment twice in one message: the second is unusable
    let twice = post_with(s, ch.id, a.id, "twice", vec![good.id, good.id]).await;
    expect_conflict(twice, Conflict::AttachmentUnavailable(good.id));
    assert_eq!(s.get_attachment(good.id).await.unwrap().unwrap().message_id, None);
    // and still usable afterwards
    let m = post_with(s, ch.id, a.id, "finally", vec![good.id]).await.unwrap();
    assert_eq!(s.get_attachment(good.id).await.unwrap().unwrap().message_id, Some(m.id));
}

pub async fn list_messages_carries_attachments_reactions_and_thread_summary(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let c = member(s).await;
    let ch = channel(s, "general").await;
    let att = upload(s, ch.id, a.id, 1).await;
    let m = post_with(s, ch.id, a.id, "with everything", vec![att.id]).await.unwrap();
    let plain = post(s, ch.id, b.id, "plain").await;
    s.toggle_reaction(m.id, a.id, "🎉").await.unwrap();
    s.toggle_reaction(m.id, b.id, "👍").await.unwrap();
    s.toggle_reaction(m.id, c.id, "🎉").await.unwrap();
    let t = thread(s, m.id, a.id).await;
    let r = reply(s, &t, b.id, "a reply").await;

    for viewer in [None, Some(a.id), Some(b.id)] {
        let listed = s.list_messages(MessageScope::Channel(ch.id), PageCursor::Latest, 50, viewer).await.unwrap();
        let got = s.get_message(m.id, viewer).await.unwrap().unwrap();
        assert_eq!(listed.messages, vec![s.get_message(plain.id, viewer).await.unwrap().unwrap(), got.clone()]);

        assert_eq!(got.attachments, vec![Attachment { message_id: Some(m.id), ..att.clone() }]);
        let expected_reactions = vec![
            ReactionSummary { emoji: "🎉".into(), count: 2, me: viewer == Some(a.id) },
            ReactionSummary { emoji: "👍".into(), count: 1, me: viewer == Some(b.id) },
        ];
        assert_eq!(got.reactions, expected_reactions, "viewer {viewer:?}");
        assert_eq!(
            got.thread,
            Some(ThreadSummary {
                thread_id: t.id,
                reply_count: 1,
                last_reply_at: Some(r.created_at),
                last_reply_author_id: Some(b.id)
            })
        );
    }
}

/// create_message builds its answer from what it wrote; it must equal a fresh load.
pub async fn create_message_returns_what_get_message_loads(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let other = channel(s, "other").await;
    let plain = post(s, ch.id, b.id, "plain").await;
    assert_eq!(s.get_message(plain.id, Some(b.id)).await.unwrap(), Some(plain.clone()));

    let files = [upload(s, ch.id, b.id, 1).await, upload(s, ch.id, b.id, 2).await, upload(s, ch.id, b.id, 3).await];
    let with_files = post_with(s, ch.id, b.id, "files", vec![files[2].id, files[0].id, files[1].id]).await.unwrap();
    assert_eq!(
        with_files.attachments.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![files[0].id, files[1].id, files[2].id]
    );
    assert_eq!(s.get_message(with_files.id, None).await.unwrap(), Some(with_files.clone()));

    // A reply given another channel id lands in its thread's channel.
    let t = thread(s, plain.id, a.id).await;
    let file = upload(s, ch.id, a.id, 4).await;
    let replied = s
        .create_message(NewMessage {
            channel_id: other.id,
            thread_id: Some(t.id),
            author_id: a.id,
            content: "reply".into(),
            attachment_ids: vec![file.id],
        })
        .await
        .unwrap();
    assert_eq!((replied.channel_id, replied.thread_id), (ch.id, Some(t.id)));
    assert_eq!(s.get_message(replied.id, Some(a.id)).await.unwrap(), Some(replied));
}
