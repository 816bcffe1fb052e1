//! Quarry's retrieval measures equal pytrec_eval's (trec_eval's own C code) to 1e-6, per query, on committed
//! run files: a SciFact test run of Quarry's BM25 (300 queries × 100 documents, qrels read from the shared
//! dataset) and a small hand-made run full of score ties, graded judgements, judged non-relevant documents and
//! relevant documents never retrieved. The expected values were written by tests/data/pytrec_reference.py.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use quarry_eval::{evaluate_measures, read_qrels, read_run, Measure};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn shared() -> PathBuf {
    std::env::var_os("QUARRY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// Compares every measure of the expected file; returns how many (measure, query) values were checked.
fn check(run: &Path, qrels: &Path, expected: &Path) -> usize {
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap();
    let (run, report) = read_run(run).unwrap();
    assert_eq!(report.duplicates, 0);
    let qrels = read_qrels(qrels).unwrap();
    let names: Vec<&String> = expected
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .collect();
    let measures: Vec<Measure> = names.iter().map(|n| n.parse().unwrap()).collect();
    let e = evaluate_measures(&run, &qrels, &measures);
    let queries = expected["_meta"]["queries"].as_u64().unwrap() as usize;
    assert_eq!(e.per_query.len(), queries, "the same queries are scored");
    let mut checked = 0;
    for (name, m) in names.iter().zip(&measures) {
        let per_query = expected[name.as_str()].as_object().unwrap();
        assert_eq!(per_query.len(), queries, "{name}");
        for (q, want) in per_query {
            let want = want.as_f64().unwrap();
            let got = e
                .query_value(q, *m)
                .unwrap_or_else(|| panic!("{name}: query {q} not scored"));
            assert!(
                (got - want).abs() <= 1e-6,
                "{name} on query {q}: Quarry {got}, pytrec_eval {want}"
            );
            checked += 1;
        }
        // Means agree too (every judged query is in the run here).
        let mean: f64 = per_query.values().map(|v| v.as_f64().unwrap()).sum::<f64>() / queries as f64;
        assert!((e.mean_of(*m).unwrap() - mean).abs() <= 1e-6, "mean {name}");
    }
    checked
}

#[test]
fn equals_pytrec_eval_on_a_run_full_of_ties() {
    let n = check(&data("tiny.run"), &data("tiny.qrels"), &data("tiny.pytrec_eval.json"));
    assert_eq!(n, 22 * 12);
}

#[test]
fn equals_pytrec_eval_on_a_scifact_bm25_run() {
    let qrels = shared().join("datasets/scifact/qrels/test.tsv");
    assert!(
        qrels.is_file(),
        "SciFact qrels not found at {} (set QUARRY_SHARED)",
        qrels.display()
    );
    let n = check(
        &data("scifact-test-bm25.run"),
        &qrels,
        &data("scifact-test-bm25.pytrec_eval.json"),
    );
    assert_eq!(n, 22 * 300);
}
