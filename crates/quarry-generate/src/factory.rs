//! The one place `[generator]` settings become a `Generator`, shared by the CLI and the server.

use std::path::Path;
use std::sync::Arc;

use quarry_core::{Embedder, Generator, GeneratorConfig, GeneratorKind, Result};
use quarry_models::{LocalModel, LocalOptions, OpenAiModel};

use crate::{ExtractiveGenerator, LlmGenerator};

/// Builds the generator `cfg.kind` names: extractive (no model), a local GGUF model loaded now (looked up in
/// `model_cache`, else the default caches), or an OpenAI-compatible server. The embedder verifies citations.
pub fn from_config(
    cfg: &GeneratorConfig,
    model_cache: Option<&Path>,
    embedder: Arc<dyn Embedder>,
) -> Result<Box<dyn Generator>> {
    Ok(match cfg.kind {
        GeneratorKind::Extractive => Box::new(ExtractiveGenerator::new(embedder)),
        GeneratorKind::Local => {
            let path = quarry_models::resolve_gguf(&cfg.model, model_cache)?;
            let opts = LocalOptions {
                threads: cfg.threads,
                context_window: cfg.context_window,
            };
            let model = LocalModel::load(&path, &opts)?;
            Box::new(LlmGenerator::new(Arc::new(model), Some(embedder), cfg.clone()))
        }
        GeneratorKind::Openai => {
            let mut openai = cfg.openai.clone();
            if let Some(w) = cfg.context_window {
                openai.context_window = w;
            }
            let model = OpenAiModel::from_config(&openai)?;
            Box::new(LlmGenerator::new(Arc::new(model), Some(embedder), cfg.clone()))
        }
    })
}
