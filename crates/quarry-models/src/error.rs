use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model `{name}` not found; looked in: {}. run scripts/setup.sh to fetch it, or point the configuration at the model's files", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { name: String, searched: Vec<PathBuf> },
    #[error("{}: missing {file} (a model directory needs config.json, model.safetensors and tokenizer.json)", dir.display())]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("tokenizer {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    /// A generation request that cannot run (a prompt larger than the window, a template error).
    #[error("{0}")]
    Generation(String),
}

impl From<Error> for quarry_core::Error {
    fn from(e: Error) -> Self {
        quarry_core::Error::backend(e)
    }
}
