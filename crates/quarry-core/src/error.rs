//! The error type shared by Quarry's traits. Implementation crates keep their own richer error enums
//! and convert into this one at the trait boundary.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// Input that was read but cannot be used; `location` names the file (and line) it came from.
    #[error("{location}: {message}")]
    InvalidInput { location: String, message: String },

    /// A vector whose length differs from what the index or model expects.
    #[error("embedding dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },

    /// A model could not be found, loaded or run.
    #[error("model {model}: {message}")]
    Model { model: String, message: String },

    /// A filter expression that does not parse.
    #[error("invalid filter `{expr}`: {message}")]
    Filter { expr: String, message: String },

    /// Configuration that is missing or inconsistent.
    #[error("configuration: {0}")]
    Config(String),

    /// A remote service (an HTTP model API) refused or failed a request. `transient` marks failures
    /// worth retrying (timeouts, 429, 5xx).
    #[error("{endpoint}: {message}")]
    Service {
        endpoint: String,
        message: String,
        transient: bool,
    },

    /// An error from a backend crate, kept whole so its message and source chain survive.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            location: location.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Backend(Box::new(e))
    }

    /// Whether retrying the same call may succeed (a busy resource), as opposed to a permanent fault.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Error::Service { transient, .. } => *transient,
            _ => false,
        }
    }
}
