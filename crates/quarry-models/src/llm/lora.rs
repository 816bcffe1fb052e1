//! LoRA adapters (Hu et al., 2021) on a llama-family GGUF model: each adapted projection becomes
//! `W x + (alpha / r) · B (A x)`, with `A` (`r × in`) and `B` (`out × r`) kept in f32 next to the
//! quantised base weights (never merged into them: a 4-bit re-quantisation would round most of a small
//! update away).
//!
//! Adapters are read and written in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`,
//! tensors named `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`), so an adapter trained
//! with Hugging Face PEFT loads here and one trained by `quarry tune generator` loads there. Hugging Face
//! and GGUF order the rows of the query and key projections differently (GGUF interleaves the two rotary
//! halves of each head); `B` of those projections is permuted on the way in and out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::llama::LlamaConfig;
use crate::bert::Weights;
use crate::error::{Error, Result};

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// A projection LoRA can adapt, by its Hugging Face name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Module {
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "v_proj")]
    V,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "down_proj")]
    Down,
}

impl Module {
    pub const ALL: [Module; 7] = [
        Module::Q,
        Module::K,
        Module::V,
        Module::O,
        Module::Gate,
        Module::Up,
        Module::Down,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Module::Q => "q_proj",
            Module::K => "k_proj",
            Module::V => "v_proj",
            Module::O => "o_proj",
            Module::Gate => "gate_proj",
            Module::Up => "up_proj",
            Module::Down => "down_proj",
        }
    }

    /// Accepts `q_proj` or `q`, `gate_proj` or `gate`, and so on.
    pub fn parse(s: &str) -> Option<Module> {
        let s = s.trim();
        Module::ALL
            .into_iter()
            .find(|m| m.name() == s || m.name().strip_suffix("_proj") == Some(s))
    }

    fn index(self) -> usize {
        self as usize
    }

    fn group(self) -> &'static str {
        match self {
            Module::Q | Module::K | Module::V | Module::O => "self_attn",
            Module::Gate | Module::Up | Module::Down => "mlp",
        }
    }

    /// (output, input) dimensions in `cfg`.
    pub fn shape(self, cfg: &LlamaConfig) -> (usize, usize) {
        let kv = cfg.kv_heads * cfg.head_dim;
        match self {
            Module::Q | Module::O => (cfg.dim, cfg.dim),
            Module::K | Module::V => (kv, cfg.dim),
            Module::Gate | Module::Up => (cfg.ffn, cfg.dim),
            Module::Down => (cfg.dim, cfg.ffn),
        }
    }

    /// Heads whose rows GGUF stores interleaved (query and key), else None.
    fn rotary_heads(self, cfg: &LlamaConfig) -> Option<usize> {
        match self {
            Module::Q => Some(cfg.heads),
            Module::K => Some(cfg.kv_heads),
            _ => None,
        }
    }
}

/// The PEFT name of layer `layer`'s `module` matrix `ab` ("A" or "B").
pub fn tensor_name(layer: usize, module: Module, ab: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{ab}.weight",
        module.group(),
        module.name()
    )
}

/// The fields of PEFT's `adapter_config.json` that decide how an adapter is applied; files carry many
/// more, which are ignored unless they change the meaning (checked in [`AdapterConfig::check`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default = "no_bias")]
    pub bias: String,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    pub rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: serde_json::Map<String, serde_json::Value>,
}

fn no_bias() -> String {
    "none".into()
}

impl AdapterConfig {
    pub fn new(r: usize, alpha: f64, modules: &[Module], base: &str) -> AdapterConfig {
        AdapterConfig {
            peft_type: "LORA".into(),
            r,
            lora_alpha: alpha,
            target_modules: modules.iter().map(|m| m.name().to_string()).collect(),
            base_model_name_or_path: Some(base.to_string()),
            task_type: Some("CAUSAL_LM".into()),
            lora_dropout: 0.0,
            bias: no_bias(),
            use_rslora: false,
            use_dora: false,
            fan_in_fan_out: false,
            modules_to_save: None,
            layers_to_transform: None,
            rank_pattern: Default::default(),
            alpha_pattern: Default::default(),
        }
    }

    /// The factor `B A` is multiplied by.
    pub fn scale(&self) -> f64 {
        match self.use_rslora {
            true => self.lora_alpha / (self.r as f64).sqrt(),
            false => self.lora_alpha / self.r as f64,
        }
    }

    /// The adapted modules, or what makes this adapter one Quarry cannot apply.
    pub fn check(&self) -> std::result::Result<Vec<Module>, String> {
        if !self.peft_type.eq_ignore_ascii_case("lora") {
            return Err(format!("peft_type {:?} is not supported (LORA is)", self.peft_type));
        }
        if self.r == 0 {
            return Err("r (the rank) is 0".into());
        }
        let unsupported = [
            (self.use_dora, "use_dora (DoRA)"),
            (self.fan_in_fan_out, "fan_in_fan_out"),
            (self.bias != "none", "bias other than \"none\""),
            (
                self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()),
                "modules_to_save",
            ),
            (
                self.layers_to_transform.as_ref().is_some_and(|v| !v.is_null()),
                "layers_to_transform",
            ),
            (!self.rank_pattern.is_empty(), "rank_pattern"),
            (!self.alpha_pattern.is_empty(), "alpha_pattern"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return Err(format!("{what} is not supported"));
        }
        let mut modules = Vec::new();
        for name in &self.target_modules {
            match Module::parse(name) {
                Some(m) if !modules.contains(&m) => modules.push(m),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "target module {name:?} is not supported (one of: {})",
                        Module::ALL.map(|m| m.name()).join(", ")
                    ))
                }
            }
        }
        if modules.is_empty() {
            return Err("target_modules is empty".into());
        }
        modules.sort();
        Ok(modules)
    }
}

/// One adapted projection: `a` is `rank × inputs`, `b` is `outputs × rank` with the scale folded in and
/// its rows in GGUF order.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub rank: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl LoraPair {
    /// Adds the update for each of the rows of `x` (`n × inputs`) to `out`: row `t`'s values start at
    /// `t * stride + offset`.
    pub fn apply(&self, x: &[f32], out: &mut [f32], stride: usize, offset: usize) {
        use rayon::prelude::*;
        let r = self.rank;
        let rows: Vec<&[f32]> = x.chunks_exact(self.inputs).collect();
        let add = |xr: &[f32], o: &mut [f32]| {
            let mut t = [0f32; 64];
            let mut big = Vec::new();
            let t: &mut [f32] = match r <= 64 {
                true => &mut t[..r],
                false => {
                    big.resize(r, 0.0);
                    &mut big
                }
            };
            for (ti, ar) in t.iter_mut().zip(self.a.chunks_exact(self.inputs)) {
                *ti = ar.iter().zip(xr).map(|(a, v)| a * v).sum();
            }
            for (oi, br) in o[offset..offset + self.outputs].iter_mut().zip(self.b.chunks_exact(r)) {
                *oi += br.iter().zip(t.iter()).map(|(b, v)| b * v).sum::<f32>();
            }
        };
        out.par_chunks_mut(stride)
            .zip(rows.par_iter())
            .for_each(|(o, xr)| add(xr, o));
    }
}

/// An adapter ready to run: per layer, the pair of each adapted module (indexed by [`Module`]).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub config: AdapterConfig,
    pub path: PathBuf,
    pub layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraAdapter {
    /// Reads a PEFT adapter directory for a model of shape `cfg`.
    pub fn load(dir: &Path, cfg: &LlamaConfig) -> Result<LoraAdapter> {
        let config_path = dir.join(ADAPTER_CONFIG);
        let bad = |path: &Path, message: String| Error::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::Unreadable {
            path: config_path.clone(),
            source: e,
        })?;
        let config: AdapterConfig = serde_json::from_str(&text)
            .map_err(|e| bad(&config_path, format!("not a PEFT adapter configuration: {e}")))?;
        let modules = config.check().map_err(|m| bad(&config_path, m))?;
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        let bytes = std::fs::read(&weights_path).map_err(|e| Error::Unreadable {
            path: weights_path.clone(),
            source: e,
        })?;
        let weights = Weights::unprefixed(&bytes, &weights_path)?;
        let (r, scale) = (config.r, config.scale() as f32);
        let mut layers = Vec::with_capacity(cfg.layers);
        for layer in 0..cfg.layers {
            let mut pairs: [Option<LoraPair>; 7] = Default::default();
            for &m in &modules {
                let (outputs, inputs) = m.shape(cfg);
                let a = weights.get(&tensor_name(layer, m, 'A'), &[r, inputs])?;
                let mut b = weights.get(&tensor_name(layer, m, 'B'), &[outputs, r])?;
                if let Some(heads) = m.rotary_heads(cfg) {
                    b = permute_rows(&b, heads, r, Direction::HfToGguf);
                }
                b.iter_mut().for_each(|v| *v *= scale);
                pairs[m.index()] = Some(LoraPair {
                    rank: r,
                    inputs,
                    outputs,
                    a,
                    b,
                });
            }
            layers.push(pairs);
        }
        Ok(LoraAdapter {
            config,
            path: dir.to_path_buf(),
            layers,
        })
    }

    pub fn get(&self, layer: usize, m: Module) -> Option<&LoraPair> {
        self.layers.get(layer).and_then(|l| l[m.index()].as_ref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HfToGguf,
    GgufToHf,
}

/// Reorders the rows of a query or key matrix (`heads` heads of `rows / heads` rows, each row `cols`
/// wide) between Hugging Face order (per head: the first rotary half, then the second) and GGUF order
/// (the halves interleaved).
pub fn permute_rows(m: &[f32], heads: usize, cols: usize, dir: Direction) -> Vec<f32> {
    let rows = m.len() / cols;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0f32; m.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let hf = h * hd + j * half + i;
                let gguf = h * hd + 2 * i + j;
                let (from, to) = match dir {
                    Direction::HfToGguf => (hf, gguf),
                    Direction::GgufToHf => (gguf, hf),
                };
                out[to * cols..(to + 1) * cols].copy_from_slice(&m[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Which rows [`permute_rows`] moves for `m` in a model of shape `cfg`: the head count for queries and
/// keys, None for the other projections.
pub fn rotary_heads(m: Module, cfg: &LlamaConfig) -> Option<usize> {
    m.rotary_heads(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_parse_both_ways_and_configs_are_checked() {
        assert_eq!(Module::parse("q_proj"), Some(Module::Q));
        assert_eq!(Module::parse("gate"), Some(Module::Gate));
        assert_eq!(Module::parse("lm_head"), None);
        assert_eq!(
            tensor_name(3, Module::Down, 'B'),
            "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight"
        );
        let mut c = AdapterConfig::new(8, 16.0, &[Module::V, Module::Q], "base");
        assert_eq!(c.check(), Ok(vec![Module::Q, Module::V]));
        assert_eq!(c.scale(), 2.0);
        c.use_rslora = true;
        assert!((c.scale() - 16.0 / 8f64.sqrt()).abs() < 1e-12);
        c.target_modules.push("embed_tokens".into());
        assert!(c.check().unwrap_err().contains("embed_tokens"));
        let mut c = AdapterConfig::new(8, 16.0, &[Module::Q], "base");
        c.use_dora = true;
        assert!(c.check().unwrap_err().contains("DoRA"));
        let text = r#"{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],
                       "modules_to_save":null,"layers_to_transform":null,"rank_pattern":{},"init_lora_weights":true}"#;
        let c: AdapterConfig = serde_json::from_str(text).expect("peft config");
        assert_eq!(c.check(), Ok(vec![Module::Q]));
    }

    #[test]
    fn rotary_row_order_round_trips_and_interleaves_halves() {
        // 2 heads of 4 rows, 1 column: HF rows [a0 a1 b0 b1] per head → GGUF [a0 b0 a1 b1].
        let hf: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let gguf = permute_rows(&hf, 2, 1, Direction::HfToGguf);
        assert_eq!(gguf, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
        assert_eq!(permute_rows(&gguf, 2, 1, Direction::GgufToHf), hf);
        let wide: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let there = permute_rows(&wide, 2, 3, Direction::GgufToHf);
        assert_ne!(there, wide);
        assert_eq!(permute_rows(&there, 2, 3, Direction::HfToGguf), wide);
    }

    #[test]
    fn apply_adds_the_low_rank_update_to_the_right_slice() {
        // rank 1: A = [1, 2], B = [[1], [10], [100]]; x = [3, 4] → A x = 11 → update [11, 110, 1100].
        let p = LoraPair {
            rank: 1,
            inputs: 2,
            outputs: 3,
            a: vec![1., 2.],
            b: vec![1., 10., 100.],
        };
        let x = [3., 4., 0., 1.];
        let mut out = vec![0f32; 2 * 5];
        p.apply(&x, &mut out, 5, 1);
        assert_eq!(out, vec![0., 11., 110., 1100., 0., 0., 2., 20., 200., 0.]);
    }
}
