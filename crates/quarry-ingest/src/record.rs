//! Rows and records (CSV, JSON, database tables) rendered as documents: one document per row, the
//! text written by a template, every column kept as metadata so it can be filtered on.

use quarry_core::{Document, MetaValue, Metadata};

/// A cell value as read from the source, typed where the source says so.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
}

impl Field {
    /// The value as it is written into a document's text.
    pub fn render(&self) -> String {
        match self {
            Field::Null => String::new(),
            Field::Bool(b) => b.to_string(),
            Field::Number(n) => format_number(*n),
            Field::Text(s) => s.clone(),
        }
    }

    fn meta(&self) -> Option<MetaValue> {
        match self {
            Field::Null => None,
            Field::Bool(b) => Some(MetaValue::Bool(*b)),
            Field::Number(n) => Some(MetaValue::Number(*n)),
            Field::Text(s) => Some(MetaValue::String(s.clone())),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// One row: column names with their values, in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub fields: Vec<(String, Field)>,
}

impl Row {
    pub fn get(&self, column: &str) -> Option<&Field> {
        self.fields.iter().find(|(k, _)| k == column).map(|(_, v)| v)
    }
}

/// How rows become documents.
#[derive(Debug, Clone, Default)]
pub struct RowTemplate {
    /// Text with `{column}` placeholders; default: one `column: value` line per non-empty column.
    pub text: Option<String>,
    /// Title with `{column}` placeholders; default: `TABLE ROW` (or `ROW` for a file of records).
    pub title: Option<String>,
}

impl RowTemplate {
    /// Every row of every table as a document (`format` names the loader in metadata).
    pub fn tables(&self, source: &str, tables: &[crate::sql::Table], format: &str) -> crate::loader::Loaded {
        let documents = tables
            .iter()
            .flat_map(|t| t.rows.iter().enumerate().map(move |(i, row)| (t, i, row)))
            .map(|(t, i, row)| self.document(source, Some(&t.name), i + 1, row, format))
            .collect();
        crate::loader::Loaded {
            documents,
            format: Some(crate::chunker::TextFormat::Plain),
            errors: vec![],
        }
    }

    /// A document for row `n` (1-based) of `table` in `source`. Its id (`SOURCE#TABLE/row=N`) names the
    /// row, so a citation does.
    pub fn document(&self, source: &str, table: Option<&str>, n: usize, row: &Row, format: &str) -> Document {
        let text = match &self.text {
            Some(t) => fill(t, row),
            None => row
                .fields
                .iter()
                .filter(|(_, v)| !matches!(v, Field::Null) && !v.render().trim().is_empty())
                .map(|(k, v)| format!("{k}: {}", v.render()))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let locator = match table {
            Some(t) => format!("{t}/row={n}"),
            None => format!("row={n}"),
        };
        let title = match &self.title {
            Some(t) => fill(t, row),
            None => match table {
                Some(t) => format!("{t} row {n}"),
                None => format!("row {n}"),
            },
        };
        let mut metadata = Metadata::new();
        for (k, v) in &row.fields {
            if let Some(m) = v.meta() {
                metadata.insert(k.clone(), m);
            }
        }
        metadata.insert("format".into(), MetaValue::String(format.into()));
        metadata.insert("row".into(), MetaValue::Number(n as f64));
        if let Some(t) = table {
            metadata.insert("table".into(), MetaValue::String(t.into()));
        }
        Document {
            id: format!("{source}#{locator}"),
            source: source.to_string(),
            title: Some(title),
            text,
            metadata,
        }
    }
}

/// Replaces `{column}` with the row's value; `{{` and `}}` are literal braces; unknown columns stay as written.
pub fn fill(template: &str, row: &Row) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let (true, Some(close)) = (tail.starts_with('{'), tail.find('}')) {
            let name = &tail[1..close];
            match row.get(name.trim()) {
                Some(v) => out.push_str(&v.render()),
                None => out.push_str(&tail[..=close]),
            }
            rest = &tail[close + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            fields: vec![
                ("Name".into(), Field::Text("Balls to the Wall".into())),
                ("Artist".into(), Field::Text("Accept".into())),
                ("Price".into(), Field::Number(0.99)),
                ("Composer".into(), Field::Null),
            ],
        }
    }

    #[test]
    fn default_rendering_lists_columns_and_keeps_metadata() {
        let d = RowTemplate::default().document("t.csv", None, 2, &row(), "csv");
        assert_eq!(d.id, "t.csv#row=2");
        assert_eq!(d.text, "Name: Balls to the Wall\nArtist: Accept\nPrice: 0.99");
        assert_eq!(d.metadata["Price"], MetaValue::Number(0.99));
        assert_eq!(d.metadata["row"], MetaValue::Number(2.0));
        assert!(!d.metadata.contains_key("Composer"));
    }

    #[test]
    fn templates_fill_columns_and_escape_braces() {
        let t = RowTemplate {
            text: Some("{Name} by {Artist} costs {Price} {{USD}} {Missing}".into()),
            title: Some("{Name}".into()),
        };
        let d = t.document("db.sql", Some("Track"), 7, &row(), "sql");
        assert_eq!(d.text, "Balls to the Wall by Accept costs 0.99 {USD} {Missing}");
        assert_eq!(d.title.as_deref(), Some("Balls to the Wall"));
        assert_eq!(d.id, "db.sql#Track/row=7");
        assert_eq!(d.metadata["table"], MetaValue::String("Track".into()));
    }
}
