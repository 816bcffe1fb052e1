//! Loaders turn a file's bytes into documents. One file per format; `detect` chooses by content and
//! extension.

use std::path::Path;

use quarry_core::Document;

use crate::chunker::TextFormat;
use crate::error::Error;

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

/// Chooses a loader for a file, or `None` for a format Quarry does not read.
pub fn detect(path: &Path, bytes: &[u8]) -> Option<&'static dyn Loader> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl" | "ndjson") => Some(&crate::jsonl::JsonlLoader),
        Some("md" | "markdown" | "mdown") => Some(&crate::text::TextLoader::MARKDOWN),
        Some("txt" | "text" | "rst") => Some(&crate::text::TextLoader::PLAIN),
        // No or unknown extension: accept text that sniffs as text (no NUL in the first 8 KiB).
        None => {
            (!bytes[..bytes.len().min(8192)].contains(&0)).then_some(&crate::text::TextLoader::PLAIN as &dyn Loader)
        }
        _ => None,
    }
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
