//! A trainable BERT encoder (MiniLM and other sentence-transformers models) on candle's autograd.
//!
//! Parameters are loaded from and saved to `model.safetensors` under the Hugging Face names, so a trained
//! model is read back by `quarry_models::SentenceEmbedder` like any downloaded one. Padding is masked in
//! attention and pooling, so a text's vector does not depend on what it was batched with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use quarry_models::bert::BertConfig;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

struct Linear {
    w: Var,
    b: Var,
}

impl Linear {
    /// `x` is `[N, in]`; the result `[N, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w.as_tensor().t()?)?.broadcast_add(self.b.as_tensor())?)
    }
}

struct Norm {
    gamma: Var,
    beta: Var,
    eps: f64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(self.gamma.as_tensor())?
            .broadcast_add(self.beta.as_tensor())?)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

/// A classification head on the `[CLS]` vector: BERT's pooler (dense + tanh) and one output score, the
/// layout of Hugging Face's `BertForSequenceClassification` with one label.
struct Head {
    pooler: Linear,
    classifier: Linear,
}

pub struct Encoder {
    pub config: BertConfig,
    word: Var,
    position: Var,
    token_type: Var,
    emb_norm: Norm,
    layers: Vec<Layer>,
    head: Option<Head>,
    /// Every trainable parameter under its file name, in a fixed order.
    params: Vec<(String, Var)>,
    pub tokenizer: Tokenizer,
    pub source: PathBuf,
}

/// A tokenized batch: ids, attention mask (1 for tokens, 0 for padding) and segment ids, all `[B, T]`.
pub struct Batch {
    pub ids: Tensor,
    pub mask: Tensor,
    pub types: Tensor,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Unreadable {
        path: path.to_path_buf(),
        source: e,
    })
}

impl Encoder {
    /// Loads a model directory (`config.json`, `model.safetensors`, `tokenizer.json`). With `with_head`, a
    /// scoring head is added: loaded from the file when it has one (`classifier.*`), else the pooler from the
    /// file (or fresh) and a classifier initialised small and seeded.
    pub fn load(dir: &Path, with_head: bool, seed: u64) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_slice(&read(&config_path)?).map_err(|e| Error::Model {
            path: config_path.clone(),
            message: format!("not a BERT config: {e}"),
        })?;
        let weights_path = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| Error::Model {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
        // Some checkpoints prefix every name with `bert.`.
        let prefixed = tensors.keys().any(|k| k.starts_with("bert.embeddings."));
        if prefixed {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (k.strip_prefix("bert.").map(str::to_string).unwrap_or(k), v))
                .collect();
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Model {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;

        let mut params = Vec::new();
        let mut take = |name: &str, shape: &[usize]| -> Result<Var> {
            let t = tensors.remove(name).ok_or_else(|| Error::Model {
                path: weights_path.clone(),
                message: format!("tensor {name} is missing"),
            })?;
            if t.dims() != shape {
                return Err(Error::Model {
                    path: weights_path.clone(),
                    message: format!("tensor {name} has shape {:?}, expected {shape:?}", t.dims()),
                });
            }
            let v = Var::from_tensor(&t.to_dtype(DType::F32)?)?;
            params.push((name.to_string(), v.clone()));
            Ok(v)
        };
        let h = config.hidden_size;
        let i = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let word = take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = take(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type = take("embeddings.token_type_embeddings.weight", &[2, h])?;
        let mut norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: take(&format!("{name}.weight"), &[h])?,
                beta: take(&format!("{name}.bias"), &[h])?,
                eps,
            })
        };
        let emb_norm = norm("embeddings.LayerNorm")?;
        let mut linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                w: take(&format!("{name}.weight"), &[out, inp])?,
                b: take(&format!("{name}.bias"), &[out])?,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let query = linear(&format!("{p}.attention.self.query"), h, h)?;
            let key = linear(&format!("{p}.attention.self.key"), h, h)?;
            let value = linear(&format!("{p}.attention.self.value"), h, h)?;
            let attn_out = linear(&format!("{p}.attention.output.dense"), h, h)?;
            let inter = linear(&format!("{p}.intermediate.dense"), i, h)?;
            let out = linear(&format!("{p}.output.dense"), h, i)?;
            layers.push((query, key, value, attn_out, inter, out, p));
        }
        let mut norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: take(&format!("{name}.weight"), &[h])?,
                beta: take(&format!("{name}.bias"), &[h])?,
                eps,
            })
        };
        let mut built = Vec::with_capacity(layers.len());
        for (query, key, value, attn_out, inter, out, p) in layers {
            built.push(Layer {
                query,
                key,
                value,
                attn_out,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                inter,
                out,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let head = if with_head {
            let mut get_or = |name: &str, shape: &[usize], init: &dyn Fn() -> Result<Tensor>| -> Result<Var> {
                let t = match tensors.remove(name) {
                    Some(t) if t.dims() == shape => t.to_dtype(DType::F32)?,
                    _ => init()?,
                };
                let v = Var::from_tensor(&t)?;
                params.push((name.to_string(), v.clone()));
                Ok(v)
            };
            let seeded = |rows: usize, cols: usize, salt: u64| -> Result<Tensor> {
                Ok(Tensor::from_vec(
                    small_normal(rows * cols, seed ^ salt, 0.02),
                    (rows, cols),
                    &Device::Cpu,
                )?)
            };
            let zeros = |n: usize| -> Result<Tensor> { Ok(Tensor::zeros(n, DType::F32, &Device::Cpu)?) };
            Some(Head {
                pooler: Linear {
                    w: get_or("pooler.dense.weight", &[h, h], &|| seeded(h, h, 1))?,
                    b: get_or("pooler.dense.bias", &[h], &|| zeros(h))?,
                },
                classifier: Linear {
                    w: get_or("classifier.weight", &[1, h], &|| seeded(1, h, 2))?,
                    b: get_or("classifier.bias", &[1], &|| zeros(1))?,
                },
            })
        } else {
            None
        };
        Ok(Encoder {
            config,
            word,
            position,
            token_type,
            emb_norm,
            layers: built,
            head,
            params,
            tokenizer,
            source: dir.to_path_buf(),
        })
    }

    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Tokenizes texts (or text pairs, as segments A and B) with truncation to `max_len` tokens, padded to
    /// the longest in the batch.
    pub fn tokenize(&self, texts: &[&str], pairs: Option<&[&str]>, max_len: usize) -> Result<Batch> {
        let max_len = max_len.min(self.config.max_position_embeddings).max(4);
        let mut rows: Vec<(Vec<u32>, Vec<u32>)> = Vec::with_capacity(texts.len());
        for (n, text) in texts.iter().enumerate() {
            let enc = match pairs {
                Some(b) => self.tokenizer.encode((*text, b[n]), true),
                None => self.tokenizer.encode(*text, true),
            }
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
            let mut ids = enc.get_ids().to_vec();
            let mut types = enc.get_type_ids().to_vec();
            if ids.len() > max_len {
                // Keep [CLS] … and end with [SEP]; for pairs, cut the second text first.
                let sep = *ids.last().unwrap_or(&0);
                ids.truncate(max_len - 1);
                types.truncate(max_len - 1);
                let last_type = *types.last().unwrap_or(&0);
                ids.push(sep);
                types.push(last_type);
            }
            rows.push((ids, types));
        }
        let t = rows.iter().map(|r| r.0.len()).max().unwrap_or(1);
        let b = rows.len();
        let mut ids = vec![0u32; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, (row_ids, row_types)) in rows.iter().enumerate() {
            ids[r * t..r * t + row_ids.len()].copy_from_slice(row_ids);
            types[r * t..r * t + row_types.len()].copy_from_slice(row_types);
            mask[r * t..r * t + row_ids.len()].iter_mut().for_each(|m| *m = 1.0);
        }
        Ok(Batch {
            ids: Tensor::from_vec(ids, (b, t), &Device::Cpu)?,
            mask: Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
            types: Tensor::from_vec(types, (b, t), &Device::Cpu)?,
        })
    }

    /// Hidden states `[B, T, H]`.
    pub fn hidden(&self, batch: &Batch) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let dh = h / heads;
        let flat_ids = batch.ids.flatten_all()?;
        let words = self.word.as_tensor().index_select(&flat_ids, 0)?;
        let positions = self.position.as_tensor().narrow(0, 0, t)?;
        let types = self
            .token_type
            .as_tensor()
            .index_select(&batch.types.flatten_all()?, 0)?;
        let x = (words.reshape((b, t, h))?.broadcast_add(&positions)? + types.reshape((b, t, h))?)?;
        let mut x = self.emb_norm.forward(&x)?.reshape((b * t, h))?;
        // Additive mask over keys: 0 for tokens, -10000 for padding, broadcast over heads and queries.
        let key_bias = ((batch.mask.clone() - 1.0)? * 10000.0)?.reshape((b, 1, 1, t))?;
        let scale = 1.0 / (dh as f64).sqrt();
        for layer in &self.layers {
            let split =
                |y: Tensor| -> Result<Tensor> { Ok(y.reshape((b, t, heads, dh))?.transpose(1, 2)?.contiguous()?) };
            let q = split(layer.query.forward(&x)?)?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&key_bias)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, h))?;
            let attn = layer.attn_norm.forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let inter = layer.inter.forward(&attn)?.gelu_erf()?;
            x = layer.out_norm.forward(&(layer.out.forward(&inter)? + &attn)?)?;
        }
        Ok(x.reshape((b, t, h))?)
    }

    /// Mean-pooled, L2-normalised sentence vectors `[B, H]` (sentence-transformers' MiniLM pooling).
    pub fn embed(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.hidden(batch)?;
        let mask = batch.mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-9, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?)
    }

    /// Relevance scores `[B]` of (query, passage) pairs from the `[CLS]` vector; needs a head.
    pub fn score(&self, batch: &Batch) -> Result<Tensor> {
        let head = self.head.as_ref().ok_or_else(|| Error::Model {
            path: self.source.clone(),
            message: "this encoder was loaded without a scoring head".into(),
        })?;
        let hidden = self.hidden(batch)?;
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = head.pooler.forward(&cls)?.tanh()?;
        Ok(head.classifier.forward(&pooled)?.squeeze(1)?)
    }

    /// Writes a complete model directory: the source's files (config, tokenizer, pooling settings) and the
    /// current parameters as `model.safetensors`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Unwritable {
            path: dir.to_path_buf(),
            source: e,
        })?;
        copy_model_files(&self.source, dir, self.head.is_some())?;
        if self.head.is_some() {
            // Mark the folder as a one-score sequence classifier (a cross-encoder), as Hugging Face does.
            let path = dir.join("config.json");
            let mut config: serde_json::Value = serde_json::from_slice(&read(&path)?).map_err(|e| Error::Model {
                path: path.clone(),
                message: e.to_string(),
            })?;
            config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
            config["id2label"] = serde_json::json!({"0": "LABEL_0"});
            config["label2id"] = serde_json::json!({"LABEL_0": 0});
            std::fs::write(&path, config.to_string()).map_err(|e| Error::Unwritable { path, source: e })?;
        }
        self.save_weights(&dir.join("model.safetensors"))
    }

    pub fn save_weights(&self, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Replaces the parameters with those of a `model.safetensors` written by [`Encoder::save_weights`].
    pub fn load_weights(&self, path: &Path) -> Result<()> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for (name, var) in &self.params {
            let t = tensors.get(name).ok_or_else(|| Error::Model {
                path: path.to_path_buf(),
                message: format!("tensor {name} is missing"),
            })?;
            var.set(t)?;
        }
        Ok(())
    }
}

/// sentence-transformers' files, which say how to pool token vectors into a sentence vector.
const SENTENCE_FILES: &[&str] = &[
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
];

/// Copies everything but the weights from one model directory to another (config, tokenizer files and, unless
/// `scorer`, the sentence-transformers settings and pooling folder).
pub fn copy_model_files(from: &Path, to: &Path, scorer: bool) -> Result<()> {
    if from == to {
        return Ok(());
    }
    let entries = std::fs::read_dir(from).map_err(|e| Error::Unreadable {
        path: from.to_path_buf(),
        source: e,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let target = to.join(&name);
        if scorer && SENTENCE_FILES.iter().any(|f| name == *f) {
            continue;
        }
        if path.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::Unwritable {
                path: target.clone(),
                source: e,
            })?;
            copy_model_files(&path, &target, scorer)?;
        } else if name != "model.safetensors" && !name.to_string_lossy().ends_with(".bin") {
            std::fs::copy(&path, &target).map_err(|e| Error::Unwritable {
                path: target.clone(),
                source: e,
            })?;
        }
    }
    Ok(())
}

/// Deterministic normal(0, std) values (Box–Muller over a SplitMix64 stream).
pub fn small_normal(n: usize, seed: u64, std: f32) -> Vec<f32> {
    let mut rng = quarry_eval::compare::SplitMix64::new(seed);
    let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|_| {
            let u1 = uniform().max(1e-12);
            let u2 = uniform();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32 * std
        })
        .collect()
}
