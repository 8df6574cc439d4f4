//! Values a SQLite source holds that PostgreSQL cannot store: text with U+0000 (PostgreSQL's
//! text types refuse it), and text that is not UTF-8 at all (SQLite stores what a writer gives
//! it; another tool may have written such bytes). `decentcom migrate` looks for them before it
//! writes anything, so a migration never fails half-way over one value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::tables::{Row, Table, Value};

/// What is wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// U+0000 in the text; `--replace-nul` can replace it.
    Nul,
    /// Not UTF-8; nothing can store it as text.
    InvalidUtf8,
}

impl Problem {
    /// The problem of a text column's bytes, if any.
    pub fn of(bytes: &[u8]) -> Option<Problem> {
        match std::str::from_utf8(bytes) {
            Err(_) => Some(Problem::InvalidUtf8),
            Ok(_) if memchr::memchr(0, bytes).is_some() => Some(Problem::Nul),
            Ok(_) => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Problem::Nul => "contains U+0000 (NUL), which PostgreSQL text cannot hold",
            Problem::InvalidUtf8 => "is not valid UTF-8",
        }
    }
}

/// One value the target cannot store, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unstorable {
    pub table: Table,
    pub column: &'static str,
    /// The row's primary key, as `column=value`.
    pub key: String,
    pub problem: Problem,
}

/// What to do with text holding U+0000.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NulText {
    /// Refuse to migrate (the default): the operator decides.
    #[default]
    Refuse,
    /// Replace each U+0000 with U+FFFD (`--replace-nul`); every other byte is copied as is.
    Replace,
}

/// The replacement of `--replace-nul`.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Applies `--replace-nul` to rows read from the source (so that the copy, the resume checks and
/// the verification all see the same values).
pub fn replace_nul(rows: &mut [Row]) {
    for value in rows.iter_mut().flatten() {
        if let Value::Text(text) = value
            && text.contains('\0')
        {
            *text = text.replace('\0', &REPLACEMENT.to_string());
        }
    }
}

/// Whether the migration may go on with `found` under `policy`: only NULs, and they are replaced.
pub fn blocks(found: &[Unstorable], policy: NulText) -> bool {
    found.iter().any(|u| u.problem == Problem::InvalidUtf8 || policy == NulText::Refuse)
}

/// Values with U+0000 per table (what `--replace-nul` replaces).
pub fn nul_counts(found: &[Unstorable]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for u in found.iter().filter(|u| u.problem == Problem::Nul) {
        *counts.entry(u.table.name()).or_insert(0) += 1;
    }
    counts
}

/// Every value, one per line.
pub fn render(found: &[Unstorable]) -> String {
    let mut out = String::new();
    for u in found {
        let _ = writeln!(out, "  {}.{} ({}): {}", u.table.name(), u.column, u.key, u.problem.describe());
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn problems_are_nul_and_invalid_utf8() {
        assert_eq!(Problem::of(b"plain text"), None);
        assert_eq!(Problem::of("é \u{FFFD}".as_bytes()), None);
        assert_eq!(Problem::of(b"a\0b"), Some(Problem::Nul));
        assert_eq!(Problem::of(b"a\xffb"), Some(Problem::InvalidUtf8));
        assert_eq!(Problem::of(b"\0\xff"), Some(Problem::InvalidUtf8));
    }

    #[test]
    fn replacing_nul_touches_only_text_with_nul() {
        let mut rows = vec![vec![Value::Int(1), Value::Text("a\0b\0".into()), Value::Bytes(vec![0, 1])]];
        replace_nul(&mut rows);
        assert_eq!(rows, vec![vec![Value::Int(1), Value::Text("a\u{FFFD}b\u{FFFD}".into()), Value::Bytes(vec![0, 1])]]);
    }

    #[test]
    fn only_nul_under_replace_lets_a_migration_go_on() {
        let nul = Unstorable { table: Table::Messages, column: "content", key: "id=1".into(), problem: Problem::Nul };
        let bad = Unstorable { problem: Problem::InvalidUtf8, ..nul.clone() };
        assert!(blocks(std::slice::from_ref(&nul), NulText::Refuse));
        assert!(!blocks(std::slice::from_ref(&nul), NulText::Replace));
        assert!(blocks(&[nul.clone(), bad], NulText::Replace));
        assert!(!blocks(&[], NulText::Refuse));
        assert_eq!(nul_counts(&[nul.clone(), nul]), BTreeMap::from([("messages", 2)]));
    }
}
