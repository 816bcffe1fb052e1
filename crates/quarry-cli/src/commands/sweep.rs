//! `quarry eval sweep`: a grid of chunking and retrieval settings evaluated on one BEIR split. Each chunking
//! gets its own cached index; all of them share one embedding cache, so a chunk whose text is the same under
//! two chunkings is embedded once. Retrieval settings reuse their chunking's index as is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use quarry_core::{Embedder, Fusion, SearchMode};
use quarry_eval::compare::bootstrap_ci;
use quarry_eval::report::{p_value, signed};
use quarry_eval::{compare, evaluate_measures, evaluate_retrieval, BeirDataset, CompareOptions, Measure, ScoreTable};
use quarry_models::CachedEmbedder;
use quarry_retrieve::Retriever;

use crate::commands::eval::cached_corpus_index;
use crate::settings::Settings;

pub struct Grid {
    pub dataset: PathBuf,
    pub split: String,
    pub chunk_tokens: Vec<usize>,
    pub overlap: Vec<usize>,
    pub modes: Vec<SearchMode>,
    pub rrf_k: Vec<f32>,
    pub dense_weight: Vec<f32>,
    pub candidates: Vec<usize>,
    pub depth: usize,
    pub measure: String,
    pub limit: Option<usize>,
    pub evalset: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    chunk_tokens: usize,
    overlap: usize,
    mode: String,
    fusion: String,
    candidates: usize,
    mean: f64,
    ci_low: f64,
    ci_high: f64,
    query_ms_p50: f64,
    #[serde(skip)]
    table: ScoreTable,
}

impl Row {
    fn label(&self) -> String {
        format!(
            "chunk {}/{} {} {} cand {}",
            self.chunk_tokens, self.overlap, self.mode, self.fusion, self.candidates
        )
    }
}

pub fn run(settings: &Settings, g: Grid) -> Result<ExitCode> {
    let measure: Measure = g.measure.parse().map_err(anyhow::Error::msg)?;
    let mut ds = BeirDataset::load(&g.dataset, &g.split)?;
    if let Some(path) = &g.evalset {
        crate::commands::eval::use_evalset(&mut ds, path)?;
    }
    if let Some(n) = g.limit {
        ds.queries.truncate(n);
        let keep: std::collections::HashSet<String> = ds.queries.iter().map(|q| q.0.clone()).collect();
        ds.qrels.retain(|q, _| keep.contains(q));
    }
    let base = &settings.config;
    let chunk_tokens = if g.chunk_tokens.is_empty() {
        vec![base.chunking.max_tokens]
    } else {
        g.chunk_tokens.clone()
    };
    let overlaps = if g.overlap.is_empty() {
        vec![base.chunking.overlap_tokens]
    } else {
        g.overlap.clone()
    };
    let candidates = if g.candidates.is_empty() {
        vec![base.retrieval.candidates]
    } else {
        g.candidates.clone()
    };
    // (fusion, rrf k, dense weight) variants for hybrid.
    let mut fusions: Vec<(Fusion, f32, f32)> = g.rrf_k.iter().map(|k| (Fusion::Rrf, *k, 0.0)).collect();
    fusions.extend(g.dense_weight.iter().map(|w| (Fusion::Weighted, 0.0, *w)));
    if fusions.is_empty() {
        fusions.push((base.retrieval.fusion, base.retrieval.rrf_k, base.retrieval.dense_weight));
    }
    if g.modes.is_empty() {
        bail!("--mode names no mode");
    }

    let model = settings.embedder()?;
    let model_id: String = model
        .model_id()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let cache_path = settings
        .data_dir
        .join("eval-cache")
        .join(format!("embeddings-{model_id}.bin"));
    let cached = CachedEmbedder::open(model.clone() as Arc<dyn Embedder>, &cache_path)
        .with_context(|| format!("opening {}", cache_path.display()))?;
    let mut rows: Vec<Row> = Vec::new();
    for &size in &chunk_tokens {
        for &overlap in &overlaps {
            if overlap >= size {
                eprintln!("skipping chunk {size}/{overlap}: the overlap must be smaller than the chunk");
                continue;
            }
            let mut config = base.clone();
            config.chunking.max_tokens = size;
            config.chunking.overlap_tokens = overlap;
            let s = Settings {
                data_dir: settings.data_dir.clone(),
                config,
                store: settings.store.clone(),
                base_store: settings.base_store.clone(),
            };
            let before = cached.counts();
            let (index, secs, was_cached) = cached_corpus_index(&s, &ds.corpus_path(), &ds.name, &cached)?;
            let after = cached.counts();
            eprintln!(
                "chunk {size}/{overlap}: index {}{:.0} s; embeddings reused {}, computed {}",
                if was_cached { "cached, built in " } else { "" },
                secs,
                after.0 - before.0,
                after.1 - before.1
            );
            for &mode in &g.modes {
                let variants: Vec<(Fusion, f32, f32)> = if mode == SearchMode::Hybrid {
                    fusions.clone()
                } else {
                    vec![(base.retrieval.fusion, base.retrieval.rrf_k, base.retrieval.dense_weight)]
                };
                let cands: &[usize] = if mode == SearchMode::Hybrid {
                    &candidates
                } else {
                    &candidates[..1]
                };
                for &(fusion, k, w) in &variants {
                    for &cand in cands {
                        let mut rc = base.retrieval.clone();
                        rc.fusion = fusion;
                        rc.rrf_k = k;
                        rc.dense_weight = w;
                        rc.candidates = cand;
                        let retriever = Retriever::new(index.clone(), model.clone() as Arc<dyn Embedder>, rc);
                        let report = evaluate_retrieval(&ds, &retriever, mode, g.depth, secs)?;
                        let e = evaluate_measures(&report.run, &ds.qrels, &[measure]);
                        let values: Vec<f64> = e.per_query.values().map(|v| v[0]).collect();
                        let (lo, hi) = ci_of_mean(&values);
                        let row = Row {
                            chunk_tokens: size,
                            overlap,
                            mode: mode.to_string(),
                            fusion: if mode == SearchMode::Hybrid {
                                match fusion {
                                    Fusion::Rrf => format!("rrf k={k}"),
                                    Fusion::Weighted => format!("weighted w={w}"),
                                }
                            } else {
                                "-".into()
                            },
                            candidates: if mode == SearchMode::Hybrid { cand } else { g.depth },
                            mean: e.mean[0],
                            ci_low: lo,
                            ci_high: hi,
                            query_ms_p50: report.timings.query_p50_ms,
                            table: ScoreTable::from_evaluation(&e),
                        };
                        println!("{:<52} {measure} {:.4} [{:.4}, {:.4}]", row.label(), row.mean, lo, hi);
                        rows.push(row);
                    }
                }
            }
        }
    }
    if rows.is_empty() {
        bail!("the grid is empty");
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|a, b| rows[*b].mean.total_cmp(&rows[*a].mean));
    let best = &rows[order[0]];
    println!(
        "\nbest: {}: {measure} {:.4}, 95% CI [{:.4}, {:.4}] over {} queries",
        best.label(),
        best.mean,
        best.ci_low,
        best.ci_high,
        ds.queries.len()
    );
    let mut runner_up = None;
    if let Some(&second) = order.get(1) {
        let c = compare(&rows[second].table, &best.table, &CompareOptions::default(), 0);
        if let Some(m) = c.metrics.first() {
            println!(
                "  vs runner-up {}: {} [{}, {}], p {}",
                rows[second].label(),
                signed(m.delta),
                signed(m.ci_low),
                signed(m.ci_high),
                p_value(m.p_value)
            );
            runner_up = Some(serde_json::json!({"setting": rows[second].label(), "comparison": m}));
        }
    }
    let (reused, computed) = cached.counts();
    println!("embeddings: {reused} reused from the cache, {computed} computed");
    if let Some(path) = g.json {
        let v = serde_json::json!({
            "dataset": ds.name, "split": ds.split, "queries": ds.queries.len(), "measure": measure.to_string(),
            "rows": rows, "best": best.label(), "runner_up": runner_up,
            "embeddings": {"reused": reused, "computed": computed},
        });
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Percentile bootstrap interval of a mean (paired machinery with a zero baseline).
fn ci_of_mean(values: &[f64]) -> (f64, f64) {
    bootstrap_ci(values, &CompareOptions::default())
}

/// Kendall's tau between two sweep reports (`--json` of `quarry eval sweep`) over the settings both contain.
pub fn rank_agreement(a: &std::path::Path, b: &std::path::Path) -> Result<ExitCode> {
    let read = |p: &std::path::Path| -> Result<std::collections::BTreeMap<String, f64>> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?)
                .with_context(|| format!("{}: not JSON", p.display()))?;
        let rows = v["rows"]
            .as_array()
            .with_context(|| format!("{}: not a sweep report (no rows)", p.display()))?;
        rows.iter()
            .map(|r| {
                let label = format!(
                    "chunk {}/{} {} {} cand {}",
                    r["chunk_tokens"],
                    r["overlap"],
                    r["mode"].as_str().unwrap_or(""),
                    r["fusion"].as_str().unwrap_or(""),
                    r["candidates"]
                );
                let mean = r["mean"]
                    .as_f64()
                    .with_context(|| format!("{}: a row without a mean", p.display()))?;
                Ok((label, mean))
            })
            .collect()
    };
    let (ra, rb) = (read(a)?, read(b)?);
    let common: Vec<&String> = ra.keys().filter(|k| rb.contains_key(*k)).collect();
    if common.len() < 2 {
        bail!("the two sweeps share {} settings; at least 2 are needed", common.len());
    }
    let va: Vec<f64> = common.iter().map(|k| ra[*k]).collect();
    let vb: Vec<f64> = common.iter().map(|k| rb[*k]).collect();
    println!("{:<52} {:>8} {:>8}", "setting", "A", "B");
    for (k, (x, y)) in common.iter().zip(va.iter().zip(&vb)) {
        println!("{k:<52} {x:>8.4} {y:>8.4}");
    }
    println!(
        "Kendall tau-b over {} settings: {:.3}",
        common.len(),
        quarry_eval::synth::kendall_tau(&va, &vb)
    );
    Ok(ExitCode::SUCCESS)
}
