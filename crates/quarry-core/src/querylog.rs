//! The query log's records: one JSON line per question answered (question, retrieved and cited chunks,
//! answer, latency) and one per piece of feedback on it. The server appends them to `DATA_DIR/query-log.jsonl`;
//! evaluation and fine-tuning read them back with [`parse`] (the training-data flywheel).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Timings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    pub doc_id: String,
    pub chunk_id: u64,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// `search`, `ask` or `chat`.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub question: String,
    pub retrieved: Vec<Retrieved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default)]
    pub abstained: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    pub latency_ms: f64,
    #[serde(default)]
    pub timings: Timings,
    /// The passages the answer cited (a subset of `retrieved`), for the training-data flywheel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cited: Vec<Retrieved>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub query_id: String,
    pub time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub rating: Rating,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogLine {
    Query(Box<QueryRecord>),
    Feedback(FeedbackRecord),
}

/// A logged query with the feedback given on it, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedQuery {
    #[serde(flatten)]
    pub query: QueryRecord,
    pub feedback: Vec<FeedbackRecord>,
}

impl LoggedQuery {
    /// The latest rating given on this answer, if any (a later thumbs-down overrides an earlier thumbs-up).
    pub fn verdict(&self) -> Option<Rating> {
        self.feedback.iter().max_by_key(|f| f.time).map(|f| f.rating)
    }
}

/// The lines of a log's text; a torn last line (a crash mid-write) is skipped rather than making the whole log
/// unreadable.
pub fn parse_lines(text: &str) -> Vec<LogLine> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Every logged query of a log's text with its feedback attached, in the order asked.
pub fn parse(text: &str) -> Vec<LoggedQuery> {
    let mut out: Vec<LoggedQuery> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for line in parse_lines(text) {
        match line {
            LogLine::Query(q) => {
                at.insert(q.id.clone(), out.len());
                out.push(LoggedQuery {
                    query: *q,
                    feedback: Vec::new(),
                });
            }
            LogLine::Feedback(f) => {
                if let Some(&i) = at.get(&f.query_id) {
                    out[i].feedback.push(f);
                }
            }
        }
    }
    out
}
