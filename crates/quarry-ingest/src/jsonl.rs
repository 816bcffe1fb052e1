//! JSON Lines: one document per line. BEIR-style records `{"_id", "title", "text", "metadata"}` keep
//! their id; records without `text` are rows written by the row template.
//! A malformed line is reported with its line number; the other lines still load.

use std::collections::HashMap;
use std::path::Path;

use quarry_core::{Document, MetaValue};
use serde::Deserialize;

use crate::chunker::TextFormat;
use crate::error::Error;
use crate::json::object_row;
use crate::loader::{utf8, Loaded, Loader};
use crate::record::RowTemplate;

pub struct JsonlLoader {
    /// For records without a `text` field: how their fields are written as a document.
    pub template: RowTemplate,
}

#[derive(Deserialize)]
struct Record {
    #[serde(alias = "id", alias = "doc_id")]
    _id: IdValue,
    #[serde(default)]
    title: Option<String>,
    text: String,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// BEIR ids are strings, but some exports write them as numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    S(String),
    N(serde_json::Number),
}

impl Loader for JsonlLoader {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        let text = utf8(path, bytes)?;
        let mut out = Loaded {
            format: Some(TextFormat::Plain),
            ..Default::default()
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| Error::Malformed {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    out.errors.push(bad(format!("invalid JSON record: {e}")));
                    continue;
                }
            };
            // A record without `text` is a row of fields, rendered by the template.
            if let Some(obj) = value.as_object().filter(|o| !o.contains_key("text")) {
                let mut doc = self.template.document(source, None, line_no, &object_row(obj), "jsonl");
                doc.id = format!("{source}#line={line_no}");
                if !doc.text.trim().is_empty() {
                    out.documents.push(doc);
                }
                continue;
            }
            let rec: Record = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    out.errors.push(bad(format!("invalid JSON record: {e}")));
                    continue;
                }
            };
            let id = match rec._id {
                IdValue::S(s) => s,
                IdValue::N(n) => n.to_string(),
            };
            if id.trim().is_empty() {
                out.errors.push(bad("empty `_id`".into()));
                continue;
            }
            if let Some(first) = seen.get(&id) {
                out.errors
                    .push(bad(format!("duplicate `_id` {id} (first on line {first})")));
                continue;
            }
            if rec.text.trim().is_empty() && rec.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
                out.errors.push(bad(format!("document {id} has no text")));
                continue;
            }
            seen.insert(id.clone(), line_no);
            let metadata = rec
                .metadata
                .map(|m| m.into_iter().filter_map(|(k, v)| Some((k, meta_value(v)?))).collect());
            out.documents.push(Document {
                id,
                source: source.to_string(),
                title: rec.title.filter(|t| !t.trim().is_empty()),
                text: rec.text,
                metadata: metadata.unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

/// JSON → metadata value; nested objects and nulls are not filterable and are dropped.
fn meta_value(v: serde_json::Value) -> Option<MetaValue> {
    use serde_json::Value;
    match v {
        Value::Bool(b) => Some(MetaValue::Bool(b)),
        Value::Number(n) => n.as_f64().map(MetaValue::Number),
        Value::String(s) => Some(MetaValue::String(s)),
        Value::Array(items) => Some(MetaValue::List(items.into_iter().filter_map(meta_value).collect())),
        Value::Null | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines_load_and_bad_lines_are_reported_with_numbers() {
        let data = concat!(
            r#"{"_id": "a", "title": "T", "text": "alpha", "metadata": {"year": 2020, "tags": ["x"]}}"#,
            "\n",
            "{not json\n",
            r#"{"_id": 7, "text": "seven"}"#,
            "\n",
            "\n",
            r#"{"_id": "a", "text": "again"}"#,
            "\n",
            r#"{"_id": "e", "text": "  "}"#,
            "\n",
        );
        let loaded = JsonlLoader {
            template: RowTemplate::default(),
        }
        .load(Path::new("c.jsonl"), "c.jsonl", data.as_bytes())
        .unwrap();
        let ids: Vec<&str> = loaded.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "7"]);
        assert_eq!(loaded.documents[0].metadata["year"], MetaValue::Number(2020.0));
        let errs: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("c.jsonl:2: invalid JSON"), "{}", errs[0]);
        assert!(
            errs[1].starts_with("c.jsonl:5: duplicate `_id` a (first on line 1)"),
            "{}",
            errs[1]
        );
        assert!(errs[2].starts_with("c.jsonl:6: document e has no text"), "{}", errs[2]);
    }

    #[test]
    fn invalid_utf8_and_empty_files_name_the_file() {
        let e = JsonlLoader {
            template: RowTemplate::default(),
        }
        .load(Path::new("x.jsonl"), "x", b"{\"_id\":\"1\",\xff}")
        .unwrap_err();
        assert_eq!(e.to_string(), "x.jsonl: invalid UTF-8 at byte 11");
        let e = JsonlLoader {
            template: RowTemplate::default(),
        }
        .load(Path::new("y.jsonl"), "y", b"  \n")
        .unwrap_err();
        assert_eq!(e.to_string(), "y.jsonl: empty file");
    }
}
