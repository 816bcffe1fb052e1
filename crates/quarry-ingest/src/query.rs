//! A live PostgreSQL query as a source: `quarry ingest --sql "SELECT ..." --from postgres://...`.
//! Each result row becomes a document (text from the row template, columns as metadata). The query is
//! one source: re-running it re-indexes only rows whose content changed and removes rows that are gone,
//! so a `--key` column (the primary key) keeps row ids stable when rows move.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::chunker::TextFormat;
use crate::error::Error;
use crate::loader::Loaded;
use crate::pipeline::{Ingestor, Observer, Summary};
use crate::record::{Field, Row};

/// A query to ingest.
#[derive(Debug, Clone)]
pub struct QuerySource {
    /// `postgres://user[:password]@host:port/db` (the password never appears in document ids).
    pub url: String,
    pub sql: String,
    /// Column whose value names each row (`TABLE/KEY=value`); default: the row number.
    pub key: Option<String>,
    /// Table name for metadata and ids; default: the first table after FROM in the query.
    pub table: Option<String>,
}

impl QuerySource {
    /// The source name stored in the index: the URL without its password, and a hash of the SQL.
    pub fn source_name(&self) -> String {
        let mut u = ::url::Url::parse(&self.url).map_or_else(
            |_| self.url.clone(),
            |mut u| {
                let _ = u.set_password(None);
                u.set_query(None);
                u.to_string()
            },
        );
        let digest = Sha256::digest(self.sql.trim().as_bytes());
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        u.push_str(&format!("?query={hash}"));
        u
    }

    fn table_name(&self) -> String {
        if let Some(t) = &self.table {
            return t.clone();
        }
        let words: Vec<&str> = self.sql.split_whitespace().collect();
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("from"))
            .and_then(|i| words.get(i + 1))
            .map(|t| {
                t.trim_matches(|c: char| c == '"' || c == ';' || c == '(' || c == ')')
                    .to_string()
            })
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "query".into())
    }
}

/// Runs the query and returns its rows, every value as PostgreSQL writes it as text (numbers stay
/// filterable: metadata compares numeric strings as numbers).
pub fn query_rows(url: &str, sql: &str) -> Result<Vec<Row>, String> {
    let mut client =
        ::postgres::Client::connect(url, ::postgres::NoTls).map_err(|e| format!("connecting: {}", db_message(&e)))?;
    let messages = client
        .simple_query(sql)
        .map_err(|e| format!("query failed: {}", db_message(&e)))?;
    let mut rows = Vec::new();
    for m in messages {
        if let ::postgres::SimpleQueryMessage::Row(r) = m {
            let fields = r
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let v = match r.get(i) {
                        None => Field::Null,
                        Some(s) => Field::Text(s.to_string()),
                    };
                    (c.name().to_string(), v)
                })
                .collect();
            rows.push(Row { fields });
        }
    }
    Ok(rows)
}

/// The server's own message ("relation \"x\" does not exist") rather than the driver's "db error".
fn db_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

impl Ingestor<'_> {
    /// Ingests the rows of a live query as one source (see the module documentation).
    pub fn ingest_query(&self, q: &QuerySource, observer: &dyn Observer) -> Summary {
        let mut summary = Summary::default();
        let source = q.source_name();
        let path = PathBuf::from(&source);
        let invalid = |reason: String| Error::Invalid {
            path: path.clone(),
            reason,
        };
        summary.files += 1;
        let rows = match query_rows(&q.url, &q.sql) {
            Ok(r) => r,
            Err(e) => {
                summary.errors.push(invalid(e).to_string());
                return summary;
            }
        };
        let table = q.table_name();
        let mut documents = Vec::with_capacity(rows.len());
        let mut errors = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let mut doc = self
                .row_template()
                .document(&source, Some(&table), i + 1, row, "postgres");
            if let Some(key) = &q.key {
                match row.fields.iter().find(|(k, _)| k == key) {
                    Some((_, v)) if !matches!(v, Field::Null) => {
                        doc.id = format!("{source}#{table}/{key}={}", v.render())
                    }
                    _ => errors.push(invalid(format!("row {}: key column `{key}` is missing or NULL", i + 1))),
                }
            }
            documents.push(doc);
        }
        // The file hash of a query is the hash of its result, so an unchanged result is skipped whole.
        let bytes = serde_json::to_vec(
            &documents
                .iter()
                .map(|d| (&d.id, &d.text, &d.metadata))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        let loaded = Loaded {
            documents,
            format: Some(TextFormat::Plain),
            errors,
        };
        self.ingest_bytes(&path, &source, &bytes, |_| Ok(Some(loaded)), &mut summary, observer);
        if let Err(e) = self.index().flush() {
            summary.errors.push(format!("flushing indexes: {e}"));
        }
        summary
    }
}
