//! The two dialects' schemas must describe the same tables, columns, nullability, keys and
//! indexes (issue: "the two dialects can then never drift apart silently"). Both live schemas are
//! read after migration from their own catalogues and compared after type normalisation.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use decentcom::config::StorageConfig;
use decentcom::storage::PoolSettings;
use decentcom::storage::postgres::PostgresBackend;
use decentcom::storage::schema::{Column, ColumnType, ForeignKey, Index, SchemaSnapshot};
use decentcom::storage::sqlite::SqliteBackend;
use decentcom::testing::ScratchPg;
use pretty_assertions::assert_eq;

/// The tables of the mission document plus those the API needs.
const TABLES: [&str; 23] = [
    "allowlist",
    "attachments",
    "auth_challenges",
    "bans",
    "bot_approvals",
    "categories",
    "channel_permission_overrides",
    "channels",
    "device_keys",
    "dm_participants",
    "dms",
    "invites",
    "media",
    "member_roles",
    "members",
    "messages",
    "reactions",
    "role_permissions",
    "roles",
    "sessions",
    "thread_followers",
    "threads",
    "users",
];

async fn snapshots() -> (SchemaSnapshot, SchemaSnapshot, ScratchPg) {
    let settings = PoolSettings::from_config(&StorageConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::open(&dir.path().join("parity.db"), &settings).await.unwrap();
    let scratch = ScratchPg::create("parity").await;
    let postgres = PostgresBackend::open(scratch.url(), &settings).await.unwrap();
    let s = sqlite.schema_snapshot().await.unwrap();
    let p = postgres.schema_snapshot().await.unwrap();
    (s, p, scratch)
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_are_the_same_after_normalisation() {
    let (sqlite, mut postgres, _scratch) = snapshots().await;

    // The documented differences. PostgreSQL's full-text column and its GIN index play the
    // part of SQLite's FTS5 virtual table (which the SQLite snapshot leaves out); and the table
    // behind the cross-process event bus exists only where there can be several processes.
    let log = postgres.tables.remove("bus_events").expect("postgres has the event bus's log");
    assert_eq!(log.primary_key, ["s"]);
    let state = postgres.tables.remove("bus_state").expect("postgres has the event bus's pruning mark");
    assert_eq!(state.primary_key, ["id"]);
    let messages = postgres.tables.get_mut("messages").expect("postgres has messages");
    assert_eq!(
        messages.columns.remove("search_vector"),
        Some(Column { ty: ColumnType::Other("tsvector".into()), nullable: true })
    );
    let before = messages.indexes.len();
    messages.indexes.retain(|index| index.columns != ["search_vector"]);
    assert_eq!(messages.indexes.len(), before - 1, "the GIN index on search_vector");

    assert_eq!(sqlite, postgres);
}

#[tokio::test]
async fn the_snapshot_sees_every_table_key_and_index() {
    let (sqlite, _, _scratch) = snapshots().await;
    assert_eq!(sqlite.tables.keys().map(String::as_str).collect::<Vec<_>>(), TABLES);

    let messages = &sqlite.tables["messages"];
    assert_eq!(messages.primary_key, ["id"]);
    assert_eq!(messages.columns["created_at"], Column { ty: ColumnType::Timestamp, nullable: false });
    assert_eq!(messages.columns["thread_id"], Column { ty: ColumnType::Integer, nullable: true });
    assert!(messages.foreign_keys.contains(&ForeignKey {
        columns: vec!["channel_id".into()],
        references_table: "channels".into(),
        references_columns: vec!["id".into()],
        on_delete: "CASCADE".into(),
    }));
    assert!(messages.indexes.contains(&Index {
        columns: vec!["channel_id".into(), "id".into()],
        unique: false,
        partial: true,
    }));
    let users = &sqlite.tables["users"];
    assert_eq!(users.columns["pubkey"], Column { ty: ColumnType::Bytes, nullable: false });
    assert_eq!(users.columns["is_bot"], Column { ty: ColumnType::Bool, nullable: false });
    assert!(users.indexes.contains(&Index { columns: vec!["pubkey".into()], unique: true, partial: false }));
}

/// `decentcom migrate` copies exactly the columns of `Table::columns`, and PostgreSQL's binary
/// COPY encodes each by its kind: both must match every table of both schemas (the generated
/// `search_vector` aside, which the target computes itself).
#[tokio::test]
async fn the_migration_copies_every_column_of_both_schemas_by_its_type() {
    use decentcom::migrate::tables::{Kind, Table};
    let (sqlite, postgres, _scratch) = snapshots().await;
    let copied: std::collections::BTreeSet<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    for (dialect, schema) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        let mut tables: std::collections::BTreeSet<&str> = schema.tables.keys().map(String::as_str).collect();
        // The event bus's log: transient, never migrated.
        tables.remove("bus_events");
        tables.remove("bus_state");
        assert_eq!(tables, copied, "{dialect}: the tables migrate copies");
        for table in Table::ALL {
            let live = &schema.tables[table.name()].columns;
            let mut want: Vec<(String, ColumnType)> = live
                .iter()
                .filter(|(name, _)| name.as_str() != "search_vector")
                .map(|(name, column)| (name.clone(), column.ty.clone()))
                .collect();
            want.sort();
            let mut have: Vec<(String, ColumnType)> = table
                .columns()
                .iter()
                .map(|(name, kind)| {
                    let ty = match kind {
                        Kind::Int => ColumnType::Integer,
                        Kind::Time => ColumnType::Timestamp,
                        Kind::Text => ColumnType::Text,
                        Kind::Bytes => ColumnType::Bytes,
                        Kind::Bool => ColumnType::Bool,
                    };
                    ((*name).to_owned(), ty)
                })
                .collect();
            have.sort();
            assert_eq!(have, want, "{dialect}: the columns of {}", table.name());
        }
    }
}
