//! Question + evidence → an answer whose claims cite their sources.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::index::StoredChunk;
use crate::llm::Usage;

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
    /// Headings enclosing the cited span, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub section: Vec<String>,
    pub text: String,
}

/// What the verifier found for one sentence of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceCheck {
    pub text: String,
    /// Source numbers the sentence cites.
    pub cites: Vec<usize>,
    /// Support of the sentence by its best cited source, 0–1.
    pub support: f32,
    pub supported: bool,
    /// The source that supports the sentence best (cited or not), with its score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_source: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<CitationIssue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CitationIssue {
    /// A claim without any citation.
    Uncited,
    /// No cited source supports the sentence.
    Unsupported,
    /// The cited source does not support the sentence but another source does.
    WrongSource { cited: Vec<usize>, supported_by: usize },
    /// A citation number that matches no source.
    UnknownSource { n: usize },
}

/// Milliseconds spent in each stage of answering (stages that did not run are absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieve_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assemble_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The answer text, each claim followed by `[n]` markers that index `citations`.
    pub answer: String,
    pub citations: Vec<Citation>,
    /// The evidence was too weak, or the draft answer unsupported: `answer` says the documents do
    /// not hold the answer and `citations` lists the closest sources.
    #[serde(default)]
    pub abstained: bool,
    /// Per-sentence verification (generators that verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceCheck>,
    /// The model's answer before abstention replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub timings: Timings,
}

impl Answer {
    pub fn new(answer: String, citations: Vec<Citation>) -> Answer {
        Answer {
            answer,
            citations,
            abstained: false,
            sentences: Vec::new(),
            draft: None,
            usage: None,
            timings: Timings::default(),
        }
    }

    /// Share of the answer's sentences the verifier marked as supported (None: not verified).
    pub fn supported_share(&self) -> Option<f32> {
        if self.sentences.is_empty() {
            return None;
        }
        Some(self.sentences.iter().filter(|s| s.supported).count() as f32 / self.sentences.len() as f32)
    }
}

/// Writes an answer from passages. Implementations: extractive (no model), local and remote LLMs.
pub trait Generator: Send + Sync {
    fn name(&self) -> &str;
    fn answer(&self, question: &str, passages: &[Passage]) -> Result<Answer>;
    /// Like `answer`, passing the answer text to `on_text` as it is produced (return `false` to
    /// stop). Generators that cannot stream hand over the whole answer at once.
    fn answer_streaming(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Answer> {
        let a = self.answer(question, passages)?;
        on_text(&a.answer);
        Ok(a)
    }
}
