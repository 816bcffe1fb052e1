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
    /// With small-to-big retrieval: the larger span (the chunk's section, or its neighbours) that is
    /// given to the generator in place of the chunk that matched.
    pub expanded: Option<Expanded>,
}

/// A span of a document's text, by character offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

impl Passage {
    /// The evidence text and its starting character offset in the document: the expanded span when
    /// there is one, else the chunk.
    pub fn evidence(&self) -> (&str, usize) {
        match &self.expanded {
            Some(e) => (&e.text, e.start),
            None => (&self.chunk.chunk.text, self.chunk.chunk.start),
        }
    }
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
