//! `quarry-bench`: the numbers the spine promises, measured in one run on this machine.
//!
//! 1. Embedding throughput of Quarry vs Python sentence-transformers: same model directory, same
//!    2,000 sentences (from the SciFact corpus), same batch size, same thread count.
//! 2. SciFact indexing time into a fresh data directory (chunk, embed, store, BM25, HNSW).
//! 3. Retrieval quality and query latency p50/p95 per mode on SciFact test.
//!
//! Results are appended to bench/RESULTS.md. Usage:
//!   cargo run --release -p quarry-bench -- [--shared ../shared] [--python PYTHON] [--skip-index]
//! PYTHON must have sentence-transformers installed (see bench/README.md); without it the
//! reference column is reported as missing, not invented.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use quarry_core::{Config, Embedder, SearchMode};
use quarry_eval::{evaluate_retrieval, BeirDataset};
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent};
use quarry_models::SentenceEmbedder;
use quarry_retrieve::Retriever;

struct Opts {
    shared: PathBuf,
    python: String,
    data_dir: Option<PathBuf>,
    sentences: usize,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        shared: PathBuf::from("../shared"),
        python: "python3".into(),
        data_dir: None,
        sentences: 2000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--shared" => o.shared = PathBuf::from(val()?),
            "--python" => o.python = val()?,
            "--data-dir" => o.data_dir = Some(PathBuf::from(val()?)),
            "--sentences" => o.sentences = val()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// The first `n` sentences of ≥ 8 words from the SciFact abstracts, in corpus order.
fn sentences(corpus: &Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(corpus).with_context(|| format!("{}", corpus.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        for s in v["text"].as_str().unwrap_or("").split(". ") {
            if s.split_whitespace().count() >= 8 {
                out.push(format!("{}.", s.trim_end_matches('.')));
                if out.len() == n {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let o = parse()?;
    let cfg = Config::default();
    let mut report = String::new();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    report.push_str(&format!(
        "\n## {} — {cpu}, {cores} cores\n\n",
        String::from_utf8_lossy(&date.stdout).trim()
    ));
    report.push_str(&format!(
        "Command: `cargo run --release -p quarry-bench -- --shared {} --python {}`\n\n",
        o.shared.display(),
        o.python
    ));

    // 1. Embedding throughput, Quarry vs the reference, same texts and batch size.
    let scifact = o.shared.join("datasets/scifact");
    let texts = sentences(&scifact.join("corpus.jsonl"), o.sentences)?;
    let embedder = Arc::new(SentenceEmbedder::from_config(&cfg.model)?);
    let tmp = tempfile::tempdir()?;
    let texts_file = tmp.path().join("texts.txt");
    std::fs::write(&texts_file, texts.join("\n") + "\n")?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = refs
        .iter()
        .map(|t| quarry_core::TokenCounter::count_tokens(embedder.as_ref(), t) + 2)
        .sum();
    embedder.embed(&refs[..64.min(refs.len())])?; // warm-up
    let start = Instant::now();
    embedder.embed(&refs)?;
    let quarry_rate = texts.len() as f64 / start.elapsed().as_secs_f64();
    let reference = std::process::Command::new(&o.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("embed_reference.py"))
        .arg(embedder.dir())
        .arg(&texts_file)
        .arg(cfg.model.batch_size.to_string())
        .arg(cores.to_string())
        .output();
    let ref_rate = match reference {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            Some((
                v["per_second"].as_f64().unwrap_or(0.0),
                v["torch"].as_str().unwrap_or("?").to_string(),
            ))
        }
        Ok(out) => {
            eprintln!(
                "reference failed: {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
            None
        }
        Err(e) => {
            eprintln!("reference not run: {e}");
            None
        }
    };
    report.push_str(&format!(
        "### Embedding throughput (all-MiniLM-L6-v2, {} SciFact sentences, {:.1} tokens avg, batch {})\n\n| engine | sentences/s | ratio |\n|---|---|---|\n",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        cfg.model.batch_size
    ));
    report.push_str(&format!(
        "| Quarry (packed-batch encoder, gemm f32) | {quarry_rate:.1} | {} |\n",
        match &ref_rate {
            Some((r, _)) => format!("{:.2}×", quarry_rate / r),
            None => "reference missing".into(),
        }
    ));
    if let Some((r, torch)) = &ref_rate {
        report.push_str(&format!(
            "| sentence-transformers (torch {torch}, {cores} threads) | {r:.1} | 1.00× |\n"
        ));
    }
    println!("{report}");

    // 2. SciFact indexing time, fresh data directory.
    let data = match &o.data_dir {
        Some(d) => d.clone(),
        None => tmp.path().join("scifact-index"),
    };
    let index = Arc::new(EmbeddedIndex::open(
        &data,
        cfg.index.clone(),
        Some(embedder.model_id()),
    )?);
    let start = Instant::now();
    let summary = Ingestor::new(index.as_ref(), embedder.as_ref(), cfg.chunking.clone())
        .ingest_paths(&[scifact.join("corpus.jsonl")], &Silent);
    let index_secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.errors.is_empty(),
        "indexing errors: {:?}",
        &summary.errors[..summary.errors.len().min(5)]
    );
    let written = summary.documents_added + summary.documents_updated;
    let section = format!(
        "\n### SciFact indexing ({} documents, {} chunks, chunking {}/{} tokens)\n\n{index_secs:.1} s{} ({:.1} documents/s)\n",
        written + summary.documents_unchanged,
        quarry_core::Index::stats(index.as_ref())?.chunks,
        cfg.chunking.max_tokens,
        cfg.chunking.overlap_tokens,
        if written == 0 { " — already indexed, nothing to do" } else { "" },
        written as f64 / index_secs,
    );
    println!("{section}");
    report.push_str(&section);

    // 3. Quality and latency per mode on SciFact test.
    let ds = BeirDataset::load(&scifact, "test")?;
    let retriever = Retriever::new(index, embedder as Arc<dyn Embedder>, cfg.retrieval.clone());
    let mut table = String::from("\n### SciFact test (300 queries), top-100 per query, one search at a time\n\n| mode | nDCG@10 | Recall@100 | MRR@10 | p50 ms | p95 ms |\n|---|---|---|---|---|---|\n");
    for mode in [SearchMode::Bm25, SearchMode::Dense, SearchMode::Hybrid] {
        let r = evaluate_retrieval(&ds, &retriever, mode, 100, index_secs)?;
        table.push_str(&format!(
            "| {mode} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} |\n",
            r.metrics.ndcg_10, r.metrics.recall_100, r.metrics.mrr_10, r.timings.query_p50_ms, r.timings.query_p95_ms
        ));
    }
    println!("{table}");
    report.push_str(&table);

    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&results)?;
    f.write_all(report.as_bytes())?;
    println!("appended to {}", results.display());
    Ok(())
}
