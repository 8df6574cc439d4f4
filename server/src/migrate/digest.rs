//! Content digests of tables: SHA-256 over a canonical, length-prefixed encoding of every column
//! of every row, in primary-key order. Both dialects are read into the same canonical rows, so
//! equal digests mean equal content, column for column.

use sha2::{Digest, Sha256};

use super::tables::{Row, Value};

/// A table's row count and content digest, computed incrementally page by page.
#[derive(Clone, Default)]
pub struct TableDigest {
    rows: u64,
    hasher: Sha256,
}

/// The finished digest of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub sha256: [u8; 32],
}

impl Summary {
    /// The first 16 hex digits, for tables printed to the operator.
    pub fn short_hex(&self) -> String {
        hex::encode(&self.sha256[..8])
    }
}

/// One column value as the digest encodes it, borrowed: from a canonical [`Value`], or straight
/// from PostgreSQL's binary `COPY` data when the target is read back (no row is built then).
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    Null,
    Int(i64),
    /// UTF-8 text, as bytes.
    Text(&'a [u8]),
    Bytes(&'a [u8]),
    Bool(bool),
}

impl<'a> From<&'a Value> for Field<'a> {
    fn from(value: &'a Value) -> Field<'a> {
        match value {
            Value::Null => Field::Null,
            Value::Int(i) => Field::Int(*i),
            Value::Text(s) => Field::Text(s.as_bytes()),
            Value::Bytes(b) => Field::Bytes(b),
            Value::Bool(b) => Field::Bool(*b),
        }
    }
}

impl TableDigest {
    pub fn add(&mut self, row: &Row) {
        self.add_fields(row.len(), row.iter().map(Field::from));
    }

    /// Adds one row of `count` fields.
    pub fn add_fields<'a>(&mut self, count: usize, fields: impl Iterator<Item = Field<'a>>) {
        self.rows += 1;
        // Each row is prefixed by its column count, each value by a tag and (for variable-length
        // values) its length, so no two different rows or row sequences encode the same bytes.
        self.hasher.update((count as u32).to_be_bytes());
        for field in fields {
            match field {
                Field::Null => self.hasher.update([0u8]),
                Field::Int(i) => {
                    self.hasher.update([1u8]);
                    self.hasher.update(i.to_be_bytes());
                }
                Field::Text(s) => {
                    self.hasher.update([2u8]);
                    self.hasher.update((s.len() as u64).to_be_bytes());
                    self.hasher.update(s);
                }
                Field::Bytes(b) => {
                    self.hasher.update([3u8]);
                    self.hasher.update((b.len() as u64).to_be_bytes());
                    self.hasher.update(b);
                }
                Field::Bool(b) => self.hasher.update([4u8, u8::from(b)]),
            }
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(self) -> Summary {
        Summary { rows: self.rows, sha256: self.hasher.finalize().into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_ne;

    fn digest(rows: &[Row]) -> Summary {
        let mut d = TableDigest::default();
        rows.iter().for_each(|r| d.add(r));
        d.finish()
    }

    #[test]
    fn values_that_print_alike_digest_differently() {
        let text = |s: &str| Value::Text(s.to_owned());
        // a NULL is not an empty string, bytes are not text, a boundary moved is another row
        assert_ne!(digest(&[vec![Value::Null]]), digest(&[vec![text("")]]));
        assert_ne!(digest(&[vec![text("ab")]]), digest(&[vec![Value::Bytes(b"ab".to_vec())]]));
        assert_ne!(digest(&[vec![text("a"), text("bc")]]), digest(&[vec![text("ab"), text("c")]]));
        assert_ne!(digest(&[vec![text("a")], vec![text("b")]]), digest(&[vec![text("a"), text("b")]]));
        assert_ne!(digest(&[vec![Value::Int(1)]]), digest(&[vec![Value::Bool(true)]]));
    }
}
