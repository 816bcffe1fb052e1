//! `quarry-bench`: the numbers the spine promises, measured in one run on this machine.
//!
//! 1. Embedding throughput of Quarry vs Python sentence-transformers: same model directory, same
//!    2,000 sentences (from the SciFact corpus), same batch size, same thread count.
//! 2. SciFact indexing time into a fresh data directory (chunk, embed, store, BM25, HNSW).
//! 3. Retrieval quality and query latency p50/p95 per mode on SciFact test.
//!
//! With `--formats`, instead: per-format ingestion throughput and accuracy on shared/documents,
//! Quarry vs the Python tools of bench/ingest_reference.py (see formats.rs).
//!
//! With `--llm`: local generation speed vs llama.cpp (llama-cpp-python in PYTHON) on the same GGUF;
//! with `--rag N`: PubMedQA answers for the first N test questions (see llm.rs).
//!
//! With `--scale N`: the vector-index scale benchmark, embedded HNSW vs pgvector (see scale.rs).
//!
//! With `--load`: a bounded load test of the `quarry serve` binary on loopback over an existing index —
//! N concurrent clients searching and asking (extractive and local generator), with uploads during the
//! load checked for lost or duplicated documents (see load.rs).
//!
//! Results are appended to bench/RESULTS.md. Usage:
//!   cargo run --release -p quarry-bench -- [--shared ../shared] [--python PYTHON] [--data-dir DIR]
//!       [--sentences N] [--embed-only]
//!   cargo run --release -p quarry-bench -- --formats [--shared ../shared] [--python PYTHON]
//!       [--min-secs 2] [--edge-dir DIR] [--pdf-extra FILE.json]... [--dump DIR] [--no-append]
//!   cargo run --release -p quarry-bench -- [--llm] [--rag N] [--max-tokens 96] [--python PYTHON]
//!   cargo run --release -p quarry-bench -- --scale 1000000 [--queries 1000] [--sets random,clustered]
//!       [--m 16] [--ef-construction 200] [--ef-search 10,20,...] [--pg postgres://...] [--skip-embedded]
//!   cargo run --release -p quarry-bench -- --load --data-dir DIR [--clients 50] [--secs 60]
//!       [--local-secs 30] [--local-max-tokens 32] [--local-top-k K] [--docs 20] [--timeout-secs 1800]
//!       [--quarry PATH] [--queries-file FILE] [--config FILE] [--no-append]
//! PYTHON must have sentence-transformers installed (or, for --formats, the packages listed in
//! bench/README.md); without it the reference column is reported as missing, not invented.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod formats;
mod llm;
mod load;
mod scale;

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
    embed_only: bool,
    formats: bool,
    min_secs: f64,
    edge_dir: Option<PathBuf>,
    pdf_extra: Vec<PathBuf>,
    no_append: bool,
    dump: Option<PathBuf>,
    llm: bool,
    rag: Option<usize>,
    max_tokens: usize,
    scale: Option<usize>,
    scale_queries: usize,
    sets: Vec<String>,
    m: usize,
    ef_construction: usize,
    ef_search: Vec<usize>,
    pg: Option<String>,
    skip_embedded: bool,
    load: bool,
    clients: usize,
    secs: f64,
    local_secs: f64,
    local_max_tokens: usize,
    local_top_k: Option<usize>,
    docs: usize,
    timeout_secs: u64,
    quarry: Option<PathBuf>,
    queries_file: Option<PathBuf>,
    config: Option<PathBuf>,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        shared: PathBuf::from("../shared"),
        python: "python3".into(),
        data_dir: None,
        sentences: 2000,
        embed_only: false,
        formats: false,
        min_secs: 2.0,
        edge_dir: None,
        pdf_extra: Vec::new(),
        no_append: false,
        dump: None,
        llm: false,
        rag: None,
        max_tokens: 96,
        scale: None,
        scale_queries: 1000,
        sets: vec!["random".into(), "clustered".into()],
        m: 16,
        ef_construction: 200,
        ef_search: vec![10, 20, 40, 80, 120, 160, 240, 320, 480, 640, 1000],
        pg: None,
        skip_embedded: false,
        load: false,
        clients: 50,
        secs: 60.0,
        local_secs: 30.0,
        local_max_tokens: 32,
        local_top_k: None,
        docs: 20,
        timeout_secs: 1800,
        quarry: None,
        queries_file: None,
        config: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--shared" => o.shared = PathBuf::from(val()?),
            "--python" => o.python = val()?,
            "--data-dir" => o.data_dir = Some(PathBuf::from(val()?)),
            "--sentences" => o.sentences = val()?.parse()?,
            "--embed-only" => o.embed_only = true,
            "--formats" => o.formats = true,
            "--min-secs" => o.min_secs = val()?.parse()?,
            "--edge-dir" => o.edge_dir = Some(PathBuf::from(val()?)),
            "--pdf-extra" => o.pdf_extra.push(PathBuf::from(val()?)),
            "--no-append" => o.no_append = true,
            "--dump" => o.dump = Some(PathBuf::from(val()?)),
            "--llm" => o.llm = true,
            "--rag" => o.rag = Some(val()?.parse()?),
            "--max-tokens" => o.max_tokens = val()?.parse()?,
            "--scale" => o.scale = Some(val()?.parse()?),
            "--queries" => o.scale_queries = val()?.parse()?,
            "--sets" => o.sets = val()?.split(',').map(str::to_string).collect(),
            "--m" => o.m = val()?.parse()?,
            "--ef-construction" => o.ef_construction = val()?.parse()?,
            "--ef-search" => {
                o.ef_search = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--ef-search takes a comma-separated list of integers")?
            }
            "--pg" => o.pg = Some(val()?),
            "--skip-embedded" => o.skip_embedded = true,
            "--load" => o.load = true,
            "--clients" => o.clients = val()?.parse()?,
            "--secs" => o.secs = val()?.parse()?,
            "--local-secs" => o.local_secs = val()?.parse()?,
            "--local-max-tokens" => o.local_max_tokens = val()?.parse()?,
            "--local-top-k" => o.local_top_k = Some(val()?.parse()?),
            "--docs" => o.docs = val()?.parse()?,
            "--timeout-secs" => o.timeout_secs = val()?.parse()?,
            "--quarry" => o.quarry = Some(PathBuf::from(val()?)),
            "--queries-file" => o.queries_file = Some(PathBuf::from(val()?)),
            "--config" => o.config = Some(PathBuf::from(val()?)),
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

/// The first `n` documents as "title text", the form the reference embeds for BEIR.
fn documents(corpus: &Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(corpus).with_context(|| format!("{}", corpus.display()))?;
    let mut out = Vec::new();
    for line in text.lines().take(n) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let doc = format!(
            "{} {}",
            v["title"].as_str().unwrap_or(""),
            v["text"].as_str().unwrap_or("")
        );
        out.push(doc.replace('\n', " "));
    }
    Ok(out)
}

/// (average tokens, texts per second) for Quarry's embedder, after a warm-up batch.
fn quarry_throughput(embedder: &SentenceEmbedder, texts: &[String]) -> Result<(f64, f64)> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let max = embedder.max_tokens();
    let tokens: usize = refs
        .iter()
        .map(|t| (quarry_core::TokenCounter::count_tokens(embedder, t) + 2).min(max))
        .sum();
    embedder.embed(&refs[..64.min(refs.len())])?;
    let start = Instant::now();
    embedder.embed(&refs)?;
    Ok((
        tokens as f64 / texts.len() as f64,
        texts.len() as f64 / start.elapsed().as_secs_f64(),
    ))
}

/// Texts per second of sentence-transformers on the same texts, or None if it cannot run here.
fn reference_throughput(
    python: &str,
    model_dir: &Path,
    texts: &[String],
    batch: usize,
    threads: usize,
    tmp: &Path,
) -> Result<Option<(f64, String)>> {
    let file = tmp.join("texts.txt");
    std::fs::write(&file, texts.join("\n") + "\n")?;
    let out = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("embed_reference.py"))
        .arg(model_dir)
        .arg(&file)
        .arg(batch.to_string())
        .arg(threads.to_string())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            Ok(Some((
                v["per_second"].as_f64().unwrap_or(0.0),
                v["torch"].as_str().unwrap_or("?").to_string(),
            )))
        }
        Ok(out) => {
            eprintln!(
                "reference failed: {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
            Ok(None)
        }
        Err(e) => {
            eprintln!("reference not run: {e}");
            Ok(None)
        }
    }
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
    if o.llm || o.rag.is_some() {
        let args: Vec<String> = std::env::args().skip(1).map(|a| home_relative(&a)).collect();
        report.push_str(&format!(
            "Local generator. Command: `cargo run --release -p quarry-bench -- {}`\n\n",
            args.join(" ")
        ));
        let lo = llm::Opts {
            shared: o.shared.clone(),
            python: o.python.clone(),
            questions: o.rag.unwrap_or(0),
            max_tokens: o.max_tokens,
        };
        if o.llm {
            report.push_str(&llm::speed(&lo)?);
            report.push('\n');
        }
        if o.rag.is_some() {
            report.push_str(&llm::pubmedqa(&lo)?);
        }
        return append(&report, o.no_append);
    }
    if let Some(n) = o.scale {
        for s in &o.sets {
            anyhow::ensure!(
                s == "random" || s == "clustered",
                "--sets: unknown set {s} (random, clustered)"
            );
        }
        let args: Vec<String> = std::env::args().skip(1).map(|a| home_relative(&a)).collect();
        report.push_str(&format!(
            "Command: `cargo run --release -p quarry-bench -- {}`\n\n",
            args.join(" ")
        ));
        let dir = tempfile::tempdir()?;
        report.push_str(&scale::run(&scale::Opts {
            n,
            dim: 384,
            queries: o.scale_queries,
            sets: o.sets.clone(),
            m: o.m,
            ef_construction: o.ef_construction,
            ef_search: o.ef_search.clone(),
            pg: o.pg.clone(),
            dir: o.data_dir.clone().unwrap_or_else(|| dir.path().to_path_buf()),
            skip_embedded: o.skip_embedded,
        })?);
        println!("{report}");
        return append(&report, o.no_append);
    }
    if o.load {
        let data_dir = o
            .data_dir
            .clone()
            .context("--load needs --data-dir (an existing index)")?;
        let args: Vec<String> = std::env::args().skip(1).map(|a| home_relative(&a)).collect();
        report.push_str(&format!(
            "Command: `cargo run --release -p quarry-bench -- {}`\n\n",
            args.join(" ")
        ));
        report.push_str(&load::run(&load::Opts {
            data_dir,
            quarry: o.quarry.clone(),
            queries: o
                .queries_file
                .clone()
                .unwrap_or_else(|| o.shared.join("datasets/scifact/queries.jsonl")),
            config: o.config.clone(),
            clients: o.clients,
            secs: o.secs,
            local_secs: o.local_secs,
            local_max_tokens: o.local_max_tokens,
            local_top_k: o.local_top_k,
            docs: o.docs,
            timeout_secs: o.timeout_secs,
        })?);
        return append(&report, o.no_append);
    }
    if o.formats {
        let args: Vec<String> = std::env::args().skip(1).map(|a| home_relative(&a)).collect();
        report.push_str(&format!(
            "Per-format ingestion. Command: `cargo run --release -p quarry-bench -- {}`\n\n",
            args.join(" ")
        ));
        report.push_str(&formats::run(&formats::Opts {
            shared: o.shared.clone(),
            python: o.python.clone(),
            min_secs: o.min_secs,
            edge_dir: o.edge_dir.clone(),
            pdf_extra: o.pdf_extra.clone(),
            dump: o.dump.clone(),
        })?);
        return append(&report, o.no_append);
    }
    report.push_str(&format!(
        "Command: `cargo run --release -p quarry-bench -- --shared {} --python {}`\n\n",
        home_relative(&o.shared.display().to_string()),
        home_relative(&o.python)
    ));

    // 1. Embedding throughput, Quarry vs the reference, same texts and batch size: short sentences,
    //    and whole SciFact documents ("title text", truncated at 256 tokens) as indexing sees them.
    let scifact = o.shared.join("datasets/scifact");
    let embedder = Arc::new(SentenceEmbedder::from_config(&cfg.model)?);
    let tmp = tempfile::tempdir()?;
    let sets = [
        (
            format!("{} SciFact sentences", o.sentences),
            sentences(&scifact.join("corpus.jsonl"), o.sentences)?,
        ),
        (
            "1000 SciFact documents (title + abstract)".to_string(),
            documents(&scifact.join("corpus.jsonl"), 1000)?,
        ),
    ];
    report.push_str(&format!(
        "### Embedding throughput (all-MiniLM-L6-v2, batch {}, same texts for both engines)\n\n| texts | avg tokens | Quarry texts/s | sentence-transformers texts/s | ratio |\n|---|---|---|---|---|\n",
        cfg.model.batch_size
    ));
    for (label, texts) in &sets {
        let (avg_tokens, quarry_rate) = quarry_throughput(&embedder, texts)?;
        let ref_rate = reference_throughput(
            &o.python,
            embedder.dir(),
            texts,
            cfg.model.batch_size,
            cores,
            tmp.path(),
        )?;
        let (r, ratio) = match &ref_rate {
            Some((r, torch)) => (
                format!("{r:.1} (torch {torch}, {cores} threads)"),
                format!("{:.2}×", quarry_rate / r),
            ),
            None => ("not run".into(), "—".into()),
        };
        report.push_str(&format!(
            "| {label} | {avg_tokens:.1} | {quarry_rate:.1} | {r} | {ratio} |\n"
        ));
    }
    println!("{report}");
    if o.embed_only {
        return Ok(());
    }

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
        .with_dedup(false)
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

    append(&report, o.no_append)
}

/// Appends a run's report to bench/RESULTS.md (unless `--no-append`).
fn append(report: &str, skip: bool) -> Result<()> {
    if skip {
        return Ok(());
    }
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&results)?;
    f.write_all(report.as_bytes())?;
    println!("appended to {}", results.display());
    Ok(())
}

/// A path as written in RESULTS.md: under the home folder as `~/...`, so no machine path is recorded.
fn home_relative(arg: &str) -> String {
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() && arg.starts_with(&format!("{home}/")) => format!("~{}", &arg[home.len()..]),
        _ => arg.to_string(),
    }
}
