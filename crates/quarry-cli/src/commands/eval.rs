//! `quarry eval`: retrieval quality on BEIR folders (with an index cached per dataset, model and chunking),
//! scoring TREC run files, and comparing two systems with confidence intervals and regression gates.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quarry_core::{Embedder, Index};
use quarry_eval::agreement::{agreement, load_labels};
use quarry_eval::answers::{evaluate_answers, AnswerEvalOptions};
use quarry_eval::evalset::{from_beir, from_pubmedqa, EvalSet};
use quarry_eval::judge::{Judge, JudgeCache};
use quarry_eval::ragas::{Ragas, Statements, Which};
use quarry_eval::report::{answers_markdown, comparison_markdown, comparison_text, evaluation_text};
use quarry_eval::synth::{synthesize, SynthOptions};
use quarry_eval::trec::unknown_documents;
use quarry_eval::{
    check_gate, compare, corpus_ids, evaluate_measures, evaluate_retrieval, read_qrels, read_run, write_trec_run,
    BeirDataset, CompareOptions, Evaluation, Gate, Measure, ScoreTable,
};
use quarry_ingest::Ingestor;
use sha2::{Digest, Sha256};

use crate::args::EvalCommand;
use crate::commands::ask::{build_generator, language_model, override_generator};
use crate::progress::Bars;
use crate::settings::Settings;

pub fn run(settings: &Settings, cmd: EvalCommand) -> Result<ExitCode> {
    match cmd {
        EvalCommand::Retrieval {
            dataset,
            split,
            evalset,
            mode,
            depth,
            measures,
            json,
            run,
            html,
        } => retrieval(
            settings,
            &dataset,
            &split,
            evalset.as_deref(),
            mode,
            depth,
            measures.as_deref(),
            json,
            run,
            html,
        ),
        EvalCommand::Synth {
            corpus,
            questions,
            seed,
            min_tokens,
            generator,
            model,
            base_url,
            judge,
            out,
        } => {
            let gen_cfg = override_generator(
                settings.config.generator.clone(),
                generator.as_deref(),
                model.as_deref(),
                base_url.as_deref(),
            );
            let model = language_model(settings, &gen_cfg)?
                .context("synthetic questions need a language model: pass --generator local or --generator openai")?;
            let judge = match judge.as_deref() {
                Some(kind) => {
                    let cfg = override_generator(settings.config.generator.clone(), Some(kind), None, None);
                    let m = language_model(settings, &cfg)?.context("the judge needs a language model")?;
                    Some(Judge::new(
                        m,
                        JudgeCache::open(&settings.data_dir.join("judge-cache.jsonl"))?,
                    ))
                }
                None => None,
            };
            let embedder = settings.embedder()?;
            let index = eval_index(settings, corpus.as_deref(), embedder.as_ref())?;
            let opts = SynthOptions {
                questions,
                seed,
                min_tokens,
                ..SynthOptions::default()
            };
            let (set, report) = synthesize(
                index.as_ref(),
                model.as_ref(),
                judge.as_ref(),
                &opts,
                &mut |kept, tried| {
                    eprint!("\rkept {kept}/{questions} questions from {tried} chunks   ");
                },
            )?;
            eprintln!();
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?,
            );
            set.write(&mut f)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}: {} questions from {} chunks",
                out.display(),
                report.kept,
                report.tried
            );
            for (why, n) in &report.rejected {
                println!(
                    "  rejected {n}: {why} (e.g. {:?})",
                    report
                        .rejected_examples
                        .get(why)
                        .and_then(|e| e.first())
                        .map_or("", |s| s.as_str())
                );
            }
            if report.kept < questions {
                eprintln!(
                    "warning: only {} of {questions} questions passed the filters",
                    report.kept
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        EvalCommand::Run {
            run,
            qrels,
            measures,
            corpus,
            json,
            per_query,
            html,
        } => score_run(
            &run,
            &qrels,
            measures.as_deref(),
            corpus.as_deref(),
            json.as_deref(),
            per_query,
            html.as_deref(),
        ),
        EvalCommand::Answers {
            evalset,
            corpus,
            limit,
            mode,
            top_k,
            generator,
            model,
            base_url,
            max_tokens,
            judge,
            judge_model,
            judge_base_url,
            statements,
            metrics,
            json,
            markdown,
            html,
        } => {
            let mut gen_cfg = override_generator(
                settings.config.generator.clone(),
                generator.as_deref(),
                model.as_deref(),
                base_url.as_deref(),
            );
            if let Some(n) = max_tokens {
                anyhow::ensure!(n > 0, "--max-tokens must be positive");
                gen_cfg.sampling.max_tokens = n;
            }
            let judge_cfg = judge.as_deref().map(|kind| {
                override_generator(
                    settings.config.generator.clone(),
                    Some(kind),
                    judge_model.as_deref(),
                    judge_base_url.as_deref(),
                )
            });
            let which = parse_which(metrics.as_deref())?;
            let stmts = if statements == "sentences" {
                Statements::Sentences
            } else {
                Statements::Judge
            };
            answers(
                settings,
                &evalset,
                corpus.as_deref(),
                limit,
                AnswerEvalOptions {
                    mode,
                    top_k,
                    which,
                    limit,
                },
                gen_cfg,
                judge_cfg,
                stmts,
                [json, markdown, html],
            )
        }
        EvalCommand::Sweep {
            dataset,
            split,
            chunk_tokens,
            overlap,
            mode,
            rrf_k,
            dense_weight,
            candidates,
            depth,
            measure,
            limit,
            evalset,
            json,
        } => crate::commands::sweep::run(
            settings,
            crate::commands::sweep::Grid {
                dataset,
                split,
                chunk_tokens,
                overlap,
                modes: mode,
                rrf_k,
                dense_weight,
                candidates,
                depth,
                measure,
                limit,
                evalset,
                json,
            },
        ),
        EvalCommand::RankAgreement { a, b } => crate::commands::sweep::rank_agreement(&a, &b),
        EvalCommand::Agreement {
            labels,
            judge,
            judge_model,
            judge_base_url,
            json,
        } => {
            let examples = load_labels(&labels)?;
            anyhow::ensure!(!examples.is_empty(), "{}: no labelled examples", labels.display());
            let truth: Vec<bool> = examples.iter().map(|e| e.label).collect();
            let mut out = serde_json::Map::new();
            let verifier = agreement(&truth, &examples.iter().map(|e| e.verifier).collect::<Vec<_>>());
            print_agreement("Quarry verifier (recorded)", &verifier);
            out.insert("verifier".into(), serde_json::to_value(&verifier)?);
            let recorded = agreement(&truth, &examples.iter().map(|e| e.judge).collect::<Vec<_>>());
            if recorded.n > 0 {
                print_agreement("LLM judge (recorded)", &recorded);
                out.insert("judge_recorded".into(), serde_json::to_value(&recorded)?);
            }
            if let Some(kind) = judge.as_deref() {
                let cfg = override_generator(
                    settings.config.generator.clone(),
                    Some(kind),
                    judge_model.as_deref(),
                    judge_base_url.as_deref(),
                );
                let model = language_model(settings, &cfg)?.context("the judge needs a language model")?;
                let id = model.model_id().to_string();
                let j = Judge::new(model, JudgeCache::open(&settings.data_dir.join("judge-cache.jsonl"))?);
                let embedder = settings.embedder()?;
                let ragas = Ragas::new(&j, embedder.as_ref());
                let verdicts = examples
                    .iter()
                    .map(|e| ragas.supported(&e.statement, &e.contexts))
                    .collect::<Result<Vec<_>, _>>()?;
                let a = agreement(&truth, &verdicts);
                print_agreement(&format!("LLM judge {id}"), &a);
                out.insert(
                    "judge".into(),
                    serde_json::json!({"model": id, "agreement": a, "stats": j.stats()}),
                );
            }
            let yes = truth.iter().filter(|t| **t).count();
            println!(
                "labels: {} examples, {yes} supported, {} not",
                truth.len(),
                truth.len() - yes
            );
            if let Some(path) = json {
                write(&path, &serde_json::to_string_pretty(&serde_json::Value::Object(out))?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        EvalCommand::Convert {
            from,
            input,
            split,
            out,
        } => {
            let set = match from.as_str() {
                "pubmedqa" => from_pubmedqa(&input, split.as_deref())?,
                _ => from_beir(&BeirDataset::load(&input, split.as_deref().unwrap_or("test"))?),
            };
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?,
            );
            set.write(&mut f)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}: {} items", out.display(), set.items.len());
            Ok(ExitCode::SUCCESS)
        }
        EvalCommand::Compare {
            a,
            b,
            qrels,
            measures,
            fail_if,
            top_changed,
            bootstrap,
            permutations,
            seed,
            json,
            markdown,
            html,
        } => {
            let gates: Vec<Gate> = fail_if
                .iter()
                .map(|g| g.parse::<Gate>())
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
            let measures = parse_measures(measures.as_deref())?;
            let (ta, na) = load_scores(&a, qrels.as_deref(), &measures)?;
            let (tb, nb) = load_scores(&b, qrels.as_deref(), &measures)?;
            let opts = CompareOptions {
                bootstrap_samples: bootstrap,
                permutations,
                seed,
                ..CompareOptions::default()
            };
            let c = compare(&ta, &tb, &opts, top_changed);
            if c.metrics.is_empty() {
                bail!(
                    "{} and {} share no metric over common queries (A has {}, B has {})",
                    a.display(),
                    b.display(),
                    ta.metrics.join(", "),
                    tb.metrics.join(", ")
                );
            }
            print!("{}", comparison_text(&c, &na, &nb));
            let mut failed = Vec::new();
            for g in &gates {
                match check_gate(&c, g) {
                    Ok(()) => println!("gate {g}: pass"),
                    Err(msg) => {
                        println!("gate {g}: FAIL: {msg}");
                        failed.push(msg);
                    }
                }
            }
            if let Some(path) = json {
                let v = serde_json::json!({
                    "a": na, "b": nb, "comparison": c,
                    "gates": gates.iter().map(|g| serde_json::json!({
                        "gate": g.to_string(), "passed": check_gate(&c, g).is_ok()
                    })).collect::<Vec<_>>(),
                });
                write(&path, &serde_json::to_string_pretty(&v)?)?;
            }
            if let Some(path) = markdown {
                write(&path, &format!("# Comparison\n\n{}", comparison_markdown(&c, &na, &nb)))?;
            }
            if let Some(path) = html {
                write(&path, &quarry_eval::html::comparison_page(&c, &na, &nb, &ta, &tb))?;
            }
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Replaces a dataset's queries and judgements by an eval set's questions and gold documents (the corpus stays).
pub(crate) fn use_evalset(ds: &mut BeirDataset, path: &Path) -> Result<()> {
    let set = EvalSet::load(path)?;
    for (line, why) in set.skipped.iter().take(5) {
        eprintln!("warning: {}:{line}: left out: {why}", path.display());
    }
    ds.qrels = set.qrels();
    anyhow::ensure!(!ds.qrels.is_empty(), "{}: no item has gold_doc_ids", path.display());
    ds.queries = set
        .items
        .iter()
        .filter(|i| !i.gold_doc_ids.is_empty())
        .map(|i| (i.id.clone(), i.question.clone()))
        .collect();
    ds.skipped.clear();
    ds.split = path
        .file_stem()
        .map_or("evalset".into(), |s| s.to_string_lossy().into_owned());
    Ok(())
}

fn print_agreement(name: &str, a: &quarry_eval::agreement::Agreement) {
    println!(
        "{name}: agreement {:.3}, Cohen's kappa {:.3} over {} examples ({} unreadable); \
         supported/supported {}, supported/not {}, not/supported {}, not/not {} (verdict/label)",
        a.accuracy, a.kappa, a.n, a.unreadable, a.both_yes, a.verdict_yes_label_no, a.verdict_no_label_yes, a.both_no
    );
}

fn parse_which(s: Option<&str>) -> Result<Which> {
    let Some(s) = s else { return Ok(Which::ALL) };
    let mut w = Which {
        faithfulness: false,
        answer_relevance: false,
        context_precision: false,
        context_recall: false,
        answer_correctness: false,
    };
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "faithfulness" => w.faithfulness = true,
            "answer_relevance" => w.answer_relevance = true,
            "context_precision" => w.context_precision = true,
            "context_recall" => w.context_recall = true,
            "answer_correctness" => w.answer_correctness = true,
            other => bail!(
                "--metrics: unknown judged metric {other:?} (known: faithfulness, answer_relevance, \
                 context_precision, context_recall, answer_correctness)"
            ),
        }
    }
    Ok(w)
}

#[allow(clippy::too_many_arguments)]
fn answers(
    settings: &Settings,
    evalset: &Path,
    corpus: Option<&Path>,
    limit: Option<usize>,
    opts: AnswerEvalOptions,
    gen_cfg: quarry_core::GeneratorConfig,
    judge_cfg: Option<quarry_core::GeneratorConfig>,
    statements: Statements,
    [json, markdown, html]: [Option<std::path::PathBuf>; 3],
) -> Result<ExitCode> {
    let set = EvalSet::load(evalset)?;
    for (line, why) in set.skipped.iter().take(5) {
        eprintln!("warning: {}:{line}: left out: {why}", evalset.display());
    }
    let embedder = settings.embedder()?;
    let index = eval_index(settings, corpus, embedder.as_ref())?;
    let retriever = settings.retriever(index, embedder.clone() as Arc<dyn Embedder>)?;
    let generator = build_generator(settings, gen_cfg, embedder.clone() as Arc<dyn Embedder>)?;
    let judge = match judge_cfg {
        Some(cfg) => {
            let model = language_model(settings, &cfg)?.context("the judge needs a language model")?;
            let cache = JudgeCache::open(&settings.data_dir.join("judge-cache.jsonl"))?;
            if cache.damaged_lines > 0 {
                eprintln!("warning: judge cache: {} damaged lines skipped", cache.damaged_lines);
            }
            Some(Judge::new(model, cache))
        }
        None => None,
    };
    let ragas = judge.as_ref().map(|j| {
        let mut r = Ragas::new(j, embedder.as_ref());
        r.statements = statements;
        r
    });
    let total = limit.unwrap_or(usize::MAX).min(set.items.len());
    let started = Instant::now();
    let report = evaluate_answers(
        &set,
        &retriever,
        generator.as_ref(),
        embedder.as_ref(),
        ragas.as_ref(),
        &opts,
        &mut |done, _| {
            eprint!(
                "\ranswered {done}/{total} ({:.1} s per item)   ",
                started.elapsed().as_secs_f64() / done as f64
            );
        },
    );
    eprintln!();
    let title = format!("Answers: {}", evalset.display());
    print!("{}", answers_markdown(&title, &report));
    if let Some(path) = json {
        let mut v = serde_json::to_value(&report)?;
        v["scores"] = report.score_table().to_json();
        v["prompts"] = serde_json::json!(quarry_eval::ragas::prompts::ALL
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>());
        write(&path, &serde_json::to_string_pretty(&v)?)?;
    }
    if let Some(path) = markdown {
        write(&path, &format!("# {title}\n\n{}", answers_markdown("Summary", &report)))?;
    }
    if let Some(path) = html {
        write(&path, &quarry_eval::html::answers_page(&title, &report, 10))?;
    }
    Ok(if report.errors == report.items.len() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn parse_measures(s: Option<&str>) -> Result<Vec<Measure>> {
    match s {
        None => Ok(Measure::defaults()),
        Some(s) => {
            let m = Measure::parse_list(s).map_err(anyhow::Error::msg)?;
            if m.is_empty() {
                bail!("--measures {s:?} names no measure");
            }
            Ok(m)
        }
    }
}

/// A system's per-query scores: a TREC run file scored against qrels, or a JSON report that carries a score
/// table (`quarry eval retrieval --json`, `quarry eval answers`). Returns the table and a display name.
fn load_scores(path: &Path, qrels: Option<&Path>, measures: &[Measure]) -> Result<(ScoreTable, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        let scores = v
            .get("scores")
            .with_context(|| format!("{}: a JSON report with a \"scores\" table was expected", path.display()))?;
        let table = ScoreTable::from_json(scores, &path.display().to_string()).map_err(anyhow::Error::msg)?;
        return Ok((table, name));
    }
    let qrels_path = qrels.with_context(|| format!("{}: a run file needs --qrels to be scored", path.display()))?;
    let qrels = read_qrels(qrels_path)?;
    let (run, report) = read_run(path)?;
    if report.duplicates > 0 {
        eprintln!(
            "warning: {}: {} duplicated (query, document) lines, best score kept (e.g. {})",
            path.display(),
            report.duplicates,
            report.duplicate_examples.join(", ")
        );
    }
    let e = evaluate_measures(&run, &qrels, measures);
    warn_coverage(path, &e);
    Ok((ScoreTable::from_evaluation(&e), name))
}

fn warn_coverage(path: &Path, e: &Evaluation) {
    if !e.queries_without_results.is_empty() {
        eprintln!(
            "warning: {}: {} judged queries have no results and score 0 (e.g. {})",
            path.display(),
            e.queries_without_results.len(),
            e.queries_without_results[0]
        );
    }
    if e.unjudged_run_queries > 0 {
        eprintln!(
            "warning: {}: {} queries have results but no relevance judgements (not scored)",
            path.display(),
            e.unjudged_run_queries
        );
    }
}

fn score_run(
    path: &Path,
    qrels_path: &Path,
    measures: Option<&str>,
    corpus: Option<&Path>,
    json: Option<&Path>,
    per_query: bool,
    html: Option<&Path>,
) -> Result<ExitCode> {
    let measures = parse_measures(measures)?;
    let qrels = read_qrels(qrels_path)?;
    let (run, report) = read_run(path)?;
    let e = evaluate_measures(&run, &qrels, &measures);
    println!(
        "{}: {} lines, {} queries; {} judged queries scored",
        path.display(),
        report.lines,
        report.queries,
        e.per_query.len()
    );
    if report.duplicates > 0 {
        println!(
            "  {} duplicated (query, document) lines: each document counted once, at its best score (e.g. {})",
            report.duplicates,
            report.duplicate_examples.join(", ")
        );
    }
    let mut unknown = None;
    if let Some(corpus) = corpus {
        let ids = corpus_ids(corpus)?;
        let u = unknown_documents(&qrels, &ids);
        if u.count > 0 {
            println!(
                "  qrels name {} documents (in {} queries) that are not in {}: recall cannot reach 1 (e.g. {})",
                u.count,
                u.queries,
                corpus.display(),
                u.examples.join(", ")
            );
        }
        let run_unknown: usize = run.values().flatten().filter(|(d, _)| !ids.contains(d)).count();
        if run_unknown > 0 {
            println!("  the run retrieves {run_unknown} documents that are not in the corpus");
        }
        unknown = Some(serde_json::json!({ "qrels": u, "run": run_unknown }));
    }
    warn_coverage(path, &e);
    print!("{}", evaluation_text(&e));
    if per_query {
        for (q, vals) in &e.per_query {
            let cols: Vec<String> = vals.iter().map(|v| format!("{v:.4}")).collect();
            println!("{q}\t{}", cols.join("\t"));
        }
    }
    if let Some(path) = json {
        let v = serde_json::json!({
            "run": path.display().to_string(), "file": report, "unknown_documents": unknown,
            "measures": e.measures.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "mean": e.mean, "queries_without_results": e.queries_without_results,
            "unjudged_run_queries": e.unjudged_run_queries,
            "scores": ScoreTable::from_evaluation(&e).to_json(),
        });
        write(path, &serde_json::to_string_pretty(&v)?)?;
    }
    if let Some(out) = html {
        let details = quarry_eval::html::query_details(&run, &qrels, &Default::default(), 10);
        let title = format!("Run {}", path.display());
        let sub = format!("scored against {}", qrels_path.display());
        write(out, &quarry_eval::html::evaluation_page(&title, &sub, &e, &details))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn retrieval(
    settings: &Settings,
    dataset: &Path,
    split: &str,
    evalset: Option<&Path>,
    mode: quarry_core::SearchMode,
    depth: usize,
    measures: Option<&str>,
    json: Option<std::path::PathBuf>,
    run: Option<std::path::PathBuf>,
    html: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    let measures = parse_measures(measures)?;
    let mut ds = BeirDataset::load(dataset, split)?;
    if let Some(path) = evalset {
        use_evalset(&mut ds, path)?;
    }
    for (q, why) in ds.skipped.iter().take(5) {
        eprintln!("warning: query {q} left out: {why}");
    }
    if ds.skipped.len() > 5 {
        eprintln!("warning: {} judged queries left out in all", ds.skipped.len());
    }
    let u = unknown_documents(&ds.qrels, &ds.corpus_ids()?);
    if u.count > 0 {
        eprintln!(
            "warning: qrels name {} documents (in {} queries) that are not in the corpus; recall cannot reach 1 (e.g. {})",
            u.count,
            u.queries,
            u.examples.join(", ")
        );
    }
    let embedder = settings.embedder()?;
    let (index, index_seconds, cached) = cached_index(settings, &ds, embedder.as_ref())?;
    let retriever = settings.retriever(index, embedder as Arc<dyn Embedder>)?;
    let report = evaluate_retrieval(&ds, &retriever, mode, depth, index_seconds)?;
    let e = evaluate_measures(&report.run, &ds.qrels, &measures);
    println!(
        "{} {} ({} queries), mode {}",
        report.dataset, report.split, report.timings.queries, report.mode
    );
    print!("{}", evaluation_text(&e));
    println!(
        "  indexing {:.1}s{}  query latency p50 {:.1} ms  p95 {:.1} ms",
        report.timings.index_seconds,
        if cached { " (cached)" } else { "" },
        report.timings.query_p50_ms,
        report.timings.query_p95_ms
    );
    if let Some(r) = retriever.reranker() {
        println!(
            "  reranker {} on the top {}: p50 {:.1} ms  p95 {:.1} ms per query",
            r.model_id(),
            settings.config.model.rerank_top_n,
            report.timings.rerank_p50_ms,
            report.timings.rerank_p95_ms
        );
    }
    if let Some(path) = json {
        let mut v = serde_json::to_value(&report)?;
        v["timings"]["index_cached"] = serde_json::Value::Bool(cached);
        v["measures"] = serde_json::json!(e.measures.iter().map(|m| m.to_string()).collect::<Vec<_>>());
        v["mean"] = serde_json::json!(e.mean);
        v["skipped_queries"] = serde_json::json!(ds.skipped);
        v["unknown_qrels_documents"] = serde_json::to_value(&u)?;
        v["scores"] = ScoreTable::from_evaluation(&e).to_json();
        write(&path, &serde_json::to_string_pretty(&v)?)?;
    }
    if let Some(path) = run {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        write_trec_run(&report.run, &format!("quarry-{}", report.mode), &mut f)?;
    }
    if let Some(out) = html {
        let texts = ds.queries.iter().cloned().collect();
        let details = quarry_eval::html::query_details(&report.run, &ds.qrels, &texts, 10);
        let title = format!("{} {}: {}", report.dataset, report.split, report.mode);
        let sub = format!("{} queries, depth {depth}", report.timings.queries);
        write(&out, &quarry_eval::html::evaluation_page(&title, &sub, &e, &details))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens (building if needed) the index of a dataset's corpus under DATA_DIR/eval-cache. The key
/// covers the corpus bytes, the model and the chunking settings, so a change to any re-indexes.
fn cached_index(settings: &Settings, ds: &BeirDataset, embedder: &dyn Embedder) -> Result<(Arc<dyn Index>, f64, bool)> {
    cached_corpus_index(settings, &ds.corpus_path(), &ds.name, embedder)
}

/// A corpus file's name in the eval cache: its folder's name for a BEIR-style `corpus.jsonl` (so `eval
/// retrieval --dataset D` and `eval answers --corpus D/corpus.jsonl` share one index), else its file stem.
pub(crate) fn corpus_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map_or("corpus".into(), |n| n.to_string_lossy().into_owned());
    if stem == "corpus" {
        if let Some(dir) = path.parent().and_then(|p| p.file_name()) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem
}

/// The index an evaluation reads: a corpus file's cached index, or the configured store.
fn eval_index(settings: &Settings, corpus: Option<&Path>, embedder: &dyn Embedder) -> Result<Arc<dyn Index>> {
    match corpus {
        Some(c) => Ok(cached_corpus_index(settings, c, &corpus_name(c), embedder)?.0),
        None => settings.open_index(Some(embedder)),
    }
}

/// The index of one corpus file under DATA_DIR/eval-cache, built on first use.
pub(crate) fn cached_corpus_index(
    settings: &Settings,
    corpus: &Path,
    name: &str,
    embedder: &dyn Embedder,
) -> Result<(Arc<dyn Index>, f64, bool)> {
    let corpus = corpus.to_path_buf();
    let bytes = std::fs::read(&corpus).with_context(|| format!("{}: cannot read", corpus.display()))?;
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(embedder.model_id().as_bytes());
    h.update(serde_json::to_vec(&settings.config.chunking)?);
    let key: String = h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = settings.data_dir.join("eval-cache").join(format!("{name}-{key}"));
    // PostgreSQL: the index goes into a schema of its own; the timing record stays in the local folder.
    let (store, dir) = match &settings.store {
        quarry_index::StoreLocation::Dir(_) => (quarry_index::StoreLocation::Dir(dir.clone()), dir),
        pg => (
            pg.scoped(&format!("eval_{name}_{key}")),
            dir.with_file_name(format!("{name}-{key}-postgres")),
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
