use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Ingest errors always name the file (and line, for record formats) they came from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: invalid UTF-8 at byte {offset}", path.display())]
    InvalidUtf8 { path: PathBuf, offset: usize },
    #[error("{}: empty file", path.display())]
    Empty { path: PathBuf },
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The file is of a known format but cannot be used: corrupt, encrypted, truncated, too large.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: unsupported file type", path.display())]
    Unsupported { path: PathBuf },
    #[error("{}: document id `{id}` is already used by {other}", path.display())]
    DuplicateId { path: PathBuf, id: String, other: String },
    #[error("a lock was poisoned by a panic in another thread")]
    Poisoned,
    #[error("{}: {source}", path.display())]
    Index { path: PathBuf, source: quarry_core::Error },
}

impl From<Error> for quarry_core::Error {
    fn from(e: Error) -> Self {
        quarry_core::Error::backend(e)
    }
}
