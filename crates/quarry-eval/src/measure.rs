//! Retrieval measures at any cut-off, per query and averaged, with trec_eval's definitions.
//!
//! | name          | trec_eval / pytrec_eval | definition (relevant = grade > 0)                                   |
//! |---------------|-------------------------|----------------------------------------------------------------------|
//! | `ndcg@k`      | `ndcg_cut_k`            | DCG of the top k (gain = grade, discount log2(rank+1)) / ideal DCG@k |
//! | `ndcg`        | `ndcg`                  | the same over the whole ranking                                      |
//! | `recall@k`    | `recall_k`              | relevant in the top k / all relevant of the query                    |
//! | `recall`      | `set_recall`            | relevant retrieved / all relevant                                    |
//! | `p@k`         | `P_k`                   | relevant in the top k / k (fewer than k retrieved still divides by k)|
//! | `p`           | `set_P`                 | relevant retrieved / retrieved                                       |
//! | `mrr@k`       | `recip_rank` on top k   | 1 / rank of the first relevant document within the top k, else 0    |
//! | `mrr`         | `recip_rank`            | the same over the whole ranking                                      |
//! | `map@k`       | `map_cut_k`             | sum of precision at each relevant rank ≤ k / all relevant           |
//! | `map`         | `map`                   | the same over the whole ranking                                      |
//! | `hit@k`       | `success_k`             | 1 if any relevant document is in the top k                           |
//! | `r-prec`      | `Rprec`                 | precision at rank R, R = number of relevant documents                |
//! | `judged@k`    | (ir_measures `Judged@k`)| documents in the top k that have any judgement (grade ≥ 0) / k       |
//!
//! Rankings follow trec_eval: score descending, ties broken by document id descending, a document listed
//! twice counts once at its best rank. Means are over the queries with at least one relevant judgement;
//! such a query with no results scores 0 (trec_eval's `-c`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::metrics::{rank, Qrels, Run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Ndcg,
    Recall,
    Precision,
    Mrr,
    Map,
    Hit,
    RPrec,
    Judged,
}

/// A metric and its cut-off (`None` = the whole ranking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Measure {
    pub metric: Metric,
    pub k: Option<usize>,
}

impl Measure {
    pub const fn at(metric: Metric, k: usize) -> Measure {
        Measure { metric, k: Some(k) }
    }

    /// The pytrec_eval measure name with the same definition, where one exists
    /// (MRR@k is pytrec_eval's `recip_rank` on a run cut to its top k).
    pub fn trec_eval_name(&self) -> Option<String> {
        let k = self.k;
        Some(match (self.metric, k) {
            (Metric::Ndcg, Some(k)) => format!("ndcg_cut_{k}"),
            (Metric::Ndcg, None) => "ndcg".into(),
            (Metric::Recall, Some(k)) => format!("recall_{k}"),
            (Metric::Recall, None) => "set_recall".into(),
            (Metric::Precision, Some(k)) => format!("P_{k}"),
            (Metric::Precision, None) => "set_P".into(),
            (Metric::Mrr, _) => "recip_rank".into(),
            (Metric::Map, Some(k)) => format!("map_cut_{k}"),
            (Metric::Map, None) => "map".into(),
            (Metric::Hit, Some(k)) => format!("success_{k}"),
            (Metric::RPrec, _) => "Rprec".into(),
            (Metric::Hit, None) | (Metric::Judged, _) => return None,
        })
    }

    /// The default set reported by `quarry eval`.
    pub fn defaults() -> Vec<Measure> {
        use Metric::*;
        vec![
            Measure::at(Ndcg, 10),
            Measure::at(Recall, 10),
            Measure::at(Recall, 100),
            Measure::at(Precision, 10),
            Measure::at(Mrr, 10),
            Measure::at(Map, 100),
            Measure::at(Hit, 10),
            Measure::at(Judged, 10),
        ]
    }

    /// Parses a comma-separated list such as `ndcg@10,recall@100,map`.
    pub fn parse_list(s: &str) -> Result<Vec<Measure>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.metric {
            Metric::Ndcg => "ndcg",
            Metric::Recall => "recall",
            Metric::Precision => "p",
            Metric::Mrr => "mrr",
            Metric::Map => "map",
            Metric::Hit => "hit",
            Metric::RPrec => "r-prec",
            Metric::Judged => "judged",
        };
        match self.k {
            Some(k) => write!(f, "{name}@{k}"),
            None => f.write_str(name),
        }
    }
}

impl FromStr for Measure {
    type Err = String;

    fn from_str(s: &str) -> Result<Measure, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, k) = match lower.split_once('@') {
            Some((n, k)) => {
                let k: usize = k
                    .parse()
                    .map_err(|_| format!("measure {s:?}: the cut-off after @ must be a positive integer"))?;
                if k == 0 {
                    return Err(format!("measure {s:?}: the cut-off must be at least 1"));
                }
                (n.to_string(), Some(k))
            }
            None => (lower.clone(), None),
        };
        let metric = match name.as_str() {
            "ndcg" => Metric::Ndcg,
            "recall" | "r" => Metric::Recall,
            "p" | "precision" => Metric::Precision,
            "mrr" | "rr" => Metric::Mrr,
            "map" | "ap" => Metric::Map,
            "hit" | "hit_rate" | "hitrate" | "success" => Metric::Hit,
            "r-prec" | "rprec" => Metric::RPrec,
            "judged" => Metric::Judged,
            _ => {
                return Err(format!(
                "unknown measure {s:?} (known: ndcg, recall, p, mrr, map, hit, r-prec, judged; with @k for a cut-off)"
            ))
            }
        };
        match (metric, k) {
            (Metric::Hit | Metric::Judged, None) => Err(format!("measure {s:?} needs a cut-off, e.g. {name}@10")),
            (Metric::RPrec, Some(_)) => Err(format!("measure {s:?}: r-prec takes no cut-off")),
            _ => Ok(Measure { metric, k }),
        }
    }
}

impl Serialize for Measure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Measure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Measure, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One query's value of `m` for an already ranked list (see [`rank`]).
pub fn score(m: Measure, ranked: &[&str], judged: &HashMap<String, i32>) -> f64 {
    let k = m.k.unwrap_or(usize::MAX);
    let relevant = |d: &str| judged.get(d).is_some_and(|g| *g > 0);
    let hits = |list: &[&str]| list.iter().filter(|d| relevant(d)).count();
    let total_relevant = judged.values().filter(|g| **g > 0).count();
    let top = &ranked[..ranked.len().min(k)];
    match m.metric {
        Metric::Ndcg => crate::metrics::ndcg_at(ranked, judged, k),
        Metric::Recall => {
            if total_relevant == 0 {
                0.0
            } else {
                hits(top) as f64 / total_relevant as f64
            }
        }
        Metric::Precision => {
            let denom = match m.k {
                Some(k) => k,
                None => ranked.len(),
            };
            if denom == 0 {
                0.0
            } else {
                hits(top) as f64 / denom as f64
            }
        }
        Metric::Mrr => top
            .iter()
            .position(|d| relevant(d))
            .map_or(0.0, |i| 1.0 / (i as f64 + 1.0)),
        Metric::Map => crate::metrics::map_at(ranked, judged, k),
        Metric::Hit => f64::from(u8::from(top.iter().any(|d| relevant(d)))),
        Metric::RPrec => {
            if total_relevant == 0 {
                0.0
            } else {
                let r = &ranked[..ranked.len().min(total_relevant)];
                hits(r) as f64 / total_relevant as f64
            }
        }
        Metric::Judged => top.iter().filter(|d| judged.contains_key(**d)).count() as f64 / k as f64,
    }
}

/// Per-query values of several measures, and their means.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub measures: Vec<Measure>,
    /// query id → one value per measure, in `measures` order.
    pub per_query: BTreeMap<String, Vec<f64>>,
    pub mean: Vec<f64>,
    /// Judged queries that the run has no results for (scored 0).
    pub queries_without_results: Vec<String>,
    /// Queries in the run that have no relevance judgements (not scored).
    pub unjudged_run_queries: usize,
}

impl Evaluation {
    pub fn mean_of(&self, m: Measure) -> Option<f64> {
        self.measures.iter().position(|x| *x == m).map(|i| self.mean[i])
    }

    pub fn query_value(&self, qid: &str, m: Measure) -> Option<f64> {
        let i = self.measures.iter().position(|x| *x == m)?;
        self.per_query.get(qid).map(|v| v[i])
    }
}

/// Scores `run` against `qrels` for every judged query.
pub fn evaluate_measures(run: &Run, qrels: &Qrels, measures: &[Measure]) -> Evaluation {
    let mut per_query = BTreeMap::new();
    let mut mean = vec![0.0; measures.len()];
    let mut without = Vec::new();
    let empty = Vec::new();
    for (qid, judged) in qrels {
        if !judged.values().any(|g| *g > 0) {
            continue;
        }
        let results = match run.get(qid) {
            Some(r) if !r.is_empty() => r,
            _ => {
                without.push(qid.clone());
                &empty
            }
        };
        let ranked = rank(results);
        let values: Vec<f64> = measures.iter().map(|m| score(*m, &ranked, judged)).collect();
        for (acc, v) in mean.iter_mut().zip(&values) {
            *acc += v;
        }
        per_query.insert(qid.clone(), values);
    }
    if !per_query.is_empty() {
        for v in &mut mean {
            *v /= per_query.len() as f64;
        }
    }
    let unjudged_run_queries = run
        .keys()
        .filter(|q| !qrels.get(*q).is_some_and(|j| j.values().any(|g| *g > 0)))
        .count();
    Evaluation {
        measures: measures.to_vec(),
        per_query,
        mean,
        queries_without_results: without,
        unjudged_run_queries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    #[test]
    fn names_round_trip_and_bad_names_are_explained() {
        for s in [
            "ndcg@10",
            "ndcg",
            "recall@100",
            "recall",
            "p@5",
            "p",
            "mrr@10",
            "map@100",
            "map",
            "hit@3",
        ] {
            let m: Measure = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert_eq!("r-prec".parse::<Measure>().unwrap().to_string(), "r-prec");
        assert_eq!("judged@10".parse::<Measure>().unwrap().to_string(), "judged@10");
        assert_eq!("Precision@10".parse::<Measure>().unwrap().to_string(), "p@10");
        assert!("ndcg@0".parse::<Measure>().unwrap_err().contains("at least 1"));
        assert!("ndcg@x".parse::<Measure>().unwrap_err().contains("positive integer"));
        assert!("bleu@4".parse::<Measure>().unwrap_err().contains("unknown measure"));
        assert!("hit".parse::<Measure>().unwrap_err().contains("needs a cut-off"));
        assert_eq!(Measure::parse_list("ndcg@10, map").unwrap().len(), 2);
    }

    /// Relevant: a (2), c (1), z (1, never retrieved); n judged non-relevant. Ranking x a y c n.
    #[test]
    fn hand_computed_values() {
        let j = judged(&[("a", 2), ("c", 1), ("z", 1), ("n", 0)]);
        let ranked = ["x", "a", "y", "c", "n"];
        let v = |s: &str| score(s.parse().unwrap(), &ranked, &j);
        assert!((v("p@2") - 0.5).abs() < 1e-12);
        assert!((v("p") - 2.0 / 5.0).abs() < 1e-12);
        assert!((v("recall@2") - 1.0 / 3.0).abs() < 1e-12);
        assert!((v("recall") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(v("hit@1"), 0.0);
        assert_eq!(v("hit@2"), 1.0);
        assert_eq!(v("mrr@1"), 0.0);
        assert!((v("mrr") - 0.5).abs() < 1e-12);
        // R = 3: top 3 = x a y → 1 relevant.
        assert!((v("r-prec") - 1.0 / 3.0).abs() < 1e-12);
        // Judged in the top 4: a, c → 2/4; top 5 adds n (judged non-relevant).
        assert!((v("judged@4") - 0.5).abs() < 1e-12);
        assert!((v("judged@5") - 0.6).abs() < 1e-12);
        // AP cut at 2: precision 1/2 at rank 2, over 3 relevant.
        assert!((v("map@2") - 0.5 / 3.0).abs() < 1e-12);
        assert!((v("map") - (0.5 + 0.5) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn evaluation_counts_missing_and_unjudged_queries() {
        let mut qrels = Qrels::new();
        qrels.insert("q1".into(), judged(&[("a", 1)]));
        qrels.insert("q2".into(), judged(&[("b", 1)]));
        let mut run = Run::new();
        run.insert("q1".into(), vec![("a".into(), 1.0)]);
        run.insert("q9".into(), vec![("a".into(), 1.0)]);
        let e = evaluate_measures(&run, &qrels, &Measure::defaults());
        assert_eq!(e.queries_without_results, ["q2"]);
        assert_eq!(e.unjudged_run_queries, 1);
        let ndcg = Measure::at(Metric::Ndcg, 10);
        assert_eq!(e.query_value("q1", ndcg), Some(1.0));
        assert_eq!(e.query_value("q2", ndcg), Some(0.0));
        assert!((e.mean_of(ndcg).unwrap() - 0.5).abs() < 1e-12);
    }
}
