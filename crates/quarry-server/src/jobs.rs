//! Ingest as background jobs: uploads and URLs are queued (a bounded queue: full means 503) and
//! applied one at a time by a dedicated worker thread, so writes never race and requests never wait
//! on embedding.
//!
//! Shutdown lets the running job finish — the pipeline writes each batch atomically and a source's
//! record last, so even an abandoned job leaves nothing half-written — and marks queued jobs
//! `cancelled`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quarry_core::Metadata;
use quarry_ingest::crawl::CrawlOptions;
use quarry_ingest::{Ingestor, Silent, Summary};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::keys::{hex, now_secs};
use crate::worker::Worker;

#[derive(Debug, Clone)]
pub enum Work {
    /// An uploaded file saved at `path`, ingested as `source`; the file is removed afterwards.
    File {
        path: PathBuf,
        source: String,
    },
    Url {
        url: String,
        crawl: CrawlOptions,
    },
    /// A stored document's source read again: a file on the server's disk (where the CLI ingested it
    /// from) or a web page; unchanged content costs nothing, changed content replaces the old version.
    Resync {
        source: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    /// `file`, `url` or `resync`.
    pub kind: &'static str,
    /// The file name or URL.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub state: State,
    pub created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Submission order (seconds are too coarse to order jobs by).
    #[serde(skip)]
    seq: u64,
}

struct Queued {
    id: String,
    work: Work,
    labels: Metadata,
}

pub struct Jobs {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    submitted: AtomicU64,
    worker: Worker<Queued>,
}

impl Jobs {
    /// Starts the worker; at most `queue` jobs wait behind the running one.
    pub fn start(engine: Arc<Engine>, queue: usize) -> Result<Jobs> {
        let jobs: Arc<Mutex<HashMap<String, Job>>> = Arc::default();
        let table = jobs.clone();
        let worker = Worker::start("quarry-ingest", queue, move |q: Queued, stop| {
            if stop.load(Ordering::SeqCst) {
                set(&table, &q.id, |j| {
                    j.state = State::Cancelled;
                    j.finished = Some(now_secs());
                });
                cleanup(&q.work);
                return;
            }
            set(&table, &q.id, |j| j.state = State::Running);
            let started = std::time::Instant::now();
            let outcome = run(&engine, &q);
            engine.invalidate();
            cleanup(&q.work);
            tracing::info!(job = %q.id, ms = started.elapsed().as_millis() as u64, "ingest job finished");
            set(&table, &q.id, |j| {
                j.finished = Some(now_secs());
                match outcome {
                    Ok(s) => {
                        j.state = if s.errors.is_empty() {
                            State::Done
                        } else {
                            State::Failed
                        };
                        j.summary = Some(s);
                    }
                    Err(e) => {
                        j.state = State::Failed;
                        j.error = Some(e);
                    }
                }
            });
        })?;
        Ok(Jobs {
            jobs,
            submitted: AtomicU64::new(0),
            worker,
        })
    }

    /// Queues work labelled for `tenant`; 503 when the queue is full or the server is stopping.
    pub fn submit(&self, work: Work, labels: Metadata, tenant: Option<String>) -> Result<Job> {
        let (kind, target) = match &work {
            Work::File { source, .. } => ("file", source.clone()),
            Work::Url { url, .. } => ("url", url.clone()),
            Work::Resync { source } => ("resync", source.clone()),
        };
        let job = Job {
            id: hex(&rand::random::<[u8; 8]>()),
            kind,
            target,
            tenant,
            state: State::Queued,
            created: now_secs(),
            finished: None,
            summary: None,
            error: None,
            seq: self.submitted.fetch_add(1, Ordering::SeqCst),
        };
        self.jobs
            .lock()
            .map_err(|_| Error::Poisoned)?
            .insert(job.id.clone(), job.clone());
        let queued = Queued {
            id: job.id.clone(),
            work,
            labels,
        };
        if let Err((e, refused)) = self.worker.submit(queued, "ingest queue full") {
            cleanup(&refused.work);
            self.jobs.lock().map_err(|_| Error::Poisoned)?.remove(&job.id);
            return Err(e);
        }
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.jobs.lock().map_err(|_| Error::Poisoned)?.get(id).cloned())
    }

    /// The newest `limit` jobs of `tenant` (`None`: every tenant's), newest first.
    pub fn list(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<Job>> {
        let table = self.jobs.lock().map_err(|_| Error::Poisoned)?;
        let mut jobs: Vec<Job> = table
            .values()
            .filter(|j| tenant.is_none() || j.tenant.as_deref() == tenant)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.seq));
        jobs.truncate(limit);
        Ok(jobs)
    }

    /// Stops taking jobs, lets the running one finish, cancels the queued ones, and waits for the worker.
    pub fn shutdown(&self) {
        self.worker.shutdown();
    }
}

fn run(engine: &Engine, q: &Queued) -> std::result::Result<Summary, String> {
    let index = engine.index().as_ref();
    let embedder = engine.embedder().as_ref();
    // Near-duplicate detection compares against every tenant's documents: off, so one tenant's upload is
    // never skipped (nor named) because of another tenant's document.
    let ingestor = Ingestor::new(index, embedder, engine.config().chunking.clone())
        .with_dedup(false)
        .with_labels(q.labels.clone());
    let mut summary = match &q.work {
        Work::File { path, source } => ingestor.ingest_file_as(path, source, &Silent),
        Work::Url { url, crawl } => ingestor.ingest_url(url, crawl, &Silent).map(|(s, _)| s)?,
        Work::Resync { source } if is_web(source) => {
            let page_only = CrawlOptions {
                max_depth: 0,
                max_pages: 1,
                ..Default::default()
            };
            ingestor.ingest_url(source, &page_only, &Silent).map(|(s, _)| s)?
        }
        Work::Resync { source } => {
            let path = std::path::Path::new(source);
            if !path.exists() {
                return Err(format!(
                    "{source}: the source file is gone; delete the document if it should go too"
                ));
            }
            ingestor.ingest_file_as(path, source, &Silent)
        }
    };
    summary.errors.iter_mut().for_each(redact);
    Ok(summary)
}

pub fn is_web(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// A document id another source already holds is reported without naming that source, which may be
/// another tenant's.
fn redact(error: &mut String) {
    const USED: &str = " is already used by ";
    if let Some(at) = error.find(USED) {
        error.truncate(at + USED.len());
        error.push_str("another source");
    }
}

fn cleanup(work: &Work) {
    if let Work::File { path, .. } = work {
        let _ = std::fs::remove_file(path);
        // Each upload has a folder of its own.
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn set(table: &Mutex<HashMap<String, Job>>, id: &str, f: impl FnOnce(&mut Job)) {
    if let Ok(mut t) = table.lock() {
        if let Some(j) = t.get_mut(id) {
            f(j);
        }
    }
}
