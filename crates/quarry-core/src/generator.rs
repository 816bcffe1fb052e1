//! Question + evidence → an answer whose claims cite their sources.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::index::StoredChunk;

/// A retrieved chunk offered to a generator as evidence, numbered as it will be cited.
#[derive(Debug, Clone)]
pub struct Passage {
    pub n: usize,
    pub chunk: StoredChunk,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub n: usize,
    pub doc_id: String,
    pub source: String,
    pub chunk_id: u64,
    /// Character offsets into the source document's text.
    pub start: usize,
    pub end: usize,
    /// Page (paged sources) the cited span starts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The answer text, each claim followed by `[n]` markers that index `citations`.
    pub answer: String,
    pub citations: Vec<Citation>,
}

/// Writes an answer from passages. Implementations: extractive (no model), local and remote LLMs.
pub trait Generator: Send + Sync {
    fn name(&self) -> &str;
    fn answer(&self, question: &str, passages: &[Passage]) -> Result<Answer>;
}
