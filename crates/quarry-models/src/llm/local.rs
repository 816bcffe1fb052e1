//! `LocalModel`: a GGUF chat model run in-process behind `quarry_core::LanguageModel`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use quarry_core::{Completion, FinishReason, LanguageModel, Message, Sampling, TokenCounter, Usage};

use super::gguf::Gguf;
use super::llama::{KvCache, Llama};
use super::lora::LoraAdapter;
use super::sampler::Sampler;
use super::template::ChatTemplate;
use super::tokenizer::{GgufTokenizer, TextStream};
use crate::error::{Error, Result};

/// Tokens run through the model per forward pass while reading a prompt.
const PROMPT_BATCH: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Threads for the model (default: every core).
    pub threads: Option<usize>,
    /// A smaller window than the model's own (saves memory; never larger).
    pub context_window: Option<usize>,
    /// A LoRA adapter directory (PEFT layout) applied on top of the model.
    pub adapter: Option<PathBuf>,
}

pub struct LocalModel {
    id: String,
    path: PathBuf,
    llama: Llama,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    window: usize,
    pool: rayon::ThreadPool,
    /// The tokens of the previous call and their KV cache: a new prompt that starts the same way
    /// (same system prompt) reuses the shared prefix. One generation runs at a time.
    session: Mutex<(Vec<u32>, KvCache)>,
}

impl LocalModel {
    pub fn load(path: &Path, opts: &LocalOptions) -> Result<LocalModel> {
        let g = Gguf::open(path)?;
        let mut llama = Llama::from_gguf(&g)?;
        let mut adapter_id = String::new();
        if let Some(dir) = &opts.adapter {
            let adapter = LoraAdapter::load(dir, &llama.cfg)?;
            let size = std::fs::metadata(dir.join(super::lora::ADAPTER_WEIGHTS)).map_or(0, |m| m.len());
            let name = dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            adapter_id = format!("+lora:{name}@{size}");
            llama.set_adapter(Some(adapter));
        }
        let tokenizer = GgufTokenizer::from_gguf(&g)?;
        let name = |id: Option<u32>| {
            id.and_then(|i| tokenizer.tokens.get(i as usize))
                .cloned()
                .unwrap_or_default()
        };
        let template = g.get("tokenizer.chat_template").and_then(|v| v.as_str());
        let template = ChatTemplate::new(template, &name(tokenizer.bos), &name(Some(tokenizer.eos)))?;
        let window = opts
            .context_window
            .map_or(llama.cfg.context, |w| w.min(llama.cfg.context));
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("quarry-llm-{i}"))
            .build()
            .map_err(|e| Error::Generation(format!("cannot start model threads: {e}")))?;
        let stem = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let cache = llama.new_cache();
        Ok(LocalModel {
            id: format!("{stem}@{size}{adapter_id}"),
            path: path.to_path_buf(),
            llama,
            tokenizer,
            template,
            window,
            pool,
            session: Mutex::new((Vec::new(), cache)),
        })
    }

    /// Forgets the cached prompt prefix (benchmarks measuring prompt processing from scratch).
    pub fn clear_cache(&self) {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, cache) = &mut *session;
        cache.truncate(0);
        seen.clear();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    pub fn llama(&self) -> &Llama {
        &self.llama
    }

    /// The prompt's token ids: the chat template rendered, then tokenised with its control tokens.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.template.render(messages)?;
        let mut ids = Vec::new();
        if self.tokenizer.add_bos {
            if let Some(b) = self.tokenizer.bos {
                ids.push(b);
            }
        }
        ids.extend(self.tokenizer.encode(&text)?);
        Ok(ids)
    }

    fn generate(
        &self,
        prompt: &[u32],
        sampling: &Sampling,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let started = Instant::now();
        if prompt.len() >= self.window {
            return Err(Error::Generation(format!(
                "the prompt is {} tokens but {} holds {} (prompt and answer together); shorten the context",
                prompt.len(),
                self.id,
                self.window
            )));
        }
        let max_new = sampling.max_tokens.min(self.window - prompt.len());
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, cache) = &mut *session;
        let shared = seen.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // At least one prompt token is always run, to get the logits that follow the prompt.
        let keep = shared.min(prompt.len() - 1);
        cache.truncate(keep);
        seen.truncate(keep);
        let mut logits = Vec::new();
        self.pool.install(|| {
            for batch in prompt[keep..].chunks(PROMPT_BATCH) {
                self.llama.forward(batch, cache, &mut logits);
                seen.extend_from_slice(batch);
            }
        });

        let mut sampler = Sampler::new(sampling);
        let mut stream = TextStream::new(&sampling.stop);
        let mut history: Vec<u32> = prompt.to_vec();
        let mut first_token_ms = None;
        let mut generated = 0;
        let mut finish = FinishReason::Length;
        let mut emit = |piece: &str, first: &mut Option<f64>| -> bool {
            if piece.is_empty() {
                return true;
            }
            first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
            on_text(piece)
        };
        while generated < max_new {
            let tok = sampler.sample(&mut logits, &history);
            generated += 1;
            if tok == self.tokenizer.eos || self.tokenizer.is_control(tok) {
                finish = FinishReason::Stop;
                break;
            }
            history.push(tok);
            let (piece, stopped) = stream.push(self.tokenizer.token_bytes(tok));
            if !emit(&piece, &mut first_token_ms) {
                finish = FinishReason::Cancelled;
                break;
            }
            if stopped {
                finish = FinishReason::Stop;
                break;
            }
            if generated == max_new {
                break;
            }
            self.pool.install(|| self.llama.forward(&[tok], cache, &mut logits));
            seen.push(tok);
        }
        if finish != FinishReason::Cancelled {
            let tail = stream.finish();
            emit(&tail, &mut first_token_ms);
        }
        Ok(Completion {
            text: stream.text().to_string(),
            usage: Usage {
                prompt_tokens: prompt.len(),
                completion_tokens: generated,
            },
            finish,
            first_token_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

impl TokenCounter for LocalModel {
    fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.count(text)
    }
}

impl LanguageModel for LocalModel {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn context_window(&self) -> usize {
        self.window
    }

    fn prompt_tokens(&self, messages: &[Message]) -> quarry_core::Result<usize> {
        Ok(self.encode_chat(messages)?.len())
    }

    fn chat(
        &self,
        messages: &[Message],
        sampling: &Sampling,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> quarry_core::Result<Completion> {
        let prompt = self.encode_chat(messages)?;
        Ok(self.generate(&prompt, sampling, on_text)?)
    }
}
