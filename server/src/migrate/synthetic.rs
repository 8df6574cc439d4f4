//! Synthetic databases for the migration tests and `just bench-migrate`, written as canonical rows
//! through the migration's own target writer: a small one that touches every table and every edge
//! case the copy must keep (microsecond timestamps, bytes, unicode, NULLs, soft-deleted rows, i64
//! extremes, threads whose ids and parents are in different orders), and a large generated
//! community. Not used by the server.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::tables::{Row, Table, Value};
use super::{Db, MigrateError};

/// The bearer token of the edge-case dataset's session for user 1 (only its SHA-256 is stored).
pub const ALICE_TOKEN: &str = "migrate-edge-case-session-token-alice";

/// The media blobs of the edge-case dataset (their SHA-256 names the `media` rows).
pub fn edge_case_blobs() -> Vec<Vec<u8>> {
    vec![b"%PDF-1.4 migrate test document\n".to_vec(), (0u8..=255).cycle().take(70_000).collect()]
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

fn t(v: &str) -> Value {
    Value::Text(v.to_owned())
}

fn b(v: &[u8]) -> Value {
    Value::Bytes(v.to_vec())
}

fn flag(v: bool) -> Value {
    Value::Bool(v)
}

const NULL: Value = Value::Null;

/// A microsecond timestamp with a non-zero sub-second part.
const T0: i64 = 1_732_000_000_123_457;

/// Every table with rows chosen to exercise what a copy can lose, each in primary-key order (text
/// and bytes in byte order), as a complete read of the table returns them.
pub fn edge_cases() -> Vec<(Table, Vec<Row>)> {
    let blobs = edge_case_blobs();
    let (h0, h1) = (sha256_hex(&blobs[0]), sha256_hex(&blobs[1]));
    let key = |n: u8| vec![n; 32];
    vec![
        (
            Table::Roles,
            vec![
                // the seeded roles, changed by the operator: the copy must replace the target's seeds
                vec![i(1), t("@everyone"), t("#00ff00"), i(0), flag(true), i(0), i(T0)],
                vec![i(2), t("@admin"), NULL, i(1000), flag(true), i(0), i(0)],
                vec![i(3), t("Модератор 🛡"), t("#ff0000"), i(i64::MAX), flag(false), i(T0 + 1), i(T0 + 2)],
                vec![i(4), t("lowest"), NULL, i(i64::MIN), flag(false), i(-1), i(1)],
            ],
        ),
        (
            Table::RolePermissions,
            vec![
                vec![i(1), t("read_messages")],
                vec![i(1), t("send_messages")],
                vec![i(2), t("administrator")],
                vec![i(3), t("kick_members")],
                vec![i(3), t("manage_messages")],
            ],
        ),
        (
            Table::Media,
            vec![
                vec![i(1), t(&h0), t(&h0), NULL, i(blobs[0].len() as i64), t("application/pdf"), i(1), i(T0)],
                vec![i(7), t(&h1), t(&h1), NULL, i(blobs[1].len() as i64), t("image/png"), i(i64::MIN), i(T0 + 9)],
            ],
        ),
        (
            Table::Users,
            vec![
                vec![i(1), b(&key(1)), t("Alice ✨"), t(&h1), flag(false), i(T0)],
                vec![i(2), b(&key(2)), NULL, NULL, flag(true), i(T0 + 1)],
                vec![
                    i(3),
                    b(&[0u8; 32]),
                    t("名前 'quoted' \"double\" \\ back\nslash"),
                    NULL,
                    flag(false),
                    i(-86_400_000_001),
                ],
                vec![i(5), b(&[0xffu8; 32]), t(""), NULL, flag(false), i(1)],
            ],
        ),
        (Table::Members, vec![vec![i(1), i(T0)], vec![i(2), i(T0 + 5)], vec![i(3), i(-1)]]),
        (Table::MemberRoles, vec![vec![i(1), i(2), i(T0)], vec![i(1), i(3), i(T0 + 1)], vec![i(3), i(4), i(T0 + 2)]]),
        (Table::Categories, vec![vec![i(1), t("General"), i(i64::MAX), i(T0)], vec![i(2), t("Zeta 🚀"), i(-1), i(T0)]]),
        (
            Table::Channels,
            vec![
                vec![i(1), t("text"), t("general"), t("😀 topic\twith\ttabs"), i(1), i(0), i(T0), i(T0 + 3)],
                vec![i(2), t("text"), t("random"), NULL, NULL, i(i64::MIN), i(T0), i(T0)],
                vec![i(3), t("dm"), NULL, NULL, NULL, i(0), i(T0 + 4), i(T0 + 4)],
            ],
        ),
        (
            Table::ChannelPermissionOverrides,
            vec![vec![i(1), i(1), i(1), i(2)], vec![i(2), i(3), i(0), i(16383 & !8192)]],
        ),
        (Table::Dms, vec![vec![i(3), i(1), i(3), i(T0 + 4), i(T0 + 70)]]),
        (Table::DmParticipants, vec![vec![i(3), i(1), flag(true), i(T0 + 71)], vec![i(3), i(3), flag(false), NULL]]),
        (
            Table::Messages,
            vec![
                vec![i(1), i(1), i(1), NULL, t("hello world"), t("hello world"), i(T0 + 10), NULL, NULL],
                vec![i(2), i(1), i(3), NULL, t("Ünïcödé 👍🏽 ∑"), t("unicode"), i(T0 + 11), i(T0 + 12), NULL],
                // soft-deleted
                vec![i(3), i(1), i(1), NULL, t(""), t(""), i(T0 + 13), NULL, i(T0 + 14)],
                vec![i(4), i(1), i(2), NULL, t("bot says hi"), t("bot says hi"), i(T0 + 15), NULL, NULL],
                vec![i(5), i(1), i(3), i(1), t("reply one"), t("reply one"), i(T0 + 16), NULL, NULL],
                vec![i(6), i(1), i(1), i(1), t("reply two"), t("reply two"), i(T0 + 17), NULL, NULL],
                vec![i(7), i(3), i(1), NULL, t("a direct message"), t("a direct message"), i(T0 + 18), NULL, NULL],
                vec![i(8), i(1), i(1), i(3), t("reply in 3"), t("reply in 3"), i(T0 + 19), NULL, NULL],
                vec![i(9), i(1), i(3), i(2), t("reply in 2"), t("reply in 2"), i(T0 + 20), NULL, NULL],
                vec![i(12), i(2), i(5), NULL, t("x".repeat(4000).as_str()), t("x"), i(T0 + 21), NULL, NULL],
            ],
        ),
        (
            Table::Threads,
            vec![
                // ids and parent messages in different orders
                vec![i(1), i(1), i(1), i(1), i(T0 + 15), i(2), i(T0 + 17), i(1)],
                vec![i(2), i(1), i(4), i(3), i(T0 + 18), i(1), i(T0 + 20), i(3)],
                vec![i(3), i(1), i(2), i(1), i(T0 + 18), i(1), NULL, NULL],
            ],
        ),
        (
            Table::ThreadFollowers,
            vec![vec![i(1), i(1), i(T0), i(T0 + 1)], vec![i(1), i(3), i(T0), NULL], vec![i(3), i(1), i(T0), NULL]],
        ),
        (
            Table::Reactions,
            vec![
                vec![i(1), i(1), i(1), t("👍"), i(T0 + 30)],
                vec![i(2), i(1), i(3), t("🏳️‍🌈"), i(T0 + 31)],
                vec![i(5), i(2), i(1), t("x"), i(T0 + 32)],
            ],
        ),
        (
            Table::Attachments,
            vec![
                vec![
                    i(1),
                    i(1),
                    i(1),
                    i(1),
                    t(&h0),
                    t("report.pdf"),
                    i(blobs[0].len() as i64),
                    t("application/pdf"),
                    NULL,
                    NULL,
                    i(T0 + 10),
                    NULL,
                ],
                vec![
                    i(2),
                    NULL,
                    i(2),
                    i(3),
                    t(&h1),
                    t("ïmage.png"),
                    i(blobs[1].len() as i64),
                    t("image/png"),
                    i(i64::MAX),
                    i(1),
                    i(T0 + 40),
                    i(T0 + 41),
                ],
            ],
        ),
        (
            Table::DeviceKeys,
            vec![
                vec![
                    i(1),
                    b(&key(11)),
                    i(1),
                    t("laptop"),
                    i(3),
                    i(T0),
                    NULL,
                    b(&[0, 1, 2, 0, 255, 254]),
                    b(&[9u8; 64]),
                    i(T0),
                    NULL,
                ],
                vec![
                    i(2),
                    b(&key(12)),
                    i(3),
                    t("phone"),
                    i(0),
                    i(T0),
                    i(T0 + 1),
                    b(&[]),
                    b(&[0u8; 64]),
                    i(T0),
                    i(T0 + 2),
                ],
            ],
        ),
        (
            Table::Sessions,
            vec![
                vec![
                    i(1),
                    b(crate::auth::hash_token(ALICE_TOKEN).as_bytes()),
                    i(1),
                    NULL,
                    flag(false),
                    i(T0),
                    i(4_102_444_800_000_000),
                ],
                vec![i(2), b(&key(21)), i(3), i(1), flag(true), i(T0), i(T0 + 1)],
            ],
        ),
        (
            Table::AuthChallenges,
            vec![
                vec![b(&[0u8; 32]), b(&key(31)), flag(true), i(T0), i(T0 + 60_000_000)],
                vec![b(&[0xffu8; 32]), b(&key(32)), flag(false), i(T0), i(T0 + 60_000_000)],
            ],
        ),
        (Table::Bans, vec![vec![b(&key(7)), i(1), t("spam ☠"), i(T0)], vec![b(&key(8)), i(1), NULL, i(T0 + 1)]]),
        (Table::Allowlist, vec![vec![b(&key(9)), i(1), i(T0)]]),
        (
            Table::BotApprovals,
            vec![vec![i(2), i(T0), i(1), i(T0 + 1), NULL, t("ok")], vec![i(5), i(T0), NULL, NULL, NULL, NULL]],
        ),
        (
            Table::Invites,
            vec![
                // byte order differs from most collations' order
                vec![t("AbCd1234"), i(1), i(3), i(10), i(3), NULL, i(T0)],
                vec![t("Zz9_-xYw"), i(3), NULL, i(1), i(1), i(T0 + 99), i(T0)],
                vec![t("abcd1234"), i(1), i(1), i(0), i(0), i(-5), i(T0)],
                vec![t("ÄÖÜäöüß!"), i(1), NULL, i(0), i(7), NULL, i(T0)],
            ],
        ),
    ]
}

/// A target SQLite database being filled with synthetic rows.
pub struct SqliteWriter {
    db: Db,
}

impl SqliteWriter {
    /// Creates `path` (it must not exist) with this binary's schema and without the seeded roles.
    pub async fn create(path: &Path) -> Result<SqliteWriter, MigrateError> {
        if path.exists() {
            return Err(MigrateError::Usage(format!("{} already exists", path.display())));
        }
        let mut db = Db::SqliteTarget(super::sqlite::open_target(path).await?);
        db.run_migrations().await?;
        db.clear_seeded_roles().await?;
        Ok(SqliteWriter { db })
    }

    /// Writes rows of any table but messages and threads, in one transaction.
    pub async fn write(&mut self, table: Table, rows: &[Row]) -> Result<(), MigrateError> {
        assert!(!matches!(table, Table::Messages | Table::Threads), "messages and threads go through write_messages");
        self.db.write_page(table, rows.to_vec(), &[], std::future::ready(true)).await.map(drop)
    }

    /// Writes messages with every thread whose parent message is among them, in one transaction.
    pub async fn write_messages(&mut self, messages: &[Row], threads: &[Row]) -> Result<(), MigrateError> {
        self.db.write_page(Table::Messages, messages.to_vec(), threads, std::future::ready(true)).await.map(drop)
    }

    pub async fn finish(mut self) -> Result<(), MigrateError> {
        self.db.finish_target().await
    }
}

/// Writes the edge-case dataset to a new SQLite file.
pub async fn write_edge_cases(path: &Path) -> Result<(), MigrateError> {
    let mut writer = SqliteWriter::create(path).await?;
    let tables = edge_cases();
    let threads: Vec<Row> =
        tables.iter().find(|(t, _)| *t == Table::Threads).map(|(_, r)| r.clone()).unwrap_or_default();
    for (table, rows) in &tables {
        match table {
            Table::Threads => {}
            Table::Messages => writer.write_messages(rows, &threads).await?,
            _ => writer.write(*table, rows).await?,
        }
    }
    writer.finish().await
}

/// The size of a generated community.
#[derive(Clone, Copy, Debug)]
pub struct Community {
    pub users: i64,
    pub channels: i64,
    pub messages: i64,
}

/// A small deterministic generator (SplitMix64), so every run builds the same community.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n.max(1) as u64) as i64
    }
}

const WORDS: [&str; 16] = [
    "hello", "world", "rust", "postgres", "sqlite", "migrate", "thread", "reply", "emoji", "café", "naïve", "日本",
    "👍", "status", "deploy", "friday",
];

/// Writes a generated community to a new SQLite file: users with members, channels, DMs,
/// `messages` messages (about one in twenty starts a thread and one in ten is a thread reply,
/// one in fifty soft-deleted), reactions on a third of them, media rows with attachments.
pub async fn write_community(path: &Path, size: Community, batch: usize) -> Result<(), MigrateError> {
    let mut writer = SqliteWriter::create(path).await?;
    let mut mix = Mix(42);
    let t0 = 1_700_000_000_000_000i64;
    let roles: Vec<Row> = vec![
        vec![i(1), t("@everyone"), NULL, i(0), flag(true), i(0), i(0)],
        vec![i(2), t("@admin"), NULL, i(1000), flag(true), i(0), i(0)],
        vec![i(3), t("regular"), t("#3366ff"), i(10), flag(false), i(t0), i(t0)],
    ];
    writer.write(Table::Roles, &roles).await?;
    let perms: Vec<Row> = ["add_reactions", "attach_files", "read_messages", "send_messages"]
        .iter()
        .map(|p| vec![i(1), t(p)])
        .chain(std::iter::once(vec![i(2), t("administrator")]))
        .collect();
    writer.write(Table::RolePermissions, &perms).await?;

    let media_count = (size.messages / 100).max(1);
    for chunk in (1..=media_count).collect::<Vec<_>>().chunks(batch) {
        let rows: Vec<Row> = chunk
            .iter()
            .map(|&id| {
                let hash = sha256_hex(&id.to_be_bytes());
                vec![i(id), t(&hash), t(&hash), NULL, i(1000 + id), t("image/png"), i(1 + id % size.users), i(t0 + id)]
            })
            .collect();
        writer.write(Table::Media, &rows).await?;
    }
    for chunk in (1..=size.users).collect::<Vec<_>>().chunks(batch) {
        let users: Vec<Row> = chunk
            .iter()
            .map(|&id| {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&id.to_be_bytes());
                key[8..16].copy_from_slice(&mix.next().to_be_bytes());
                let name = if id % 7 == 0 { NULL } else { t(&format!("user {id} {}", WORDS[(id % 16) as usize])) };
                vec![i(id), b(&key), name, NULL, flag(id % 97 == 0), i(t0 + id * 1_000_003)]
            })
            .collect();
        writer.write(Table::Users, &users).await?;
        let members: Vec<Row> = chunk.iter().map(|&id| vec![i(id), i(t0 + id * 1_000_007)]).collect();
        writer.write(Table::Members, &members).await?;
        let member_roles: Vec<Row> =
            chunk.iter().filter(|&&id| id % 3 == 0).map(|&id| vec![i(id), i(3), i(t0 + id)]).collect();
        writer.write(Table::MemberRoles, &member_roles).await?;
    }
    writer.write(Table::Categories, &[vec![i(1), t("Text"), i(0), i(t0)]]).await?;
    let channels: Vec<Row> = (1..=size.channels)
        .map(|id| vec![i(id), t("text"), t(&format!("channel-{id}")), NULL, i(1), i(id), i(t0), i(t0)])
        .collect();
    writer.write(Table::Channels, &channels).await?;
    // one DM channel per 10 users, between neighbours
    let dm_pairs: Vec<(i64, i64, i64)> = (0..size.users / 10)
        .map(|n| (size.channels + 1 + n, 1 + n * 10, 2 + n * 10))
        .filter(|(_, _, high)| *high <= size.users)
        .collect();
    let dm_channels: Vec<Row> =
        dm_pairs.iter().map(|(c, _, _)| vec![i(*c), t("dm"), NULL, NULL, NULL, i(0), i(t0), i(t0)]).collect();
    for chunk in dm_channels.chunks(batch) {
        writer.write(Table::Channels, chunk).await?;
    }
    let dms: Vec<Row> = dm_pairs.iter().map(|(c, lo, hi)| vec![i(*c), i(*lo), i(*hi), i(t0), NULL]).collect();
    for chunk in dms.chunks(batch) {
        writer.write(Table::Dms, chunk).await?;
    }
    let participants: Vec<Row> = dm_pairs
        .iter()
        .flat_map(|(c, lo, hi)| [vec![i(*c), i(*lo), flag(true), NULL], vec![i(*c), i(*hi), flag(true), i(t0)]])
        .collect();
    for chunk in participants.chunks(batch) {
        writer.write(Table::DmParticipants, chunk).await?;
    }

    // Messages in batches; a thread starts on every 20th message and collects the replies of the
    // following messages of its channel.
    let mut next_thread = 1i64;
    let mut open_threads: Vec<(i64, i64)> = Vec::new(); // (thread id, channel)
    let mut reaction_id = 1i64;
    let mut attachment_id = 1i64;
    let mut id = 1i64;
    while id <= size.messages {
        let last = (id + batch as i64 - 1).min(size.messages);
        let (mut messages, mut threads, mut reactions, mut attachments) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for m in id..=last {
            let dm = !dm_pairs.is_empty() && m % 25 == 0;
            let (channel, author) = if dm {
                let (c, lo, hi) = dm_pairs[mix.below(dm_pairs.len() as i64) as usize];
                (c, if m % 2 == 0 { lo } else { hi })
            } else {
                (1 + mix.below(size.channels), 1 + mix.below(size.users))
            };
            let reply_to = (!dm && m % 10 == 3 && !open_threads.is_empty())
                .then(|| open_threads[mix.below(open_threads.len() as i64) as usize]);
            let (channel, thread_id) = match reply_to {
                Some((thread, thread_channel)) => (thread_channel, i(thread)),
                None => (channel, NULL),
            };
            let at = t0 + m * 1_000_001;
            let words: Vec<&str> = (0..1 + mix.below(12)).map(|_| WORDS[mix.below(16) as usize]).collect();
            let text = words.join(" ");
            let deleted = m % 50 == 0;
            let (content, search) = if deleted { (String::new(), String::new()) } else { (text.clone(), text) };
            let edited = if m % 30 == 0 { i(at + 5_000_000) } else { NULL };
            messages.push(vec![
                i(m),
                i(channel),
                i(author),
                thread_id.clone(),
                t(&content),
                t(&search),
                i(at),
                edited,
                if deleted { i(at + 1) } else { NULL },
            ]);
            if !dm && thread_id == NULL && m % 20 == 0 {
                threads.push(vec![i(next_thread), i(channel), i(m), i(author), i(at + 1), i(0), NULL, NULL]);
                open_threads.push((next_thread, channel));
                if open_threads.len() > 200 {
                    open_threads.remove(0);
                }
                next_thread += 1;
            }
            if m % 3 == 0 {
                for r in 0..1 + mix.below(3) {
                    let user = 1 + (author + r * 7919) % size.users;
                    reactions.push(vec![i(reaction_id), i(m), i(user), t(WORDS[12]), i(at + 10 + r)]);
                    reaction_id += 1;
                }
            }
            if m % 100 == 7 {
                let media = 1 + mix.below(media_count);
                attachments.push(vec![
                    i(attachment_id),
                    i(m),
                    i(channel),
                    i(author),
                    t(&sha256_hex(&media.to_be_bytes())),
                    t(&format!("file-{attachment_id}.png")),
                    i(1000 + media),
                    t("image/png"),
                    i(640),
                    i(480),
                    i(at),
                    NULL,
                ]);
                attachment_id += 1;
            }
        }
        writer.write_messages(&messages, &threads).await?;
        writer.write(Table::Reactions, &reactions).await?;
        writer.write(Table::Attachments, &attachments).await?;
        id = last + 1;
    }
    writer.finish().await
}

/// Every row of every table, in primary-key order, as the migration reads them.
async fn read_all(db: &mut Db) -> Result<Vec<(Table, Vec<Row>)>, MigrateError> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let mut rows = Vec::new();
        let mut bound = super::tables::Bound::start(table.key());
        loop {
            let page = db.page(table, &bound, 1000).await?;
            let next = page.last().and_then(|r| super::tables::Bound::after(table.key(), r));
            let full = page.len() == 1000;
            rows.extend(page);
            match next {
                Some(next) if full => bound = next,
                _ => break,
            }
        }
        out.push((table, rows));
    }
    Ok(out)
}

/// Every row of every table of a SQLite file (opened read-only).
pub async fn read_sqlite(path: &Path) -> Result<Vec<(Table, Vec<Row>)>, MigrateError> {
    let mut db = Db::SqliteSource(super::sqlite::open_source(path).await?, super::NulText::Refuse);
    let rows = read_all(&mut db).await?;
    if let Db::SqliteSource(snapshot, _) = db {
        snapshot.rollback().await?; // ended now, not whenever its connection is used again
    }
    Ok(rows)
}

/// Every row of every table of a PostgreSQL database (in one read-only snapshot).
#[cfg(feature = "postgres")]
pub async fn read_postgres(url: &str) -> Result<Vec<(Table, Vec<Row>)>, MigrateError> {
    let mut db = Db::PgSource(super::postgres::open_source(url).await?);
    let rows = read_all(&mut db).await?;
    if let Db::PgSource(snapshot) = db {
        snapshot.rollback().await?; // ended now, not whenever its connection is used again
    }
    Ok(rows)
}

/// The number of rows of `table` in a PostgreSQL database.
#[cfg(feature = "postgres")]
pub async fn count_postgres(url: &str, table: Table) -> Result<u64, MigrateError> {
    // On one plain connection, closed before returning: a snapshot transaction left behind (as a
    // dropped one is, until its connection is used again) would hold a lock on the table that a
    // migration running meanwhile needs to rebuild its keys.
    let mut db = Db::PgTarget(super::postgres::open_target(url).await?);
    let n = db.count(table).await?;
    if let Db::PgTarget(conn) = db {
        sqlx::Connection::close(conn).await?;
    }
    Ok(n)
}
