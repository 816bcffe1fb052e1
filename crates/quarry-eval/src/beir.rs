//! BEIR-layout datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/SPLIT.tsv`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::metrics::Qrels;

pub struct BeirDataset {
    pub dir: PathBuf,
    pub name: String,
    pub split: String,
    /// Queries that have judgements in the split, in id order: (id, text).
    pub queries: Vec<(String, String)>,
    pub qrels: Qrels,
    /// Judged queries left out because their text is missing or empty: (id, reason). They are reported, never
    /// silently scored.
    pub skipped: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(alias = "id")]
    _id: serde_json::Value,
    text: String,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
        path: path.to_path_buf(),
        source: e,
    })
}

impl BeirDataset {
    pub fn corpus_path(&self) -> PathBuf {
        self.dir.join("corpus.jsonl")
    }

    pub fn load(dir: &Path, split: &str) -> Result<Self> {
        let corpus = dir.join("corpus.jsonl");
        if !corpus.is_file() {
            return Err(Error::Dataset {
                path: dir.to_path_buf(),
                message: "no corpus.jsonl: not a BEIR dataset folder".into(),
            });
        }
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let qrels = load_qrels(&qrels_path)?;
        let queries_path = dir.join("queries.jsonl");
        let mut texts: HashMap<String, String> = HashMap::new();
        for (i, line) in read(&queries_path)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let q: QueryLine = serde_json::from_str(line).map_err(|e| Error::Malformed {
                path: queries_path.clone(),
                line: i + 1,
                message: format!("invalid query record: {e}"),
            })?;
            let id = match q._id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            texts.insert(id, q.text);
        }
        let mut queries = Vec::new();
        let mut skipped = Vec::new();
        for qid in qrels.keys() {
            match texts.get(qid) {
                Some(t) if !t.trim().is_empty() => queries.push((qid.clone(), t.clone())),
                Some(_) => skipped.push((qid.clone(), "empty query text".to_string())),
                None => skipped.push((qid.clone(), format!("not in {}", queries_path.display()))),
            }
        }
        if queries.is_empty() {
            return Err(Error::Dataset {
                path: queries_path,
                message: format!("none of the {} judged queries has text", qrels.len()),
            });
        }
        let qrels: Qrels = qrels
            .into_iter()
            .filter(|(q, _)| !skipped.iter().any(|(s, _)| s == q))
            .collect();
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("dataset")
            .to_string();
        Ok(BeirDataset {
            dir: dir.to_path_buf(),
            name,
            split: split.to_string(),
            queries,
            qrels,
            skipped,
        })
    }

    /// The ids of the corpus documents.
    pub fn corpus_ids(&self) -> Result<std::collections::HashSet<String>> {
        corpus_ids(&self.corpus_path())
    }
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(alias = "id")]
    _id: serde_json::Value,
}

/// The `_id` (or `id`) of every record of a BEIR `corpus.jsonl`.
pub fn corpus_ids(path: &Path) -> Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    for (i, line) in read(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: IdOnly = serde_json::from_str(line).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("invalid corpus record: {e}"),
        })?;
        ids.insert(match r._id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    }
    Ok(ids)
}

/// Reads `query-id <TAB> corpus-id <TAB> score` lines, with or without BEIR's header line.
pub fn load_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (i, line) in read(path)?.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() || (i == 0 && cols.get(2).is_some_and(|s| s.parse::<i32>().is_err())) {
            continue;
        }
        // TREC qrels have four columns (query, iteration, doc, grade); BEIR's have three.
        let (q, d, g) = match cols.as_slice() {
            [q, d, g] => (q, d, g),
            [q, _, d, g] => (q, d, g),
            _ => {
                return Err(Error::Malformed {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("expected 3 tab-separated columns, found {}", cols.len()),
                })
            }
        };
        let grade: i32 = g.parse().map_err(|_| Error::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("grade `{g}` is not an integer"),
        })?;
        qrels.entry(q.to_string()).or_default().insert(d.to_string(), grade);
    }
    if qrels.is_empty() {
        return Err(Error::Dataset {
            path: path.to_path_buf(),
            message: "no judgements".into(),
        });
    }
    Ok(qrels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_judged_queries_and_reports_bad_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("qrels")).unwrap();
        std::fs::write(d.join("corpus.jsonl"), "{\"_id\":\"1\",\"text\":\"x\"}\n").unwrap();
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\":\"q1\",\"text\":\"one\"}\n{\"_id\":2,\"text\":\"two\"}\n{\"_id\":\"q3\",\"text\":\"unjudged\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1\t1\t1\n2\t1\t2\n",
        )
        .unwrap();
        let ds = BeirDataset::load(d, "test").unwrap();
        assert_eq!(
            ds.queries,
            vec![
                ("2".to_string(), "two".to_string()),
                ("q1".to_string(), "one".to_string())
            ]
        );
        assert_eq!(ds.qrels["2"]["1"], 2);

        std::fs::write(d.join("qrels/bad.tsv"), "q1\t1\t1\nq1\t1\n").unwrap();
        let e = BeirDataset::load(d, "bad").err().unwrap().to_string();
        assert!(
            e.ends_with("bad.tsv:2: expected 3 tab-separated columns, found 2"),
            "{e}"
        );
        // Judged queries without text are left out and reported, not scored and not fatal.
        std::fs::write(d.join("qrels/gaps.tsv"), "q1\t1\t1\nq3\t1\t1\nq4\t1\t1\n").unwrap();
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\":\"q1\",\"text\":\"one\"}\n{\"_id\":\"q3\",\"text\":\"  \"}\n",
        )
        .unwrap();
        let ds = BeirDataset::load(d, "gaps").unwrap();
        assert_eq!(ds.queries.len(), 1);
        assert_eq!(ds.qrels.len(), 1);
        assert_eq!(ds.skipped.len(), 2);
        assert_eq!(ds.skipped[0], ("q3".to_string(), "empty query text".to_string()));
        assert!(ds.skipped[1].1.contains("queries.jsonl"), "{:?}", ds.skipped);
        let e = BeirDataset::load(d, "nosuch").err().unwrap().to_string();
        assert!(e.contains("nosuch.tsv: cannot read"), "{e}");
    }
}
