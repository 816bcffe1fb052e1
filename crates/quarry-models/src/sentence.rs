//! Sentence embeddings from a BERT-family checkpoint: safetensors + tokenizer.json, mean pooling and
//! L2 normalisation, as sentence-transformers computes them.

use std::path::{Path, PathBuf};

use quarry_core::{Embedder, ModelConfig, TokenCounter};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::bert::{Bert, BertConfig};
use crate::error::{Error, Result};
use crate::resolve::resolve_model_dir;

pub struct SentenceEmbedder {
    model_id: String,
    dir: PathBuf,
    tokenizer: Tokenizer,
    bert: Bert,
    dim: usize,
    max_len: usize,
    batch_size: usize,
    sep_id: u32,
}

impl SentenceEmbedder {
    /// Loads the model named in the config (see `resolve_model_dir` for where it is looked for).
    pub fn from_config(cfg: &ModelConfig) -> Result<Self> {
        let dir = resolve_model_dir(&cfg.embedder, cfg.cache_dir.as_deref().map(Path::new))?;
        Self::load(&dir, cfg.max_seq_len, cfg.batch_size)
    }

    /// Loads a model directory with `config.json`, `model.safetensors` and `tokenizer.json`.
    pub fn load(dir: &Path, max_seq_len: usize, batch_size: usize) -> Result<Self> {
        let ModelFiles {
            cfg,
            bert,
            tokenizer,
            tokenizer_path,
            digest,
            ..
        } = ModelFiles::open(dir)?;
        let id = |t: &str| {
            tokenizer.token_to_id(t).ok_or_else(|| Error::Tokenizer {
                path: tokenizer_path.clone(),
                message: format!("no {t} token"),
            })
        };
        let sep_id = id("[SEP]")?;

        // sentence-transformers' own limit (sentence_bert_config.json) caps the configured one.
        let st_limit = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(usize::MAX, |n| n as usize);
        let max_len = max_seq_len.min(st_limit).min(bert.max_positions).max(2);
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model");
        Ok(SentenceEmbedder {
            model_id: format!("{name}@{digest}"),
            dir: dir.to_path_buf(),
            tokenizer,
            dim: cfg.hidden_size,
            bert,
            max_len,
            batch_size: batch_size.max(1),
            sep_id,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token ids with [CLS]/[SEP], truncated to `max_len` (keeping the final [SEP]).
    fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer {
                path: self.dir.join("tokenizer.json"),
                message: e.to_string(),
            })?;
        Ok(encodings
            .into_iter()
            .map(|e| {
                let mut ids = e.get_ids().to_vec();
                if ids.len() > self.max_len {
                    ids.truncate(self.max_len - 1);
                    ids.push(self.sep_id);
                }
                ids
            })
            .collect())
    }
}

impl TokenCounter for SentenceEmbedder {
    fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| text.split_whitespace().count())
    }
}

impl Embedder for SentenceEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_len
    }

    fn embed(&self, texts: &[&str]) -> quarry_core::Result<Vec<Vec<f32>>> {
        let ids = self.token_ids(texts)?;
        // Longest first, so each batch pads to a length close to all of its members.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        // Batches run in parallel, one per core, each on one thread: no synchronisation inside a
        // forward pass, and the packed batches waste nothing on padding.
        let batches: Vec<&[usize]> = order.chunks(self.batch_size).collect();
        // A lone batch (a query, a short document) splits its matrix multiplies across the cores
        // instead, so it does not leave them idle.
        let threads = if batches.len() == 1 {
            rayon::current_num_threads()
        } else {
            1
        };
        let results: Vec<Vec<Vec<f32>>> = batches
            .par_iter()
            .map(|group| {
                let seqs: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
                self.bert.embed_batch(&seqs, threads)
            })
            .collect();
        let mut out = vec![Vec::new(); ids.len()];
        for (group, vectors) in batches.iter().zip(results) {
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// A BERT model directory read and checked: configuration, encoder weights, tokenizer (with padding and
/// truncation off: callers pad per batch and truncate themselves, like sentence-transformers).
pub(crate) struct ModelFiles {
    pub cfg: BertConfig,
    pub bert: Bert,
    pub tokenizer: Tokenizer,
    pub tokenizer_path: std::path::PathBuf,
    /// First bytes of the weights' SHA-256, for model ids.
    pub digest: String,
    /// The raw weights file, for heads beyond the encoder.
    pub weights: Vec<u8>,
    pub weights_path: std::path::PathBuf,
}

impl ModelFiles {
    pub fn open(dir: &Path) -> Result<Self> {
        let file = |name: &'static str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::MissingFile {
                    dir: dir.to_path_buf(),
                    file: name,
                })
            }
        };
        let (config_path, weights_path, tokenizer_path) = (
            file("config.json")?,
            file("model.safetensors")?,
            file("tokenizer.json")?,
        );
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Error::Unreadable {
                path: p.to_path_buf(),
                source: e,
            })
        };
        let cfg: BertConfig = serde_json::from_slice(&read(&config_path)?).map_err(|e| Error::Invalid {
            path: config_path.clone(),
            message: format!("not a BERT config: {e}"),
        })?;
        if cfg.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(Error::Invalid {
                path: config_path,
                message: format!(
                    "model_type `{}` is not supported (expected bert)",
                    cfg.model_type.unwrap_or_default()
                ),
            });
        }
        let weights = read(&weights_path)?;
        let digest = hex(&Sha256::digest(&weights)[..6]);
        let bert = Bert::load(&weights, &weights_path, &cfg)?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Tokenizer {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| Error::Tokenizer {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        Ok(ModelFiles {
            cfg,
            bert,
            tokenizer,
            tokenizer_path,
            digest,
            weights,
            weights_path,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
