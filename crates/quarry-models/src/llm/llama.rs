//! The llama architecture (Llama 2/3, SmolLM, TinyLlama, Mistral-style GQA models) run from GGUF
//! weights: RMSNorm, rotary position embeddings, grouped-query attention with a KV cache, SwiGLU.

use std::cell::RefCell;

use rayon::prelude::*;

use super::attention::{attend, swiglu};
use super::gemm::QActs;
use super::gguf::{Gguf, TensorInfo};
use super::lora::{LoraAdapter, Module};
use super::quant::{dequantize, QMatrix};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub layers: usize,
    pub dim: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub eps: f32,
    pub context: usize,
    pub vocab: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Query, key and value projections stacked: one pass over the normed input.
    qkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// Gate and up projections stacked.
    gate_up: QMatrix,
    down: QMatrix,
}

pub struct Llama {
    pub cfg: LlamaConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// None: the output projection is the embedding matrix (tied weights).
    output: Option<QMatrix>,
    /// cos/sin of each rotary frequency, per position (filled lazily up to the longest sequence).
    rope_freqs: Vec<f32>,
    /// A LoRA adapter applied on top of the weights.
    lora: Option<LoraAdapter>,
}

/// Keys and values of every processed position, per layer and kv head (each head's positions
/// contiguous, so attention reads one run of memory), plus the forward pass's working buffers, kept
/// across tokens and calls.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// Positions each head has room for.
    cap: usize,
    pub len: usize,
    work: Work,
}

#[derive(Default)]
struct Work {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gu: Vec<f32>,
    g: Vec<f32>,
    acts: QActs,
    /// (cos, sin) per position of the batch and rotary frequency.
    rope: Vec<(f32, f32)>,
}

thread_local! {
    /// Attention scores of the query being processed on this thread.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl KvCache {
    fn new(layers: usize) -> KvCache {
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            cap: 0,
            len: 0,
            work: Work::default(),
        }
    }

    /// Forgets every position from `len` on (to reuse a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `want` positions, moving each head's run to its new place.
    fn reserve(&mut self, want: usize, kv_heads: usize, hd: usize) {
        if want <= self.cap {
            return;
        }
        let cap = want.max(2 * self.cap).max(64);
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            let mut grown = vec![0f32; kv_heads * cap * hd];
            for h in 0..kv_heads {
                let n = self.len * hd;
                grown[h * cap * hd..h * cap * hd + n].copy_from_slice(&l[h * self.cap * hd..h * self.cap * hd + n]);
            }
            *l = grown;
        }
        self.cap = cap;
    }
}

impl LlamaConfig {
    /// The shape of a llama-family GGUF model, from its metadata.
    pub fn from_gguf(g: &Gguf) -> Result<LlamaConfig> {
        let bad = |message: String| Error::Invalid {
            path: g.path.clone(),
            message,
        };
        let arch = g.str("general.architecture")?;
        if arch != "llama" {
            return Err(bad(format!(
                "architecture `{arch}` is not supported (llama-family models are)"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let dim = g.u64(&key("embedding_length"))? as usize;
        let heads = g.u64(&key("attention.head_count"))? as usize;
        let kv_heads = g
            .get(&key("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .unwrap_or(heads as u64) as usize;
        if heads == 0 || kv_heads == 0 || !dim.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads) {
            return Err(bad(format!(
                "inconsistent attention shape: {dim} dims, {heads} heads, {kv_heads} kv heads"
            )));
        }
        let head_dim = dim / heads;
        Ok(LlamaConfig {
            layers: g.u64(&key("block_count"))? as usize,
            dim,
            ffn: g.u64(&key("feed_forward_length"))? as usize,
            heads,
            kv_heads,
            head_dim,
            rope_dim: g
                .get(&key("rope.dimension_count"))
                .and_then(|v| v.as_u64())
                .unwrap_or(head_dim as u64) as usize,
            rope_base: g
                .get(&key("rope.freq_base"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0) as f32,
            eps: g
                .get(&key("attention.layer_norm_rms_epsilon"))
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-5) as f32,
            context: g.u64(&key("context_length"))? as usize,
            vocab: g.strings("tokenizer.ggml.tokens")?.len(),
        })
    }

    /// The rotary frequencies, one per pair of rotated values.
    pub fn rope_freqs(&self) -> Vec<f32> {
        let half = self.rope_dim / 2;
        (0..half)
            .map(|i| self.rope_base.powf(-((2 * i) as f32) / self.rope_dim as f32))
            .collect()
    }
}

impl Llama {
    pub fn from_gguf(g: &Gguf) -> Result<Llama> {
        let bad = |message: String| Error::Invalid {
            path: g.path.clone(),
            message,
        };
        let cfg = LlamaConfig::from_gguf(g)?;
        let (dim, kv_heads, head_dim) = (cfg.dim, cfg.kv_heads, cfg.head_dim);
        let tensor = |name: &str| -> Result<&TensorInfo> {
            g.tensors
                .get(name)
                .ok_or_else(|| bad(format!("tensor `{name}` is missing")))
        };
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<QMatrix> {
            let t = tensor(name)?;
            if t.dims.len() != 2 || t.dims[0] != cols || t.dims[1] != rows {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected [{cols}, {rows}]",
                    t.dims
                )));
            }
            if !cols.is_multiple_of(32) {
                return Err(bad(format!("tensor `{name}`: {cols} columns is not a multiple of 32")));
            }
            Ok(QMatrix::from_gguf(t.dtype, g.tensor_bytes(t), rows, cols))
        };
        let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = tensor(name)?;
            if t.elements() != n {
                return Err(bad(format!(
                    "tensor `{name}` has {} elements, expected {n}",
                    t.elements()
                )));
            }
            Ok(dequantize(t.dtype, g.tensor_bytes(t), n))
        };
        let kv_dim = kv_heads * head_dim;
        if !kv_dim.is_multiple_of(4) || !dim.is_multiple_of(4) || !cfg.ffn.is_multiple_of(4) {
            return Err(bad(format!(
                "{dim} dims, {kv_dim} kv dims or {} feed-forward dims is not a multiple of 4",
                cfg.ffn
            )));
        }
        let layers = (0..cfg.layers)
            .into_par_iter()
            .map(|i| -> Result<Layer> {
                let p = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: vector(&p("attn_norm"), dim)?,
                    qkv: fuse(&[
                        matrix(&p("attn_q"), dim, dim)?,
                        matrix(&p("attn_k"), kv_dim, dim)?,
                        matrix(&p("attn_v"), kv_dim, dim)?,
                    ])
                    .map_err(|m| bad(format!("block {i}: {m}")))?,
                    wo: matrix(&p("attn_output"), dim, dim)?,
                    ffn_norm: vector(&p("ffn_norm"), dim)?,
                    gate_up: fuse(&[
                        matrix(&p("ffn_gate"), cfg.ffn, dim)?,
                        matrix(&p("ffn_up"), cfg.ffn, dim)?,
                    ])
                    .map_err(|m| bad(format!("block {i}: {m}")))?,
                    down: matrix(&p("ffn_down"), dim, cfg.ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = matrix("token_embd.weight", cfg.vocab, dim)?;
        let output = match g.tensors.contains_key("output.weight") {
            true => Some(matrix("output.weight", cfg.vocab, dim)?),
            false => None,
        };
        let rope_freqs = cfg.rope_freqs();
        Ok(Llama {
            norm: vector("output_norm.weight", dim)?,
            cfg,
            embed,
            layers,
            output,
            rope_freqs,
            lora: None,
        })
    }

    /// Applies `adapter` (read for this model's shape) from the next forward pass on; None removes it.
    pub fn set_adapter(&mut self, adapter: Option<LoraAdapter>) {
        self.lora = adapter;
    }

    pub fn adapter(&self) -> Option<&LoraAdapter> {
        self.lora.as_ref()
    }

    pub fn kv_dim(&self) -> usize {
        self.cfg.kv_heads * self.cfg.head_dim
    }

    /// An empty cache (and working buffers) for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.layers)
    }

    /// Runs `tokens` at positions `cache.len..` and writes the logits after the last one.
    ///
    /// Each token's computation is independent of the batch it runs in (see `gemm` and
    /// `attention`), so running a prompt at once or token by token gives the same logits, bit for bit.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: &mut Vec<f32>) {
        let c = &self.cfg;
        let (n, dim, kv_dim, hd) = (tokens.len(), c.dim, self.kv_dim(), c.head_dim);
        if n == 0 {
            return;
        }
        let pos0 = cache.len;
        cache.reserve(pos0 + n, c.kv_heads, hd);
        let cap = cache.cap;
        let w = &mut cache.work;
        let qkv_w = dim + 2 * kv_dim;
        w.x.resize(n * dim, 0.0);
        w.h.resize(n * dim, 0.0);
        w.qkv.resize(n * qkv_w, 0.0);
        w.att.resize(n * dim, 0.0);
        w.o.resize(n * dim, 0.0);
        w.gu.resize(n * 2 * c.ffn, 0.0);
        w.g.resize(n * c.ffn, 0.0);
        for (t, &tok) in tokens.iter().enumerate() {
            let row = (tok as usize).min(c.vocab - 1);
            self.embed.row_f32(row, &mut w.x[t * dim..(t + 1) * dim]);
        }
        w.rope.clear();
        for t in 0..n {
            let pos = (pos0 + t) as f32;
            w.rope.extend(
                self.rope_freqs
                    .iter()
                    .map(|&f| (pos * f).sin_cos())
                    .map(|(s, c)| (c, s)),
            );
        }
        let half = self.rope_freqs.len();
        let scale = 1.0 / (hd as f32).sqrt();
        let group = c.heads / c.kv_heads;
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&w.x, &layer.attn_norm, c.eps, &mut w.h, dim);
            w.acts.quantize(&w.h, dim);
            layer.qkv.matmul(&w.acts, &mut w.qkv);
            if let Some(a) = &self.lora {
                for (m, offset) in [(Module::Q, 0), (Module::K, dim), (Module::V, dim + kv_dim)] {
                    if let Some(p) = a.get(li, m) {
                        p.apply(&w.h, &mut w.qkv, qkv_w, offset);
                    }
                }
            }
            let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
            for (t, row) in w.qkv.chunks_exact_mut(qkv_w).enumerate() {
                let cs = &w.rope[t * half..(t + 1) * half];
                let (q, kv) = row.split_at_mut(dim);
                rope(q, hd, cs);
                rope(&mut kv[..kv_dim], hd, cs);
                for h in 0..c.kv_heads {
                    let at = (h * cap + pos0 + t) * hd;
                    kc[at..at + hd].copy_from_slice(&kv[h * hd..(h + 1) * hd]);
                    vc[at..at + hd].copy_from_slice(&kv[kv_dim + h * hd..kv_dim + (h + 1) * hd]);
                }
            }
            let (kc, vc, qkv) = (&*kc, &*vc, &w.qkv);
            // One task per (token, head): each writes its own head_dim slice of `att`.
            w.att.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
                let (t, head) = (i / c.heads, i % c.heads);
                let kvh = head / group;
                let q = &qkv[t * qkv_w + head * hd..t * qkv_w + (head + 1) * hd];
                let (k, v) = (&kc[kvh * cap * hd..], &vc[kvh * cap * hd..]);
                SCORES.with_borrow_mut(|scores| attend(q, k, v, pos0 + t + 1, scale, scores, o));
            });
            w.acts.quantize(&w.att, dim);
            layer.wo.matmul(&w.acts, &mut w.o);
            if let Some(p) = self.lora.as_ref().and_then(|a| a.get(li, Module::O)) {
                p.apply(&w.att, &mut w.o, dim, 0);
            }
            add(&mut w.x, &w.o);

            rms_norm_rows(&w.x, &layer.ffn_norm, c.eps, &mut w.h, dim);
            w.acts.quantize(&w.h, dim);
            layer.gate_up.matmul(&w.acts, &mut w.gu);
            let ffn = c.ffn;
            if let Some(a) = &self.lora {
                for (m, offset) in [(Module::Gate, 0), (Module::Up, ffn)] {
                    if let Some(p) = a.get(li, m) {
                        p.apply(&w.h, &mut w.gu, 2 * ffn, offset);
                    }
                }
            }
            w.g.par_chunks_mut(ffn)
                .zip(w.gu.par_chunks(2 * ffn))
                .for_each(|(g, gu)| {
                    g.copy_from_slice(&gu[..ffn]);
                    swiglu(g, &gu[ffn..]);
                });
            w.acts.quantize(&w.g, ffn);
            layer.down.matmul(&w.acts, &mut w.o);
            if let Some(p) = self.lora.as_ref().and_then(|a| a.get(li, Module::Down)) {
                p.apply(&w.g, &mut w.o, dim, 0);
            }
            add(&mut w.x, &w.o);
        }
        cache.len += n;
        let last = &w.x[(n - 1) * dim..];
        rms_norm_rows(last, &self.norm, c.eps, &mut w.h[..dim], dim);
        w.acts.quantize(&w.h[..dim], dim);
        logits.resize(c.vocab, 0.0);
        self.output.as_ref().unwrap_or(&self.embed).matmul(&w.acts, logits);
    }
}

/// Stacks projections that read the same input.
fn fuse(parts: &[QMatrix]) -> std::result::Result<QMatrix, String> {
    if parts.windows(2).any(|p| p[0].layout != p[1].layout) {
        return Err("projections that read the same input are stored in different formats".into());
    }
    Ok(QMatrix::concat(&parts.iter().collect::<Vec<_>>()))
}

/// Rotates each head's first `rope_dim` values in adjacent pairs (GGUF llama weights are stored
/// permuted for this "normal" rotation); `cs` holds (cos, sin) per pair for this position.
fn rope(x: &mut [f32], hd: usize, cs: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(hd) {
        for (i, &(cos, sin)) in cs.iter().enumerate() {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos - b * sin;
            head[2 * i + 1] = a * sin + b * cos;
        }
    }
}

fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], dim: usize) {
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &xi), &wi) in or.iter_mut().zip(xr).zip(w) {
            *o = xi * inv * wi;
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
