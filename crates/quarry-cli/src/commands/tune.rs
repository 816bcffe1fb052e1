//! `quarry tune`: fine-tuning commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quarry_core::{Embedder, SearchMode};
use quarry_models::llm::lora::Module;
use quarry_models::resolve_model_dir;
use quarry_models::{LocalModel, LocalOptions};
use quarry_retrieve::{Retriever, SearchRequest};
use quarry_tune::causal::{CausalLm, LoraSpec};
use quarry_tune::chat::{tokenize_all, ChatSet, LmObjective};
use quarry_tune::contrastive::Contrastive;
use quarry_tune::progress::{EvalReport, Progress, StepReport};
use quarry_tune::registry::{decide, ModelVersion, Registry};
use quarry_tune::rerank::CrossObjective;
use quarry_tune::trainer::{Objective, Trainable};
use quarry_tune::{Encoder, TrainOptions, TrainSummary, TrainingSet, Validation};

use crate::args::{
    GeneratorDataArgs, MiningFlags, OutputFlags, TrainingData, TrainingFlags, TuneCommand, TuneEmbedderArgs,
    TuneGeneratorArgs, TuneRerankerArgs,
};
use crate::commands::eval::{cached_corpus_index, corpus_name};
use crate::settings::Settings;

pub fn run(settings: &Settings, cmd: TuneCommand) -> Result<ExitCode> {
    match cmd {
        TuneCommand::Embedder(args) => embedder(settings, &args),
        TuneCommand::Reranker(args) => reranker(settings, &args),
        TuneCommand::Generator(args) => generator(settings, &args),
        TuneCommand::GeneratorData(args) => generator_data(settings, &args),
        TuneCommand::Status { json } => status(settings, json),
        TuneCommand::Promote { id } => {
            let reg = registry(settings)?;
            // An embedder is made current only after the index has been re-embedded with it.
            if let Some(v) = reg.versions()?.into_iter().find(|v| v.id == id && v.kind == "embedder") {
                crate::generation::switch(settings, &v)?;
            }
            let v = reg.set_current(&id)?;
            println!("{} is now the current {} ({})", v.id, v.kind, v.dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Progress on stderr: a line every few steps and at every validation. Ctrl-C (or SIGTERM) asks the run to
/// stop after the current step, with a checkpoint that `--resume` continues from; a second one ends the
/// process at once.
struct Printer {
    every: usize,
    stop: Arc<AtomicBool>,
}

impl Printer {
    fn new(every: usize) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // The conditional shutdown goes first: it sees the flag before the second handler sets it.
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
                .context("installing the interrupt handler")?;
            signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing the interrupt handler")?;
        }
        Ok(Self { every, stop })
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Progress for Printer {
    fn step(&self, r: &StepReport) {
        if r.step == 1 || r.step.is_multiple_of(self.every) || r.step == r.total_steps {
            eprintln!(
                "step {}/{} (epoch {})  loss {:.4}  lr {:.2e}  grad {:.2}  {:.1} examples/s  ETA {}",
                r.step,
                r.total_steps,
                r.epoch,
                r.loss,
                r.learning_rate,
                r.grad_norm,
                r.examples_per_sec,
                duration(r.eta_secs)
            );
        }
    }

    fn eval(&self, r: &EvalReport) {
        eprintln!(
            "validation at step {}: {:.4}{}",
            r.step,
            r.metric,
            if r.improved {
                " (best so far, saved)".to_string()
            } else {
                format!(" (best {:.4})", r.best)
            }
        );
    }

    fn message(&self, text: &str) {
        eprintln!("{text}");
    }

    fn stop(&self) -> bool {
        let stop = self.stop.load(Ordering::Relaxed);
        if stop {
            eprintln!("interrupted: writing a checkpoint (Ctrl-C again to quit without one)");
        }
        stop
    }
}

/// The flags as options; `batch_size` and `lr` are the command's defaults for flags not given.
fn training_options(f: &TrainingFlags, batch_size: usize, lr: f64) -> TrainOptions {
    TrainOptions {
        epochs: f.epochs,
        batch_size: f.batch_size.unwrap_or(batch_size),
        accumulate: f.accumulate,
        learning_rate: f.lr.unwrap_or(lr),
        warmup: f.warmup,
        weight_decay: f.weight_decay,
        eval_every: f.eval_every,
        patience: f.patience,
        checkpoint_every: f.checkpoint_every,
        seed: f.seed,
        max_steps: f.max_steps,
        ..TrainOptions::default()
    }
}

/// Loads the examples and the corpus file to mine from (none for inline pairs).
/// For a BEIR folder, the queries of its other splits are dropped from the training split (SciFact repeats
/// some test claims in train), so that nothing evaluated later was trained on.
fn load_data(settings: &Settings, d: &TrainingData) -> Result<(TrainingSet, Option<std::path::PathBuf>)> {
    let (mut set, corpus) = if let Some(ds) = &d.dataset {
        let mut set = TrainingSet::from_beir(ds, &d.split)?;
        let mut held_out = std::collections::HashSet::new();
        let mut splits = Vec::new();
        for entry in std::fs::read_dir(ds.join("qrels"))?.flatten() {
            let path = entry.path();
            let Some(split) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                continue;
            };
            if split == d.split || path.extension().is_none_or(|e| e != "tsv") {
                continue;
            }
            let other = quarry_eval::BeirDataset::load(ds, &split)?;
            held_out.extend(other.queries.iter().map(|(_, t)| t.trim().to_lowercase()));
            splits.push(split);
        }
        let dropped = set.exclude_queries(&held_out);
        if dropped > 0 {
            eprintln!(
                "left out {dropped} training queries whose text is also a query of {}",
                splits.join(", ")
            );
        }
        (set, Some(ds.join("corpus.jsonl")))
    } else if let Some(set) = &d.evalset {
        let corpus = d.corpus.as_ref().context("--evalset needs --corpus")?;
        (TrainingSet::from_evalset(set, corpus)?, Some(corpus.clone()))
    } else if let Some(p) = &d.pairs {
        (TrainingSet::from_pairs(p)?, None)
    } else if let Some(log) = &d.from_log {
        anyhow::ensure!(
            log.is_file(),
            "{}: no query log there (quarry serve writes it)",
            log.display()
        );
        let logged = quarry_server::querylog::read(log)?;
        let embedder = settings.embedder()?;
        let index = settings.open_index(Some(embedder.as_ref()))?;
        let text = |id: u64| {
            index
                .chunk(id)
                .ok()
                .flatten()
                .map(|c| c.chunk.contextual_text(c.title.as_deref()))
        };
        let (set, r) = TrainingSet::from_log(&logged, &text, &log.display().to_string());
        eprintln!(
            "{}: {} questions, {} rated up and {} down; {} examples ({} repeated questions merged, {} answers \
             without citations, {} cited passages no longer indexed)",
            log.display(),
            r.questions,
            r.up,
            r.down,
            r.examples,
            r.merged,
            r.uncited,
            r.missing_chunks
        );
        (set, None)
    } else {
        bail!("no training data: give --dataset DIR, --evalset FILE --corpus FILE, --pairs FILE or --from-log FILE")
    };
    if d.dedup {
        let merged = set.dedup();
        if merged > 0 {
            eprintln!("merged {merged} examples that repeat another's query");
        }
    }
    Ok((set, corpus))
}

/// Loads, checks and splits the training data, and mines hard negatives for both sides from the corpus index.
fn prepare(
    settings: &Settings,
    data: &TrainingData,
    mining: &MiningFlags,
    base_dir: &Path,
    train_negatives: usize,
    seed: u64,
) -> Result<(TrainingSet, TrainingSet)> {
    let (data_set, corpus_file) = load_data(settings, data)?;
    data_set.validate(data.min_examples)?;
    eprintln!(
        "{}: {} examples, {} pairs; base model {}",
        data_set.source,
        data_set.examples.len(),
        data_set.pair_count(),
        base_dir.display()
    );
    let (mut train_set, mut val_set) = data_set.split(data.val_fraction, seed);
    let mine = mining.mine.as_str();
    if (train_negatives > 0 || mining.val_negatives > 0) && mine != "none" {
        let mode = match mine {
            "bm25" => SearchMode::Bm25,
            "dense" => SearchMode::Dense,
            other => bail!("--mine {other}: expected bm25, dense or none"),
        };
        let started = Instant::now();
        let embedder: Arc<dyn Embedder> = Arc::new(quarry_models::SentenceEmbedder::load(
            base_dir,
            settings.config.model.max_seq_len,
            settings.config.model.batch_size,
        )?);
        let index = match &corpus_file {
            Some(c) => cached_corpus_index(settings, c, &corpus_name(c), embedder.as_ref())?.0,
            None => settings.open_index(Some(embedder.as_ref()))?,
        };
        let retriever = Retriever::new(index, embedder, settings.config.retrieval.clone());
        let failed = |e: quarry_core::Error| quarry_tune::Error::Data {
            source_name: "hard-negative mining".into(),
            message: e.to_string(),
        };
        let search = |query: &str, depth: usize| -> quarry_tune::Result<Vec<(String, String)>> {
            let req = SearchRequest {
                query,
                mode,
                top_k: depth,
                filter: None,
                per_document: true,
            };
            let hits = retriever.search(&req).map_err(failed)?;
            let passages = retriever.passages(&hits).map_err(failed)?;
            Ok(passages
                .into_iter()
                .map(|p| {
                    (
                        p.chunk.chunk.doc_id.clone(),
                        p.chunk.chunk.contextual_text(p.chunk.title.as_deref()),
                    )
                })
                .collect())
        };
        let t = train_set.mine_negatives(train_negatives, mining.mine_skip, mining.mine_depth, &search)?;
        let v = val_set.mine_negatives(mining.val_negatives, mining.mine_skip, mining.mine_depth, &search)?;
        eprintln!(
            "mined {} training and {} validation negatives with {mine} in {:.1}s ({} known positives passed over)",
            t.mined,
            v.mined,
            started.elapsed().as_secs_f64(),
            t.positives_excluded + v.positives_excluded
        );
    }
    eprintln!(
        "training on {} examples, validating on {}",
        train_set.examples.len(),
        val_set.examples.len()
    );
    Ok((train_set, val_set))
}

fn base_dir(settings: &Settings, base: Option<&str>) -> Result<std::path::PathBuf> {
    let name = base.unwrap_or(&settings.config.model.embedder);
    let cache = settings.config.model.cache_dir.as_deref().map(Path::new);
    Ok(resolve_model_dir(name, cache)?)
}

pub(crate) fn registry(settings: &Settings) -> Result<Registry> {
    Ok(Registry::open(&settings.data_dir.join("models"))?)
}

/// The output folder and version id: `--out`, or the registry's next version.
fn output(settings: &Settings, flags: &OutputFlags, kind: &str) -> Result<(String, PathBuf)> {
    let reg = registry(settings)?;
    let (id, dir) = reg.next_version(kind)?;
    Ok((id, flags.out.clone().unwrap_or(dir)))
}

/// Records the trained version; with `--promote-if-better`, first validates the current version of the kind
/// (or takes the base model's validation when nothing is current) on the same queries and decides.
#[allow(clippy::too_many_arguments)]
fn register(
    settings: &Settings,
    flags: &OutputFlags,
    kind: &str,
    id: String,
    out: &Path,
    base: &Path,
    data: (&str, String),
    summary: &TrainSummary,
    validate_current: &dyn Fn(&Path) -> quarry_tune::Result<Validation>,
) -> Result<()> {
    let reg = registry(settings)?;
    let decision = if flags.promote_if_better {
        let current = reg.current(kind)?;
        let (against, current_val) = match &current {
            Some(c) if c.dir != base => {
                eprintln!("validating the current {kind} {} on the same queries", c.id);
                (Some(c.id.clone()), validate_current(&c.dir)?)
            }
            Some(c) => (Some(c.id.clone()), summary.baseline.clone()),
            None => (None, summary.baseline.clone()),
        };
        let d = decide(&summary.best, &current_val, against, flags.alpha);
        println!(
            "{}: {} (95% CI {:+.4} .. {:+.4})",
            if d.promoted { "promoted" } else { "not promoted" },
            d.reason,
            d.ci_low,
            d.ci_high
        );
        Some(d)
    } else {
        None
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut version = ModelVersion {
        id: id.clone(),
        kind: kind.into(),
        dir: out.to_path_buf(),
        base: base.display().to_string(),
        data: data.0.to_string(),
        data_digest: data.1,
        options: serde_json::to_value(&summary.options)?,
        metric: summary.best.metric.clone(),
        baseline: summary.baseline.mean,
        validation: summary.best.mean,
        created,
        decision,
    };
    // A promoted embedder becomes current only once the index has been re-embedded with it.
    let mut switch_failed = None;
    if kind == "embedder" && version.decision.as_ref().is_some_and(|d| d.promoted) {
        if let Err(e) = crate::generation::switch(settings, &version) {
            if let Some(d) = version.decision.as_mut() {
                d.promoted = false;
                d.reason = format!("{}, but re-indexing with it failed: {e:#}", d.reason);
            }
            switch_failed = Some(e);
        }
    }
    reg.add(version)?;
    println!("registered as {id}");
    match switch_failed {
        Some(e) => Err(e.context(format!(
            "{id} was not promoted: the index still uses the previous embedder (retry with `quarry tune promote {id}`)"
        ))),
        None => Ok(()),
    }
}

fn status(settings: &Settings, json: bool) -> Result<ExitCode> {
    let reg = registry(settings)?;
    let versions = reg.versions()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if versions.is_empty() {
        println!("no trained models yet (quarry tune embedder|reranker ...)");
        return Ok(ExitCode::SUCCESS);
    }
    for v in &versions {
        let current = reg.current(&v.kind)?.is_some_and(|c| c.id == v.id);
        let decision = match &v.decision {
            Some(d) if d.promoted => format!("promoted: {}", d.reason),
            Some(d) => format!("kept out: {}", d.reason),
            None => "not compared".into(),
        };
        println!(
            "{}{}  {} {:.4} -> {:.4} on validation; data {} ({}); {}\n    {}",
            v.id,
            if current { " (current)" } else { "" },
            v.metric,
            v.baseline,
            v.validation,
            v.data,
            v.data_digest,
            v.dir.display(),
            decision
        );
    }
    if let Some(g) = crate::generation::active(&settings.data_dir, &settings.base_store)? {
        println!(
            "index in use: {} (built with {}; replaced {})",
            settings.store.describe(),
            g.version,
            g.previous.as_deref().unwrap_or("the first index")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn report(summary: &TrainSummary, out: &Path, flag: &str) {
    println!(
        "validation {} {:.4} -> {:.4} (best at step {} of {}{})",
        summary.best.metric,
        summary.baseline.mean,
        summary.best.mean,
        summary.best_step,
        summary.steps,
        if summary.early_stopped { ", stopped early" } else { "" }
    );
    println!(
        "{} examples in {} ({:.1} examples/s)",
        summary.examples,
        duration(summary.train_secs),
        summary.examples_per_sec
    );
    println!("model written to {}", out.display());
    println!("use it with: quarry {flag} {} search|ask|eval ...", out.display());
}

/// What both training commands share after their data is ready: the output folder, training with progress,
/// the report, and registration (with the promotion decision).
struct Job<'a> {
    settings: &'a Settings,
    output: &'a OutputFlags,
    kind: &'static str,
    flag: &'static str,
    base: &'a Path,
    data: (String, String),
    resume: bool,
}

impl Job<'_> {
    /// Trains `model` and registers the result; `load` reads a saved version back (to validate the current
    /// one on the same held-out data).
    fn fit<M: Trainable>(
        &self,
        model: &M,
        load: &dyn Fn(&Path) -> quarry_tune::Result<M>,
        objective: &dyn Objective<M>,
        items: usize,
        opts: &TrainOptions,
    ) -> Result<ExitCode> {
        let (id, out) = output(self.settings, self.output, self.kind)?;
        let every = (items / opts.batch_size.max(1) / 20).max(1);
        let summary = match quarry_tune::train(model, objective, opts, &out, self.resume, &Printer::new(every)?) {
            Ok(summary) => summary,
            Err(quarry_tune::Error::Interrupted { step }) => {
                eprintln!(
                    "training stopped at step {step}; its checkpoint is in {}: run the same command with --resume \
                     to continue",
                    out.join("checkpoint").display()
                );
                return Ok(ExitCode::from(130));
            }
            Err(e) => return Err(e.into()),
        };
        report(&summary, &out, self.flag);
        let validate = |dir: &Path| objective.validate(&load(dir)?);
        register(
            self.settings,
            self.output,
            self.kind,
            id,
            &out,
            self.base,
            (&self.data.0, self.data.1.clone()),
            &summary,
            &validate,
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

fn embedder(settings: &Settings, args: &TuneEmbedderArgs) -> Result<ExitCode> {
    let base = base_dir(settings, args.base.as_deref())?;
    let negatives = args.hard_negatives.max(1) * 3;
    let (train_set, val_set) = prepare(settings, &args.data, &args.mining, &base, negatives, args.train.seed)?;
    let job = Job {
        settings,
        output: &args.output,
        kind: "embedder",
        flag: "--embedder",
        base: &base,
        data: (train_set.source.clone(), train_set.digest()),
        resume: args.train.resume,
    };
    let mut objective = Contrastive::new(train_set, val_set, args.max_query_len, args.max_passage_len);
    objective.hard_negatives = args.hard_negatives;
    let opts = training_options(&args.train, 32, 2e-5);
    let encoder = Encoder::load(&base, false, opts.seed)?;
    job.fit(
        &encoder,
        &|dir| Encoder::load(dir, false, 0),
        &objective,
        objective.items(),
        &opts,
    )
}

fn reranker(settings: &Settings, args: &TuneRerankerArgs) -> Result<ExitCode> {
    let base = base_dir(settings, args.base.as_deref())?;
    let negatives = args.negatives.max(1) * 2;
    let (train_set, val_set) = prepare(settings, &args.data, &args.mining, &base, negatives, args.train.seed)?;
    let job = Job {
        settings,
        output: &args.output,
        kind: "reranker",
        flag: "--reranker",
        base: &base,
        data: (train_set.source.clone(), train_set.digest()),
        resume: args.train.resume,
    };
    let objective = CrossObjective::new(train_set, val_set, args.negatives, args.max_len);
    let opts = TrainOptions {
        head_lr_scale: args.head_lr_scale,
        ..training_options(&args.train, 32, 2e-5)
    };
    let encoder = Encoder::load(&base, true, opts.seed)?;
    job.fit(
        &encoder,
        &|dir| Encoder::load(dir, true, 0),
        &objective,
        objective.items(),
        &opts,
    )
}

fn generator(settings: &Settings, args: &TuneGeneratorArgs) -> Result<ExitCode> {
    let cache = settings.config.model.cache_dir.as_deref().map(Path::new);
    let base = quarry_models::resolve_gguf(args.base.as_deref().unwrap_or(&settings.config.generator.model), cache)?;
    let modules = args
        .modules
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| Module::parse(m).with_context(|| format!("--modules: unknown projection {m:?}")))
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(!modules.is_empty(), "--modules names no projection");
    anyhow::ensure!(args.rank > 0, "--rank must be at least 1");
    let set = ChatSet::load(&args.data)?;
    set.validate(args.min_examples)?;
    let digest = set.digest();
    let (train_set, val_set) = match &args.validation {
        Some(v) => (set, ChatSet::load(v)?),
        None => set.split(args.val_fraction, args.train.seed),
    };
    anyhow::ensure!(!val_set.conversations.is_empty(), "no validation conversations");
    let tokenizer = LocalModel::load(&base, &LocalOptions::default())?;
    let (train, long) = tokenize_all(&tokenizer, &train_set, args.max_len)?;
    let (validation, val_long) = tokenize_all(&tokenizer, &val_set, args.max_len)?;
    if long + val_long > 0 {
        eprintln!(
            "warning: {} conversations longer than --max-len {} left out",
            long + val_long,
            args.max_len
        );
    }
    anyhow::ensure!(
        !train.is_empty() && !validation.is_empty(),
        "no conversation fits --max-len {}",
        args.max_len
    );
    let tokens: usize = train.iter().map(|t| t.ids.len()).sum();
    eprintln!(
        "training on {} conversations ({:.0} tokens each on average), validating on {}",
        train.len(),
        tokens as f64 / train.len() as f64,
        validation.len()
    );
    let spec = LoraSpec {
        rank: args.rank,
        alpha: args.lora_alpha,
        modules,
    };
    let opts = training_options(&args.train, 4, 2e-4);
    let model = CausalLm::load(&base, spec, opts.seed)?;
    let job = Job {
        settings,
        output: &args.output,
        kind: "generator",
        flag: "--adapter",
        base: &base,
        data: (train_set.source.clone(), digest),
        resume: args.train.resume,
    };
    let objective = LmObjective {
        train,
        validation,
        source: args.data.clone(),
    };
    let items = objective.train.len();
    job.fit(
        &model,
        &|dir| CausalLm::from_adapter(&base, dir),
        &objective,
        items,
        &opts,
    )
}

/// The reply a training conversation teaches for `item`, given the numbers of its gold sources in the prompt.
fn target_reply(target: &str, item: &quarry_eval::evalset::EvalItem, cites: &str) -> Result<String> {
    let gold = item
        .gold_answer
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .with_context(|| format!("item {}: no gold answer", item.id))?;
    let with_cites = |text: &str| match cites.is_empty() {
        true => text.to_string(),
        false => format!("{text} {cites}"),
    };
    match target {
        "decision" => {
            let decision = item
                .metadata
                .get("decision")
                .and_then(|d| d.as_str())
                .with_context(|| format!("item {}: no yes/no/maybe decision in its metadata", item.id))?;
            let first = quarry_eval::ragas::sentences(gold)
                .into_iter()
                .next()
                .with_context(|| format!("item {}: the gold answer has no sentence", item.id))?;
            Ok(serde_json::json!({"decision": decision, "rationale": with_cites(&first)}).to_string())
        }
        "answer" => Ok(with_cites(gold.trim())),
        other => bail!("--target {other:?}: use decision or answer"),
    }
}

fn generator_data(settings: &Settings, args: &GeneratorDataArgs) -> Result<ExitCode> {
    use quarry_eval::evalset::EvalSet;
    let set = EvalSet::load(&args.evalset)?;
    let split_of =
        |it: &quarry_eval::evalset::EvalItem| it.metadata.get("split").and_then(|v| v.as_str()).map(str::to_string);
    if args.split.is_none() && set.items.iter().any(|it| split_of(it).as_deref() == Some("test")) {
        bail!(
            "{} has test items: pass --split (e.g. dev_or_train) so that nothing evaluated later is trained on",
            args.evalset.display()
        );
    }
    let items: Vec<_> = set
        .items
        .iter()
        .filter(|it| args.split.is_none() || split_of(it) == args.split)
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    anyhow::ensure!(!items.is_empty(), "{}: no items in that split", args.evalset.display());
    let embedder = settings.embedder()?;
    let index = match &args.corpus {
        Some(c) => cached_corpus_index(settings, c, &corpus_name(c), embedder.as_ref())?.0,
        None => settings.open_index(Some(embedder.as_ref()))?,
    };
    let retriever = settings.retriever(index, embedder.clone() as Arc<dyn Embedder>)?;
    let mut cfg = settings.config.generator.clone();
    cfg.kind = quarry_core::GeneratorKind::Local;
    let model = crate::commands::ask::language_model(settings, &cfg)?.context("a local model is needed")?;
    let generator = quarry_generate::LlmGenerator::new(model, None, cfg);
    let mut out = String::new();
    let (mut cited, started) = (0usize, Instant::now());
    for (i, item) in items.iter().enumerate() {
        let hits = retriever.search(&SearchRequest {
            query: &item.question,
            mode: settings.config.retrieval.mode,
            top_k: args.top_k,
            filter: None,
            per_document: false,
        })?;
        let passages = retriever.passages(&hits)?;
        let (context, messages) = generator.build_prompt(&item.question, &passages)?;
        let cites: String = context
            .sources
            .iter()
            .filter(|s| item.gold_doc_ids.contains(&s.doc_id))
            .map(|s| format!("[{}]", s.n))
            .collect();
        cited += usize::from(!cites.is_empty());
        let reply = target_reply(&args.target, item, &cites)?;
        let mut turns: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        turns.push(serde_json::json!({"role": "assistant", "content": reply}));
        out.push_str(&serde_json::json!({"id": item.id, "messages": turns}).to_string());
        out.push('\n');
        if (i + 1) % 50 == 0 {
            eprint!("\r{}/{} prompts", i + 1, items.len());
        }
    }
    std::fs::write(&args.out, out).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!();
    println!(
        "{}: {} conversations in {:.1}s ({} with a gold source retrieved and cited)",
        args.out.display(),
        items.len(),
        started.elapsed().as_secs_f64(),
        cited
    );
    Ok(ExitCode::SUCCESS)
}
