//! Running a retriever over a BEIR split: the run, its metrics and its latencies.

use std::io::Write;
use std::time::Instant;

use quarry_core::SearchMode;
use quarry_retrieve::{Retriever, SearchRequest};
use serde::Serialize;

use crate::beir::BeirDataset;
use crate::error::Result;
use crate::metrics::{evaluate, rank, QueryMetrics, Run};

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub index_seconds: f64,
    pub queries: usize,
    pub query_p50_ms: f64,
    pub query_p95_ms: f64,
    pub query_mean_ms: f64,
    /// The reranking stage's share of the latency (0 without a reranker).
    pub rerank_p50_ms: f64,
    pub rerank_p95_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrievalReport {
    pub dataset: String,
    pub split: String,
    pub mode: SearchMode,
    pub metrics: QueryMetrics,
    pub timings: Timings,
    #[serde(skip)]
    pub run: Run,
}

/// Retrieves `depth` documents per judged query (best chunk per document) and scores the run.
/// As in BEIR, a hit whose document id equals the query id is dropped.
pub fn evaluate_retrieval(
    ds: &BeirDataset,
    retriever: &Retriever,
    mode: SearchMode,
    depth: usize,
    index_seconds: f64,
) -> Result<RetrievalReport> {
    let mut run = Run::new();
    let mut latencies = Vec::with_capacity(ds.queries.len());
    let mut rerank = Vec::with_capacity(ds.queries.len());
    for (qid, text) in &ds.queries {
        let start = Instant::now();
        let (hits, t) = retriever.search_timed(&SearchRequest {
            query: text,
            mode,
            top_k: depth + 1,
            filter: None,
            per_document: true,
        })?;
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        rerank.push(t.rerank_ms);
        let docs: Vec<(String, f64)> = hits
            .into_iter()
            .filter(|h| &h.doc_id != qid)
            .take(depth)
            .map(|h| (h.doc_id, score_f64(h.score)))
            .collect();
        run.insert(qid.clone(), docs);
    }
    let (_, metrics) = evaluate(&run, &ds.qrels);
    Ok(RetrievalReport {
        dataset: ds.name.clone(),
        split: ds.split.clone(),
        mode,
        metrics,
        timings: Timings {
            index_seconds,
            queries: latencies.len(),
            query_p50_ms: percentile(&latencies, 0.50),
            query_p95_ms: percentile(&latencies, 0.95),
            query_mean_ms: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
            rerank_p50_ms: percentile(&rerank, 0.50),
            rerank_p95_ms: percentile(&rerank, 0.95),
        },
        run,
    })
}

/// Nearest-rank percentile.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A retrieval score as the decimal it prints as: `0.1f32` becomes `0.1`, not `0.10000000149011612`.
/// Distinct `f32` scores stay distinct and in the same order, so rankings are unchanged.
fn score_f64(s: f32) -> f64 {
    s.to_string().parse().unwrap_or(f64::from(s))
}

/// Writes a standard TREC run: `qid Q0 docid rank score tag`, ranked as trec_eval ranks.
pub fn write_trec_run(run: &Run, tag: &str, out: &mut impl Write) -> std::io::Result<()> {
    for (qid, results) in run {
        let scores: std::collections::HashMap<&str, f64> = results.iter().map(|(d, s)| (d.as_str(), *s)).collect();
        for (i, doc) in rank(results).into_iter().enumerate() {
            writeln!(out, "{qid} Q0 {doc} {} {} {tag}", i + 1, scores[doc])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn trec_run_lines() {
        let mut run = Run::new();
        run.insert("q1".into(), vec![("b".into(), 0.5), ("a".into(), 0.9)]);
        let mut out = Vec::new();
        write_trec_run(&run, "quarry", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "q1 Q0 a 1 0.9 quarry\nq1 Q0 b 2 0.5 quarry\n"
        );
    }
}
