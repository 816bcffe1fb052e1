//! Retrieval quality regression on a fixed SciFact subset, with the real model: the first 40 test
//! queries against a corpus of their judged documents plus the first 400 corpus documents.
//! Each mode must stay at or above the committed baseline (tests/data/scifact_subset_baseline.json).

#![allow(clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use quarry_core::{Config, Embedder, SearchMode};
use quarry_eval::{evaluate_retrieval, BeirDataset};
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent};
use quarry_models::SentenceEmbedder;
use quarry_retrieve::Retriever;

fn shared() -> PathBuf {
    std::env::var_os("QUARRY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn scifact_subset_stays_at_or_above_baseline() {
    let src = shared().join("datasets/scifact");
    assert!(
        src.join("corpus.jsonl").is_file(),
        "SciFact not found under {} (set QUARRY_SHARED)",
        src.display()
    );
    let full = BeirDataset::load(&src, "test").unwrap();
    let queries: Vec<&(String, String)> = full.queries.iter().take(40).collect();
    let judged: BTreeSet<&str> = queries
        .iter()
        .flat_map(|(q, _)| full.qrels[q].keys().map(String::as_str))
        .collect();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scifact-subset");
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let corpus = std::fs::read_to_string(src.join("corpus.jsonl")).unwrap();
    let lines: Vec<&str> = corpus
        .lines()
        .enumerate()
        .filter(|(i, l)| {
            *i < 400 || {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                judged.contains(v["_id"].as_str().unwrap())
            }
        })
        .map(|(_, l)| l)
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut q = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (id, text) in &queries {
        q.push_str(&serde_json::json!({"_id": id, "text": text}).to_string());
        q.push('\n');
        for (d, g) in &full.qrels[id] {
            qrels.push_str(&format!("{id}\t{d}\t{g}\n"));
        }
    }
    std::fs::write(dir.join("queries.jsonl"), q).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();

    let cfg = Config::default();
    let embedder = Arc::new(SentenceEmbedder::from_config(&cfg.model).expect("run scripts/setup.sh"));
    let index =
        Arc::new(EmbeddedIndex::open(&tmp.path().join("data"), cfg.index.clone(), Some(embedder.model_id())).unwrap());
    let summary = Ingestor::new(index.as_ref(), embedder.as_ref(), cfg.chunking.clone())
        .with_dedup(false)
        .ingest_paths(&[dir.join("corpus.jsonl")], &Silent);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let ds = BeirDataset::load(&dir, "test").unwrap();
    assert_eq!(ds.queries.len(), 40);
    let retriever = Retriever::new(index, embedder as Arc<dyn Embedder>, cfg.retrieval.clone());

    let baseline: serde_json::Value =
        serde_json::from_str(include_str!("data/scifact_subset_baseline.json")).expect("baseline parses");
    let mut measured = serde_json::Map::new();
    for mode in [SearchMode::Bm25, SearchMode::Dense, SearchMode::Hybrid] {
        let r = evaluate_retrieval(&ds, &retriever, mode, 100, 0.0).unwrap();
        measured.insert(
            mode.to_string(),
            serde_json::json!({"ndcg@10": r.metrics.ndcg_10, "recall@100": r.metrics.recall_100}),
        );
    }
    eprintln!("measured: {}", serde_json::Value::Object(measured.clone()));
    for (mode, m) in &measured {
        for metric in ["ndcg@10", "recall@100"] {
            let got = m[metric].as_f64().unwrap();
            let want = baseline[mode][metric]
                .as_f64()
                .unwrap_or_else(|| panic!("baseline lacks {mode} {metric}"));
            // A small tolerance for floating-point differences between CPU kernels (AVX2 vs AVX-512).
            assert!(
                got >= want - 0.01,
                "{mode} {metric} regressed: {got:.4} < baseline {want:.4}"
            );
        }
    }
}
