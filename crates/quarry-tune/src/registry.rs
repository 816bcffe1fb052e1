//! The model registry: every trained version with what it was made from (base model, data and its digest,
//! hyper-parameters) and how it validated, and which version of each kind is current. A new version becomes
//! current only when it beats the current one on the same held-out queries with a significant paired test.
//!
//! Stored as `registry.json` in the registry folder (`DATA_DIR/models`), rewritten by rename.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quarry_eval::compare::{bootstrap_ci, randomization_p, CompareOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trainer::Validation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// `KIND-vN`.
    pub id: String,
    /// `embedder` or `reranker`.
    pub kind: String,
    /// The model folder.
    pub dir: PathBuf,
    pub base: String,
    /// Where the training data came from.
    pub data: String,
    pub data_digest: String,
    pub options: serde_json::Value,
    pub metric: String,
    /// The starting model on the validation queries.
    pub baseline: f64,
    pub validation: f64,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub decision: Option<Decision>,
}

/// Whether a version was promoted, against what, and on which evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub promoted: bool,
    /// The version it was compared with (`None`: the base model, when nothing was current).
    pub against: Option<String>,
    pub queries: usize,
    /// Mean per-query difference, new − current.
    pub delta: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Book {
    versions: Vec<ModelVersion>,
    current: BTreeMap<String, String>,
}

pub struct Registry {
    root: PathBuf,
}

impl Registry {
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::Unwritable {
            path: root.to_path_buf(),
            source: e,
        })?;
        Ok(Registry {
            root: root.to_path_buf(),
        })
    }

    fn file(&self) -> PathBuf {
        self.root.join("registry.json")
    }

    fn read(&self) -> Result<Book> {
        let path = self.file();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Model {
                path,
                message: format!("not a model registry: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
            Err(e) => Err(Error::Unreadable { path, source: e }),
        }
    }

    fn write(&self, book: &Book) -> Result<()> {
        let path = self.file();
        let tmp = self.root.join("registry.json.tmp");
        let text = serde_json::to_string_pretty(book).map_err(|e| Error::Model {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(|e| Error::Unwritable {
            path: tmp.clone(),
            source: e,
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Unwritable { path, source: e })
    }

    pub fn versions(&self) -> Result<Vec<ModelVersion>> {
        Ok(self.read()?.versions)
    }

    pub fn current(&self, kind: &str) -> Result<Option<ModelVersion>> {
        let book = self.read()?;
        Ok(book
            .current
            .get(kind)
            .and_then(|id| book.versions.iter().find(|v| &v.id == id))
            .cloned())
    }

    /// The id and folder for the next version of `kind`.
    pub fn next_version(&self, kind: &str) -> Result<(String, PathBuf)> {
        let n = self.read()?.versions.iter().filter(|v| v.kind == kind).count() + 1;
        let id = format!("{kind}-v{n}");
        let dir = self.root.join(&id);
        Ok((id, dir))
    }

    /// Records a version; with a promoting decision it becomes the current one of its kind.
    pub fn add(&self, version: ModelVersion) -> Result<()> {
        let mut book = self.read()?;
        if book.versions.iter().any(|v| v.id == version.id) {
            return Err(Error::Model {
                path: self.file(),
                message: format!("version {} is already registered", version.id),
            });
        }
        if version.decision.as_ref().is_some_and(|d| d.promoted) {
            book.current.insert(version.kind.clone(), version.id.clone());
        }
        book.versions.push(version);
        self.write(&book)
    }

    /// Makes a registered version current by hand (e.g. to roll back).
    pub fn set_current(&self, id: &str) -> Result<ModelVersion> {
        let mut book = self.read()?;
        let v = book
            .versions
            .iter()
            .find(|v| v.id == id)
            .cloned()
            .ok_or_else(|| Error::Model {
                path: self.file(),
                message: format!("no version {id}"),
            })?;
        book.current.insert(v.kind.clone(), v.id.clone());
        self.write(&book)?;
        Ok(v)
    }
}

/// Decides whether `new` should replace `current`, both validated on the same queries in the same order:
/// promoted only when the mean per-query difference is positive and a paired randomization test gives
/// p < `alpha`.
pub fn decide(new: &Validation, current: &Validation, against: Option<String>, alpha: f64) -> Decision {
    let n = new.per_query.len();
    if n == 0 || n != current.per_query.len() {
        return Decision {
            promoted: false,
            against,
            queries: n,
            delta: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            p_value: 1.0,
            reason: format!(
                "not comparable: {n} validation queries for the new model, {} for the current one",
                current.per_query.len()
            ),
        };
    }
    let diffs: Vec<f64> = new
        .per_query
        .iter()
        .zip(&current.per_query)
        .map(|(a, b)| a - b)
        .collect();
    let opts = CompareOptions::default();
    let delta = diffs.iter().sum::<f64>() / n as f64;
    let (ci_low, ci_high) = bootstrap_ci(&diffs, &opts);
    let p_value = randomization_p(&diffs, &opts);
    let promoted = delta > 0.0 && p_value < alpha;
    let reason = if promoted {
        format!(
            "{} improved by {delta:+.4} over {n} held-out queries (p = {p_value:.4})",
            new.metric
        )
    } else if delta <= 0.0 {
        format!("{} did not improve ({delta:+.4} over {n} held-out queries)", new.metric)
    } else {
        format!(
            "{} improved by {delta:+.4} but not significantly (p = {p_value:.4} ≥ {alpha}) over {n} held-out queries",
            new.metric
        )
    };
    Decision {
        promoted,
        against,
        queries: n,
        delta,
        ci_low,
        ci_high,
        p_value,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(v: &[f64]) -> Validation {
        Validation {
            metric: "ndcg@10".into(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            per_query: v.to_vec(),
        }
    }

    fn version(id: &str, decision: Decision) -> ModelVersion {
        ModelVersion {
            id: id.into(),
            kind: "embedder".into(),
            dir: PathBuf::from(id),
            base: "base".into(),
            data: "d".into(),
            data_digest: "x".into(),
            options: serde_json::json!({}),
            metric: "ndcg@10".into(),
            baseline: 0.5,
            validation: 0.6,
            created: 0,
            decision: Some(decision),
        }
    }

    #[test]
    fn only_significant_gains_are_promoted() {
        let old: Vec<f64> = (0..40).map(|i| (i % 5) as f64 / 5.0).collect();
        let better: Vec<f64> = old.iter().map(|v| (v + 0.2).min(1.0)).collect();
        let d = decide(&val(&better), &val(&old), None, 0.05);
        assert!(d.promoted && d.p_value < 0.05 && d.delta > 0.1, "{d:?}");
        let mut noisy = old.clone();
        noisy[0] += 0.2;
        let d = decide(&val(&noisy), &val(&old), None, 0.05);
        assert!(!d.promoted && d.reason.contains("not significantly"), "{d:?}");
        let worse: Vec<f64> = old.iter().map(|v| v * 0.5).collect();
        let d = decide(&val(&worse), &val(&old), None, 0.05);
        assert!(!d.promoted && d.reason.contains("did not improve"), "{d:?}");
        let d = decide(&val(&old[..3]), &val(&old), None, 0.05);
        assert!(!d.promoted && d.reason.contains("not comparable"));
    }

    #[test]
    fn the_registry_keeps_history_and_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.current("embedder").unwrap(), None);
        let (id, path) = reg.next_version("embedder").unwrap();
        assert_eq!(id, "embedder-v1");
        assert_eq!(path, dir.path().join("embedder-v1"));
        let yes = decide(&val(&[1.0; 30]), &val(&[0.0; 30]), None, 0.05);
        reg.add(version("embedder-v1", yes)).unwrap();
        assert_eq!(reg.current("embedder").unwrap().unwrap().id, "embedder-v1");
        let no = decide(&val(&[0.0; 30]), &val(&[1.0; 30]), Some("embedder-v1".into()), 0.05);
        reg.add(version("embedder-v2", no)).unwrap();
        assert_eq!(
            reg.current("embedder").unwrap().unwrap().id,
            "embedder-v1",
            "a worse model is not promoted"
        );
        assert_eq!(reg.versions().unwrap().len(), 2);
        assert!(reg
            .add(version("embedder-v2", decide(&val(&[1.0]), &val(&[0.0]), None, 0.05)))
            .is_err());
        reg.set_current("embedder-v2").unwrap();
        assert_eq!(reg.current("embedder").unwrap().unwrap().id, "embedder-v2");
        assert!(reg.set_current("embedder-v9").is_err());
        assert_eq!(reg.next_version("embedder").unwrap().0, "embedder-v3");
    }
}
