//! PostgreSQL's binary `COPY` format, for loading canonical rows into the target and digesting
//! what it holds: a signature and header, then per row its field count and each field as a length
//! (-1 for NULL) followed by the value in the type's binary send form, then a trailer. The column
//! kinds of [`Table::columns`] say which form each value takes.

use crate::migrate::digest::{Field, TableDigest};
use crate::migrate::tables::{Kind, Row, Table, Value};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch (canonical timestamps) to PostgreSQL's epoch, 2000-01-01 UTC.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The COPY data of `rows`, whole (header to trailer). A value of another kind than its column's,
/// or a timestamp PostgreSQL cannot hold, is an error naming the table and column.
pub fn encode(table: Table, rows: &[Row]) -> Result<Vec<u8>, sqlx::Error> {
    let columns = table.columns();
    let mut out = Vec::with_capacity(19 + rows.len() * (2 + columns.len() * 16));
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
    for row in rows {
        if row.len() != columns.len() {
            return Err(bad(table, "", format!("a row of {} values for {} columns", row.len(), columns.len())));
        }
        out.extend_from_slice(&(columns.len() as i16).to_be_bytes());
        for (&(column, kind), value) in columns.iter().zip(row) {
            match (kind, value) {
                (_, Value::Null) => out.extend_from_slice(&(-1i32).to_be_bytes()),
                (Kind::Int, Value::Int(v)) => field(&mut out, &v.to_be_bytes()),
                (Kind::Time, Value::Int(micros)) => {
                    // PostgreSQL reads the two extreme values as ±infinity: no timestamp of ours.
                    let pg = micros
                        .checked_sub(PG_EPOCH_MICROS)
                        .filter(|pg| *pg != i64::MIN && *pg != i64::MAX)
                        .ok_or_else(|| {
                            bad(table, column, format!("timestamp {micros} µs is outside PostgreSQL's range"))
                        })?;
                    field(&mut out, &pg.to_be_bytes());
                }
                (Kind::Text, Value::Text(s)) => field(&mut out, s.as_bytes()),
                (Kind::Bytes, Value::Bytes(b)) => field(&mut out, b),
                (Kind::Bool, Value::Bool(b)) => field(&mut out, &[u8::from(*b)]),
                (kind, value) => return Err(bad(table, column, format!("a {kind:?} column given {value:?}"))),
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out)
}

/// Digests `COPY … TO STDOUT (FORMAT binary)` data of a table's canonical columns as it arrives,
/// chunk by chunk, each row exactly as [`TableDigest::add`] digests the same row read as
/// canonical values; no row is ever built.
pub struct DigestReader {
    table: Table,
    /// The start of a row (or of the header) whose end is in a later chunk.
    pending: Vec<u8>,
    started: bool,
    ended: bool,
}

impl DigestReader {
    pub fn new(table: Table) -> DigestReader {
        DigestReader { table, pending: Vec::new(), started: false, ended: false }
    }

    /// Digests every whole row of `chunk` (after what earlier chunks left over) into `digest`.
    pub fn feed(&mut self, chunk: &[u8], digest: &mut TableDigest) -> Result<(), sqlx::Error> {
        let mut joined = std::mem::take(&mut self.pending);
        let data = if joined.is_empty() {
            chunk
        } else {
            joined.extend_from_slice(chunk);
            &joined
        };
        let used = self.digest_rows(data, digest)?;
        self.pending = data[used..].to_vec();
        Ok(())
    }

    /// Checks that the data ended where it should (trailer seen, nothing left over).
    pub fn finish(self) -> Result<(), sqlx::Error> {
        if self.ended && self.pending.is_empty() {
            Ok(())
        } else {
            Err(bad(self.table, "", "the COPY data ended in the middle of a row".into()))
        }
    }

    /// Digests the whole rows at the start of `data`; returns how many bytes they took.
    fn digest_rows(&mut self, data: &[u8], digest: &mut TableDigest) -> Result<usize, sqlx::Error> {
        let columns = self.table.columns();
        let mut at = 0;
        if !self.started {
            if data.len() < HEADER {
                return Ok(0);
            }
            if &data[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad(self.table, "", "not binary COPY data".into()));
            }
            let extension = be_i32(&data[15..HEADER]).max(0) as usize;
            if data.len() < HEADER + extension {
                return Ok(0);
            }
            at = HEADER + extension;
            self.started = true;
        }
        while !self.ended && data.len() - at >= 2 {
            let count = i16::from_be_bytes([data[at], data[at + 1]]);
            if count == -1 {
                self.ended = true;
                at += 2;
                break;
            }
            if count as usize != columns.len() {
                return Err(bad(self.table, "", format!("a row of {count} fields for {} columns", columns.len())));
            }
            // First pass: is the row whole, and does every value fit its column?
            let mut end = at + 2;
            for &(column, kind) in columns {
                let Some(length) = data.get(end..end + 4).map(be_i32) else { return Ok(at) };
                end += 4;
                if length < 0 {
                    continue;
                }
                let Some(value) = data.get(end..end + length as usize) else { return Ok(at) };
                end += value.len();
                check(self.table, column, kind, value)?;
            }
            // Second pass: the values, in the digest's terms.
            let mut next = at + 2;
            let fields = columns.iter().map(|&(_, kind)| {
                let length = be_i32(&data[next..next + 4]);
                next += 4;
                if length < 0 {
                    return Field::Null;
                }
                let value = &data[next..next + length as usize];
                next += value.len();
                match kind {
                    Kind::Int => Field::Int(be_i64(value)),
                    Kind::Time => Field::Int(be_i64(value) + PG_EPOCH_MICROS), // in range: checked
                    Kind::Text => Field::Text(value),
                    Kind::Bytes => Field::Bytes(value),
                    Kind::Bool => Field::Bool(value[0] != 0),
                }
            });
            digest.add_fields(columns.len(), fields);
            at = end;
        }
        if self.ended && at < data.len() {
            return Err(bad(self.table, "", "data after the end of the COPY data".into()));
        }
        Ok(at)
    }
}

/// Signature, flags and header extension length.
const HEADER: usize = 19;

/// A value of `column` has the size its kind takes, and a timestamp is one canonical rows can
/// hold (PostgreSQL's ±infinity are not).
fn check(table: Table, column: &str, kind: Kind, value: &[u8]) -> Result<(), sqlx::Error> {
    let size = match kind {
        Kind::Int | Kind::Time => 8,
        Kind::Bool => 1,
        Kind::Text | Kind::Bytes => return Ok(()),
    };
    if value.len() != size {
        return Err(bad(table, column, format!("a {kind:?} value of {} bytes", value.len())));
    }
    if kind == Kind::Time {
        let pg = be_i64(value);
        if pg == i64::MIN || pg == i64::MAX || pg.checked_add(PG_EPOCH_MICROS).is_none() {
            return Err(bad(table, column, format!("timestamp {pg} µs after 2000 is outside the canonical range")));
        }
    }
    Ok(())
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"))
}

fn be_i64(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are far below 2 GiB: PostgreSQL caps a field at 1 GiB.
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn bad(table: Table, column: &str, what: String) -> sqlx::Error {
    sqlx::Error::Encode(format!("{}.{column}: {what}", table.name()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_row_is_framed_field_by_field_in_send_form() {
        let row = vec![
            Value::Int(1),
            Value::Text("é".into()),
            Value::Null,
            Value::Int(10),
            Value::Bool(true),
            Value::Int(0),
            Value::Int(PG_EPOCH_MICROS + 1),
        ];
        let data = encode(Table::Roles, &[row]).unwrap();
        let mut want = SIGNATURE.to_vec();
        want.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([0, 7]);
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0, 0, 0, 2, 0xc3, 0xa9]);
        want.extend([0xff, 0xff, 0xff, 0xff]);
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 10]);
        want.extend([0, 0, 0, 1, 1]);
        // the Unix epoch, then one microsecond after PostgreSQL's
        want.extend([0, 0, 0, 8]);
        want.extend((-PG_EPOCH_MICROS).to_be_bytes());
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0xff, 0xff]);
        assert_eq!(data, want);
    }

    /// Rows of every kind of value, NULLs, empty text and the timestamps' extremes.
    fn sample_rows() -> Vec<Row> {
        let row = |id: i64, name: &str, color: Value, builtin: bool, created: i64| {
            vec![
                Value::Int(id),
                Value::Text(name.into()),
                color,
                Value::Int(id / 2),
                Value::Bool(builtin),
                Value::Int(created),
                Value::Int(0),
            ]
        };
        vec![
            row(1, "é🦀", Value::Null, true, PG_EPOCH_MICROS + 1),
            row(i64::MAX, "", Value::Text("#fff".into()), false, i64::MIN + PG_EPOCH_MICROS + 1),
            row(i64::MIN, "x", Value::Null, false, i64::MAX),
        ]
    }

    #[test]
    fn copy_data_read_back_digests_as_the_rows_it_encodes() {
        let rows = sample_rows();
        let mut want = TableDigest::default();
        rows.iter().for_each(|r| want.add(r));
        let data = encode(Table::Roles, &rows).unwrap();
        // whole, and cut at every size (a row or the header split across chunks)
        for size in [data.len(), 1, 2, 3, 7, 19, 20, 33] {
            let (mut reader, mut got) = (DigestReader::new(Table::Roles), TableDigest::default());
            for chunk in data.chunks(size) {
                reader.feed(chunk, &mut got).unwrap();
            }
            reader.finish().unwrap();
            assert_eq!(got.finish(), want.clone().finish(), "chunks of {size} bytes");
        }
    }

    #[test]
    fn copy_data_cut_short_or_out_of_range_is_an_error() {
        let data = encode(Table::Roles, &sample_rows()).unwrap();
        let (mut reader, mut digest) = (DigestReader::new(Table::Roles), TableDigest::default());
        reader.feed(&data[..data.len() - 5], &mut digest).unwrap();
        assert!(reader.finish().unwrap_err().to_string().contains("middle of a row"));

        // PostgreSQL's +infinity in roles.created_at
        let mut row = sample_rows().remove(0);
        row[5] = Value::Int(i64::MAX);
        let mut data = encode(Table::Roles, &[row]).unwrap();
        let at = data.len() - 2 - 12 - 8;
        data[at..at + 8].copy_from_slice(&i64::MAX.to_be_bytes());
        let err = DigestReader::new(Table::Roles).feed(&data, &mut TableDigest::default()).unwrap_err();
        assert!(err.to_string().contains("roles.created_at"), "{err}");
    }

    #[test]
    fn a_value_of_the_wrong_kind_or_range_names_its_column() {
        let row = |position: Value, created: i64| {
            vec![
                Value::Int(1),
                Value::Text("r".into()),
                Value::Null,
                position,
                Value::Bool(false),
                Value::Int(created),
                Value::Int(0),
            ]
        };
        let err = encode(Table::Roles, &[row(Value::Text("3".into()), 0)]).unwrap_err();
        assert!(err.to_string().contains("roles.position"), "{err}");
        let err = encode(Table::Roles, &[row(Value::Int(3), i64::MIN)]).unwrap_err();
        assert!(err.to_string().contains("roles.created_at") && err.to_string().contains("range"), "{err}");
        let err = encode(Table::Roles, &[vec![Value::Int(1)]]).unwrap_err();
        assert!(err.to_string().contains("1 values for 7 columns"), "{err}");
    }
}
