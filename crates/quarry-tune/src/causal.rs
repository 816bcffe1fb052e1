//! A llama-family GGUF model on candle's autograd, frozen, with LoRA adapters as the only trained
//! parameters (QLoRA-style: the base weights are the file's quantised weights, dequantised, so the adapter
//! is trained against the weights it will run on).
//!
//! The adapter is saved in the PEFT layout that `quarry_models::llm::lora` reads at generation time;
//! [`CausalLm::logits`] and the inference forward pass agree (a test checks it), so what validation
//! measures here is what generation runs.

use std::path::{Path, PathBuf};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor, Var, D};
use quarry_models::llm::gguf::Gguf;
use quarry_models::llm::llama::LlamaConfig;
use quarry_models::llm::lora::{self, AdapterConfig, Direction, Module};
use quarry_models::llm::quant::dequantize;

use crate::encoder::small_normal;
use crate::error::{Error, Result};

/// What to adapt and how.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    pub modules: Vec<Module>,
}

impl Default for LoraSpec {
    fn default() -> Self {
        LoraSpec {
            rank: 8,
            alpha: 16.0,
            modules: Module::ALL.to_vec(),
        }
    }
}

/// `y = x Wᵀ` for a frozen `W`, with the gradient flowing to `x` only: candle's matmul backward would also
/// compute the weight's gradient (as much work as the forward pass) and throw it away.
struct Frozen {
    /// `out × in`
    w: Tensor,
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let Some((from, to)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-linear: the input must be contiguous")
        };
        let x = Tensor::from_slice(&data[from..to], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.w.t()?)?;
        let shape = y.shape().clone();
        let (st, _) = y.storage_and_layout();
        match &*st {
            Storage::Cpu(c) => Ok((c.clone(), shape)),
            _ => candle_core::bail!("frozen-linear runs on the CPU"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

struct Block {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// Indexed by `Module`.
    proj: [Frozen; 7],
}

/// One adapted projection's trained matrices: `a` is `rank × in`, `b` is `out × rank` (rows in GGUF order).
struct Pair {
    a: Var,
    b: Var,
}

pub struct CausalLm {
    pub cfg: LlamaConfig,
    pub spec: LoraSpec,
    /// The GGUF file the adapter belongs to.
    pub base: PathBuf,
    embed: Tensor,
    output: Frozen,
    norm: Tensor,
    blocks: Vec<Block>,
    lora: Vec<[Option<Pair>; 7]>,
    vars: Vec<(String, Var)>,
    rope_freqs: Vec<f32>,
}

fn module_index(m: Module) -> usize {
    Module::ALL.iter().position(|&x| x == m).unwrap_or(0)
}

impl CausalLm {
    /// Loads the base model from a GGUF file and starts a new adapter: `A` random (PEFT's default
    /// variance), `B` zero, so training starts from exactly the base model.
    pub fn load(gguf: &Path, spec: LoraSpec, seed: u64) -> Result<CausalLm> {
        let model_err = |message: String| Error::Model {
            path: gguf.to_path_buf(),
            message,
        };
        if spec.rank == 0 || spec.modules.is_empty() {
            return Err(model_err(
                "a LoRA adapter needs a rank ≥ 1 and at least one module".into(),
            ));
        }
        let g = Gguf::open(gguf).map_err(|e| model_err(e.to_string()))?;
        let cfg = LlamaConfig::from_gguf(&g).map_err(|e| model_err(e.to_string()))?;
        if cfg.rope_dim != cfg.head_dim {
            return Err(model_err(format!(
                "partial rotary embeddings ({} of {} dims) are not supported for training",
                cfg.rope_dim, cfg.head_dim
            )));
        }
        let dev = Device::Cpu;
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Tensor> {
            let t = g
                .tensors
                .get(name)
                .ok_or_else(|| model_err(format!("tensor `{name}` is missing")))?;
            if t.elements() != rows * cols {
                return Err(model_err(format!("tensor `{name}` has {} elements", t.elements())));
            }
            let v = dequantize(t.dtype, g.tensor_bytes(t), rows * cols);
            Ok(Tensor::from_vec(v, (rows, cols), &dev)?)
        };
        let vector = |name: &str, n: usize| -> Result<Tensor> { Ok(matrix(name, 1, n)?.reshape(n)?) };
        let mut blocks = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            let names = [
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ];
            let mut proj = Vec::with_capacity(7);
            for (m, name) in Module::ALL.iter().zip(names) {
                let (rows, cols) = m.shape(&cfg);
                proj.push(Frozen {
                    w: matrix(&p(name), rows, cols)?,
                });
            }
            let proj: [Frozen; 7] = proj
                .try_into()
                .map_err(|_| model_err("internal: seven projections expected".into()))?;
            blocks.push(Block {
                attn_norm: vector(&p("attn_norm"), cfg.dim)?,
                ffn_norm: vector(&p("ffn_norm"), cfg.dim)?,
                proj,
            });
        }
        let embed = matrix("token_embd.weight", cfg.vocab, cfg.dim)?;
        let output = match g.tensors.contains_key("output.weight") {
            true => matrix("output.weight", cfg.vocab, cfg.dim)?,
            false => embed.clone(),
        };
        let norm = vector("output_norm.weight", cfg.dim)?;
        let mut lora = Vec::with_capacity(cfg.layers);
        let mut vars = Vec::new();
        let mut modules = spec.modules.clone();
        modules.sort();
        modules.dedup();
        for layer in 0..cfg.layers {
            let mut pairs: [Option<Pair>; 7] = Default::default();
            for &m in &modules {
                let (out, inp) = m.shape(&cfg);
                let std = 1.0 / (3.0 * inp as f32).sqrt();
                let a_seed = seed ^ ((layer as u64) << 8 | module_index(m) as u64).wrapping_mul(0x9E37_79B9);
                let a = Var::from_vec(small_normal(spec.rank * inp, a_seed, std), (spec.rank, inp), &dev)?;
                let b = Var::zeros((out, spec.rank), DType::F32, &dev)?;
                vars.push((lora::tensor_name(layer, m, 'A'), a.clone()));
                vars.push((lora::tensor_name(layer, m, 'B'), b.clone()));
                pairs[module_index(m)] = Some(Pair { a, b });
            }
            lora.push(pairs);
        }
        let rope_freqs = cfg.rope_freqs();
        Ok(CausalLm {
            spec: LoraSpec { modules, ..spec },
            base: gguf.to_path_buf(),
            embed,
            output: Frozen { w: output },
            norm,
            blocks,
            lora,
            vars,
            rope_freqs,
            cfg,
        })
    }

    /// The base model with a saved adapter (PEFT layout) loaded, e.g. to validate or continue training it.
    pub fn from_adapter(gguf: &Path, dir: &Path) -> Result<CausalLm> {
        let config_path = dir.join(lora::ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::Unreadable {
            path: config_path.clone(),
            source: e,
        })?;
        let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| Error::Model {
            path: config_path.clone(),
            message: format!("not a PEFT adapter configuration: {e}"),
        })?;
        let modules = config.check().map_err(|message| Error::Model {
            path: config_path.clone(),
            message,
        })?;
        let spec = LoraSpec {
            rank: config.r,
            alpha: config.scale() * config.r as f64,
            modules,
        };
        let lm = CausalLm::load(gguf, spec, 0)?;
        let path = dir.join(lora::ADAPTER_WEIGHTS);
        let map = candle_core::safetensors::load(&path, &Device::Cpu)?;
        for (name, var) in &lm.vars {
            let t = map.get(name).ok_or_else(|| Error::Model {
                path: path.clone(),
                message: format!("no tensor {name}"),
            })?;
            let t = t.to_dtype(DType::F32)?;
            if t.dims() != var.as_tensor().dims() {
                return Err(Error::Model {
                    path: path.clone(),
                    message: format!(
                        "tensor {name} has shape {:?}, expected {:?}",
                        t.dims(),
                        var.as_tensor().dims()
                    ),
                });
            }
            var.set(&lm.reorder(name, t, Direction::HfToGguf)?)?;
        }
        Ok(lm)
    }

    /// For the `B` matrix of a query or key adapter: the heads whose rows GGUF interleaves.
    fn rotary_heads_of(&self, name: &str) -> Option<usize> {
        self.spec
            .modules
            .iter()
            .find(|m| name.contains(&format!(".{}.lora_B", m.name())))
            .and_then(|&m| lora::rotary_heads(m, &self.cfg))
    }

    fn scale(&self) -> f64 {
        self.spec.alpha / self.spec.rank as f64
    }

    fn linear(&self, x: &Tensor, layer: usize, m: Module) -> Result<Tensor> {
        let i = module_index(m);
        let y = x.apply_op1(Frozen {
            w: self.blocks[layer].proj[i].w.clone(),
        })?;
        Ok(match &self.lora[layer][i] {
            None => y,
            Some(p) => {
                let low = x.matmul(&p.a.as_tensor().t()?)?.matmul(&p.b.as_tensor().t()?)?;
                (y + (low * self.scale())?)?
            }
        })
    }

    fn rms(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        Ok(x.broadcast_div(&(ms + eps as f64)?.sqrt()?)?.broadcast_mul(w)?)
    }

    /// Hidden states after the final norm, `T × dim`, for `tokens` at positions `0..T`.
    fn hidden(&self, tokens: &[u32]) -> Result<Tensor> {
        let c = &self.cfg;
        let dev = Device::Cpu;
        let t = tokens.len();
        let ids = Tensor::new(tokens, &dev)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let half = self.rope_freqs.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for &f in &self.rope_freqs {
                let (s, co) = (pos as f32 * f).sin_cos();
                cos.push(co);
                sin.push(s);
            }
        }
        let cos = Tensor::from_vec(cos, (t, half), &dev)?;
        let sin = Tensor::from_vec(sin, (t, half), &dev)?;
        let mask: Vec<f32> = (0..t * t)
            .map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &dev)?;
        let (hd, heads, kvh) = (c.head_dim, c.heads, c.kv_heads);
        let group = heads / kvh;
        let scale = 1.0 / (hd as f64).sqrt();
        for (li, b) in self.blocks.iter().enumerate() {
            let h = Self::rms(&x, &b.attn_norm, c.eps)?;
            let split = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((t, n, hd))?.transpose(0, 1)?.contiguous()?.unsqueeze(0)?)
            };
            let q = split(self.linear(&h, li, Module::Q)?, heads)?;
            let k = split(self.linear(&h, li, Module::K)?, kvh)?;
            let v = split(self.linear(&h, li, Module::V)?, kvh)?;
            let q = candle_nn::rotary_emb::rope_i_slow(&q, &cos, &sin)?.squeeze(0)?;
            let k = candle_nn::rotary_emb::rope_i_slow(&k, &cos, &sin)?.squeeze(0)?;
            let v = v.squeeze(0)?;
            let repeat = |z: Tensor| -> Result<Tensor> {
                if group == 1 {
                    return Ok(z);
                }
                Ok(z.unsqueeze(1)?
                    .broadcast_as((kvh, group, t, hd))?
                    .contiguous()?
                    .reshape((heads, t, hd))?)
            };
            let (k, v) = (repeat(k)?, repeat(v)?);
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let att = probs
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, heads * hd))?;
            x = (x + self.linear(&att, li, Module::O)?)?;
            let h = Self::rms(&x, &b.ffn_norm, c.eps)?;
            let gate = self.linear(&h, li, Module::Gate)?;
            let up = self.linear(&h, li, Module::Up)?;
            let act = (candle_nn::ops::silu(&gate)? * up)?;
            x = (x + self.linear(&act, li, Module::Down)?)?;
        }
        Self::rms(&x, &self.norm, c.eps)
    }

    /// Logits (`positions.len() × vocab`) after each of `positions` of `tokens`.
    pub fn logits(&self, tokens: &[u32], positions: &[usize]) -> Result<Tensor> {
        let h = self.hidden(tokens)?;
        let at: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let h = h.index_select(&Tensor::new(at.as_slice(), &Device::Cpu)?, 0)?;
        Ok(h.apply_op1(Frozen {
            w: self.output.w.clone(),
        })?)
    }

    /// Mean negative log-likelihood of the tokens marked in `target` (token `i` is predicted from
    /// `tokens[..i]`), as a scalar tensor with a graph back to the adapter; None when nothing is marked.
    pub fn loss(&self, tokens: &[u32], target: &[bool]) -> Result<Option<Tensor>> {
        let positions: Vec<usize> = (1..tokens.len()).filter(|&i| target[i]).map(|i| i - 1).collect();
        if positions.is_empty() {
            return Ok(None);
        }
        let logits = self.logits(&tokens[..tokens.len() - 1], &positions)?;
        let labels: Vec<u32> = positions.iter().map(|&p| tokens[p + 1]).collect();
        let labels = Tensor::new(labels.as_slice(), &Device::Cpu)?;
        Ok(Some(candle_nn::loss::cross_entropy(&logits, &labels)?))
    }

    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The PEFT configuration of this adapter.
    pub fn adapter_config(&self) -> AdapterConfig {
        let base = self
            .base
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        AdapterConfig::new(self.spec.rank, self.spec.alpha, &self.spec.modules, &base)
    }

    /// `t`, an adapter tensor named `name`, with its rows moved between Hugging Face and GGUF order when it is a
    /// q/k LoRA B matrix (the others are the same in both).
    fn reorder(&self, name: &str, t: Tensor, direction: Direction) -> Result<Tensor> {
        let Some(h) = self.rotary_heads_of(name) else {
            return Ok(t);
        };
        let (rows, cols) = t.dims2()?;
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(Tensor::from_vec(
            lora::permute_rows(&v, h, cols, direction),
            (rows, cols),
            &Device::Cpu,
        )?)
    }

    /// The adapter's tensors in PEFT (Hugging Face) row order.
    fn peft_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            out.push((
                name.clone(),
                self.reorder(name, var.as_tensor().clone(), Direction::GgufToHf)?,
            ));
        }
        Ok(out)
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` to `dir`.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Unwritable {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let tensors = self.peft_tensors()?;
        let weights = dir.join(lora::ADAPTER_WEIGHTS);
        let tmp = dir.join(format!("{}.tmp", lora::ADAPTER_WEIGHTS));
        candle_core::safetensors::save(&tensors.into_iter().collect(), &tmp)?;
        std::fs::rename(&tmp, &weights).map_err(|e| Error::Unwritable {
            path: weights,
            source: e,
        })?;
        let config = dir.join(lora::ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(&self.adapter_config()).map_err(|e| Error::Model {
            path: config.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&config, text).map_err(|e| Error::Unwritable {
            path: config,
            source: e,
        })
    }

    /// Trained parameters as they are held (checkpoints).
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    pub fn load_weights(&self, path: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(path, &Device::Cpu)?;
        for (name, var) in &self.vars {
            let t = map.get(name).ok_or_else(|| Error::Model {
                path: path.to_path_buf(),
                message: format!("checkpoint has no tensor {name}"),
            })?;
            var.set(t)?;
        }
        Ok(())
    }
}

impl crate::trainer::Trainable for CausalLm {
    fn named_vars(&self) -> &[(String, Var)] {
        &self.vars
    }
    fn save(&self, dir: &Path) -> Result<()> {
        self.save_adapter(dir)
    }
    fn save_weights(&self, path: &Path) -> Result<()> {
        CausalLm::save_weights(self, path)
    }
    fn load_weights(&self, path: &Path) -> Result<()> {
        CausalLm::load_weights(self, path)
    }
}
