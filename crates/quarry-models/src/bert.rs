//! A BERT encoder (the architecture of MiniLM and most sentence-transformers models) on candle.
//!
//! Q, K and V are fused into one matrix multiply; padding is masked with an additive bias so a
//! batch padded to its longest text gives the same vectors as each text alone.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

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

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    pub max_positions: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        // Checkpoints saved from `BertModel` have no prefix; from `BertForX`, a `bert.` prefix.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = cfg.hidden_size;
        let e = vb.pp("embeddings");
        let word = embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?;
        let position = embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let token_type = embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let emb_ln = layer_norm(h, cfg.layer_norm_eps, e.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention.self");
            let (q, k, v) = (
                linear(h, h, a.pp("query"))?,
                linear(h, h, a.pp("key"))?,
                linear(h, h, a.pp("value"))?,
            );
            let w = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
            let b = Tensor::cat(&[bias(&q)?, bias(&k)?, bias(&v)?], 0)?;
            layers.push(Layer {
                qkv: Linear::new(w, Some(b)),
                attn_out: linear(h, h, l.pp("attention.output.dense"))?,
                attn_ln: layer_norm(h, cfg.layer_norm_eps, l.pp("attention.output.LayerNorm"))?,
                inter: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                out: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                out_ln: layer_norm(h, cfg.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            word,
            position,
            token_type,
            emb_ln,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            hidden: h,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// `ids` and `mask` are [batch, len] (u32); returns hidden states [batch, len, hidden].
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, l as u32, device)?.unsqueeze(0)?;
        let types = Tensor::zeros((b, l), DType::U32, device)?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mut x = self
            .emb_ln
            .forward(&x.add(&self.token_type.forward(&types)?)?)?;
        // 0 for tokens, -inf-ish for padding, broadcast over heads and query positions.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e4)?.reshape((b, 1, 1, l))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?;
            let split = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(2, i * self.hidden, self.hidden)?
                    .reshape((b, l, self.heads, self.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, l, self.hidden))?;
            x = layer
                .attn_ln
                .forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let h = layer.inter.forward(&x)?.gelu_erf()?;
            x = layer.out_ln.forward(&(layer.out.forward(&h)? + &x)?)?;
        }
        Ok(x)
    }
}

fn bias(l: &Linear) -> candle_core::Result<Tensor> {
    l.bias()
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("attention projection without bias".into()))
}

/// Mean of the token states where `mask` is 1, then L2-normalised: [batch, hidden].
pub fn mean_pool_normalize(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)
}

pub fn cpu() -> Device {
    Device::Cpu
}
