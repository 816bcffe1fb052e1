use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store {}: {message}", path.display())]
    Store { path: PathBuf, message: String },
    #[error("lexical index {}: {message}", path.display())]
    Lexical { path: PathBuf, message: String },
    #[error("store {}: record {key} is corrupt: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("embedding dimension mismatch: the index holds {expected}-dimensional vectors, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("the index was built with model {stored}; this run uses {current}. Rebuild it with that model, or use another data directory")]
    ModelMismatch { stored: String, current: String },
    #[error("document {doc_id}: {chunks} chunks but {embeddings} embeddings")]
    EmbeddingCount {
        doc_id: String,
        chunks: usize,
        embeddings: usize,
    },
    #[error("{}: the data directory is in use by another process", path.display())]
    Locked { path: PathBuf },
    /// The PostgreSQL server could not be reached (down, wrong port, refused login).
    #[error("cannot connect to PostgreSQL at {target}: {message} (is the server running?)")]
    Unreachable { target: String, message: String },
    /// A statement failed on the server; `what` names the operation.
    #[error("PostgreSQL {what}: {message}")]
    Database {
        what: String,
        message: String,
        transient: bool,
    },
    #[error("PostgreSQL database {database}: the pgvector extension is not installed and could not be created ({message}); run `CREATE EXTENSION vector` as a superuser")]
    ExtensionMissing { database: String, message: String },
    #[error("invalid PostgreSQL store `{url}`: {message}")]
    InvalidStore { url: String, message: String },
    #[error("PostgreSQL schema {schema} is at version {found}, newer than this build knows ({known})")]
    SchemaTooNew { schema: String, found: i32, known: i32 },
}

impl Error {
    /// Whether retrying may succeed: a server that is (re)starting, a serialization failure or a deadlock.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Database { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl From<Error> for quarry_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::DimensionMismatch { expected, got } => quarry_core::Error::DimensionMismatch { expected, got },
            other => quarry_core::Error::backend(other),
        }
    }
}
