//! PostgreSQL's binary `COPY` format, for loading canonical rows into the target: a signature
//! and header, then per row its field count and each field as a length (-1 for NULL) followed by
//! the value in the type's binary send form, then a trailer. The column kinds of
//! [`Table::columns`] say which form each value takes.

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
