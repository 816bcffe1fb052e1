//! `quarry eval retrieval`: index a BEIR corpus into a cache (keyed by dataset content, model and
//! chunking) and score BM25, dense or hybrid retrieval on a split.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use quarry_core::Embedder;
use quarry_eval::{evaluate_retrieval, write_trec_run, BeirDataset};
use quarry_ingest::Ingestor;
use quarry_retrieve::Retriever;
use sha2::{Digest, Sha256};

use crate::args::EvalCommand;
use crate::progress::Bars;
use crate::settings::Settings;

pub fn run(settings: &Settings, cmd: EvalCommand) -> Result<ExitCode> {
    let EvalCommand::Retrieval {
        dataset,
        split,
        mode,
        depth,
        json,
        run,
    } = cmd;
    let ds = BeirDataset::load(&dataset, &split)?;
    let embedder = settings.embedder()?;
    let (index, index_seconds, cached) = cached_index(settings, &ds, embedder.as_ref())?;
    let retriever = Retriever::new(index, embedder as Arc<dyn Embedder>, settings.config.retrieval.clone());
    let report = evaluate_retrieval(&ds, &retriever, mode, depth, index_seconds)?;
    let m = &report.metrics;
    println!(
        "{} {} ({} queries), mode {}",
        report.dataset, report.split, report.timings.queries, report.mode
    );
    println!(
        "  nDCG@10 {:.4}  Recall@10 {:.4}  Recall@100 {:.4}  MRR@10 {:.4}  MAP@100 {:.4}  P@10 {:.4}",
        m.ndcg_10, m.recall_10, m.recall_100, m.mrr_10, m.map_100, m.p_10
    );
    println!(
        "  indexing {:.1}s{}  query latency p50 {:.1} ms  p95 {:.1} ms",
        report.timings.index_seconds,
        if cached { " (cached)" } else { "" },
        report.timings.query_p50_ms,
        report.timings.query_p95_ms
    );
    if let Some(path) = json {
        let mut v = serde_json::to_value(&report)?;
        v["timings"]["index_cached"] = serde_json::Value::Bool(cached);
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = run {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        write_trec_run(&report.run, &format!("quarry-{}", report.mode), &mut f)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens (building if needed) the index of a dataset's corpus under DATA_DIR/eval-cache. The key
/// covers the corpus bytes, the model and the chunking settings, so a change to any re-indexes.
fn cached_index(
    settings: &Settings,
    ds: &BeirDataset,
    embedder: &dyn Embedder,
) -> Result<(Arc<dyn quarry_core::Index>, f64, bool)> {
    let corpus = ds.corpus_path();
    let bytes = std::fs::read(&corpus).with_context(|| format!("{}: cannot read", corpus.display()))?;
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(embedder.model_id().as_bytes());
    h.update(serde_json::to_vec(&settings.config.chunking)?);
    let key: String = h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = settings.data_dir.join("eval-cache").join(format!("{}-{key}", ds.name));
    // PostgreSQL: the index goes into a schema of its own; the timing record stays in the local folder.
    let (store, dir) = match &settings.store {
        quarry_index::StoreLocation::Dir(_) => (quarry_index::StoreLocation::Dir(dir.clone()), dir),
        pg => (
            pg.scoped(&format!("eval_{}_{key}", ds.name)),
            dir.with_file_name(format!("{}-{key}-postgres", ds.name)),
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let timing_file = dir.join("indexing.json");
    let index = settings.open_at(&store, Some(embedder))?;
    if let Some(secs) = recorded_seconds(&timing_file) {
        if index.stats()?.documents > 0 {
            return Ok((index, secs, true));
        }
    }
    let start = Instant::now();
    let bars = Bars::new();
    let summary = Ingestor::new(index.as_ref(), embedder, settings.config.chunking.clone())
        .with_dedup(false)
        .ingest_paths(std::slice::from_ref(&corpus), &bars);
    bars.finish();
    let secs = start.elapsed().as_secs_f64();
    for e in summary.errors.iter().take(10) {
        eprintln!("warning: {e}");
    }
    anyhow::ensure!(
        summary.documents_added + summary.documents_unchanged > 0,
        "{}: no documents indexed",
        corpus.display()
    );
    if summary.errors.is_empty() {
        std::fs::write(
            &timing_file,
            serde_json::json!({ "seconds": secs, "summary": summary }).to_string(),
        )?;
    }
    Ok((index, secs, false))
}

fn recorded_seconds(path: &Path) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["seconds"].as_f64()
}
