//! The query log: one JSON line per question answered (question, retrieved and cited chunk ids, answer,
//! latency) and one per piece of feedback on it, appended to `DATA_DIR/query-log.jsonl` (the record types are
//! `quarry_core::querylog`'s).
//!
//! Append-only, so a crash loses at most the line being written; [`read`] joins feedback onto its
//! query for evaluation and fine-tuning (the training-data flywheel).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

pub use quarry_core::querylog::{FeedbackRecord, LogLine, LoggedQuery, QueryRecord, Rating, Retrieved};

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

fn read_text(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::Internal(format!("{}: {e}", path.display()))),
    }
}

fn read_lines(path: &Path) -> Result<Vec<LogLine>> {
    Ok(quarry_core::querylog::parse_lines(&read_text(path)?))
}

/// Every logged query with its feedback attached, in the order asked (a missing log is an empty one).
pub fn read(path: &Path) -> Result<Vec<LoggedQuery>> {
    Ok(quarry_core::querylog::parse(&read_text(path)?))
}
