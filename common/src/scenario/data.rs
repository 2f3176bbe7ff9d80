//! The rows of a `data:` set: a CSV file with a header row (each row an object of
//! strings keyed by the header) or a JSON array (of objects or plain values). Pure:
//! the coordinator reads the file, agents parse the bytes it ships.

use serde_json::{Map, Value};

/// Why a data file cannot be used; each names the line where one is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The CSV is malformed.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line of the file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The JSON does not parse or is not an array.
    #[error("line {line}: {message}")]
    Json {
        /// 1-based line of the file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No rows.
    #[error("has no rows (a data set needs at least one)")]
    Empty,
}

/// The rows of a data file: JSON when `name` ends in `.json`, CSV otherwise.
///
/// Fails on bad UTF-8, a malformed file (with its line), or no rows.
pub fn parse_rows(name: &str, bytes: &[u8]) -> Result<Vec<Value>, DataError> {
    let rows = if name.to_ascii_lowercase().ends_with(".json") {
        json_rows(bytes)?
    } else {
        csv_rows(bytes)?
    };
    if rows.is_empty() {
        return Err(DataError::Empty);
    }
    Ok(rows)
}

fn json_rows(bytes: &[u8]) -> Result<Vec<Value>, DataError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(rows)) => Ok(rows),
        Ok(_) => Err(DataError::Json {
            line: 1,
            message: "expected a JSON array of rows".into(),
        }),
        Err(e) => Err(DataError::Json {
            line: e.line(),
            message: e.to_string(),
        }),
    }
}

/// RFC 4180: fields separated by commas, `"` quotes a field (`""` is a quote inside
/// one), lines end in LF or CRLF; blank lines are skipped.
fn csv_rows(bytes: &[u8]) -> Result<Vec<Value>, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DataError::Csv {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        message: "is not UTF-8 text".into(),
    })?;
    let records = csv_records(text)?;
    let mut it = records.into_iter();
    let Some((_, header)) = it.next() else {
        return Ok(Vec::new());
    };
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            return Err(DataError::Csv {
                line: 1,
                message: format!("column {} of the header row has no name", i + 1),
            });
        }
        if header[..i].contains(h) {
            return Err(DataError::Csv {
                line: 1,
                message: format!("the header names {h:?} twice"),
            });
        }
    }
    it.map(|(line, fields)| {
        if fields.len() != header.len() {
            return Err(DataError::Csv {
                line,
                message: format!(
                    "has {} fields, but the header row has {}",
                    fields.len(),
                    header.len()
                ),
            });
        }
        let row: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(fields.into_iter().map(Value::String))
            .collect();
        Ok(Value::Object(row))
    })
    .collect()
}

/// The records with the line each starts on.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, DataError> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            '"' => {
                return Err(DataError::Csv {
                    line,
                    message: "a quote inside an unquoted field (quote the whole field)".into(),
                });
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if !(fields.is_empty() && field.is_empty() && !was_quoted) {
                    fields.push(std::mem::take(&mut field));
                    out.push((start, std::mem::take(&mut fields)));
                }
                was_quoted = false;
                line += 1;
                start = line;
            }
            _ if was_quoted => {
                return Err(DataError::Csv {
                    line,
                    message: "text after a quoted field's closing quote".into(),
                });
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(DataError::Csv {
            line: start,
            message: "a quoted field is never closed".into(),
        });
    }
    if !(fields.is_empty() && field.is_empty() && !was_quoted) {
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_rows_are_objects_keyed_by_the_header() {
        let rows = parse_rows(
            "u.csv",
            b"name,pass\r\nalice,\"a,1\"\n\nbob,\"say \"\"hi\"\"\"\ncarol,\"two\nlines\"\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            [
                json!({"name": "alice", "pass": "a,1"}),
                json!({"name": "bob", "pass": "say \"hi\""}),
                json!({"name": "carol", "pass": "two\nlines"}),
            ]
        );
    }

    #[test]
    fn bad_files_are_refused_with_their_line() {
        let e = parse_rows("u.csv", b"a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: has 1 fields, but the header row has 2"
        );
        let e = parse_rows("u.csv", b"a,b\n1,\"2\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: a quoted field is never closed"),
            "{e}"
        );
        assert_eq!(parse_rows("u.csv", b"a,b\n").unwrap_err(), DataError::Empty);
        assert_eq!(parse_rows("u.csv", b"").unwrap_err(), DataError::Empty);
        let e = parse_rows("u.csv", b"a,a\n1,2\n").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = parse_rows("u.json", b"[1,\n2,,]").unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        let e = parse_rows("u.json", b"{\"a\": 1}").unwrap_err();
        assert!(e.to_string().contains("array"), "{e}");
        assert_eq!(parse_rows("u.json", b"[]").unwrap_err(), DataError::Empty);
        assert_eq!(parse_rows("u.json", b"[1, {\"a\": 2}]").unwrap().len(), 2);
    }
}
