//! Retrieval evaluations over the API: an eval set (questions with gold document ids) is run against
//! the documents the submitting key may read, as a background job on a worker thread of its own (one run
//! at a time; a bounded queue, full means 503), and scored with `quarry_eval`'s trec_eval-compatible
//! measures. A finished run is kept in `DATA_DIR/eval-runs/ID.json` with its HTML report (`ID.html`,
//! rendered by `quarry_eval::html`), so runs outlive a restart.
//!
//! Access labels apply as everywhere: each question is retrieved under the submitting key's filter,
//! captured at submission. A gold document the key may not read can never be retrieved; such ids are
//! counted (`gold_not_visible`) without saying which exist. A run is shown to keys of its tenant whose
//! groups include the submitter's (the report lists retrieved document ids), and to keys that span tenants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quarry_core::SearchMode;
use quarry_eval::evalset::EvalSet;
use quarry_eval::html::{evaluation_page, query_details};
use quarry_eval::{evaluate_measures, Measure, Qrels, Run};
use serde::{Deserialize, Serialize};

use crate::access::Caller;
use crate::engine::{Engine, Query};
use crate::error::{Error, Result};
use crate::keys::{hex, now_secs};
use crate::worker::Worker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// One evaluation run: what was asked, and once done, the scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRun {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The submitter's groups: the run is shown to keys holding all of them.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub state: RunState,
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    pub mode: SearchMode,
    /// Documents retrieved per question.
    pub depth: usize,
    pub measures: Vec<String>,
    /// Questions in the set, and those with gold documents (the scored ones).
    pub questions: usize,
    pub judged: usize,
    /// Distinct gold document ids the submitter cannot read (missing, or another tenant's or group's).
    pub gold_not_visible: usize,
    /// Measure → mean over the judged questions.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Question id → measure → value (left out of listings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
    /// Eval set lines left out, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_ms: Option<f64>,
    /// Submission order within this process (persisted runs sort by `created`).
    #[serde(skip)]
    seq: u64,
}

impl EvalRun {
    /// The run without its per-question scores, for listings.
    pub fn summary(&self) -> EvalRun {
        EvalRun {
            per_query: BTreeMap::new(),
            skipped: Vec::new(),
            ..self.clone()
        }
    }

    pub fn visible_to(&self, caller: &Caller) -> bool {
        match &caller.tenant {
            None => true,
            Some(t) => self.tenant.as_ref() == Some(t) && self.groups.iter().all(|g| caller.groups.contains(g)),
        }
    }
}

/// What a request asks for, validated.
pub struct Request {
    pub name: String,
    pub set: EvalSet,
    pub mode: SearchMode,
    pub depth: usize,
    pub measures: Vec<Measure>,
}

struct Queued {
    id: String,
    /// The submitter, whose access labels every retrieval of the run carries.
    caller: Caller,
    set: EvalSet,
    mode: SearchMode,
    depth: usize,
    measures: Vec<Measure>,
}

pub struct EvalRuns {
    dir: PathBuf,
    runs: Arc<Mutex<HashMap<String, EvalRun>>>,
    submitted: AtomicU64,
    worker: Worker<Queued>,
}

/// Runs waiting behind the running one.
const QUEUE: usize = 4;

impl EvalRuns {
    /// Loads finished runs from `dir` and starts the worker.
    pub fn start(engine: Arc<Engine>, dir: &Path) -> Result<EvalRuns> {
        let runs: Arc<Mutex<HashMap<String, EvalRun>>> = Arc::new(Mutex::new(load(dir)?));
        let (table, out) = (runs.clone(), dir.to_path_buf());
        let worker = Worker::start("quarry-eval", QUEUE, move |q: Queued, stop| {
            set(&table, &q.id, |r| r.state = RunState::Running);
            let started = std::time::Instant::now();
            let outcome = if stop.load(Ordering::SeqCst) {
                Err(None)
            } else {
                evaluate(&engine, &q, stop)
            };
            let mut finished = None;
            set(&table, &q.id, |r| {
                r.finished = Some(now_secs());
                match outcome {
                    Ok((scored, report)) => {
                        r.state = RunState::Done;
                        r.gold_not_visible = scored.gold_not_visible;
                        r.metrics = scored.metrics;
                        r.per_query = scored.per_query;
                        r.retrieval_ms = Some(started.elapsed().as_secs_f64() * 1e3);
                        finished = Some((r.clone(), report));
                    }
                    Err(None) => r.state = RunState::Cancelled,
                    Err(Some(e)) => {
                        r.state = RunState::Failed;
                        r.error = Some(e);
                    }
                }
            });
            if let Some((run, report)) = finished {
                if let Err(e) = save(&out, &run, &report) {
                    tracing::error!(run = %run.id, error = %e, "saving an evaluation run");
                }
            }
        })?;
        Ok(EvalRuns {
            dir: dir.to_path_buf(),
            runs,
            submitted: AtomicU64::new(0),
            worker,
        })
    }

    /// Queues a run for `caller`; 503 when the queue is full or the server is stopping.
    pub fn submit(&self, caller: &Caller, req: Request) -> Result<EvalRun> {
        let run = EvalRun {
            id: hex(&rand::random::<[u8; 8]>()),
            name: req.name,
            tenant: caller.tenant.clone(),
            groups: caller.groups.clone(),
            key_id: caller.key_id.clone(),
            state: RunState::Queued,
            created: now_secs(),
            finished: None,
            mode: req.mode,
            depth: req.depth,
            measures: req.measures.iter().map(ToString::to_string).collect(),
            questions: req.set.items.len(),
            judged: req.set.items.iter().filter(|i| !i.gold_doc_ids.is_empty()).count(),
            gold_not_visible: 0,
            metrics: BTreeMap::new(),
            per_query: BTreeMap::new(),
            skipped: req
                .set
                .skipped
                .iter()
                .map(|(n, why)| format!("line {n}: {why}"))
                .collect(),
            error: None,
            retrieval_ms: None,
            seq: self.submitted.fetch_add(1, Ordering::SeqCst) + 1,
        };
        self.runs
            .lock()
            .map_err(|_| Error::Poisoned)?
            .insert(run.id.clone(), run.clone());
        let queued = Queued {
            id: run.id.clone(),
            caller: caller.clone(),
            set: req.set,
            mode: req.mode,
            depth: req.depth,
            measures: req.measures,
        };
        if let Err((e, _)) = self.worker.submit(queued, "evaluation queue full") {
            self.runs.lock().map_err(|_| Error::Poisoned)?.remove(&run.id);
            return Err(e);
        }
        Ok(run)
    }

    /// Runs `caller` may see, newest first, without per-question scores.
    pub fn list(&self, caller: &Caller, limit: usize) -> Result<Vec<EvalRun>> {
        let runs = self.runs.lock().map_err(|_| Error::Poisoned)?;
        let mut out: Vec<EvalRun> = runs
            .values()
            .filter(|r| r.visible_to(caller))
            .map(EvalRun::summary)
            .collect();
        out.sort_by(|a, b| (b.created, b.seq, &b.id).cmp(&(a.created, a.seq, &a.id)));
        out.truncate(limit);
        Ok(out)
    }

    /// A run `caller` may see; 404 otherwise (also for runs of other tenants).
    pub fn get(&self, caller: &Caller, id: &str) -> Result<EvalRun> {
        self.runs
            .lock()
            .map_err(|_| Error::Poisoned)?
            .get(id)
            .filter(|r| r.visible_to(caller))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("evaluation run `{id}`")))
    }

    /// The HTML report of a finished run; 409 while it is not done.
    pub fn report(&self, caller: &Caller, id: &str) -> Result<String> {
        let run = self.get(caller, id)?;
        if run.state != RunState::Done {
            return Err(Error::Conflict(format!(
                "evaluation run `{id}` is {}: no report",
                serde_json::to_value(run.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )));
        }
        let path = self.dir.join(format!("{}.html", run.id));
        std::fs::read_to_string(&path).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
    }

    /// Cancels the queued runs and the running one (between two questions), and waits for the worker.
    pub fn shutdown(&self) {
        self.worker.shutdown();
    }
}

struct Scored {
    metrics: BTreeMap<String, f64>,
    per_query: BTreeMap<String, BTreeMap<String, f64>>,
    gold_not_visible: usize,
}

/// Retrieves every judged question under the submitter's labels and scores the run. `Err(None)`:
/// cancelled by shutdown.
fn evaluate(engine: &Engine, q: &Queued, stop: &AtomicBool) -> std::result::Result<(Scored, String), Option<String>> {
    let failed = |e: Error| Some(e.to_string());
    let qrels: Qrels = q.set.qrels();
    let mut run = Run::new();
    let mut texts = HashMap::new();
    for item in q.set.items.iter().filter(|i| qrels.contains_key(&i.id)) {
        if stop.load(Ordering::SeqCst) {
            return Err(None);
        }
        let hits = engine
            .retrieve(
                &q.caller,
                &Query {
                    text: item.question.clone(),
                    mode: q.mode,
                    top_k: q.depth,
                    filters: Vec::new(),
                    per_document: true,
                },
            )
            .map_err(failed)?;
        run.insert(
            item.id.clone(),
            hits.into_iter().map(|h| (h.doc_id, f64::from(h.score))).collect(),
        );
        texts.insert(item.id.clone(), item.question.clone());
    }
    let gold: HashSet<&String> = qrels.values().flat_map(|j| j.keys()).collect();
    let mut gold_not_visible = 0;
    for id in gold {
        let readable = engine
            .index()
            .document(id)
            .map_err(|e| failed(e.into()))?
            .is_some_and(|d| q.caller.can_read(&d.metadata));
        if !readable {
            gold_not_visible += 1;
        }
    }
    let e = evaluate_measures(&run, &qrels, &q.measures);
    let names: Vec<String> = e.measures.iter().map(ToString::to_string).collect();
    let metrics = names.iter().cloned().zip(e.mean.iter().copied()).collect();
    let per_query = e
        .per_query
        .iter()
        .map(|(qid, vals)| (qid.clone(), names.iter().cloned().zip(vals.iter().copied()).collect()))
        .collect();
    let report = evaluation_page(
        &format!("Evaluation {}", q.id),
        &format!(
            "{} judged questions, retrieved under the submitting key's access labels",
            e.per_query.len()
        ),
        &e,
        &query_details(&run, &qrels, &texts, 10),
    );
    Ok((
        Scored {
            metrics,
            per_query,
            gold_not_visible,
        },
        report,
    ))
}

fn set(table: &Mutex<HashMap<String, EvalRun>>, id: &str, f: impl FnOnce(&mut EvalRun)) {
    if let Ok(mut t) = table.lock() {
        if let Some(r) = t.get_mut(id) {
            f(r);
        }
    }
}

/// Writes the report, then the run (written last, by rename, so a listed run always has its report).
fn save(dir: &Path, run: &EvalRun, report: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{}.html", run.id)), report)?;
    let tmp = dir.join(format!("{}.json.tmp", run.id));
    std::fs::write(&tmp, serde_json::to_vec(run).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, dir.join(format!("{}.json", run.id)))
}

fn load(dir: &Path) -> Result<HashMap<String, EvalRun>> {
    let mut runs = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(runs),
        Err(e) => return Err(Error::Internal(format!("{}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<EvalRun>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(run) => {
                runs.insert(run.id.clone(), run);
            }
            // One unreadable file should not keep the server from starting.
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping an evaluation run"),
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(id: &str, tenant: Option<&str>, groups: &[&str]) -> EvalRun {
        EvalRun {
            id: id.into(),
            name: "n".into(),
            tenant: tenant.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            key_id: None,
            state: RunState::Done,
            created: 1,
            finished: Some(2),
            mode: SearchMode::Hybrid,
            depth: 10,
            measures: vec!["ndcg@10".into()],
            questions: 1,
            judged: 1,
            gold_not_visible: 0,
            metrics: BTreeMap::from([("ndcg@10".to_string(), 0.5)]),
            per_query: BTreeMap::new(),
            skipped: Vec::new(),
            error: None,
            retrieval_ms: None,
            seq: 0,
        }
    }

    #[test]
    fn finished_runs_outlive_a_restart_and_a_broken_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &run("a1", Some("acme"), &[]), "<html>report</html>").unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded["a1"].metrics["ndcg@10"], 0.5);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a1.html")).unwrap(),
            "<html>report</html>"
        );
        assert!(load(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_run_is_shown_to_its_tenant_keys_holding_the_submitters_groups() {
        let caller = |tenant: Option<&str>, groups: &[&str]| Caller {
            key_id: None,
            scopes: vec![crate::keys::Scope::Eval],
            tenant: tenant.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let r = run("r", Some("acme"), &["eng"]);
        let cases = [
            (caller(Some("acme"), &["eng"]), true),
            (caller(Some("acme"), &["eng", "hr"]), true),
            (caller(Some("acme"), &["hr"]), false),
            (caller(Some("acme"), &[]), false),
            (caller(Some("globex"), &["eng"]), false),
            (caller(None, &[]), true),
        ];
        for (c, want) in cases {
            assert_eq!(r.visible_to(&c), want, "{c:?}");
        }
    }
}
