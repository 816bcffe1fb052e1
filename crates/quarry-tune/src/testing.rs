//! A tiny randomly initialised BERT with its own WordPiece tokenizer, written to a folder in the layout of a
//! sentence-transformers download, so tests train and load real model directories in milliseconds.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::encoder::small_normal;

pub const WORDS: &[&str] = &[
    "apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear", "plum", "red", "yellow", "green",
    "purple", "sweet", "sour", "tree", "vine", "fruit", "what", "is", "the", "a", "of", "colour", "taste", "grows",
    "on", "which", "and", "it", "tastes",
];

/// Fruit names and descriptions that never name the fruit: a random model cannot match them, a trained one
/// must learn which description belongs to which name.
pub const FRUITS: &[(&str, &str)] = &[
    ("apple", "red sweet tree"),
    ("banana", "yellow sweet tree"),
    ("cherry", "red sour tree"),
    ("grape", "purple sweet vine"),
    ("lemon", "yellow sour tree"),
    ("mango", "yellow sweet fruit"),
    ("melon", "green sweet vine"),
    ("peach", "sweet fruit on a tree"),
    ("pear", "green sweet tree"),
    ("plum", "purple sour tree"),
];

/// Writes `config.json`, `tokenizer.json` and `model.safetensors` of a 2-layer, 32-wide BERT.
pub fn tiny_model(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend(WORDS.iter().map(|w| w.to_string()));
    let vocab_map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), serde_json::json!(i)))
        .collect();
    let special = |s: &str, ty: u32| serde_json::json!({"SpecialToken": {"id": s, "type_id": ty}});
    let seq = |s: &str, ty: u32| serde_json::json!({"Sequence": {"id": s, "type_id": ty}});
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab_map}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let (h, inter, layers, positions) = (32usize, 64usize, 2usize, 64usize);
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": 4,
        "max_position_embeddings": positions, "type_vocab_size": 2, "vocab_size": vocab.len(),
        "layer_norm_eps": 1e-12
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut salt = seed;
    let mut put = |name: &str, shape: &[usize], kind: char| {
        salt = salt.wrapping_add(1);
        let n: usize = shape.iter().product();
        let data = match kind {
            'w' => small_normal(n, salt, 0.2),
            '1' => vec![1.0; n],
            _ => vec![0.0; n],
        };
        tensors.insert(name.into(), Tensor::from_vec(data, shape, &Device::Cpu).unwrap());
    };
    put("embeddings.word_embeddings.weight", &[vocab.len(), h], 'w');
    put("embeddings.position_embeddings.weight", &[positions, h], 'w');
    put("embeddings.token_type_embeddings.weight", &[2, h], 'w');
    put("embeddings.LayerNorm.weight", &[h], '1');
    put("embeddings.LayerNorm.bias", &[h], '0');
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            put(&format!("{p}.{name}.weight"), &[out, inp], 'w');
            put(&format!("{p}.{name}.bias"), &[out], '0');
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(&format!("{p}.{name}.weight"), &[h], '1');
            put(&format!("{p}.{name}.bias"), &[h], '0');
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}
