//! The behaviour every provider must show.

use std::sync::Arc;
use std::time::Duration;

use decentcom::bus::{Audience, BusMessage, ReadError, ResumeError, Retention, Sequenced};
use decentcom::storage::ChannelId;
use futures::StreamExt;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::fleet::{Fleet, Kind, receive};

/// The resume window of the default configuration.
const WINDOW: Duration = Duration::from_secs(300);

fn retention() -> Retention {
    Retention::for_resume_window(WINDOW)
}

/// An event in one of three channels, saying who sent it and its place in that sender's order.
fn event(from: &str, i: usize) -> BusMessage {
    BusMessage::event(Audience::Channel(ChannelId(1 + (i % 3) as i64)), "TEST", json!({"from": from, "i": i}))
}

/// Appends `count` events through A's provider and waits until the log holds them all.
async fn append_all(fleet: &Fleet, count: usize) {
    let appended: Vec<_> = (0..count).map(|i| fleet.a.append(event("a", i))).collect();
    for held in appended {
        tokio::time::timeout(Duration::from_secs(20), held).await.expect("appended within 20 s").unwrap();
    }
}

fn data(message: &Sequenced) -> Value {
    match &message.message {
        BusMessage::Event { data, .. } => data.clone(),
        other => panic!("not an event: {other:?}"),
    }
}

fn numbers(messages: &[Arc<Sequenced>]) -> Vec<u64> {
    messages.iter().map(|m| m.s).collect()
}

fn assert_increasing(messages: &[Arc<Sequenced>]) {
    let s = numbers(messages);
    assert!(s.windows(2).all(|w| w[0] < w[1]), "s must strictly increase: {s:?}");
}

pub async fn every_message_reaches_every_process_once_in_publish_order(kind: Kind) {
    let fleet = Fleet::start(kind, retention()).await;
    let (a, b) = fleet.buses().await;
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let sent: Vec<BusMessage> = (0..300).map(|i| event("a", i)).collect();
    for message in &sent {
        a.publish(message.clone()).await;
    }
    let (got_a, got_b) = (receive(&mut on_a, sent.len()).await, receive(&mut on_b, sent.len()).await);
    let messages = |got: &[Arc<Sequenced>]| got.iter().map(|m| m.message.clone()).collect::<Vec<_>>();
    assert_eq!(messages(&got_b), sent, "the other process, in publish order");
    assert_eq!(messages(&got_a), sent, "the publishing process hears itself too");
    assert_eq!(numbers(&got_a), numbers(&got_b), "one number per message, the same everywhere");
    assert_increasing(&got_a);
    assert_eq!(a.last(), got_a.last().unwrap().s);
    // Nothing more: no message twice.
    assert!(tokio::time::timeout(Duration::from_millis(300), on_b.recv()).await.is_err(), "a message came twice");
}

pub async fn big_payloads_travel_whole(kind: Kind) {
    let fleet = Fleet::start(kind, retention()).await;
    let (a, b) = fleet.buses().await;
    let mut on_b = b.subscribe();
    // 256 KiB of multi-byte text, beyond NOTIFY's 8,000-byte payload limit, beside small ones.
    let big = "é".repeat(128 * 1024);
    let sent = vec![
        BusMessage::event(Audience::All, "SMALL", json!({"i": 0})),
        BusMessage::event(Audience::Channel(ChannelId(7)), "BIG", json!({"content": big})),
        BusMessage::event(Audience::Users(vec![]), "SMALL", json!({"i": 1})),
    ];
    for message in &sent {
        a.publish(message.clone()).await;
    }
    let got: Vec<BusMessage> = receive(&mut on_b, 3).await.iter().map(|m| m.message.clone()).collect();
    assert_eq!(got, sent);
}

pub async fn messages_from_both_processes_reach_both_in_one_order(kind: Kind) {
    let fleet = Fleet::start(kind, retention()).await;
    let (a, b) = fleet.buses().await;
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    for i in 0..150 {
        a.publish(event("a", i)).await;
        b.publish(event("b", i)).await;
    }
    let (got_a, got_b) = (receive(&mut on_a, 300).await, receive(&mut on_b, 300).await);
    let seen = |got: &[Arc<Sequenced>]| got.iter().map(|m| (m.s, data(m))).collect::<Vec<_>>();
    assert_eq!(seen(&got_a), seen(&got_b), "both processes see one order");
    assert_increasing(&got_a);
    for from in ["a", "b"] {
        let own: Vec<Value> =
            got_a.iter().map(|m| data(m)).filter(|d| d["from"] == from).map(|d| d["i"].clone()).collect();
        assert_eq!(own, (0..150).map(|i| json!(i)).collect::<Vec<_>>(), "{from}'s messages in its publish order");
    }
}

pub async fn a_process_catches_up_after_its_bus_connection_is_cut(kind: Kind) {
    let mut fleet = Fleet::start(kind, retention()).await;
    let (a, b) = fleet.buses().await;
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let publisher = a.clone();
    let posting = tokio::spawn(async move {
        for i in 0..300 {
            publisher.publish(event("a", i)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Cut while messages flow (and, on NATS, stay down for a second: publishing waits).
    fleet.cut(Duration::from_secs(1)).await;
    posting.await.unwrap();
    let (got_a, got_b) = (receive(&mut on_a, 300).await, receive(&mut on_b, 300).await);
    let order = |got: &[Arc<Sequenced>]| got.iter().map(|m| data(m)["i"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(order(&got_b), (0..300).collect::<Vec<_>>(), "every message once, in order, on B");
    assert_eq!(order(&got_a), (0..300).collect::<Vec<_>>(), "and on A");
    assert_increasing(&got_b);
    assert!(tokio::time::timeout(Duration::from_millis(300), on_b.recv()).await.is_err(), "a message came twice");
}

pub async fn a_gap_beyond_retention_is_reported_never_skipped(kind: Kind) {
    let fleet = Fleet::start(kind, Retention { max_age: WINDOW, max_messages: 5 }).await;
    let start = fleet.a.head().await.unwrap();
    append_all(&fleet, 20).await;
    fleet.b.prune().await.unwrap();

    // What the log still holds can be read; what it dropped is reported as gone.
    let kept = fleet.b.read_after(start + 17, 10).await.unwrap();
    assert_eq!(kept.iter().map(|m| m.s - start).collect::<Vec<_>>(), vec![18, 19, 20]);
    assert!(matches!(fleet.b.read_after(start, 10).await, Err(ReadError::Gone)), "read from before the gap");
    let first = tokio::time::timeout(Duration::from_secs(10), fleet.b.follow(start).next()).await.unwrap();
    assert!(matches!(first, Some(Err(ReadError::Gone))), "follow from before the gap: {first:?}");
    let (_, b) = fleet.buses().await;
    assert!(matches!(b.replay(start, WINDOW).await, Err(ResumeError::Expired)), "resume from before the gap");
}

pub async fn resume_replays_exactly_what_followed(kind: Kind) {
    let fleet = Fleet::start(kind, retention()).await;
    let (a, b) = fleet.buses().await;
    let mut on_b = b.subscribe();
    for i in 0..50 {
        a.publish(event("a", i)).await;
    }
    let got = receive(&mut on_b, 50).await;
    let after = got[19].s;
    let replayed = b.replay(after, WINDOW).await.unwrap();
    assert_eq!(numbers(&replayed), numbers(&got[20..]), "exactly what followed {after}");
    assert_eq!(
        replayed.iter().map(|m| data(m)["i"].clone()).collect::<Vec<_>>(),
        (20..50).map(|i| json!(i)).collect::<Vec<_>>()
    );
    // Up to date: nothing to replay.
    assert_eq!(numbers(&b.replay(got[49].s, WINDOW).await.unwrap()), Vec::<u64>::new());
}

pub async fn resume_beyond_the_window_or_from_the_future_is_refused(kind: Kind) {
    let fleet = Fleet::start(kind, retention()).await;
    let (a, b) = fleet.buses().await;
    let mut on_b = b.subscribe();
    let before = b.last();
    for i in 0..3 {
        a.publish(event("a", i)).await;
    }
    let got = receive(&mut on_b, 3).await;
    assert!(matches!(b.replay(got[2].s + 1000, WINDOW).await, Err(ResumeError::Future)), "from the future");
    // Older than a one-second window once the first message after it is two seconds old.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(matches!(b.replay(before, Duration::from_secs(1)).await, Err(ResumeError::Expired)), "beyond the window");
    assert_eq!(numbers(&b.replay(before, WINDOW).await.unwrap()), numbers(&got), "within it");
}

pub async fn pruning_is_safe_on_several_processes_at_once(kind: Kind) {
    let fleet = Fleet::start(kind, Retention { max_age: WINDOW, max_messages: 10 }).await;
    let start = fleet.a.head().await.unwrap();
    append_all(&fleet, 100).await;
    let (pa, pb) = tokio::join!(fleet.a.prune(), fleet.b.prune());
    pa.unwrap();
    pb.unwrap();
    fleet.a.prune().await.unwrap();
    let kept = fleet.b.read_after(start + 90, 100).await.unwrap();
    assert_eq!(kept.iter().map(|m| m.s - start).collect::<Vec<_>>(), (91..=100).collect::<Vec<_>>());
    assert!(matches!(fleet.a.read_after(start + 89, 100).await, Err(ReadError::Gone)));
}
