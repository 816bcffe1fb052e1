//! The one place `[generator]` settings become a `Generator`, shared by the CLI and the server.

use std::path::Path;
use std::sync::Arc;

use quarry_core::{Embedder, Generator, GeneratorConfig, GeneratorKind, LanguageModel, Result};
use quarry_models::{LocalModel, LocalOptions, OpenAiModel};

use crate::{ExtractiveGenerator, LlmGenerator};

/// The chat model `cfg.kind` names: a local GGUF model loaded now (looked up in `model_cache`, else the default
/// caches) or an OpenAI-compatible server; `None` for the extractive generator, which has no model. Judges and
/// question writers use it too.
pub fn language_model(cfg: &GeneratorConfig, model_cache: Option<&Path>) -> Result<Option<Arc<dyn LanguageModel>>> {
    Ok(match cfg.kind {
        GeneratorKind::Extractive => None,
        GeneratorKind::Local => {
            let path = quarry_models::resolve_gguf(&cfg.model, model_cache)?;
            let opts = LocalOptions {
                threads: cfg.threads,
                context_window: cfg.context_window,
                adapter: cfg
                    .adapter
                    .as_deref()
                    .filter(|a| !a.is_empty() && *a != "none")
                    .map(std::path::PathBuf::from),
            };
            Some(Arc::new(LocalModel::load(&path, &opts)?))
        }
        GeneratorKind::Openai => {
            let mut openai = cfg.openai.clone();
            if let Some(w) = cfg.context_window {
                openai.context_window = w;
            }
            Some(Arc::new(OpenAiModel::from_config(&openai)?))
        }
    })
}

/// Builds the generator `cfg.kind` names: extractive (no model), or an LLM generator over
/// [`language_model`]. The embedder verifies citations.
pub fn from_config(
    cfg: &GeneratorConfig,
    model_cache: Option<&Path>,
    embedder: Arc<dyn Embedder>,
) -> Result<Box<dyn Generator>> {
    Ok(match language_model(cfg, model_cache)? {
        None => Box::new(ExtractiveGenerator::new(embedder)),
        Some(model) => Box::new(LlmGenerator::new(model, Some(embedder), cfg.clone())),
    })
}
