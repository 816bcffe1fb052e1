//! A BERT encoder (the architecture of MiniLM and most sentence-transformers models), written for
//! CPU inference over *packed* batches: the tokens of all texts in a batch are stacked into one
//! matrix with no padding, so the linear layers run as single large matrix multiplies and
//! attention runs per text on exactly its own tokens. Nothing is computed for padding, and a text
//! gets the same vector alone or in any batch.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kernels::{add_bias, add_layer_norm, gelu, layer_norm, matmul, matmul_bt, softmax_rows, View};

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Q, K and V projections stacked: [3H, H], so one multiply produces all three.
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    attn_out_w: Vec<f32>,
    attn_out_b: Vec<f32>,
    attn_norm: Norm,
    inter_w: Vec<f32>,
    inter_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    out_norm: Norm,
}

pub struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Segment embeddings, [type_vocab, H]: segment 0 for single texts, 1 for the second text of a pair.
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    eps: f32,
    vocab: usize,
    pub max_positions: usize,
}

/// Reads named f32 tensors from a safetensors buffer, checking shapes.
pub(crate) struct Weights<'a> {
    st: SafeTensors<'a>,
    prefix: &'static str,
    path: &'a Path,
}

impl<'a> Weights<'a> {
    /// Tensors outside the encoder (heads), by their full names.
    pub(crate) fn unprefixed(weights: &'a [u8], path: &'a Path) -> Result<Self> {
        let st = SafeTensors::deserialize(weights).map_err(|e| Error::Invalid {
            path: path.to_path_buf(),
            message: format!("not a safetensors file: {e}"),
        })?;
        Ok(Weights { st, prefix: "", path })
    }

    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let bad = |message: String| Error::Invalid {
            path: self.path.to_path_buf(),
            message,
        };
        let t = self.st.tensor(&full).map_err(|e| bad(format!("tensor {full}: {e}")))?;
        if t.shape() != shape {
            return Err(bad(format!(
                "tensor {full} has shape {:?}, expected {shape:?}",
                t.shape()
            )));
        }
        match t.dtype() {
            Dtype::F32 => Ok(t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            Dtype::F16 => Ok(t
                .data()
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect()),
            Dtype::BF16 => Ok(t
                .data()
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect()),
            other => Err(bad(format!("tensor {full} has unsupported dtype {other:?}"))),
        }
    }

    fn norm(&self, name: &str, h: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[h])?,
            beta: self.get(&format!("{name}.bias"), &[h])?,
        })
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

impl Bert {
    pub fn load(weights: &[u8], path: &Path, cfg: &BertConfig) -> Result<Self> {
        let st = SafeTensors::deserialize(weights).map_err(|e| Error::Invalid {
            path: path.to_path_buf(),
            message: format!("not a safetensors file: {e}"),
        })?;
        // Checkpoints saved from `BertModel` have no prefix; from `BertForX`, a `bert.` prefix.
        let prefix = if st.names().contains(&"embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let w = Weights { st, prefix, path };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        if cfg.num_attention_heads == 0 || h % cfg.num_attention_heads != 0 {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                message: "hidden_size is not a multiple of the head count".into(),
            });
        }
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv_w.extend(w.get(&format!("{p}.attention.self.{part}.weight"), &[h, h])?);
                qkv_b.extend(w.get(&format!("{p}.attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv_w,
                qkv_b,
                attn_out_w: w.get(&format!("{p}.attention.output.dense.weight"), &[h, h])?,
                attn_out_b: w.get(&format!("{p}.attention.output.dense.bias"), &[h])?,
                attn_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                inter_w: w.get(&format!("{p}.intermediate.dense.weight"), &[i, h])?,
                inter_b: w.get(&format!("{p}.intermediate.dense.bias"), &[i])?,
                out_w: w.get(&format!("{p}.output.dense.weight"), &[h, i])?,
                out_b: w.get(&format!("{p}.output.dense.bias"), &[h])?,
                out_norm: w.norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
        let token_type = w.get("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?;
        Ok(Bert {
            word: w.get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[cfg.max_position_embeddings, h],
            )?,
            token_type,
            emb_norm: w.norm("embeddings.LayerNorm", h)?,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: i,
            eps: cfg.layer_norm_eps as f32,
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Mean-pooled, L2-normalised embeddings of a batch of token-id sequences (each already with
    /// its special tokens and at most `max_positions` long). With `threads` = 1 it runs on the
    /// calling thread; more splits each linear layer across the rayon pool (for a lone batch, such as
    /// a search query, that would otherwise leave cores idle).
    pub fn embed_batch(&self, seqs: &[&[u32]], threads: usize) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let x = self.encode(seqs, None, threads);
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for s in seqs {
            let len = s.len();
            let mut v = vec![0f32; h];
            for r in start..start + len {
                for (a, b) in v.iter_mut().zip(&x[r * h..(r + 1) * h]) {
                    *a += b;
                }
            }
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            out.push(v);
            start += len;
        }
        out
    }

    /// The final hidden state of each sequence's first token (`[CLS]`), with segment ids per token (for
    /// text pairs), as cross-encoders read it.
    pub fn cls_batch(&self, seqs: &[&[u32]], types: &[&[u32]], threads: usize) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let x = self.encode(seqs, Some(types), threads);
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for s in seqs {
            out.push(x[start * h..(start + 1) * h].to_vec());
            start += s.len();
        }
        out
    }

    /// Hidden states of all tokens of a packed batch, [total tokens, H].
    fn encode(&self, seqs: &[&[u32]], types: Option<&[&[u32]]>, threads: usize) -> Vec<f32> {
        let h = self.hidden;
        let type_rows = self.token_type.len() / h;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for (n, s) in seqs.iter().enumerate() {
            for (pos, &id) in s.iter().enumerate() {
                let id = (id as usize).min(self.vocab - 1);
                let ty = types
                    .and_then(|t| t[n].get(pos))
                    .map_or(0, |&t| (t as usize).min(type_rows - 1));
                let pos = pos.min(self.max_positions - 1);
                let dst = &mut x[row * h..(row + 1) * h];
                let (wv, pv) = (&self.word[id * h..(id + 1) * h], &self.position[pos * h..(pos + 1) * h]);
                let tv = &self.token_type[ty * h..(ty + 1) * h];
                for j in 0..h {
                    dst[j] = wv[j] + pv[j] + tv[j];
                }
                row += 1;
            }
        }
        layer_norm(&mut x, &self.emb_norm.gamma, &self.emb_norm.beta, self.eps);

        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let mut qkv = vec![0f32; total * 3 * h];
        let mut ctx = vec![0f32; total * h];
        let mut tmp = vec![0f32; total * h];
        let mut inter = vec![0f32; total * self.intermediate];
        let max_len = lens.iter().copied().max().unwrap_or(0);
        let mut scores = vec![0f32; max_len * max_len];
        for layer in &self.layers {
            matmul_bt(
                View::new(&x, total, h, h),
                View::new(&layer.qkv_w, 3 * h, h, h),
                &mut qkv,
                3 * h,
                1.0,
                threads,
            );
            add_bias(&mut qkv, &layer.qkv_b);
            self.attention(&qkv, &lens, &mut ctx, &mut scores);
            matmul_bt(
                View::new(&ctx, total, h, h),
                View::new(&layer.attn_out_w, h, h, h),
                &mut tmp,
                h,
                1.0,
                threads,
            );
            add_bias(&mut tmp, &layer.attn_out_b);
            add_layer_norm(&mut tmp, &x, &layer.attn_norm.gamma, &layer.attn_norm.beta, self.eps);
            std::mem::swap(&mut x, &mut tmp);
            let i = self.intermediate;
            matmul_bt(
                View::new(&x, total, h, h),
                View::new(&layer.inter_w, i, h, h),
                &mut inter,
                i,
                1.0,
                threads,
            );
            add_bias(&mut inter, &layer.inter_b);
            gelu(&mut inter);
            matmul_bt(
                View::new(&inter, total, i, i),
                View::new(&layer.out_w, h, i, i),
                &mut tmp,
                h,
                1.0,
                threads,
            );
            add_bias(&mut tmp, &layer.out_b);
            add_layer_norm(&mut tmp, &x, &layer.out_norm.gamma, &layer.out_norm.beta, self.eps);
            std::mem::swap(&mut x, &mut tmp);
        }

        x
    }

    /// Self-attention of each sequence over its own tokens, all heads; writes [total, H] into `ctx`.
    fn attention(&self, qkv: &[f32], lens: &[usize], ctx: &mut [f32], scores: &mut [f32]) {
        let h = self.hidden;
        let hd = h / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut start = 0;
        for &len in lens {
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            let s = &mut scores[..len * len];
            for head in 0..self.heads {
                let q = View::new(&rows[head * hd..], len, hd, 3 * h);
                let k = View::new(&rows[h + head * hd..], len, hd, 3 * h);
                let v = View::new(&rows[2 * h + head * hd..], len, hd, 3 * h);
                matmul_bt(q, k, s, len, scale, 1);
                softmax_rows(s, len);
                let dst = &mut ctx[start * h + head * hd..];
                matmul(View::new(s, len, len, len), v, dst, h);
            }
            start += len;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn f16_conversion() {
        for (bits, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x0000, 0.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
        ] {
            assert_eq!(super::f16_to_f32(bits), want, "{bits:#x}");
        }
    }
}
