//! Issue #21: every page query of messages walks its index, whatever the planner's statistics say.
//!
//! The queries are the ones the server runs: read from the offline query metadata (`.sqlx/`,
//! which `just check` keeps identical to the code), every query that selects message rows with
//! `ORDER BY … LIMIT` — channel and thread pages in both directions (DM pages are channel pages)
//! and search's newest-first page. Each is explained on a skewed community: 110,001 messages in
//! 19 channels where the newest 50,000 are all in other channels than the 10,000-message channel,
//! DM and thread asked for. PostgreSQL is asked for its custom and its generic plan (a prepared
//! statement switches to the generic one after a few executions), first on tables never analysed
//! (a database the server just created, autovacuum off) and again after `ANALYZE`; SQLite without
//! and with `sqlite_stat1`.

use std::path::Path;

use decentcom::config::Config;
use decentcom::storage::PoolSettings;
use decentcom::testing::ScratchPg;
use pretty_assertions::assert_eq;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};

/// The 10,000-message channel, its 10,000-reply thread, the 10,000-message DM, and a search term
/// found in one message in a hundred.
const QUIET_CHANNEL: i64 = 1;
const THREAD: i64 = 1;
const DM: i64 = 19;
const TERM: &str = "word7";
/// An id in the middle of the quiet channel, DM and thread: a cursor deep in their history.
const MIDDLE: i64 = 30_000;

/// The community, in PostgreSQL. Ids follow insertion order: one thread parent, then 60,000
/// older messages where every sixth is the quiet channel's, every sixth a reply in its thread,
/// every sixth the DM's (60 in a small channel 2, the rest in channels 3–18), then the newest
/// 50,000 all in channels 3–18.
const LOAD_PG: &str = "
ALTER TABLE messages SET (autovacuum_enabled = false);
INSERT INTO users (pubkey, created_at)
SELECT decode(lpad(to_hex(g), 64, '0'), 'hex'), now() FROM generate_series(1, 50) g;
INSERT INTO channels (kind, name, created_at, updated_at)
SELECT 'text', 'c' || g, now(), now() FROM generate_series(1, 18) g;
INSERT INTO channels (kind, name, created_at, updated_at) VALUES ('dm', NULL, now(), now());
INSERT INTO messages (channel_id, author_id, content, search_text, created_at)
VALUES (1, 1, 'thread parent', 'thread parent', now());
INSERT INTO threads (channel_id, parent_message_id, creator_id, created_at, reply_count)
VALUES (1, 1, 1, now(), 10000);
INSERT INTO messages (channel_id, thread_id, author_id, content, search_text, created_at)
SELECT CASE WHEN g % 6 IN (0, 3) THEN 1 WHEN g % 6 = 5 THEN 19 WHEN g % 6 = 1 AND g <= 360 THEN 2
            ELSE 3 + g % 16 END,
       CASE WHEN g % 6 = 3 THEN 1 END,
       1 + g % 50, 'hello word' || (g % 100), 'hello word' || (g % 100), now()
FROM generate_series(1, 60000) g;
INSERT INTO messages (channel_id, author_id, content, search_text, created_at)
SELECT 3 + g % 16, 1 + g % 50, 'hello word' || (g % 100), 'hello word' || (g % 100), now()
FROM generate_series(1, 50000) g;
";

/// The same community in SQLite.
const LOAD_SQLITE: &str = "
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 50)
INSERT INTO users (pubkey, created_at) SELECT randomblob(32), 0 FROM g;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 18)
INSERT INTO channels (kind, name, created_at, updated_at) SELECT 'text', 'c' || n, 0, 0 FROM g;
INSERT INTO channels (kind, name, created_at, updated_at) VALUES ('dm', NULL, 0, 0);
INSERT INTO messages (channel_id, author_id, content, search_text, created_at)
VALUES (1, 1, 'thread parent', 'thread parent', 0);
INSERT INTO threads (channel_id, parent_message_id, creator_id, created_at, reply_count) VALUES (1, 1, 1, 0, 10000);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 60000)
INSERT INTO messages (channel_id, thread_id, author_id, content, search_text, created_at)
SELECT CASE WHEN n % 6 IN (0, 3) THEN 1 WHEN n % 6 = 5 THEN 19 WHEN n % 6 = 1 AND n <= 360 THEN 2
            ELSE 3 + n % 16 END,
       CASE WHEN n % 6 = 3 THEN 1 END,
       1 + n % 50, 'hello word' || (n % 100), 'hello word' || (n % 100), 0
FROM g;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 50000)
INSERT INTO messages (channel_id, author_id, content, search_text, created_at)
SELECT 3 + n % 16, 1 + n % 50, 'hello word' || (n % 100), 'hello word' || (n % 100), 0 FROM g;
";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PageQuery {
    ChannelNewestFirst,
    ChannelOldestFirst,
    ThreadNewestFirst,
    ThreadOldestFirst,
    Search,
}

/// The server's page queries of messages for one dialect ("PostgreSQL" or "SQLite"), from the
/// offline query metadata.
fn page_queries(dialect: &str) -> Vec<(PageQuery, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sqlx");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let query = meta["query"].as_str().unwrap().to_owned();
        let flat = query.split_whitespace().collect::<Vec<_>>().join(" ");
        if meta["db_name"] != dialect
            || !flat.contains("MessageId\"")
            || !flat.contains("ORDER BY")
            || !flat.contains("LIMIT")
        {
            continue;
        }
        let newest_first = flat.contains("id DESC");
        let kind = if flat.contains("messages_fts") || flat.contains("search_vector") {
            PageQuery::Search
        } else if flat.contains("WHERE thread_id") {
            if newest_first { PageQuery::ThreadNewestFirst } else { PageQuery::ThreadOldestFirst }
        } else if newest_first {
            PageQuery::ChannelNewestFirst
        } else {
            PageQuery::ChannelOldestFirst
        };
        out.push((kind, query));
    }
    out.sort();
    let kinds: Vec<PageQuery> = out.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        kinds,
        vec![
            PageQuery::ChannelNewestFirst,
            PageQuery::ChannelOldestFirst,
            PageQuery::ThreadNewestFirst,
            PageQuery::ThreadOldestFirst,
            PageQuery::Search,
        ],
        "one {dialect} query of each kind in .sqlx/ (a new page query must be classified here)"
    );
    out
}

/// The pages asked for: `(label, query, parameters as SQL literals)`, parameters in the order
/// the server binds them.
fn cases(dialect: &str) -> Vec<(String, PageQuery, String, Vec<String>)> {
    let null = "NULL".to_owned();
    let mut out = Vec::new();
    for (kind, query) in page_queries(dialect) {
        let scopes: Vec<(&str, i64)> = match kind {
            PageQuery::ChannelNewestFirst | PageQuery::ChannelOldestFirst => {
                vec![("quiet channel", QUIET_CHANNEL), ("DM", DM)]
            }
            PageQuery::ThreadNewestFirst | PageQuery::ThreadOldestFirst => vec![("thread", THREAD)],
            PageQuery::Search => {
                let all = if dialect == "SQLite" { "'[1, 19]'" } else { "'{1, 19}'" };
                let one = if dialect == "SQLite" { "'[1]'" } else { "'{1}'" };
                for (label, channels) in [("search quiet channel", one), ("search quiet channel and DM", all)] {
                    for (cursor_label, cursor) in [("newest", null.clone()), ("before middle", MIDDLE.to_string())] {
                        let term = format!("'{TERM}'");
                        let params = vec![term, channels.to_owned(), null.clone(), null.clone(), null.clone(), cursor];
                        let mut params = params;
                        params.push("26".into());
                        out.push((format!("{label}, {cursor_label}"), kind, query.clone(), params));
                    }
                }
                continue;
            }
        };
        let cursors: Vec<(&str, String)> = match kind {
            PageQuery::ChannelNewestFirst | PageQuery::ThreadNewestFirst => {
                vec![("latest", null.clone()), ("before middle", MIDDLE.to_string())]
            }
            _ => vec![("after start", "0".into()), ("after middle", MIDDLE.to_string())],
        };
        for (scope_label, scope) in scopes {
            for (cursor_label, cursor) in &cursors {
                let label = format!("{scope_label}, {cursor_label}");
                out.push((label, kind, query.clone(), vec![scope.to_string(), cursor.clone(), "51".into()]));
            }
        }
    }
    out
}

/// The index a page of this kind must walk, and in which direction.
fn page_index(kind: PageQuery) -> (&'static str, &'static str) {
    match kind {
        PageQuery::ChannelNewestFirst => ("messages_channel_page_idx", "Backward"),
        PageQuery::ChannelOldestFirst => ("messages_channel_page_idx", "Forward"),
        PageQuery::ThreadNewestFirst => ("messages_thread_page_idx", "Backward"),
        PageQuery::ThreadOldestFirst => ("messages_thread_page_idx", "Forward"),
        PageQuery::Search => unreachable!("search is checked on its own terms"),
    }
}

/// A PostgreSQL plan as one line per node: "Index Scan Backward using messages_pkey, filtered".
fn pg_nodes(plan: &Value, out: &mut Vec<String>) {
    let mut line = plan["Node Type"].as_str().unwrap().to_owned();
    if let Some(direction) = plan["Scan Direction"].as_str() {
        line = format!("{line} {direction}");
    }
    if let Some(index) = plan["Index Name"].as_str() {
        line = format!("{line} using {index}");
    } else if let Some(relation) = plan["Relation Name"].as_str() {
        line = format!("{line} on {relation}");
    }
    if plan.get("Filter").is_some() {
        line.push_str(", filtered");
    }
    out.push(line);
    for child in plan["Plans"].as_array().into_iter().flatten() {
        pg_nodes(child, out);
    }
}

/// What each case's plan does wrong (nothing: an empty list). A page must be a Limit over its
/// page index walked in its order, nothing else; search must find its matches through the GIN
/// index and never walk the primary key.
fn pg_verdict(kind: PageQuery, nodes: &[String]) -> Vec<String> {
    if kind == PageQuery::Search {
        let mut wrong = Vec::new();
        if !nodes.iter().any(|n| n == "Bitmap Index Scan using messages_search_vector_idx") {
            wrong.push("matches not found through messages_search_vector_idx".to_owned());
        }
        if nodes.iter().any(|n| n.contains("messages_pkey") && (n.ends_with("filtered") || n.contains("Backward"))) {
            wrong.push("walks messages_pkey".to_owned());
        }
        return wrong;
    }
    let (index, direction) = page_index(kind);
    let expected =
        [format!("Index Scan {direction} using {index}"), format!("Index Only Scan {direction} using {index}")];
    match nodes {
        [limit, scan] if limit == "Limit" && expected.contains(scan) => Vec::new(),
        _ => vec![format!("not a Limit over {index} walked {direction}")],
    }
}

/// Explains every case on `conn`, custom and generic plans; returns the failures with the plans.
async fn pg_failures(conn: &mut PgConnection, stats: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (label, kind, query, params) in cases("PostgreSQL") {
        sqlx::raw_sql(AssertSqlSafe(format!("PREPARE page AS {query}"))).execute(&mut *conn).await.unwrap();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            // Which plan EXPLAIN shows, not how the server plans: both must be right.
            sqlx::raw_sql(AssertSqlSafe(format!("SET plan_cache_mode = {mode}"))).execute(&mut *conn).await.unwrap();
            let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE page({})", params.join(", "));
            let plan: sqlx::types::Json<Value> =
                sqlx::query_scalar(AssertSqlSafe(explain)).fetch_one(&mut *conn).await.unwrap();
            let mut nodes = Vec::new();
            pg_nodes(&plan.0[0]["Plan"], &mut nodes);
            for wrong in pg_verdict(kind, &nodes) {
                failures.push(format!("{stats}, {mode}, {kind:?} ({label}): {wrong}: {nodes:?}"));
            }
        }
        sqlx::raw_sql("DEALLOCATE page; RESET plan_cache_mode").execute(&mut *conn).await.unwrap();
    }
    failures
}

#[tokio::test]
async fn postgres_pages_walk_their_index_without_and_with_statistics() {
    let pg = ScratchPg::create("page_plans").await;
    let settings = PoolSettings::from_config(&Config::default().storage);
    // The server's own migrations build the schema.
    drop(decentcom::storage::postgres::PostgresBackend::open(pg.url(), &settings).await.unwrap());
    let mut conn = PgConnection::connect(pg.url()).await.unwrap();
    sqlx::raw_sql(LOAD_PG).execute(&mut conn).await.unwrap();

    let statistics: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stats WHERE tablename = 'messages'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(statistics, 0, "the messages table has never been analysed");
    let before = pg_failures(&mut conn, "never analysed").await;

    sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
    let after = pg_failures(&mut conn, "analysed").await;

    assert_eq!((before, after), (Vec::<String>::new(), Vec::<String>::new()));
    conn.close().await.unwrap();
}

/// Explains every case on `conn`; returns the failures with the plans.
async fn sqlite_failures(conn: &mut SqliteConnection, stats: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (label, kind, query, params) in cases("SQLite") {
        // SQLite's parameters are numbered (?1, ?2, …): literals in their place explain the same
        // plan the bound values get.
        let mut sql = query.clone();
        for (i, value) in params.iter().enumerate().rev() {
            sql = sql.replace(&format!("?{}", i + 1), value);
        }
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))).fetch_all(&mut *conn).await.unwrap();
        let details: Vec<String> = rows.into_iter().map(|(_, _, _, detail)| detail).collect();
        let mut wrong = Vec::new();
        if details.iter().any(|d| d.contains("TEMP B-TREE")) {
            wrong.push("sorts in a temporary B-tree".to_owned());
        }
        let walks = match kind {
            PageQuery::Search => details.iter().any(|d| d.starts_with("SCAN messages_fts VIRTUAL TABLE")),
            _ => {
                let (index, _) = page_index(kind);
                details.first().is_some_and(|d| d.starts_with(&format!("SEARCH messages USING INDEX {index} ")))
            }
        };
        if !walks {
            wrong.push("does not walk its index".to_owned());
        }
        for wrong in wrong {
            failures.push(format!("{stats}, {kind:?} ({label}): {wrong}: {details:?}"));
        }
    }
    failures
}

#[tokio::test]
async fn sqlite_pages_walk_their_index_without_and_with_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    let settings = PoolSettings::from_config(&Config::default().storage);
    drop(decentcom::storage::sqlite::SqliteBackend::open(&path, &settings).await.unwrap());
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::raw_sql(LOAD_SQLITE).execute(&mut conn).await.unwrap();

    let before = sqlite_failures(&mut conn, "no sqlite_stat1").await;
    sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
    let after = sqlite_failures(&mut conn, "analysed").await;

    assert_eq!((before, after), (Vec::<String>::new(), Vec::<String>::new()));
    conn.close().await.unwrap();
}
