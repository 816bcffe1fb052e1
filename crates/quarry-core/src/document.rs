//! Documents as loaded from a source, and the chunks they are split into.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A metadata value: what a filter can compare against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetaValue {
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetaValue::Number(n) => Some(*n),
            MetaValue::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl From<&str> for MetaValue {
    fn from(s: &str) -> Self {
        MetaValue::String(s.to_string())
    }
}

impl From<f64> for MetaValue {
    fn from(n: f64) -> Self {
        MetaValue::Number(n)
    }
}

/// Ordered so that serialisation (and hence content hashes) is deterministic.
pub type Metadata = BTreeMap<String, MetaValue>;

/// One logical document: a file, a JSONL record, a web page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable identifier, unique within an index (a BEIR `_id`, or derived from the source path).
    pub id: String,
    /// Where it came from: a path or URI, with `#line` for records inside a file.
    pub source: String,
    pub title: Option<String>,
    pub text: String,
    #[serde(default)]
    pub metadata: Metadata,
}

/// A span of a document's text, the unit that is embedded, indexed and cited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub doc_id: String,
    /// Position of the chunk within its document (0-based).
    pub ord: u32,
    pub text: String,
    /// Character offsets (Unicode scalar values, end exclusive) into the document's text.
    pub start: usize,
    pub end: usize,
    /// Headings enclosing the chunk, outermost first.
    pub section: Vec<String>,
    /// Tokens in `text` as counted by the embedding model's tokenizer.
    pub tokens: usize,
    /// 1-based page the chunk starts on, for paged sources (PDF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Text outside the span that the span needs to be understood: a table's header row for a chunk
    /// of table rows. Embedded and indexed with the chunk, never cited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Character range of the enclosing section when the section was split into several chunks: the
    /// "big" text a generator can be given for a "small" retrieved chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(usize, usize)>,
}

impl Chunk {
    /// The text that is embedded and BM25-indexed: the document title and the section path give a
    /// chunk the context its own words may lack.
    pub fn contextual_text(&self, title: Option<&str>) -> String {
        let mut out = String::with_capacity(self.text.len() + 64);
        if let Some(t) = title.map(str::trim).filter(|t| !t.is_empty()) {
            out.push_str(t);
            out.push('\n');
        }
        let path = self.section.join(" > ");
        if !path.is_empty() && Some(path.as_str()) != title.map(str::trim) {
            out.push_str(&path);
            out.push('\n');
        }
        if let Some(c) = self.context.as_deref().filter(|c| !c.is_empty()) {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str(&self.text);
        out
    }

    /// Where the chunk is in its source, for a citation: "p. 3", a section path, or nothing.
    pub fn locator(&self) -> Option<String> {
        match (self.page, self.section.is_empty()) {
            (Some(p), true) => Some(format!("p. {p}")),
            (Some(p), false) => Some(format!("p. {p}, {}", self.section.join(" > "))),
            (None, false) => Some(self.section.join(" > ")),
            (None, true) => None,
        }
    }
}
