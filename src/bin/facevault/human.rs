//! Answers for people: the same JSON object, drawn as `key: value` lines and short tables.
//! Device harnesses get the JSON (the default when the output is not a terminal); this is
//! `--human`, and the default on a terminal.

use serde_json::{Map, Value};

/// `answer` as lines: each scalar as `key: value`, a list of scalars joined by commas, a nested
/// object's fields as `key.field: value`, and a list of objects as a table under its key.
pub(crate) fn render(answer: &Value) -> String {
    let Value::Object(fields) = answer else {
        return scalar(answer);
    };
    let mut lines = Vec::new();
    let mut tables = Vec::new();
    flatten("", fields, &mut lines, &mut tables);
    let mut out = lines.join("\n");
    for (key, rows) in tables {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&format!("{key}:\n{}", table(rows)));
    }
    out
}

fn flatten<'a>(
    prefix: &str,
    fields: &'a Map<String, Value>,
    lines: &mut Vec<String>,
    tables: &mut Vec<(String, &'a [Value])>,
) {
    for (key, value) in fields {
        let key = format!("{prefix}{key}");
        match value {
            Value::Object(inner) => flatten(&format!("{key}."), inner, lines, tables),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                tables.push((key, items));
            }
            Value::Array(items) if items.iter().all(|item| !item.is_array() && !item.is_object()) => {
                let joined: Vec<String> = items.iter().map(scalar).collect();
                lines.push(format!("{key}: {}", joined.join(", ")));
            }
            // Lists of lists (identify-batch's answers) stay JSON, on one line.
            other => lines.push(format!("{key}: {}", scalar(other))),
        }
    }
}

/// A list of objects as aligned columns, in the order the objects give their keys (sorted).
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        if let Value::Object(fields) = row {
            for key in fields.keys() {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| row.get(*column).map_or_else(String::new, scalar))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain(std::iter::once(column.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect();
        format!("  {}", padded.join("  ").trim_end())
    };
    let mut out = vec![line(columns.clone())];
    out.extend(
        cells
            .iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_lines_and_lists_of_objects_tables() {
        let answer = json!({
            "ok": true,
            "head": {"seq": 12, "mac": "ab"},
            "subjects": [
                {"subject": "5cf7", "expires_at": 17, "minor": false},
                {"subject": "0a", "expires_at": 1700, "minor": true}
            ],
            "ids": ["a", "b"],
            "results": [[{"subject": "x"}]]
        });
        let text = render(&answer);
        assert!(text.contains("ok: true"), "{text}");
        assert!(
            text.contains("head.seq: 12") && text.contains("head.mac: ab"),
            "{text}"
        );
        assert!(text.contains("ids: a, b"), "{text}");
        assert!(text.contains("results: [[{\"subject\":\"x\"}]]"), "{text}");
        // Keys come in serde_json's order, which sorts them.
        let table =
            "subjects:\n  expires_at  minor  subject\n  17          false  5cf7\n  1700        true   0a";
        assert!(text.contains(table), "{text}");
    }
}
