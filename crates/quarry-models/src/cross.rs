//! A cross-encoder reranker: query and passage are read together as one BERT input (segments A and B), and
//! the `[CLS]` vector goes through BERT's pooler (dense + tanh) and a one-output classifier, the layout of
//! Hugging Face's `BertForSequenceClassification` with one label. `quarry tune reranker` trains such models.

use std::path::{Path, PathBuf};

use quarry_core::Reranker;
use rayon::prelude::*;

use crate::bert::{Bert, Weights};
use crate::error::{Error, Result};
use crate::sentence::ModelFiles;

pub struct CrossEncoder {
    model_id: String,
    dir: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    bert: Bert,
    pooler_w: Vec<f32>,
    pooler_b: Vec<f32>,
    classifier_w: Vec<f32>,
    classifier_b: f32,
    max_len: usize,
    batch_size: usize,
}

impl CrossEncoder {
    /// Loads a model directory with a scoring head (`pooler.dense.*`, `classifier.*`).
    pub fn load(dir: &Path, max_len: usize, batch_size: usize) -> Result<Self> {
        let files = ModelFiles::open(dir)?;
        let h = files.cfg.hidden_size;
        let w = Weights::unprefixed(&files.weights, &files.weights_path)?;
        let head = |name: &str, shape: &[usize]| {
            w.get(name, shape)
                .or_else(|_| w.get(&format!("bert.{name}"), shape))
                .map_err(|_| Error::Invalid {
                    path: files.weights_path.clone(),
                    message: format!("no {name} tensor of shape {shape:?}: not a cross-encoder (reranker) model"),
                })
        };
        let pooler_w = head("pooler.dense.weight", &[h, h])?;
        let pooler_b = head("pooler.dense.bias", &[h])?;
        let classifier_w = head("classifier.weight", &[1, h])?;
        let classifier_b = head("classifier.bias", &[1])?[0];
        drop(w);
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("reranker");
        Ok(CrossEncoder {
            model_id: format!("{name}@{}", files.digest),
            dir: dir.to_path_buf(),
            max_len: max_len.min(files.bert.max_positions).max(4),
            tokenizer: files.tokenizer,
            bert: files.bert,
            pooler_w,
            pooler_b,
            classifier_w,
            classifier_b,
            batch_size: batch_size.max(1),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token and segment ids of (query, passage), cut to `max_len` by shortening the passage.
    fn pair_ids(&self, query: &str, passage: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let enc = self
            .tokenizer
            .encode((query, passage), true)
            .map_err(|e| Error::Tokenizer {
                path: self.dir.join("tokenizer.json"),
                message: e.to_string(),
            })?;
        let mut ids = enc.get_ids().to_vec();
        let mut types = enc.get_type_ids().to_vec();
        if ids.len() > self.max_len {
            let sep = ids[ids.len() - 1];
            let last_type = types[types.len() - 1];
            ids.truncate(self.max_len - 1);
            types.truncate(self.max_len - 1);
            ids.push(sep);
            types.push(last_type);
        }
        Ok((ids, types))
    }

    fn head(&self, cls: &[f32]) -> f32 {
        let h = cls.len();
        let mut score = self.classifier_b;
        for o in 0..h {
            let row = &self.pooler_w[o * h..(o + 1) * h];
            let z: f32 = row.iter().zip(cls).map(|(a, b)| a * b).sum::<f32>() + self.pooler_b[o];
            score += z.tanh() * self.classifier_w[o];
        }
        score
    }
}

impl Reranker for CrossEncoder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn score(&self, query: &str, passages: &[&str]) -> quarry_core::Result<Vec<f32>> {
        let pairs = passages
            .iter()
            .map(|p| self.pair_ids(query, p))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pairs[i].0.len()));
        let batches: Vec<&[usize]> = order.chunks(self.batch_size).collect();
        let threads = if batches.len() == 1 {
            rayon::current_num_threads()
        } else {
            1
        };
        let results: Vec<Vec<f32>> = batches
            .par_iter()
            .map(|group| {
                let seqs: Vec<&[u32]> = group.iter().map(|&i| pairs[i].0.as_slice()).collect();
                let types: Vec<&[u32]> = group.iter().map(|&i| pairs[i].1.as_slice()).collect();
                self.bert
                    .cls_batch(&seqs, &types, threads)
                    .iter()
                    .map(|cls| self.head(cls))
                    .collect()
            })
            .collect();
        let mut out = vec![0f32; pairs.len()];
        for (group, scores) in batches.iter().zip(results) {
            for (&i, s) in group.iter().zip(scores) {
                out[i] = s;
            }
        }
        Ok(out)
    }
}
