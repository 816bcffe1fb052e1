use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use quarry_core::{Embedder, Generator, GeneratorConfig, GeneratorKind, LanguageModel};
use quarry_retrieve::SearchRequest;

use crate::args::AskArgs;
use crate::commands::search::{retriever, snippet};
use crate::settings::{Query, Settings};

/// The generator settings after command-line overrides.
fn generator_config(settings: &Settings, args: &AskArgs) -> Result<GeneratorConfig> {
    let cfg = override_generator(
        settings.config.generator.clone(),
        args.generator.as_deref(),
        args.model.as_deref(),
        args.base_url.as_deref(),
    );
    let mut cfg = cfg;
    if let Some(n) = args.max_tokens {
        anyhow::ensure!(n > 0, "--max-tokens must be positive");
        cfg.sampling.max_tokens = n;
    }
    Ok(cfg)
}

/// A generator configuration with `--generator`, `--model` and `--base-url` style overrides applied.
pub fn override_generator(
    mut cfg: GeneratorConfig,
    kind: Option<&str>,
    model: Option<&str>,
    base_url: Option<&str>,
) -> GeneratorConfig {
    if let Some(kind) = kind {
        cfg.kind = match kind {
            "local" => GeneratorKind::Local,
            "openai" => GeneratorKind::Openai,
            _ => GeneratorKind::Extractive,
        };
    }
    if let Some(m) = model {
        match cfg.kind {
            GeneratorKind::Openai => cfg.openai.model = m.to_string(),
            _ => cfg.model = m.to_string(),
        }
    }
    if let Some(u) = base_url {
        cfg.openai.base_url = u.to_string();
    }
    cfg
}

/// The chat model a generator configuration names (None for the extractive generator).
pub fn language_model(settings: &Settings, cfg: &GeneratorConfig) -> Result<Option<Arc<dyn LanguageModel>>> {
    let cache = settings.config.model.cache_dir.as_deref().map(std::path::Path::new);
    Ok(quarry_generate::language_model(cfg, cache)?)
}

/// The answering generator. A local model with no adapter configured gets the registry's current generator
/// adapter when that adapter was trained for the same model file (judges and question writers, built by
/// [`language_model`], never do).
pub fn build_generator(
    settings: &Settings,
    cfg: GeneratorConfig,
    embedder: Arc<dyn Embedder>,
) -> Result<Box<dyn Generator>> {
    let cache = settings.config.model.cache_dir.as_deref().map(std::path::Path::new);
    let mut cfg = cfg;
    if cfg.kind == GeneratorKind::Local && cfg.adapter.is_none() {
        if let Some(v) = settings.promoted("generator") {
            let model = quarry_models::resolve_gguf(&cfg.model, cache)?;
            if std::path::Path::new(&v.base).file_name() == model.file_name() {
                eprintln!("using the generator adapter {} ({})", v.id, v.dir.display());
                cfg.adapter = Some(v.dir.display().to_string());
            }
        }
    }
    Ok(quarry_generate::from_config(&cfg, cache, embedder)?)
}

pub fn run(settings: &Settings, args: &AskArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let cfg = generator_config(settings, args)?;
    let q = Query::from_opts(&args.opts, &settings.config)?;
    let (retriever, embedder) = retriever(settings)?;
    let (hits, search_timings) = retriever.search_timed(&SearchRequest {
        query: &args.question,
        mode: q.mode,
        top_k: q.top_k,
        filter: q.filter.as_ref(),
        per_document: false,
    })?;
    let passages = retriever.passages(&hits)?;
    let retrieve_ms = search_timings.total_ms;
    let generator = build_generator(settings, cfg, embedder)?;
    let mut out = std::io::stdout();
    let mut answer = if args.stream && !args.json {
        generator.answer_streaming(&args.question, &passages, &mut |piece| {
            let _ = write!(out, "{piece}");
            out.flush().is_ok()
        })?
    } else {
        generator.answer(&args.question, &passages)?
    };
    answer.timings.retrieve_ms = Some(retrieve_ms);
    answer.timings.total_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    if args.json {
        let mut v = serde_json::to_value(&answer)?;
        v["generator"] = serde_json::Value::String(generator.name().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.stream {
        println!();
        if answer.abstained && answer.draft.is_some() {
            println!("\n{}", answer.answer);
        }
    } else {
        println!("{}", answer.answer);
    }
    println!();
    for c in &answer.citations {
        let name = if c.doc_id == c.source {
            c.source.clone()
        } else {
            format!("{} ({})", c.doc_id, c.source)
        };
        let at = c.page.map(|p| format!("p. {p}, ")).unwrap_or_default();
        let section = if c.section.is_empty() {
            String::new()
        } else {
            format!("{}, ", c.section.join(" > "))
        };
        println!("[{}] {name}, {section}{at}characters {}..{}", c.n, c.start, c.end);
        println!("    {}", snippet(&c.text, 160));
    }
    let flagged: Vec<_> = answer
        .sentences
        .iter()
        .filter(|s| !s.supported || s.issue.is_some())
        .collect();
    if !flagged.is_empty() {
        println!();
        for s in flagged {
            let why = match &s.issue {
                Some(quarry_core::CitationIssue::Uncited) => "no citation".to_string(),
                Some(quarry_core::CitationIssue::UnknownSource { n }) => format!("cites [{n}], which is not a source"),
                Some(quarry_core::CitationIssue::WrongSource { supported_by, .. }) => {
                    format!("the cited source does not support it; [{supported_by}] does")
                }
                _ => "not supported by its sources".to_string(),
            };
            println!("unverified ({why}): {}", snippet(&s.text, 120));
        }
    }
    Ok(ExitCode::SUCCESS)
}
