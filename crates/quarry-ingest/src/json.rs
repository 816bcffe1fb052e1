//! JSON files of records: a top-level array of objects gives one document per object, a single object
//! one document. Nested objects are flattened to dotted column names (`address.city`).

use std::path::Path;

use serde_json::Value;

use crate::chunker::TextFormat;
use crate::error::Error;
use crate::loader::{utf8, Loaded, Loader};
use crate::record::{Field, Row, RowTemplate};

pub struct JsonLoader {
    pub template: RowTemplate,
}

/// A JSON object as a row; arrays of scalars are joined with ", ".
pub fn object_row(obj: &serde_json::Map<String, Value>) -> Row {
    let mut row = Row::default();
    flatten("", obj, &mut row);
    row
}

fn flatten(prefix: &str, obj: &serde_json::Map<String, Value>, row: &mut Row) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten(&key, inner, row),
            other => row.fields.push((key, field(other))),
        }
    }
}

fn field(v: &Value) -> Field {
    match v {
        Value::Null => Field::Null,
        Value::Bool(b) => Field::Bool(*b),
        Value::Number(n) => n.as_f64().map_or_else(|| Field::Text(n.to_string()), Field::Number),
        Value::String(s) => Field::Text(s.clone()),
        Value::Array(items) => Field::Text(
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Value::Object(_) => Field::Text(v.to_string()),
    }
}

impl Loader for JsonLoader {
    fn name(&self) -> &'static str {
        "json"
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        let text = utf8(path, bytes)?;
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            line: e.line(),
            message: format!("invalid JSON: {e}"),
        })?;
        let objects: Vec<&serde_json::Map<String, Value>> = match &value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_object().ok_or_else(|| Error::Invalid {
                        path: path.to_path_buf(),
                        reason: format!("element {i} of the top-level array is not an object"),
                    })
                })
                .collect::<Result<_, _>>()?,
            Value::Object(o) => vec![o],
            _ => {
                return Err(Error::Invalid {
                    path: path.to_path_buf(),
                    reason: "expected an object or an array of objects".into(),
                })
            }
        };
        let documents = objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| self.template.document(source, None, i + 1, &object_row(o), "json"))
            .filter(|d| !d.text.trim().is_empty())
            .collect();
        Ok(Loaded {
            documents,
            format: Some(TextFormat::Plain),
            errors: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_of_objects_flatten_nested_fields() {
        let data = r#"[{"name": "Ada", "address": {"city": "London"}, "tags": ["math", 1]}, {"name": "Bob"}]"#;
        let l = JsonLoader {
            template: RowTemplate::default(),
        }
        .load(Path::new("p.json"), "p.json", data.as_bytes())
        .unwrap();
        assert_eq!(l.documents.len(), 2);
        assert_eq!(l.documents[0].text, "name: Ada\naddress.city: London\ntags: math, 1");
        assert_eq!(
            l.documents[0].metadata["address.city"],
            quarry_core::MetaValue::String("London".into())
        );
    }

    #[test]
    fn scalars_and_mixed_arrays_are_errors() {
        let loader = JsonLoader {
            template: RowTemplate::default(),
        };
        let e = loader.load(Path::new("s.json"), "s", b"42").unwrap_err();
        assert_eq!(e.to_string(), "s.json: expected an object or an array of objects");
        let e = loader.load(Path::new("m.json"), "m", b"[{}, 3]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.json: element 1 of the top-level array is not an object"
        );
        let e = loader.load(Path::new("b.json"), "b", b"{\"a\": ").unwrap_err();
        assert!(e.to_string().starts_with("b.json:1: invalid JSON"), "{e}");
    }
}
