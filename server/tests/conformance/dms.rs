//! DmStore: two-user DM channels, visibility per participant, read marks.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

fn dm_user(u: &User) -> DmUser {
    DmUser { user_id: u.id, pubkey: u.pubkey, display_name: u.display_name.clone(), avatar_hash: u.avatar_hash.clone() }
}

fn channel_ids(dms: &[DmChannel]) -> Vec<ChannelId> {
    dms.iter().map(|d| d.channel_id).collect()
}

pub async fn open_dm_is_idempotent_per_unordered_pair(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let b = s.set_display_name(b.id, Some("Bé 🐝".into())).await.unwrap();
    let before = Timestamp::now();
    let opened = s.open_dm(a.id, b.id).await.unwrap();
    let after = Timestamp::now();
    assert!(opened.created);
    assert_eq!(opened.dm.recipient, dm_user(&b));
    assert_between(opened.dm.created_at, before, after);
    assert_eq!((opened.dm.last_message_at, opened.dm.last_read_at), (None, None));

    let again = s.open_dm(a.id, b.id).await.unwrap();
    assert_eq!(again, DmOpened { dm: opened.dm.clone(), created: false });
    let reverse = s.open_dm(b.id, a.id).await.unwrap();
    assert!(!reverse.created);
    assert_eq!(reverse.dm.channel_id, opened.dm.channel_id, "one channel per unordered pair");
    assert_eq!(reverse.dm.recipient, dm_user(&a));
    assert_eq!(reverse.dm.created_at, opened.dm.created_at);

    let c = member(s).await;
    let other = s.open_dm(a.id, c.id).await.unwrap();
    assert!(other.created);
    assert_ne!(other.dm.channel_id, opened.dm.channel_id);
}

pub async fn open_dm_is_race_safe(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let results = futures::future::join_all(
        (0..10).map(|i| if i % 2 == 0 { s.open_dm(a.id, b.id) } else { s.open_dm(b.id, a.id) }),
    )
    .await;
    let opened: Vec<DmOpened> = results.into_iter().map(|r| r.expect("open_dm")).collect();
    assert_eq!(opened.iter().filter(|o| o.created).count(), 1, "exactly one call creates the channel");
    let channel = opened[0].dm.channel_id;
    assert!(opened.iter().all(|o| o.dm.channel_id == channel));
    assert_eq!(channel_ids(&s.list_dms(a.id).await.unwrap()), vec![channel]);
    assert_eq!(channel_ids(&s.list_dms(b.id).await.unwrap()), vec![channel]);
}

pub async fn open_dm_with_self_is_invalid_input(s: &dyn Storage) {
    let a = admin(s).await;
    expect_invalid_input(s.open_dm(a.id, a.id).await);
    assert_eq!(s.list_dms(a.id).await.unwrap(), vec![]);
}

pub async fn get_dm_and_channel_kind(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    // opened by the higher id: participants are still lower id first
    let opened = s.open_dm(b.id, a.id).await.unwrap().dm;
    let dm = s.get_dm(opened.channel_id).await.unwrap().expect("the DM");
    assert_eq!(
        dm,
        Dm {
            channel_id: opened.channel_id,
            participants: [a.id, b.id],
            created_at: opened.created_at,
            last_message_at: None
        }
    );
    assert!(dm.has_participant(a.id) && dm.has_participant(b.id));
    assert_eq!(s.channel_kind(opened.channel_id).await.unwrap(), Some(ChannelKind::Dm));
    assert_eq!(s.get_dm(ChannelId(9_999)).await.unwrap(), None);
    let text = channel(s, "general").await;
    assert_eq!(s.get_dm(text.id).await.unwrap(), None, "a text channel is not a DM");
    assert!(!s.list_channels().await.unwrap().iter().any(|c| c.id == opened.channel_id));
}

pub async fn send_dm_message_sets_last_message_and_sender_read_mark(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = s.open_dm(a.id, b.id).await.unwrap().dm.channel_id;
    let before = Timestamp::now();
    let sent = s.send_dm_message(ch, a.id, UNICODE_TEXT.into()).await.unwrap();
    let after = Timestamp::now();
    let m = &sent.message;
    assert_eq!((m.channel_id, m.author_id, m.content.as_str()), (ch, a.id, UNICODE_TEXT));
    assert_between(m.created_at, before, after);
    assert_eq!((m.deleted, m.edited_at, m.thread_id, &m.thread), (false, None, None, &None));
    assert_eq!((m.attachments.len(), m.reactions.len()), (0, 0));
    assert_eq!(s.get_message(m.id, None).await.unwrap().as_ref(), Some(m));

    let dm = s.get_dm(ch).await.unwrap().unwrap();
    assert_eq!(dm.last_message_at, Some(m.created_at));
    let mine = s.list_dms(a.id).await.unwrap();
    assert_eq!(channel_ids(&mine), vec![ch]);
    assert_eq!(mine[0].last_message_at, Some(m.created_at));
    assert!(mine[0].last_read_at.expect("the sender's read mark") >= m.created_at);
    let theirs = s.list_dms(b.id).await.unwrap();
    assert_eq!(channel_ids(&theirs), vec![ch], "the recipient sees the DM");
    assert_eq!(theirs[0].last_read_at, None, "the recipient has not read it");
    assert_eq!(theirs[0].recipient, dm_user(&a));

    // DM messages page like channel messages
    let second = s.send_dm_message(ch, b.id, "réponse".into()).await.unwrap().message;
    let page = s.list_messages(MessageScope::Channel(ch), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!((ids(&page.messages), page.has_more), (vec![second.id, m.id], false));
    // and soft delete the same way
    assert!(s.delete_message(second.id).await.unwrap());
    assert!(s.get_message(second.id, None).await.unwrap().unwrap().deleted);
}

pub async fn send_dm_message_to_unknown_dm_is_not_found(s: &dyn Storage) {
    let a = admin(s).await;
    expect_not_found(s.send_dm_message(ChannelId(9_999), a.id, "hello?".into()).await, Entity::Dm);
    let text = channel(s, "general").await;
    expect_not_found(s.send_dm_message(text.id, a.id, "hello?".into()).await, Entity::Dm);
    let page = s.list_messages(MessageScope::Channel(text.id), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(page.messages, vec![]);
}

pub async fn hide_dm_hides_and_sending_reopens(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let c = member(s).await;
    let ch = s.open_dm(a.id, b.id).await.unwrap().dm.channel_id;
    s.send_dm_message(ch, a.id, "hi".into()).await.unwrap();

    assert!(s.hide_dm(ch, a.id).await.unwrap());
    assert_eq!(s.list_dms(a.id).await.unwrap(), vec![]);
    assert_eq!(channel_ids(&s.list_dms(b.id).await.unwrap()), vec![ch], "hidden for a only");
    assert!(!s.hide_dm(ch, c.id).await.unwrap(), "not a participant");
    assert!(!s.hide_dm(ChannelId(9_999), a.id).await.unwrap());

    // b writes: the DM reappears for a, who had it hidden
    let sent = s.send_dm_message(ch, b.id, "still there?".into()).await.unwrap();
    assert_eq!(sent.reopened_for, vec![a.id]);
    assert_eq!(channel_ids(&s.list_dms(a.id).await.unwrap()), vec![ch]);
    let page = s.list_messages(MessageScope::Channel(ch), PageCursor::Latest, 50, None).await.unwrap();
    assert_eq!(page.messages.len(), 2, "hiding keeps the messages");

    // nobody hid it: nobody to reopen for
    let sent = s.send_dm_message(ch, a.id, "yes".into()).await.unwrap();
    assert_eq!(sent.reopened_for, vec![]);

    // the sender's own hidden DM reopens too
    assert!(s.hide_dm(ch, a.id).await.unwrap());
    let sent = s.send_dm_message(ch, a.id, "back".into()).await.unwrap();
    assert_eq!(sent.reopened_for, vec![a.id]);
    assert_eq!(channel_ids(&s.list_dms(a.id).await.unwrap()), vec![ch]);

    // both hidden: both reopen
    assert!(s.hide_dm(ch, a.id).await.unwrap());
    assert!(s.hide_dm(ch, b.id).await.unwrap());
    let mut reopened = s.send_dm_message(ch, b.id, "both".into()).await.unwrap().reopened_for;
    reopened.sort();
    let mut both = vec![a.id, b.id];
    both.sort();
    assert_eq!(reopened, both);
}

pub async fn open_dm_reopens_a_hidden_dm(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = s.open_dm(a.id, b.id).await.unwrap().dm.channel_id;
    assert!(s.hide_dm(ch, a.id).await.unwrap());
    assert_eq!(s.list_dms(a.id).await.unwrap(), vec![]);
    let reopened = s.open_dm(a.id, b.id).await.unwrap();
    assert!(!reopened.created);
    assert_eq!(reopened.dm.channel_id, ch);
    assert_eq!(channel_ids(&s.list_dms(a.id).await.unwrap()), vec![ch]);
}

pub async fn list_dms_orders_by_last_message_then_newest_unused(s: &dyn Storage) {
    let a = admin(s).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(member(s).await);
    }
    let mut chans = Vec::new();
    for o in &others {
        chans.push(s.open_dm(a.id, o.id).await.unwrap().dm.channel_id);
        tick().await;
    }
    // messages in 1, then 3, then 0: most recent message first; 2 and 4 never used, newest first
    for i in [1, 3, 0] {
        s.send_dm_message(chans[i], others[i].id, format!("ping {i}")).await.unwrap();
        tick().await;
    }
    let listed = s.list_dms(a.id).await.unwrap();
    assert_eq!(channel_ids(&listed), vec![chans[0], chans[3], chans[1], chans[4], chans[2]]);
    let recipients: Vec<UserId> = listed.iter().map(|d| d.recipient.user_id).collect();
    assert_eq!(recipients, vec![others[0].id, others[3].id, others[1].id, others[4].id, others[2].id]);
    assert_eq!(listed[3].last_message_at, None);
    // the other side lists only its own DM (it received a message there)
    assert_eq!(channel_ids(&s.list_dms(others[3].id).await.unwrap()), vec![chans[3]]);
}

pub async fn mark_dm_read_sets_read_mark(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = s.open_dm(a.id, b.id).await.unwrap().dm.channel_id;
    let sent = s.send_dm_message(ch, a.id, "read me".into()).await.unwrap().message;
    assert_eq!(s.list_dms(b.id).await.unwrap()[0].last_read_at, None);
    tick().await;
    let before = Timestamp::now();
    s.mark_dm_read(ch, b.id).await.unwrap();
    let after = Timestamp::now();
    let read = s.list_dms(b.id).await.unwrap()[0].last_read_at.expect("read mark set");
    assert_between(read, before, after);
    assert!(read > sent.created_at);
    // a's mark is untouched
    let a_read = s.list_dms(a.id).await.unwrap()[0].last_read_at.unwrap();
    assert!(a_read < before);
}
