//! Measuring Quarry: BEIR-layout datasets, retrieval metrics with trec_eval's definitions
//! (nDCG@10, Recall@10/100, MRR@10, MAP@100, P@10), TREC run files, and latency percentiles.
//!
//! ```no_run
//! # fn run(retriever: &quarry_retrieve::Retriever) -> Result<(), quarry_eval::Error> {
//! let ds = quarry_eval::BeirDataset::load("../shared/datasets/scifact".as_ref(), "test")?;
//! let report = quarry_eval::evaluate_retrieval(&ds, retriever, quarry_core::SearchMode::Hybrid, 100, 0.0)?;
//! println!("nDCG@10 {:.3}", report.metrics.ndcg_10);
//! # Ok(()) }
//! ```

pub mod agreement;
pub mod answers;
pub mod beir;
pub mod compare;
pub mod decision;
pub mod error;
pub mod evalset;
pub mod html;
pub mod judge;
pub mod lexical;
pub mod measure;
pub mod metrics;
pub mod ragas;
pub mod report;
pub mod retrieval;
pub mod synth;
pub mod trec;

pub use beir::{corpus_ids, BeirDataset};
pub use compare::{check_gate, compare, CompareOptions, Comparison, Gate, ScoreTable};
pub use error::{Error, Result};
pub use measure::{evaluate_measures, Evaluation, Measure, Metric};
pub use metrics::{evaluate, Qrels, QueryMetrics, Run};
pub use retrieval::{evaluate_retrieval, percentile, write_trec_run, RetrievalReport, Timings};
pub use trec::{read_qrels, read_run, RunFileReport};
