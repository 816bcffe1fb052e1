//! Loaders turn a file's bytes into documents. One file per format; `Loaders::detect` chooses by
//! content and extension.

use std::path::Path;

use quarry_core::Document;

use crate::chunker::TextFormat;
use crate::csv::CsvLoader;
use crate::docx::DocxLoader;
use crate::error::Error;
use crate::html::HtmlLoader;
use crate::json::JsonLoader;
use crate::jsonl::JsonlLoader;
use crate::pdf::PdfLoader;
use crate::record::RowTemplate;
use crate::sql::SqlDumpLoader;
use crate::sqlite::SqliteLoader;
use crate::text::TextLoader;

/// What one file yielded: documents, plus per-record errors that did not stop the rest.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub format: Option<TextFormat>,
    pub errors: Vec<Error>,
}

pub trait Loader: Send + Sync {
    fn name(&self) -> &'static str;
    /// `source` is the identifier stored with each document (usually the path as given).
    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error>;
}

/// Settings that shape how loaders turn files into documents.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// How rows of CSV/TSV/JSON/SQL/SQLite sources are written as documents.
    pub rows: RowTemplate,
}

/// Every loader, and the choice between them.
pub struct Loaders {
    text: TextLoader,
    markdown: TextLoader,
    jsonl: JsonlLoader,
    json: JsonLoader,
    csv: CsvLoader,
    tsv: CsvLoader,
    sql: SqlDumpLoader,
    sqlite: SqliteLoader,
    docx: DocxLoader,
    pdf: PdfLoader,
    html: HtmlLoader,
}

impl Default for Loaders {
    fn default() -> Self {
        Loaders::new(&LoadOptions::default())
    }
}

impl Loaders {
    pub fn new(opts: &LoadOptions) -> Self {
        Loaders {
            text: TextLoader::PLAIN,
            markdown: TextLoader::MARKDOWN,
            jsonl: JsonlLoader {
                template: opts.rows.clone(),
            },
            json: JsonLoader {
                template: opts.rows.clone(),
            },
            csv: CsvLoader::csv(opts.rows.clone()),
            tsv: CsvLoader::tsv(opts.rows.clone()),
            sql: SqlDumpLoader {
                template: opts.rows.clone(),
            },
            sqlite: SqliteLoader {
                template: opts.rows.clone(),
            },
            docx: DocxLoader,
            pdf: PdfLoader,
            html: HtmlLoader,
        }
    }

    /// Chooses a loader for a file by its content first (the magic bytes of PDF, zip/DOCX and SQLite
    /// files; HTML, JSON and SQL text), then by its extension; `None` for a format Quarry does not read.
    pub fn detect(&self, path: &Path, bytes: &[u8]) -> Option<&dyn Loader> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let ext = ext.as_deref();
        // A PDF may have junk before its header; readers accept it within the first KiB.
        if bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") || ext == Some("pdf") {
            return Some(&self.pdf);
        }
        if bytes.starts_with(crate::sqlite::MAGIC) {
            return Some(&self.sqlite);
        }
        if bytes.starts_with(b"PK\x03\x04") {
            return (ext == Some("docx") || zip_has(bytes, "word/document.xml")).then_some(&self.docx as &dyn Loader);
        }
        match ext {
            Some("docx") => return Some(&self.docx),
            Some("db" | "sqlite" | "sqlite3") => return Some(&self.sqlite),
            _ => {}
        }
        let head = &bytes[..bytes.len().min(8192)];
        // UTF-16 text (with its byte-order mark) is text even though it holds NUL bytes.
        if head.contains(&0) && !(head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF")) {
            return None;
        }
        match ext {
            Some("jsonl" | "ndjson") => return Some(&self.jsonl),
            Some("json") => return Some(&self.json),
            Some("csv") => return Some(&self.csv),
            Some("tsv" | "tab") => return Some(&self.tsv),
            Some("sql") => return Some(&self.sql),
            Some("md" | "markdown" | "mdown") => return Some(&self.markdown),
            Some("html" | "htm" | "xhtml") => return Some(&self.html),
            Some("txt" | "text" | "rst") => return Some(&self.text),
            Some(_) | None => {}
        }
        // An unknown or missing extension: sniff the text.
        let text = String::from_utf8_lossy(head);
        let t = text.trim_start_matches('\u{feff}').trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            let first = t.lines().next().unwrap_or_default();
            let one_per_line = serde_json::from_str::<serde_json::Value>(first).is_ok_and(|v| v.is_object());
            return Some(if one_per_line && t.lines().nth(1).is_some() {
                &self.jsonl
            } else {
                &self.json
            });
        }
        let lower = t.chars().take(512).collect::<String>().to_ascii_lowercase();
        if lower.starts_with("<!doctype html")
            || lower.starts_with("<html")
            || lower.contains("<head")
            || lower.contains("<body")
        {
            return Some(&self.html);
        }
        let upper = t.chars().take(4096).collect::<String>().to_ascii_uppercase();
        if upper.contains("INSERT INTO") || upper.contains("CREATE TABLE") {
            return Some(&self.sql);
        }
        if t.starts_with('#') {
            return Some(&self.markdown);
        }
        ext.is_none().then_some(&self.text as &dyn Loader)
    }
}

fn zip_has(bytes: &[u8], name: &str) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).is_ok_and(|mut z| z.by_name(name).is_ok())
}

/// UTF-8 text of a file, with a clear error on invalid bytes and on files with no text.
pub fn utf8<'b>(path: &Path, bytes: &'b [u8]) -> Result<&'b str, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}
