//! The query log: one JSON line per question answered (question, retrieved chunk ids, answer,
//! latency) and one per piece of feedback on it, appended to `DATA_DIR/query-log.jsonl`.
//!
//! Append-only, so a crash loses at most the line being written; [`read`] joins feedback onto its
//! query for evaluation and fine-tuning (the training-data flywheel).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quarry_core::Timings;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

pub struct QueryLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    /// Tenant of every logged query, so feedback is accepted only from the tenant that asked.
    owners: Mutex<HashMap<String, Option<String>>>,
}

impl QueryLog {
    pub fn open(path: &Path) -> Result<QueryLog> {
        let owners = read_lines(path)?
            .into_iter()
            .filter_map(|l| match l {
                LogLine::Query(q) => Some((q.id, q.tenant)),
                LogLine::Feedback(_) => None,
            })
            .collect();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
        Ok(QueryLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            owners: Mutex::new(owners),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record_query(&self, q: QueryRecord) -> Result<()> {
        self.owners
            .lock()
            .map_err(|_| Error::Poisoned)?
            .insert(q.id.clone(), q.tenant.clone());
        self.append(&LogLine::Query(Box::new(q)))
    }

    /// Records feedback on a query the caller's tenant asked; 404 for any other id.
    pub fn record_feedback(&self, tenant: Option<&str>, f: FeedbackRecord) -> Result<()> {
        let owner = self
            .owners
            .lock()
            .map_err(|_| Error::Poisoned)?
            .get(&f.query_id)
            .cloned();
        match owner {
            Some(owner) if tenant.is_none() || owner.as_deref() == tenant => self.append(&LogLine::Feedback(f)),
            _ => Err(Error::NotFound(format!("query `{}`", f.query_id))),
        }
    }

    fn append(&self, line: &LogLine) -> Result<()> {
        let mut text = serde_json::to_string(line).map_err(|e| Error::Internal(e.to_string()))?;
        text.push('\n');
        let mut f = self.file.lock().map_err(|_| Error::Poisoned)?;
        // One write per line: concurrent appends never interleave inside a line.
        f.write_all(text.as_bytes())
            .map_err(|e| Error::Internal(format!("{}: {e}", self.path.display())))
    }
}

fn read_lines(path: &Path) -> Result<Vec<LogLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Internal(format!("{}: {e}", path.display()))),
    };
    // A torn last line (a crash mid-write) is skipped rather than making the whole log unreadable.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Every logged query with its feedback attached, in the order asked.
pub fn read(path: &Path) -> Result<Vec<LoggedQuery>> {
    let mut out: Vec<LoggedQuery> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for line in read_lines(path)? {
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
    Ok(out)
}
