//! Retrieval metrics with trec_eval's definitions (as pytrec_eval and BEIR compute them).
//!
//! - A document is relevant when its qrels grade is > 0; gains for nDCG are the grades themselves.
//! - A run is ranked by score descending, ties broken by document id descending (trec_eval's order).
//! - Recall@k and MAP divide by all relevant documents of the query, retrieved or not.
//! - Averages are over the queries that have relevance judgements; a judged query with no results
//!   counts as 0 (trec_eval's `-c` convention).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// query id → document id → grade
pub type Qrels = BTreeMap<String, HashMap<String, i32>>;
/// query id → (document id, score); order is irrelevant, ranking is recomputed.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueryMetrics {
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    #[serde(rename = "map@100")]
    pub map_100: f64,
    #[serde(rename = "p@10")]
    pub p_10: f64,
}

impl QueryMetrics {
    fn add(&mut self, o: &QueryMetrics) {
        self.ndcg_10 += o.ndcg_10;
        self.recall_10 += o.recall_10;
        self.recall_100 += o.recall_100;
        self.mrr_10 += o.mrr_10;
        self.map_100 += o.map_100;
        self.p_10 += o.p_10;
    }

    fn scale(&mut self, f: f64) {
        for m in [
            &mut self.ndcg_10,
            &mut self.recall_10,
            &mut self.recall_100,
            &mut self.mrr_10,
            &mut self.map_100,
            &mut self.p_10,
        ] {
            *m *= f;
        }
    }
}

/// Ranks a query's results the way trec_eval does: score descending, then document id descending.
/// A document listed twice counts once, at its best rank.
pub fn rank(results: &[(String, f64)]) -> Vec<&str> {
    let mut r: Vec<&(String, f64)> = results.iter().collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut seen = std::collections::HashSet::new();
    r.into_iter()
        .map(|(d, _)| d.as_str())
        .filter(|d| seen.insert(*d))
        .collect()
}

pub fn ndcg_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| judged.get(*d).copied().unwrap_or(0).max(0) as f64 / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| *g as f64 / (i as f64 + 2.0).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

fn relevant(judged: &HashMap<String, i32>, d: &str) -> bool {
    judged.get(d).is_some_and(|g| *g > 0)
}

pub fn recall_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let total = judged.values().filter(|g| **g > 0).count();
    if total == 0 {
        return 0.0;
    }
    ranked.iter().take(k).filter(|d| relevant(judged, d)).count() as f64 / total as f64
}

pub fn precision_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    ranked.iter().take(k).filter(|d| relevant(judged, d)).count() as f64 / k as f64
}

pub fn mrr_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| relevant(judged, d))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

pub fn map_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let total = judged.values().filter(|g| **g > 0).count();
    if total == 0 {
        return 0.0;
    }
    let mut hits = 0;
    let mut sum = 0.0;
    for (i, d) in ranked.iter().take(k).enumerate() {
        if relevant(judged, d) {
            hits += 1;
            sum += hits as f64 / (i as f64 + 1.0);
        }
    }
    sum / total as f64
}

pub fn query_metrics(results: &[(String, f64)], judged: &HashMap<String, i32>) -> QueryMetrics {
    let ranked = rank(results);
    QueryMetrics {
        ndcg_10: ndcg_at(&ranked, judged, 10),
        recall_10: recall_at(&ranked, judged, 10),
        recall_100: recall_at(&ranked, judged, 100),
        mrr_10: mrr_at(&ranked, judged, 10),
        map_100: map_at(&ranked, judged, 100),
        p_10: precision_at(&ranked, judged, 10),
    }
}

/// Per-query metrics for every judged query, and their mean.
pub fn evaluate(run: &Run, qrels: &Qrels) -> (BTreeMap<String, QueryMetrics>, QueryMetrics) {
    let mut per_query = BTreeMap::new();
    let mut mean = QueryMetrics::default();
    let empty = Vec::new();
    for (qid, judged) in qrels {
        if !judged.values().any(|g| *g > 0) {
            continue;
        }
        let m = query_metrics(run.get(qid).unwrap_or(&empty), judged);
        mean.add(&m);
        per_query.insert(qid.clone(), m);
    }
    if !per_query.is_empty() {
        mean.scale(1.0 / per_query.len() as f64);
    }
    (per_query, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn results(ids: &[&str]) -> Vec<(String, f64)> {
        ids.iter()
            .enumerate()
            .map(|(i, d)| (d.to_string(), 100.0 - i as f64))
            .collect()
    }

    /// Worked by hand: relevant a (grade 2), c (grade 1), z (grade 1, never retrieved).
    /// Ranking: x a y c. DCG@10 = 2/log2(3) + 1/log2(5) = 1.26186 + 0.43068 = 1.69254.
    /// IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.63093 + 0.5 = 3.13093. nDCG = 0.54059.
    /// Recall@10 = 2/3. P@10 = 0.2. MRR = 1/2. AP = (1/2 + 2/4) / 3 = 0.33333.
    #[test]
    fn hand_computed_example() {
        let j = judged(&[("a", 2), ("c", 1), ("z", 1), ("n", 0)]);
        let m = query_metrics(&results(&["x", "a", "y", "c"]), &j);
        assert!((m.ndcg_10 - 0.540_59).abs() < 1e-4, "{}", m.ndcg_10);
        assert!((m.recall_10 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall_100 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.p_10 - 0.2).abs() < 1e-12);
        assert!((m.mrr_10 - 0.5).abs() < 1e-12);
        assert!((m.map_100 - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn cutoffs_and_ties_follow_trec_eval() {
        let j = judged(&[("d11", 1)]);
        // Relevant document at rank 11: outside every @10 metric, inside @100.
        let ids: Vec<String> = (0..11).map(|i| format!("n{i:02}")).collect();
        let mut r: Vec<&str> = ids.iter().map(String::as_str).take(10).collect();
        r.push("d11");
        let m = query_metrics(&results(&r), &j);
        assert_eq!((m.ndcg_10, m.mrr_10, m.recall_10, m.p_10), (0.0, 0.0, 0.0, 0.0));
        assert!((m.recall_100 - 1.0).abs() < 1e-12);
        assert!((m.map_100 - 1.0 / 11.0).abs() < 1e-12);
        // Equal scores: the larger document id ranks first.
        let tied = vec![("a".to_string(), 1.0), ("b".to_string(), 1.0)];
        assert_eq!(rank(&tied), ["b", "a"]);
        // A duplicated document cannot push recall past 1.
        let dup = vec![("d11".to_string(), 2.0), ("d11".to_string(), 1.0)];
        assert_eq!(rank(&dup), ["d11"]);
        assert!((query_metrics(&dup, &j).recall_10 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn means_count_judged_queries_without_results_as_zero() {
        let mut qrels = Qrels::new();
        qrels.insert("q1".into(), judged(&[("a", 1)]));
        qrels.insert("q2".into(), judged(&[("b", 1)]));
        qrels.insert("q3".into(), judged(&[("c", 0)])); // no relevant documents: not evaluated
        let mut run = Run::new();
        run.insert("q1".into(), results(&["a"]));
        let (per, mean) = evaluate(&run, &qrels);
        assert_eq!(per.len(), 2);
        assert!((mean.ndcg_10 - 0.5).abs() < 1e-12);
        assert!((mean.mrr_10 - 0.5).abs() < 1e-12);
    }
}
