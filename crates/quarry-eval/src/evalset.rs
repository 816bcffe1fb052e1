//! Eval sets for answer quality: JSONL, one item per line,
//!
//! ```json
//! {"id": "q1", "question": "What causes scurvy?", "gold_answer": "A lack of vitamin C.",
//!  "gold_doc_ids": ["doc-17"], "metadata": {"topic": "nutrition"}}
//! ```
//!
//! `question` is required; `id` defaults to the line number; `gold_answer` and `gold_doc_ids` are optional
//! (metrics that need them are skipped for items without them). Converters turn PubMedQA and BEIR folders
//! into this format, and synthetic sets are written in it too.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::beir::BeirDataset;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalItem {
    pub id: String,
    pub question: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_answer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gold_doc_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct EvalSet {
    pub items: Vec<EvalItem>,
    /// Lines left out, with why: (line number, reason).
    pub skipped: Vec<(usize, String)>,
}

#[derive(Deserialize)]
struct RawItem {
    #[serde(default, alias = "_id")]
    id: Option<serde_json::Value>,
    #[serde(default, alias = "query")]
    question: Option<String>,
    #[serde(default, alias = "answer")]
    gold_answer: Option<String>,
    #[serde(default)]
    gold_doc_ids: Vec<serde_json::Value>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

fn id_string(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

impl EvalSet {
    /// Reads an eval set. A line that is not JSON is an error naming the file and line; an item without a
    /// question, or with an id seen before, is skipped and reported in `skipped`.
    pub fn load(path: &Path) -> Result<EvalSet> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<EvalSet> {
        let mut set = EvalSet::default();
        let mut seen = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let raw: RawItem = serde_json::from_str(line).map_err(|e| Error::Malformed {
                path: path.to_path_buf(),
                line: n,
                message: format!("not an eval item: {e}"),
            })?;
            let id = raw.id.map(id_string).unwrap_or_else(|| format!("line-{n}"));
            let question = raw.question.unwrap_or_default();
            if question.trim().is_empty() {
                set.skipped.push((n, format!("item {id}: empty question")));
                continue;
            }
            if !seen.insert(id.clone()) {
                set.skipped.push((n, format!("item {id}: duplicate id")));
                continue;
            }
            set.items.push(EvalItem {
                id,
                question: question.trim().to_string(),
                gold_answer: raw.gold_answer.filter(|a| !a.trim().is_empty()),
                gold_doc_ids: raw.gold_doc_ids.into_iter().map(id_string).collect(),
                metadata: raw.metadata,
            });
        }
        if set.items.is_empty() {
            return Err(Error::Dataset {
                path: path.to_path_buf(),
                message: format!("no usable eval items ({} skipped)", set.skipped.len()),
            });
        }
        Ok(set)
    }

    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        for item in &self.items {
            let line = serde_json::to_string(item).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// Gold document ids of every item, as qrels (grade 1), for scoring retrieval on the set.
    pub fn qrels(&self) -> crate::metrics::Qrels {
        self.items
            .iter()
            .filter(|i| !i.gold_doc_ids.is_empty())
            .map(|i| (i.id.clone(), i.gold_doc_ids.iter().map(|d| (d.clone(), 1)).collect()))
            .collect()
    }
}

#[derive(Deserialize)]
struct PubMedQaLine {
    id: String,
    question: String,
    gold_answer_long: String,
    gold_decision: String,
    supporting_passages: Vec<String>,
    #[serde(default)]
    passage_labels: Vec<String>,
    split: String,
}

/// PubMedQA PQA-L (`qa.jsonl` of shared/datasets/pubmedqa-pqal) → eval items: the long answer is the gold
/// answer, the question's own abstract sections (`<pmid>-<i>` in `corpus.jsonl`) are the gold documents, and
/// the yes/no/maybe decision goes to metadata. `split` keeps only items of that split ("test": the official
/// 500), or all when `None`.
pub fn from_pubmedqa(path: &Path, split: Option<&str>) -> Result<EvalSet> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut set = EvalSet::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: PubMedQaLine = serde_json::from_str(line).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not a PubMedQA qa.jsonl record: {e}"),
        })?;
        if split.is_some_and(|s| s != q.split) {
            continue;
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("decision".into(), q.gold_decision.into());
        metadata.insert("split".into(), q.split.into());
        if !q.passage_labels.is_empty() {
            metadata.insert("passage_labels".into(), q.passage_labels.into());
        }
        set.items.push(EvalItem {
            gold_doc_ids: (0..q.supporting_passages.len())
                .map(|k| format!("{}-{k}", q.id))
                .collect(),
            id: q.id,
            question: q.question,
            gold_answer: Some(q.gold_answer_long),
            metadata,
        });
    }
    if set.items.is_empty() {
        return Err(Error::Dataset {
            path: path.to_path_buf(),
            message: format!(
                "no PubMedQA items{}",
                split.map(|s| format!(" in split {s:?}")).unwrap_or_default()
            ),
        });
    }
    Ok(set)
}

/// A BEIR split → eval items with gold documents (relevance > 0) and no gold answers.
pub fn from_beir(ds: &BeirDataset) -> EvalSet {
    let items = ds
        .queries
        .iter()
        .map(|(id, text)| EvalItem {
            id: id.clone(),
            question: text.clone(),
            gold_answer: None,
            gold_doc_ids: ds
                .qrels
                .get(id)
                .map(|j| {
                    let mut d: Vec<String> = j.iter().filter(|(_, g)| **g > 0).map(|(d, _)| d.clone()).collect();
                    d.sort();
                    d
                })
                .unwrap_or_default(),
            metadata: serde_json::Map::new(),
        })
        .collect();
    EvalSet {
        items,
        skipped: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_and_bad_ones_reported() {
        let text = r#"{"id": "a", "question": "Why?", "gold_answer": "Because.", "gold_doc_ids": ["d1", 7]}
{"question": "No id?"}

{"id": "b", "question": "   "}
{"id": "a", "question": "Again"}
"#;
        let set = EvalSet::parse(text, Path::new("set.jsonl")).unwrap();
        assert_eq!(set.items.len(), 2);
        assert_eq!(set.items[0].gold_doc_ids, ["d1", "7"]);
        assert_eq!(set.items[1].id, "line-2");
        assert_eq!(set.items[1].gold_answer, None);
        assert_eq!(
            set.skipped,
            [
                (4, "item b: empty question".to_string()),
                (5, "item a: duplicate id".to_string())
            ]
        );
        assert_eq!(set.qrels().len(), 1);
        let e = EvalSet::parse("{\"id\": 1}\nnot json\n", Path::new("set.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("set.jsonl:2: not an eval item"), "{e}");
        let e = EvalSet::parse("{\"id\": 1}\n", Path::new("set.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no usable eval items (1 skipped)"), "{e}");

        let mut out = Vec::new();
        set.write(&mut out).unwrap();
        let again = EvalSet::parse(std::str::from_utf8(&out).unwrap(), Path::new("x")).unwrap();
        assert_eq!(again.items, set.items);
    }

    #[test]
    fn pubmedqa_records_become_items_with_their_passages_as_gold() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("qa.jsonl");
        std::fs::write(
            &p,
            r#"{"id": "1", "question": "Q1?", "gold_answer_long": "L1", "gold_decision": "yes", "supporting_passages": ["a", "b"], "passage_labels": ["BACKGROUND", "METHODS"], "split": "test"}
{"id": "2", "question": "Q2?", "gold_answer_long": "L2", "gold_decision": "no", "supporting_passages": ["c"], "split": "dev_or_train"}
"#,
        )
        .unwrap();
        let set = from_pubmedqa(&p, Some("test")).unwrap();
        assert_eq!(set.items.len(), 1);
        assert_eq!(set.items[0].gold_doc_ids, ["1-0", "1-1"]);
        assert_eq!(set.items[0].metadata["decision"], "yes");
        assert_eq!(from_pubmedqa(&p, None).unwrap().items.len(), 2);
        assert!(from_pubmedqa(&p, Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("split \"nope\""));
    }
}
