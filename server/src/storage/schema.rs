//! A dialect-neutral description of a live schema, read by each backend from its own catalogue
//! (`SqliteBackend::schema_snapshot`, `PostgresBackend::schema_snapshot`) so the parity test can
//! prove the two schemas describe the same tables, columns, keys and indexes.

use std::collections::{BTreeMap, BTreeSet};

/// Column types after normalising dialect names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnType {
    Integer,
    Text,
    Bytes,
    Bool,
    Timestamp,
    /// A type with no counterpart in the other dialect (its own name).
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub ty: ColumnType,
    pub nullable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub references_table: String,
    pub references_columns: Vec<String>,
    /// `CASCADE`, `SET NULL`, `RESTRICT` or `NO ACTION`.
    pub on_delete: String,
}

/// An index or unique constraint (the primary key included), by its column list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Index {
    pub columns: Vec<String>,
    pub unique: bool,
    /// Whether it has a WHERE clause (the predicate text is dialect-specific).
    pub partial: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub columns: BTreeMap<String, Column>,
    pub primary_key: Vec<String>,
    pub foreign_keys: BTreeSet<ForeignKey>,
    pub indexes: BTreeSet<Index>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaSnapshot {
    pub tables: BTreeMap<String, Table>,
}

/// Normalises an on-delete action as either catalogue spells it.
pub fn normalise_on_delete(action: &str) -> String {
    match action.trim().to_ascii_uppercase().as_str() {
        "C" | "CASCADE" => "CASCADE",
        "N" | "SET NULL" => "SET NULL",
        "R" | "RESTRICT" => "RESTRICT",
        "D" | "SET DEFAULT" => "SET DEFAULT",
        _ => "NO ACTION",
    }
    .to_owned()
}
