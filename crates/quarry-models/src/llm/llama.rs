//! The llama architecture (Llama 2/3, SmolLM, TinyLlama, Mistral-style GQA models) run from GGUF
//! weights: RMSNorm, rotary position embeddings, grouped-query attention with a KV cache, SwiGLU.

use rayon::prelude::*;

use super::gguf::{Gguf, TensorInfo};
use super::quant::{dequantize, QMatrix, QVec};
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
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
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
}

/// Keys and values of every processed position, per layer.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    pub len: usize,
}

impl KvCache {
    pub fn new(layers: usize) -> KvCache {
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Forgets every position from `len` on (to reuse a shared prompt prefix).
    pub fn truncate(&mut self, len: usize, kv_dim: usize) {
        if len < self.len {
            for l in self.k.iter_mut().chain(self.v.iter_mut()) {
                l.truncate(len * kv_dim);
            }
            self.len = len;
        }
    }
}

impl Llama {
    pub fn from_gguf(g: &Gguf) -> Result<Llama> {
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
        let cfg = LlamaConfig {
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
        };
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
        let layers = (0..cfg.layers)
            .into_par_iter()
            .map(|i| -> Result<Layer> {
                let p = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: vector(&p("attn_norm"), dim)?,
                    wq: matrix(&p("attn_q"), dim, dim)?,
                    wk: matrix(&p("attn_k"), kv_dim, dim)?,
                    wv: matrix(&p("attn_v"), kv_dim, dim)?,
                    wo: matrix(&p("attn_output"), dim, dim)?,
                    ffn_norm: vector(&p("ffn_norm"), dim)?,
                    gate: matrix(&p("ffn_gate"), cfg.ffn, dim)?,
                    up: matrix(&p("ffn_up"), cfg.ffn, dim)?,
                    down: matrix(&p("ffn_down"), dim, cfg.ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = matrix("token_embd.weight", cfg.vocab, dim)?;
        let output = match g.tensors.contains_key("output.weight") {
            true => Some(matrix("output.weight", cfg.vocab, dim)?),
            false => None,
        };
        let half = cfg.rope_dim / 2;
        let rope_freqs = (0..half)
            .map(|i| cfg.rope_base.powf(-((2 * i) as f32) / cfg.rope_dim as f32))
            .collect();
        Ok(Llama {
            norm: vector("output_norm.weight", dim)?,
            cfg,
            embed,
            layers,
            output,
            rope_freqs,
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.cfg.kv_heads * self.cfg.head_dim
    }

    /// Runs `tokens` at positions `cache.len..` and returns the logits after the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Vec<f32> {
        let c = &self.cfg;
        let (n, dim, kv_dim) = (tokens.len(), c.dim, self.kv_dim());
        let pos0 = cache.len;
        let mut x = vec![0f32; n * dim];
        for (t, &tok) in tokens.iter().enumerate() {
            let row = (tok as usize).min(c.vocab - 1);
            self.embed.row_f32(row, &mut x[t * dim..(t + 1) * dim]);
        }
        let mut h = vec![0f32; n * dim];
        let mut qv: Vec<QVec> = vec![QVec::default(); n];
        let mut q = vec![0f32; n * dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut att = vec![0f32; n * dim];
        let mut o = vec![0f32; n * dim];
        let mut g = vec![0f32; n * c.ffn];
        let mut u = vec![0f32; n * c.ffn];
        let mut qf: Vec<QVec> = vec![QVec::default(); n];
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&x, &layer.attn_norm, c.eps, &mut h, dim);
            quantize_rows(&h, dim, &mut qv);
            layer.wq.matmul(&qv, &mut q);
            layer.wk.matmul(&qv, &mut k);
            layer.wv.matmul(&qv, &mut v);
            for t in 0..n {
                self.rope(&mut q[t * dim..(t + 1) * dim], pos0 + t);
                self.rope(&mut k[t * kv_dim..(t + 1) * kv_dim], pos0 + t);
            }
            cache.k[li].extend_from_slice(&k);
            cache.v[li].extend_from_slice(&v);
            self.attention(&q, &cache.k[li], &cache.v[li], pos0, &mut att);
            quantize_rows(&att, dim, &mut qv);
            layer.wo.matmul(&qv, &mut o);
            add(&mut x, &o);

            rms_norm_rows(&x, &layer.ffn_norm, c.eps, &mut h, dim);
            quantize_rows(&h, dim, &mut qv);
            layer.gate.matmul(&qv, &mut g);
            layer.up.matmul(&qv, &mut u);
            for (gi, ui) in g.iter_mut().zip(&u) {
                *gi = *gi / (1.0 + (-*gi).exp()) * ui;
            }
            quantize_rows(&g, c.ffn, &mut qf);
            layer.down.matmul(&qf, &mut o);
            add(&mut x, &o);
        }
        cache.len += n;
        let last = &x[(n - 1) * dim..];
        let mut normed = vec![0f32; dim];
        rms_norm_rows(last, &self.norm, c.eps, &mut normed, dim);
        let mut logits = vec![0f32; c.vocab];
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .matvec(&QVec::quantize(&normed), &mut logits);
        logits
    }

    /// Rotates each head's first `rope_dim` values in adjacent pairs (GGUF llama weights are stored
    /// permuted for this "normal" rotation).
    fn rope(&self, x: &mut [f32], pos: usize) {
        let hd = self.cfg.head_dim;
        for head in x.chunks_exact_mut(hd) {
            for (i, &f) in self.rope_freqs.iter().enumerate() {
                let (sin, cos) = (pos as f32 * f).sin_cos();
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos - b * sin;
                head[2 * i + 1] = a * sin + b * cos;
            }
        }
    }

    /// Causal grouped-query attention of `n` new queries over every cached position.
    fn attention(&self, q: &[f32], kc: &[f32], vc: &[f32], pos0: usize, out: &mut [f32]) {
        let c = &self.cfg;
        let (hd, kv_dim, group) = (c.head_dim, self.kv_dim(), c.heads / c.kv_heads);
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (token, head): each writes its own head_dim slice of `out`.
        out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
            let (t, head) = (i / c.heads, i % c.heads);
            let kvh = head / group;
            let qh = &q[t * c.dim + head * hd..t * c.dim + (head + 1) * hd];
            let span = pos0 + t + 1;
            let mut scores: Vec<f32> = (0..span)
                .map(|p| {
                    let kp = &kc[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd];
                    quarry_core::vector::dot(qh, kp) * scale
                })
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s));
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (p, s) in scores.iter().enumerate() {
                let w = s / sum;
                let vp = &vc[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd];
                for (oi, vi) in o.iter_mut().zip(vp) {
                    *oi += w * vi;
                }
            }
        });
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

fn quantize_rows(x: &[f32], dim: usize, out: &mut [QVec]) {
    out.par_iter_mut()
        .zip(x.par_chunks_exact(dim))
        .for_each(|(q, r)| q.set(r));
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
