//! Shared by the integration tests: where shared/documents is, and loading a file the way the pipeline does.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use quarry_core::TokenCounter;
use quarry_ingest::{Loaded, Loaders};

pub fn shared() -> PathBuf {
    std::env::var_os("QUARRY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("documents")
}

/// Loads `rel` (relative to shared/documents) with the loader that content sniffing picks.
pub fn load(rel: &str) -> Loaded {
    let path = shared().join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (set QUARRY_SHARED)", path.display()));
    let loaders = Loaders::default();
    let loader = loaders.detect(&path, &bytes).unwrap();
    loader.load(&path, rel, &bytes).unwrap()
}

/// Whitespace-separated words as tokens: chunk budgets in tests without a model.
pub struct Words;
impl TokenCounter for Words {
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}
