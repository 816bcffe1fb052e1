//! Training data for retrieval models: queries with relevant documents, a corpus to read the documents
//! from, and hard negatives mined from the team's own index.
//!
//! Sources: BEIR qrels (a labelled split), an eval set (`quarry eval synth` writes synthetic ones), or a JSONL
//! of pairs with inline texts: `{"query": "...", "positive": "...", "negatives": ["...", ...]}`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub query: String,
    /// Relevant document ids (keys of [`TrainingSet::corpus`]).
    pub positives: Vec<String>,
    /// Non-relevant document ids: given with the data or mined.
    pub negatives: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    /// Where the data came from, for messages and the registry.
    pub source: String,
    pub examples: Vec<Example>,
    /// Document id → the text a model sees (title and text, as the index embeds them).
    pub corpus: HashMap<String, String>,
}

/// The text of a corpus record as the ingest pipeline embeds it: the title on its own line, then the text.
pub fn passage_text(title: Option<&str>, text: &str) -> String {
    match title.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => format!("{t}\n{text}"),
        None => text.to_string(),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
        path: path.to_path_buf(),
        source: e,
    })
}

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(alias = "id")]
    _id: serde_json::Value,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: String,
}

fn id_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads a BEIR-style `corpus.jsonl` into id → passage text.
pub fn read_corpus(path: &Path) -> Result<HashMap<String, String>> {
    let mut corpus = HashMap::new();
    for (n, line) in read(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: CorpusLine = serde_json::from_str(line).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            line: n + 1,
            message: format!("not a corpus record: {e}"),
        })?;
        corpus.insert(id_string(&rec._id), passage_text(rec.title.as_deref(), &rec.text));
    }
    Ok(corpus)
}

impl TrainingSet {
    /// Queries and relevance judgements of a BEIR folder's `split` (documents with a grade > 0 are positives).
    pub fn from_beir(dir: &Path, split: &str) -> Result<Self> {
        let ds = quarry_eval::beir::BeirDataset::load(dir, split).map_err(|e| Error::Data {
            source_name: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let corpus = read_corpus(&ds.corpus_path())?;
        let examples = ds
            .queries
            .iter()
            .map(|(id, text)| {
                let mut positives: Vec<String> = ds
                    .qrels
                    .get(id)
                    .map(|judged| judged.iter().filter(|(_, g)| **g > 0).map(|(d, _)| d.clone()).collect())
                    .unwrap_or_default();
                positives.sort();
                Example {
                    query: text.clone(),
                    positives,
                    negatives: vec![],
                }
            })
            .collect();
        Ok(TrainingSet {
            source: format!("{} ({split} qrels)", dir.display()),
            examples,
            corpus,
        })
    }

    /// An eval set's questions and gold documents (e.g. a synthetic set from `quarry eval synth`), with the
    /// corpus they point into.
    pub fn from_evalset(evalset: &Path, corpus: &Path) -> Result<Self> {
        let set = quarry_eval::evalset::EvalSet::load(evalset).map_err(|e| Error::Data {
            source_name: evalset.display().to_string(),
            message: e.to_string(),
        })?;
        let corpus = read_corpus(corpus)?;
        let examples = set
            .items
            .into_iter()
            .map(|item| Example {
                query: item.question,
                positives: item.gold_doc_ids,
                negatives: vec![],
            })
            .collect();
        Ok(TrainingSet {
            source: evalset.display().to_string(),
            examples,
            corpus,
        })
    }

    /// The training-data flywheel: answered questions from the query log whose latest feedback is a thumbs-up,
    /// with the passages the answer cited as their positives. `chunk_text` reads a cited chunk's text from the
    /// index (None when it has since been deleted or changed: such citations are left out). Thumbs-down answers
    /// are counted but not trained on: a bad answer may be the generator's fault, not retrieval's. Repeated
    /// questions are merged.
    pub fn from_log(
        logged: &[quarry_core::querylog::LoggedQuery],
        chunk_text: &dyn Fn(u64) -> Option<String>,
        source: &str,
    ) -> (Self, LogReport) {
        use quarry_core::querylog::Rating;
        let mut set = TrainingSet {
            source: source.to_string(),
            ..Default::default()
        };
        let mut report = LogReport {
            questions: logged.len(),
            ..Default::default()
        };
        for q in logged {
            match q.verdict() {
                Some(Rating::Up) => report.up += 1,
                Some(Rating::Down) => {
                    report.down += 1;
                    continue;
                }
                None => continue,
            }
            if q.query.abstained || q.query.cited.is_empty() || q.query.question.trim().is_empty() {
                report.uncited += 1;
                continue;
            }
            let mut positives = Vec::new();
            for c in &q.query.cited {
                let id = format!("chunk:{}", c.chunk_id);
                match set.corpus.contains_key(&id) {
                    true => positives.push(id),
                    false => match chunk_text(c.chunk_id) {
                        Some(text) => {
                            set.corpus.insert(id.clone(), text);
                            positives.push(id);
                        }
                        None => report.missing_chunks += 1,
                    },
                }
            }
            positives.dedup();
            if positives.is_empty() {
                continue;
            }
            set.examples.push(Example {
                query: q.query.question.clone(),
                positives,
                negatives: vec![],
            });
        }
        report.merged = set.dedup();
        report.examples = set.examples.len();
        (set, report)
    }

    /// A JSONL of pairs with inline texts. Passages get ids from their content, so one passage that is
    /// positive for several queries is one document.
    pub fn from_pairs(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Pair {
            #[serde(alias = "question", alias = "anchor")]
            query: Option<String>,
            #[serde(alias = "passage", alias = "document")]
            positive: Option<String>,
            #[serde(default)]
            negatives: Vec<String>,
            #[serde(default)]
            negative: Option<String>,
        }
        let mut set = TrainingSet {
            source: path.display().to_string(),
            ..Default::default()
        };
        let add = |text: String, corpus: &mut HashMap<String, String>| {
            let id: String = Sha256::digest(text.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            corpus.insert(id.clone(), text);
            id
        };
        for (n, line) in read(path)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let malformed = |message: String| Error::Malformed {
                path: path.to_path_buf(),
                line: n + 1,
                message,
            };
            let pair: Pair = serde_json::from_str(line).map_err(|e| malformed(format!("not a pair: {e}")))?;
            let query = pair.query.filter(|q| !q.trim().is_empty());
            let positive = pair.positive.filter(|p| !p.trim().is_empty());
            let (Some(query), Some(positive)) = (query, positive) else {
                return Err(malformed("empty pair: both `query` and `positive` need text".into()));
            };
            let positive = add(positive, &mut set.corpus);
            let negatives = pair
                .negatives
                .into_iter()
                .chain(pair.negative)
                .filter(|t| !t.trim().is_empty())
                .map(|t| add(t, &mut set.corpus))
                .collect();
            set.examples.push(Example {
                query,
                positives: vec![positive],
                negatives,
            });
        }
        Ok(set)
    }

    /// Refuses data that would train a bad model or none: fewer than `min_examples` examples, empty queries,
    /// examples without positives, labels pointing at documents the corpus does not have, duplicate
    /// (query, positive) pairs. Each message names the source and the first offending example.
    pub fn validate(&self, min_examples: usize) -> Result<()> {
        let bad = |message: String| Error::Data {
            source_name: self.source.clone(),
            message,
        };
        let mut seen = HashSet::new();
        let mut unknown = Vec::new();
        for (n, ex) in self.examples.iter().enumerate() {
            if ex.query.trim().is_empty() {
                return Err(bad(format!("example {}: the query is empty", n + 1)));
            }
            if ex.positives.is_empty() {
                return Err(bad(format!("example {} ({:?}): no relevant document", n + 1, ex.query)));
            }
            for d in ex.positives.iter().chain(&ex.negatives) {
                match self.corpus.get(d) {
                    None => unknown.push((n + 1, d.clone())),
                    Some(t) if t.trim().is_empty() => {
                        return Err(bad(format!("example {}: document {d} has no text", n + 1)));
                    }
                    Some(_) => {}
                }
            }
            for p in &ex.positives {
                if !seen.insert((ex.query.trim().to_lowercase(), p.clone())) {
                    return Err(bad(format!(
                        "example {}: duplicate pair (query {:?}, document {p}); remove repeated lines or merge them with --dedup",
                        n + 1,
                        ex.query
                    )));
                }
            }
        }
        if let Some((n, d)) = unknown.first() {
            return Err(bad(format!(
                "{} label(s) point at documents not in the corpus; first: example {n}, document {d}",
                unknown.len()
            )));
        }
        if self.examples.len() < min_examples {
            return Err(bad(format!(
                "{} examples; at least {min_examples} are needed to train and validate",
                self.examples.len()
            )));
        }
        Ok(())
    }

    /// Merges examples whose queries are the same text (ignoring case and surrounding space): their positives
    /// and negatives are united. Returns how many examples were merged away.
    pub fn dedup(&mut self) -> usize {
        let before = self.examples.len();
        let mut first: HashMap<String, usize> = HashMap::new();
        let mut kept: Vec<Example> = Vec::with_capacity(before);
        for ex in std::mem::take(&mut self.examples) {
            let key = ex.query.trim().to_lowercase();
            match first.get(&key) {
                Some(&i) => {
                    for d in ex.positives {
                        if !kept[i].positives.contains(&d) {
                            kept[i].positives.push(d);
                        }
                    }
                    for d in ex.negatives {
                        if !kept[i].negatives.contains(&d) {
                            kept[i].negatives.push(d);
                        }
                    }
                }
                None => {
                    first.insert(key, kept.len());
                    kept.push(ex);
                }
            }
        }
        self.examples = kept;
        before - self.examples.len()
    }

    /// Drops examples whose query text (ignoring case and surrounding space) is in `held_out`, so that no
    /// evaluation query is trained on. Returns how many were dropped.
    pub fn exclude_queries(&mut self, held_out: &HashSet<String>) -> usize {
        let before = self.examples.len();
        self.examples
            .retain(|e| !held_out.contains(&e.query.trim().to_lowercase()));
        before - self.examples.len()
    }

    /// (query, positive) pairs: one per relevant document.
    pub fn pair_count(&self) -> usize {
        self.examples.iter().map(|e| e.positives.len()).sum()
    }

    /// Splits off a validation set of whole examples (a query never lands on both sides), seeded.
    pub fn split(mut self, fraction: f64, seed: u64) -> (TrainingSet, TrainingSet) {
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        shuffle(&mut order, seed);
        let n_val = ((self.examples.len() as f64) * fraction).round() as usize;
        let val_idx: HashSet<usize> = order.iter().take(n_val).copied().collect();
        let mut train = Vec::new();
        let mut val = Vec::new();
        for (i, ex) in std::mem::take(&mut self.examples).into_iter().enumerate() {
            if val_idx.contains(&i) {
                val.push(ex);
            } else {
                train.push(ex);
            }
        }
        let val_set = TrainingSet {
            source: format!("{} (validation)", self.source),
            examples: val,
            corpus: self.corpus.clone(),
        };
        self.examples = train;
        (self, val_set)
    }

    /// Fills each example's negatives with up to `per_query` documents that `search` ranks high for its query
    /// and that are not among its positives. `search` returns (document id, text) best first; a document the
    /// corpus lacks is added with that text. The first `skip` results are passed over: on small labelled sets
    /// the very top is often an unlabelled positive.
    pub fn mine_negatives(
        &mut self,
        per_query: usize,
        skip: usize,
        depth: usize,
        search: &Search,
    ) -> Result<MiningReport> {
        let mut report = MiningReport::default();
        for ex in &mut self.examples {
            let positives: HashSet<&String> = ex.positives.iter().collect();
            let found = search(&ex.query, depth)?;
            let mut picked = 0;
            for (rank, (d, text)) in found.iter().enumerate() {
                if positives.contains(d) {
                    report.positives_excluded += 1;
                    continue;
                }
                if rank < skip || ex.negatives.contains(d) || text.trim().is_empty() {
                    continue;
                }
                self.corpus.entry(d.clone()).or_insert_with(|| text.clone());
                ex.negatives.push(d.clone());
                picked += 1;
                if picked >= per_query {
                    break;
                }
            }
            report.mined += picked;
            if picked < per_query {
                report.short_queries += 1;
            }
        }
        Ok(report)
    }

    /// A stable digest of the examples and the texts they use, for the registry.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut used = BTreeMap::new();
        for ex in &self.examples {
            h.update(ex.query.as_bytes());
            h.update([0]);
            for d in ex.positives.iter().chain(&ex.negatives) {
                h.update(d.as_bytes());
                h.update([1]);
                if let Some(t) = self.corpus.get(d) {
                    used.insert(d.clone(), t.clone());
                }
            }
        }
        for (d, t) in used {
            h.update(d.as_bytes());
            h.update(t.as_bytes());
        }
        h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A search for mining: (query, depth) → (document id, text), best first.
pub type Search<'a> = dyn Fn(&str, usize) -> Result<Vec<(String, String)>> + 'a;

/// What [`TrainingSet::from_log`] found in a query log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReport {
    /// Logged questions read.
    pub questions: usize,
    /// Rated thumbs-up (latest rating) and thumbs-down.
    pub up: usize,
    pub down: usize,
    /// Thumbs-up answers without citations (or abstentions): nothing to learn retrieval from.
    pub uncited: usize,
    /// Cited chunks no longer in the index.
    pub missing_chunks: usize,
    /// Examples merged into another with the same question.
    pub merged: usize,
    /// Training examples made.
    pub examples: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MiningReport {
    pub mined: usize,
    /// Known positives the search returned and that were skipped.
    pub positives_excluded: usize,
    /// Queries that got fewer negatives than asked for.
    pub short_queries: usize,
}

/// Fisher–Yates with a SplitMix64 stream: the same seed gives the same order on every machine.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = quarry_eval::compare::SplitMix64::new(seed ^ 0xD1B5_4A32_D192_ED03);
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(examples: Vec<(&str, Vec<&str>)>, docs: &[(&str, &str)]) -> TrainingSet {
        TrainingSet {
            source: "test".into(),
            examples: examples
                .into_iter()
                .map(|(q, p)| Example {
                    query: q.into(),
                    positives: p.into_iter().map(String::from).collect(),
                    negatives: vec![],
                })
                .collect(),
            corpus: docs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn the_query_log_gives_examples_from_thumbs_up_answers_only() {
        use quarry_core::querylog::{parse, FeedbackRecord, LogLine, QueryRecord, Rating, Retrieved};
        let query = |id: &str, question: &str, cited: &[u64]| {
            LogLine::Query(Box::new(QueryRecord {
                id: id.into(),
                time: 1,
                endpoint: "ask".into(),
                key_id: None,
                tenant: None,
                question: question.into(),
                retrieved: vec![],
                answer: Some("An answer [1].".into()),
                abstained: false,
                generator: None,
                latency_ms: 5.0,
                timings: Default::default(),
                cited: cited
                    .iter()
                    .map(|&c| Retrieved {
                        doc_id: format!("doc{c}"),
                        chunk_id: c,
                        score: 1.0,
                    })
                    .collect(),
            }))
        };
        let rate = |id: &str, time: u64, rating: Rating| {
            LogLine::Feedback(FeedbackRecord {
                query_id: id.into(),
                time,
                key_id: None,
                rating,
                comment: None,
            })
        };
        let lines = [
            query("a", "What causes scurvy?", &[1, 2]),
            rate("a", 10, Rating::Up),
            query("b", "Is the sky green?", &[3]),
            rate("b", 11, Rating::Down),
            query("c", "Who wrote it?", &[4]),
            query("d", "what causes scurvy? ", &[2, 5]),
            rate("d", 12, Rating::Up),
            query("e", "Changed its mind?", &[1]),
            rate("e", 13, Rating::Up),
            rate("e", 14, Rating::Down),
            query("f", "Gone?", &[99]),
            rate("f", 15, Rating::Up),
        ];
        let text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect::<String>()
            + "{\"type\": \"query\", \"id\": \"torn";
        let logged = parse(&text);
        assert_eq!(logged.len(), 6);
        let texts = |id: u64| (id < 10).then(|| format!("passage {id}"));
        let (set, report) = TrainingSet::from_log(&logged, &texts, "log");
        // a and d ask the same thing: one example with both answers' cited passages.
        assert_eq!(set.examples.len(), 1);
        assert_eq!(set.examples[0].query, "What causes scurvy?");
        assert_eq!(set.examples[0].positives, ["chunk:1", "chunk:2", "chunk:5"]);
        assert_eq!(set.corpus["chunk:5"], "passage 5");
        assert_eq!(
            report,
            LogReport {
                questions: 6,
                up: 3,
                down: 2,
                uncited: 0,
                missing_chunks: 1,
                merged: 1,
                examples: 1,
            }
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let docs = [("d1", "one"), ("d2", "two")];
        let ok = set(vec![("a", vec!["d1"]), ("b", vec!["d2"])], &docs);
        ok.validate(2).unwrap();
        let few = ok.validate(3).unwrap_err().to_string();
        assert!(few.contains("2 examples") && few.contains("at least 3"), "{few}");
        let unknown = set(vec![("a", vec!["d1"]), ("b", vec!["d9"])], &docs);
        let msg = unknown.validate(1).unwrap_err().to_string();
        assert!(msg.contains("d9") && msg.contains("not in the corpus"), "{msg}");
        let mut dup = set(
            vec![("a", vec!["d1"]), ("A ", vec!["d1", "d2"]), ("b", vec!["d2"])],
            &docs,
        );
        assert!(dup.validate(1).unwrap_err().to_string().contains("duplicate"));
        assert_eq!(dup.dedup(), 1);
        dup.validate(1).unwrap();
        assert_eq!(dup.examples[0].positives, vec!["d1", "d2"]);
        let held: HashSet<String> = ["b".to_string()].into();
        assert_eq!(dup.exclude_queries(&held), 1);
        assert_eq!(dup.examples.len(), 1);
        let empty = set(vec![("  ", vec!["d1"])], &docs);
        assert!(empty.validate(1).unwrap_err().to_string().contains("query is empty"));
        let none = set(vec![("a", vec![])], &docs);
        assert!(none
            .validate(1)
            .unwrap_err()
            .to_string()
            .contains("no relevant document"));
    }

    #[test]
    fn pairs_file_rejects_empty_pairs_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pairs.jsonl");
        std::fs::write(
            &p,
            "{\"query\": \"q1\", \"positive\": \"alpha\", \"negatives\": [\"beta\"]}\n{\"query\": \"q2\", \"positive\": \"\"}\n",
        )
        .unwrap();
        let msg = TrainingSet::from_pairs(&p).unwrap_err().to_string();
        assert!(msg.contains("pairs.jsonl:2") && msg.contains("empty pair"), "{msg}");
        std::fs::write(
            &p,
            "{\"query\": \"q1\", \"positive\": \"alpha\", \"negatives\": [\"beta\"]}\n{\"query\": \"q2\", \"positive\": \"alpha\"}\n",
        )
        .unwrap();
        let s = TrainingSet::from_pairs(&p).unwrap();
        assert_eq!(s.corpus.len(), 2, "the shared positive is one document");
        assert_eq!(s.examples[0].positives, s.examples[1].positives);
        assert_eq!(s.examples[0].negatives.len(), 1);
        s.validate(2).unwrap();
    }

    #[test]
    fn mining_skips_positives_and_the_top() {
        let docs = [("p", "x"), ("n1", "x"), ("n2", "x"), ("n3", "x")];
        let mut s = set(vec![("q", vec!["p"])], &docs);
        let search = |_: &str, _: usize| -> Result<Vec<(String, String)>> {
            Ok(["p", "n1", "n2", "n3"]
                .iter()
                .map(|s| (s.to_string(), "x".to_string()))
                .collect())
        };
        let r = s.mine_negatives(2, 2, 10, &search).unwrap();
        assert_eq!(s.examples[0].negatives, vec!["n2", "n3"]);
        assert_eq!(r.positives_excluded, 1);
        assert_eq!(r.mined, 2);
    }

    #[test]
    fn split_keeps_queries_on_one_side_and_is_seeded() {
        let docs: Vec<(String, String)> = (0..20).map(|i| (format!("d{i}"), "t".to_string())).collect();
        let refs: Vec<(&str, &str)> = docs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let qs: Vec<String> = (0..20).map(|i| format!("q{i}")).collect();
        let ex: Vec<(&str, Vec<&str>)> = qs.iter().zip(&refs).map(|(q, (d, _))| (q.as_str(), vec![*d])).collect();
        let (a, b) = set(ex.clone(), &refs).split(0.25, 7);
        let (a2, b2) = set(ex, &refs).split(0.25, 7);
        assert_eq!(b.examples.len(), 5);
        assert_eq!(a.examples.len(), 15);
        assert_eq!(b.examples, b2.examples);
        assert_eq!(a.examples, a2.examples);
        let train: HashSet<&str> = a.examples.iter().map(|e| e.query.as_str()).collect();
        assert!(b.examples.iter().all(|e| !train.contains(e.query.as_str())));
    }
}
