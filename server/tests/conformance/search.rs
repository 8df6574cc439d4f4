//! MessageStore::search_messages: the matching rules of api.md §3.9, identical on both backends.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn search_matches_whole_words_only_case_insensitively(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let hello = post(s, ch.id, a.id, "Hello, World!").await;
    let glued = post(s, ch.id, a.id, "helloworld and worldly things").await;
    let shouting = post(s, ch.id, a.id, "HELLO there").await;
    let underscore = post(s, ch.id, a.id, "say_hello-world").await;

    assert_eq!(search_ids(s, query("hello", &[ch.id])).await, vec![underscore.id, shouting.id, hello.id]);
    assert_eq!(search_ids(s, query("HeLLo", &[ch.id])).await, vec![underscore.id, shouting.id, hello.id]);
    assert_eq!(
        search_ids(s, query("world", &[ch.id])).await,
        vec![underscore.id, hello.id],
        "not `worldly`, not `helloworld`"
    );
    assert_eq!(search_ids(s, query("helloworld", &[ch.id])).await, vec![glued.id]);
    assert_eq!(search_ids(s, query("hell", &[ch.id])).await, vec![], "no substring matches");
    assert_eq!(search_ids(s, query("\"AND\"", &[ch.id])).await, vec![glued.id], "operators are plain words");
}

pub async fn search_prefix_terms_match_token_prefixes_only(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let rust = post(s, ch.id, a.id, "Rust").await;
    let rusty = post(s, ch.id, a.id, "a rusty nail").await;
    let _trust = post(s, ch.id, a.id, "trust me").await;
    let crab = post(s, ch.id, a.id, "Rustaceans 🦀 unite").await;

    assert_eq!(search_ids(s, query("rust*", &[ch.id])).await, vec![crab.id, rusty.id, rust.id]);
    assert_eq!(search_ids(s, query("RUSTA*", &[ch.id])).await, vec![crab.id]);
    assert_eq!(search_ids(s, query("rust", &[ch.id])).await, vec![rust.id], "without `*` the whole token must match");
    assert_eq!(search_ids(s, query("ust*", &[ch.id])).await, vec![], "a prefix of a token, not an infix");
    assert_eq!(search_ids(s, query("rust* nail", &[ch.id])).await, vec![rusty.id]);
}

pub async fn search_requires_every_term(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let both = post(s, ch.id, a.id, "apples and oranges").await;
    let _apples = post(s, ch.id, a.id, "apples only").await;
    let reversed = post(s, ch.id, a.id, "Oranges, then APPLES").await;
    let _oranges = post(s, ch.id, a.id, "oranges only").await;

    assert_eq!(search_ids(s, query("apples oranges", &[ch.id])).await, vec![reversed.id, both.id]);
    assert_eq!(search_ids(s, query("oranges apples apples", &[ch.id])).await, vec![reversed.id, both.id]);
    assert_eq!(search_ids(s, query("apples oranges pears", &[ch.id])).await, vec![]);
    assert_eq!(search_ids(s, query("apples OR pears", &[ch.id])).await, vec![], "OR is a plain term");
    assert_eq!(search_ids(s, query("appl* orang*", &[ch.id])).await, vec![reversed.id, both.id]);
}

pub async fn search_excludes_deleted_and_follows_edits(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let kept = post(s, ch.id, a.id, "needle one").await;
    let deleted = post(s, ch.id, a.id, "needle two").await;
    let edited = post(s, ch.id, a.id, "needle three").await;
    s.delete_message(deleted.id).await.unwrap();
    s.edit_message(edited.id, "haystack three".into()).await.unwrap();

    let page = s.search_messages(query("needle", &[ch.id])).await.unwrap();
    assert_eq!(ids(&page.messages), vec![kept.id]);
    assert_eq!(page.total_estimate, 1, "deleted and edited-away messages are not counted");
    assert_eq!(search_ids(s, query("haystack", &[ch.id])).await, vec![edited.id]);
    assert_eq!(search_ids(s, query("two", &[ch.id])).await, vec![]);
    let found = &s.search_messages(query("haystack", &[ch.id])).await.unwrap().messages[0];
    assert_eq!(found.content, "haystack three");
    assert!(found.edited_at.is_some());
}

pub async fn search_filters_by_channel(s: &dyn Storage) {
    let a = admin(s).await;
    let one = channel(s, "one").await;
    let two = channel(s, "two").await;
    let three = channel(s, "three").await;
    let m1 = post(s, one.id, a.id, "shared word").await;
    let m2 = post(s, two.id, a.id, "shared word").await;
    let m3 = post(s, three.id, a.id, "shared word").await;

    assert_eq!(search_ids(s, query("shared", &[one.id])).await, vec![m1.id]);
    assert_eq!(search_ids(s, query("shared", &[three.id, one.id])).await, vec![m3.id, m1.id]);
    assert_eq!(search_ids(s, query("shared", &[one.id, two.id, three.id])).await, vec![m3.id, m2.id, m1.id]);
    let nothing = s.search_messages(query("shared", &[])).await.unwrap();
    assert_eq!(
        (nothing.messages, nothing.has_more, nothing.total_estimate),
        (vec![], false, 0),
        "no readable channel, no results"
    );
    assert_eq!(s.search_messages(query("shared", &[two.id])).await.unwrap().total_estimate, 1);
}

pub async fn search_filters_by_author(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let by_a = post(s, ch.id, a.id, "status report").await;
    let by_b = post(s, ch.id, b.id, "status update").await;
    let by_a2 = post(s, ch.id, a.id, "another status").await;

    let q = SearchQuery { author_id: Some(a.id), ..query("status", &[ch.id]) };
    let page = s.search_messages(q).await.unwrap();
    assert_eq!(ids(&page.messages), vec![by_a2.id, by_a.id]);
    assert_eq!(page.total_estimate, 2);
    assert_eq!(search_ids(s, SearchQuery { author_id: Some(b.id), ..query("status", &[ch.id]) }).await, vec![by_b.id]);
    assert_eq!(
        search_ids(s, SearchQuery { author_id: Some(UserId(9_999)), ..query("status", &[ch.id]) }).await,
        vec![]
    );
}

pub async fn search_created_bounds_are_exclusive(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let mut m = Vec::new();
    for i in 0..4 {
        m.push(post(s, ch.id, a.id, &format!("tick {i}")).await);
        tick().await;
    }
    assert!(m.windows(2).all(|w| w[0].created_at < w[1].created_at), "distinct creation times");
    let bounded = |after: Option<Timestamp>, before: Option<Timestamp>| SearchQuery {
        created_after: after,
        created_before: before,
        ..query("tick", &[ch.id])
    };

    assert_eq!(search_ids(s, bounded(Some(m[1].created_at), None)).await, vec![m[3].id, m[2].id]);
    assert_eq!(search_ids(s, bounded(None, Some(m[2].created_at))).await, vec![m[1].id, m[0].id]);
    assert_eq!(search_ids(s, bounded(Some(m[0].created_at), Some(m[3].created_at))).await, vec![m[2].id, m[1].id]);
    assert_eq!(
        search_ids(s, bounded(Some(m[1].created_at), Some(m[2].created_at))).await,
        vec![],
        "both bounds exclusive"
    );
    // one microsecond either side includes the message
    let just_before = Timestamp::from_micros(m[1].created_at.as_micros() - 1).unwrap();
    let just_after = Timestamp::from_micros(m[1].created_at.as_micros() + 1).unwrap();
    assert_eq!(search_ids(s, bounded(Some(just_before), Some(just_after))).await, vec![m[1].id]);
    let page = s.search_messages(bounded(Some(m[0].created_at), None)).await.unwrap();
    assert_eq!(page.total_estimate, 3);
}

pub async fn search_pages_with_cursor_and_exact_total_estimate(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let mut hits = Vec::new();
    for i in 0..5 {
        hits.push(post(s, ch.id, a.id, &format!("page hit {i}")).await.id);
        post(s, ch.id, a.id, &format!("noise {i}")).await;
    }
    let paged = |cursor: Option<MessageId>| SearchQuery { cursor, limit: 2, ..query("hit", &[ch.id]) };

    let p1 = s.search_messages(paged(None)).await.unwrap();
    assert_eq!((ids(&p1.messages), p1.has_more, p1.total_estimate), (vec![hits[4], hits[3]], true, 5));
    let p2 = s.search_messages(paged(Some(hits[3]))).await.unwrap();
    assert_eq!(
        (ids(&p2.messages), p2.has_more, p2.total_estimate),
        (vec![hits[2], hits[1]], true, 5),
        "the total ignores the cursor"
    );
    let p3 = s.search_messages(paged(Some(hits[1]))).await.unwrap();
    assert_eq!((ids(&p3.messages), p3.has_more, p3.total_estimate), (vec![hits[0]], false, 5));
    let p4 = s.search_messages(paged(Some(hits[0]))).await.unwrap();
    assert_eq!((ids(&p4.messages), p4.has_more, p4.total_estimate), (vec![], false, 5));

    // exactly one page
    let exact = s.search_messages(SearchQuery { limit: 5, ..query("hit", &[ch.id]) }).await.unwrap();
    assert_eq!((exact.messages.len(), exact.has_more, exact.total_estimate), (5, false, 5));
    // a cursor that is not a result
    let mid = s
        .search_messages(SearchQuery { cursor: Some(MessageId(hits[2].0 + 1)), limit: 10, ..query("hit", &[ch.id]) })
        .await
        .unwrap();
    assert_eq!(ids(&mid.messages), vec![hits[2], hits[1], hits[0]]);
    // full messages come back
    assert_eq!(p1.messages[0], s.get_message(hits[4], None).await.unwrap().unwrap());
}

pub async fn search_includes_thread_replies(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let parent = post(s, ch.id, a.id, "parent about llamas").await;
    let t = thread(s, parent.id, a.id).await;
    let r = reply(s, &t, a.id, "reply about llamas").await;
    let dm = s.open_dm(a.id, b.id).await.unwrap().dm;
    s.send_dm_message(dm.channel_id, a.id, "private llamas".into()).await.unwrap();

    let found = s.search_messages(query("llamas", &[ch.id])).await.unwrap();
    assert_eq!(ids(&found.messages), vec![r.id, parent.id]);
    assert_eq!(found.messages[0].thread_id, Some(t.id));
    assert_eq!(found.total_estimate, 2);
}

pub async fn search_matches_unicode_tokens(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let cafe = post(s, ch.id, a.id, "Ünïcödé CAFÉ ☕ naïve").await;
    let hebrew = post(s, ch.id, a.id, "שלום עולם").await;
    let arabic = post(s, ch.id, a.id, "مرحبا بالعالم").await;
    let cjk = post(s, ch.id, a.id, "東京 タワー 2024年").await;
    let emoji = post(s, ch.id, a.id, "party🎉time").await;

    assert_eq!(search_ids(s, query("café", &[ch.id])).await, vec![cafe.id]);
    assert_eq!(search_ids(s, query("ÜNÏCÖDÉ", &[ch.id])).await, vec![cafe.id]);
    assert_eq!(search_ids(s, query("naï*", &[ch.id])).await, vec![cafe.id]);
    assert_eq!(search_ids(s, query("cafe", &[ch.id])).await, vec![], "no accent folding");
    assert_eq!(search_ids(s, query("עולם", &[ch.id])).await, vec![hebrew.id]);
    assert_eq!(search_ids(s, query("של*", &[ch.id])).await, vec![hebrew.id]);
    assert_eq!(search_ids(s, query("مرحبا", &[ch.id])).await, vec![arabic.id]);
    assert_eq!(search_ids(s, query("タワー", &[ch.id])).await, vec![cjk.id]);
    assert_eq!(search_ids(s, query("2024年", &[ch.id])).await, vec![cjk.id]);
    assert_eq!(search_ids(s, query("time", &[ch.id])).await, vec![emoji.id], "emoji separate tokens");
    assert_eq!(search_ids(s, query("party", &[ch.id])).await, vec![emoji.id]);
}

pub async fn search_never_matches_tokens_longer_than_64_characters(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let long = "x".repeat(65);
    let exact = "y".repeat(64);
    let m_long = post(s, ch.id, a.id, &format!("{long} tail")).await;
    let m_exact = post(s, ch.id, a.id, &format!("{exact} tail")).await;

    assert_eq!(search_ids(s, query(&format!("{}*", "x".repeat(64)), &[ch.id])).await, vec![]);
    assert_eq!(search_ids(s, query("xx*", &[ch.id])).await, vec![]);
    assert_eq!(search_ids(s, query(&exact, &[ch.id])).await, vec![m_exact.id]);
    assert_eq!(search_ids(s, query("tail", &[ch.id])).await, vec![m_exact.id, m_long.id]);
    assert_eq!(s.get_message(m_long.id, None).await.unwrap().unwrap().content, format!("{long} tail"));
}

pub async fn search_results_carry_viewer_reactions(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let ch = channel(s, "general").await;
    let m = post(s, ch.id, a.id, "react and find").await;
    s.toggle_reaction(m.id, b.id, "🔍").await.unwrap();
    let for_b = s.search_messages(SearchQuery { viewer: Some(b.id), ..query("find", &[ch.id]) }).await.unwrap();
    assert_eq!(for_b.messages, vec![s.get_message(m.id, Some(b.id)).await.unwrap().unwrap()]);
    assert_eq!(for_b.messages[0].reactions, vec![ReactionSummary { emoji: "🔍".into(), count: 1, me: true }]);
    let for_a = s.search_messages(SearchQuery { viewer: Some(a.id), ..query("find", &[ch.id]) }).await.unwrap();
    assert_eq!(for_a.messages[0].reactions, vec![ReactionSummary { emoji: "🔍".into(), count: 1, me: false }]);
}

pub async fn search_total_estimate_is_capped_at_1000(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    for chunk in 0..11 {
        let texts: Vec<String> = (0..91).map(|i| format!("bulk {}", chunk * 91 + i)).collect();
        let batch = futures::future::join_all(texts.iter().map(|text| post(s, ch.id, a.id, text))).await;
        assert_eq!(batch.len(), 91);
    }
    let page = s.search_messages(SearchQuery { limit: 10, ..query("bulk", &[ch.id]) }).await.unwrap();
    assert_eq!((page.messages.len(), page.has_more, page.total_estimate), (10, true, 1000), "1001 matches, capped");
    let filtered = s.search_messages(query("bulk 7", &[ch.id])).await.unwrap();
    assert_eq!(filtered.total_estimate, 1);
}
