//! Training a cross-encoder reranker: for each (query, relevant document) the model scores the positive and
//! a few hard negatives read together with the query, and a softmax over the group must put the positive
//! first (a listwise loss over one positive and its negatives).

use std::collections::HashSet;

use candle_core::{Device, Tensor, Var};

use crate::data::{shuffle, TrainingSet};
use crate::encoder::Encoder;
use crate::error::Result;
use crate::optim::Gradients;
use crate::trainer::{ndcg_at, Objective, Validation};

/// Pairs scored with a graph at once; keeps activation tensors small.
const CHUNK: usize = 8;

pub struct CrossObjective {
    pub train: TrainingSet,
    pub validation: TrainingSet,
    items: Vec<(usize, String)>,
    /// Negatives scored with each positive.
    pub negatives: usize,
    pub max_len: usize,
}

impl CrossObjective {
    pub fn new(train: TrainingSet, validation: TrainingSet, negatives: usize, max_len: usize) -> Self {
        let items = train
            .examples
            .iter()
            .enumerate()
            .flat_map(|(i, ex)| ex.positives.iter().map(move |p| (i, p.clone())))
            .collect();
        CrossObjective {
            train,
            validation,
            items,
            negatives: negatives.max(1),
            max_len,
        }
    }

    pub fn items(&self) -> usize {
        self.items.len()
    }
}

/// Scores (query, passage) pairs without keeping the graph.
pub fn score_all(encoder: &Encoder, queries: &[&str], passages: &[&str], max_len: usize) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(queries.len());
    for (q, p) in queries.chunks(CHUNK).zip(passages.chunks(CHUNK)) {
        let batch = encoder.tokenize(q, Some(p), max_len)?;
        out.extend(encoder.score(&batch)?.detach().to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Reranks each validation query's pool (its positives and negatives); nDCG@10 per query.
pub fn validate_cross(encoder: &Encoder, set: &TrainingSet, max_len: usize) -> Result<Validation> {
    let mut queries = Vec::new();
    let mut passages = Vec::new();
    let mut spans = Vec::new();
    for ex in &set.examples {
        let start = queries.len();
        for d in ex.positives.iter().chain(&ex.negatives) {
            queries.push(ex.query.as_str());
            passages.push(set.corpus[d].as_str());
        }
        spans.push((start, queries.len()));
    }
    let scores = score_all(encoder, &queries, &passages, max_len)?;
    let per_query: Vec<f64> = set
        .examples
        .iter()
        .zip(&spans)
        .map(|(ex, &(a, b))| {
            let docs: Vec<&String> = ex.positives.iter().chain(&ex.negatives).collect();
            let mut order: Vec<usize> = (0..b - a).collect();
            order.sort_by(|&x, &y| scores[a + y].total_cmp(&scores[a + x]).then(x.cmp(&y)));
            let positives: HashSet<&String> = ex.positives.iter().collect();
            let ranked: Vec<bool> = order.iter().map(|&i| positives.contains(docs[i])).collect();
            ndcg_at(&ranked, positives.len(), 10)
        })
        .collect();
    let mean = if per_query.is_empty() {
        0.0
    } else {
        per_query.iter().sum::<f64>() / per_query.len() as f64
    };
    Ok(Validation {
        metric: "ndcg@10".into(),
        mean,
        per_query,
    })
}

impl Objective<Encoder> for CrossObjective {
    fn batches(&self, epoch: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        shuffle(&mut order, seed.wrapping_add(epoch as u64 * 7919));
        order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
    }

    /// Scores every group without a graph, takes the loss and its gradient with respect to the scores, then
    /// scores small slices again with a graph and back-propagates those gradients (as in contrastive.rs).
    fn accumulate(&self, encoder: &Encoder, batch: &[usize], epoch: usize, grads: &mut Gradients) -> Result<f64> {
        let group = 1 + self.negatives;
        let mut queries = Vec::with_capacity(batch.len() * group);
        let mut passages = Vec::with_capacity(batch.len() * group);
        // -1e4 marks a group slot with no negative to fill it.
        let mut mask = Vec::with_capacity(batch.len() * group);
        for (k, &i) in batch.iter().enumerate() {
            let (e, pos) = &self.items[i];
            let ex = &self.train.examples[*e];
            queries.push(ex.query.as_str());
            passages.push(self.train.corpus[pos].as_str());
            mask.push(0f32);
            let n = ex.negatives.len();
            for j in 0..self.negatives {
                queries.push(ex.query.as_str());
                if n == 0 {
                    passages.push(self.train.corpus[pos].as_str());
                    mask.push(-1e4);
                } else {
                    passages.push(self.train.corpus[&ex.negatives[(epoch * self.negatives + j + k) % n]].as_str());
                    mask.push(if j < n { 0.0 } else { -1e4 });
                }
            }
        }
        let cached = score_all(encoder, &queries, &passages, self.max_len)?;
        let scores = Var::from_tensor(&Tensor::from_vec(cached, (batch.len(), group), &Device::Cpu)?)?;
        let mask = Tensor::from_vec(mask, (batch.len(), group), &Device::Cpu)?;
        let labels = Tensor::zeros(batch.len(), candle_core::DType::U32, &Device::Cpu)?;
        let loss = candle_nn::loss::cross_entropy(&(scores.as_tensor() + mask)?, &labels)?;
        let value = loss.to_scalar::<f32>()? as f64;
        let store = loss.backward()?;
        let grad = store
            .get(scores.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no gradient for the cached scores".into()))?
            .flatten_all()?;
        for (n, (q, p)) in queries.chunks(CHUNK).zip(passages.chunks(CHUNK)).enumerate() {
            let s = encoder.score(&encoder.tokenize(q, Some(p), self.max_len)?)?;
            let g = grad.narrow(0, n * CHUNK, q.len())?;
            let surrogate = (s * g)?.sum_all()?;
            grads.add_part(surrogate.backward()?, encoder.named_vars())?;
        }
        grads.finish_micro_batch();
        Ok(value)
    }

    fn validate(&self, encoder: &Encoder) -> Result<Validation> {
        validate_cross(encoder, &self.validation, self.max_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Example;
    use crate::progress::Silent;
    use crate::testing::tiny_model;
    use crate::trainer::{train, TrainOptions};
    use quarry_core::Reranker;

    /// Queries name a colour; the relevant passage has that colour, the negatives other colours.
    fn colour_set() -> TrainingSet {
        let docs = [
            ("r1", "red apple"),
            ("r2", "red cherry"),
            ("y1", "yellow banana"),
            ("y2", "yellow lemon"),
            ("g1", "green pear"),
            ("g2", "green melon"),
            ("p1", "purple grape"),
            ("p2", "purple plum"),
        ];
        let ex = |q: &str, pos: &str, negs: &[&str]| Example {
            query: q.into(),
            positives: vec![pos.into()],
            negatives: negs.iter().map(|s| s.to_string()).collect(),
        };
        TrainingSet {
            source: "colours".into(),
            examples: vec![
                ex("red fruit", "r1", &["y1", "g1", "p1"]),
                ex("which fruit is red", "r2", &["y2", "g2", "p2"]),
                ex("yellow fruit", "y1", &["r1", "g2", "p1"]),
                ex("which fruit is yellow", "y2", &["r2", "g1", "p2"]),
                ex("green fruit", "g1", &["r1", "y1", "p2"]),
                ex("which fruit is green", "g2", &["r2", "y2", "p1"]),
                ex("purple fruit", "p1", &["r1", "y2", "g1"]),
                ex("which fruit is purple", "p2", &["r2", "y1", "g2"]),
            ],
            corpus: docs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn cross_encoder_learns_to_rank_and_the_inference_engine_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        tiny_model(&base, 11);
        let set = colour_set();
        let encoder = Encoder::load(&base, true, 5).unwrap();
        let obj = CrossObjective::new(set.clone(), set.clone(), 3, 32);
        let opts = TrainOptions {
            epochs: 60,
            batch_size: 4,
            learning_rate: 2e-3,
            warmup: 0.05,
            patience: 0,
            checkpoint_every: 0,
            ..Default::default()
        };
        let out = dir.path().join("reranker");
        let summary = train(&encoder, &obj, &opts, &out, false, &Silent).unwrap();
        assert!(
            summary.best.mean > 0.95,
            "{} -> {}",
            summary.baseline.mean,
            summary.best.mean
        );
        assert!(summary.best.mean > summary.baseline.mean + 0.1);

        let tuned = Encoder::load(&out, true, 0).unwrap();
        let engine = quarry_models::CrossEncoder::load(&out, 32, 4).unwrap();
        let passages = ["red apple", "yellow lemon", "purple plum", "green pear"];
        let from_engine = engine.score("which fruit is red", &passages).unwrap();
        let from_candle = score_all(&tuned, &["which fruit is red"; 4], &passages, 32).unwrap();
        for (a, b) in from_engine.iter().zip(&from_candle) {
            assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "engine {a} vs trainer {b}");
        }
        let best = from_engine
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 0);
        // An embedder folder has no scoring head: the reranker loader says so.
        let err = quarry_models::CrossEncoder::load(&base, 32, 4)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a cross-encoder"), "{err}");
    }
}
