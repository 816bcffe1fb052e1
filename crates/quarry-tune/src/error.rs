use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Unwritable { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Training data that cannot be used as given: too few examples, unknown documents, empty texts.
    #[error("{source_name}: {message}")]
    Data { source_name: String, message: String },
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Models(#[from] quarry_models::Error),
    #[error("training interrupted at step {step}; resume with --resume")]
    Interrupted { step: usize },
}
