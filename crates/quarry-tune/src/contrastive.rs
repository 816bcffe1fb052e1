//! Contrastive training of a sentence embedder: multiple-negatives ranking loss. Each query's positive must
//! score above every other passage in the micro-batch (the other queries' positives and all hard negatives);
//! passages that are known positives of a query are never used as its negatives.

use std::collections::HashSet;

use candle_core::{Device, Tensor, Var};

use crate::data::{shuffle, TrainingSet};
use crate::encoder::Encoder;
use crate::error::Result;
use crate::optim::Gradients;
use crate::trainer::{ndcg_at, Objective, Validation};

pub struct Contrastive {
    pub train: TrainingSet,
    pub validation: TrainingSet,
    /// (example index, positive document id): one training item per relevant document.
    items: Vec<(usize, String)>,
    pub max_query_len: usize,
    pub max_passage_len: usize,
    /// Cosine similarities are multiplied by this before the softmax (sentence-transformers uses 20).
    pub scale: f64,
    /// Hard negatives per item (0 disables them; in-batch negatives remain).
    pub hard_negatives: usize,
}

impl Contrastive {
    pub fn new(train: TrainingSet, validation: TrainingSet, max_query_len: usize, max_passage_len: usize) -> Self {
        let items = train
            .examples
            .iter()
            .enumerate()
            .flat_map(|(i, ex)| ex.positives.iter().map(move |p| (i, p.clone())))
            .collect();
        Contrastive {
            train,
            validation,
            items,
            max_query_len,
            max_passage_len,
            scale: 20.0,
            hard_negatives: 1,
        }
    }

    pub fn items(&self) -> usize {
        self.items.len()
    }
}

/// Texts encoded with a graph at once during training; keeps every activation tensor small.
const CHUNK: usize = 8;

/// Embeds texts in batches without keeping the graph; returns `[N, H]`.
pub fn embed_all(encoder: &Encoder, texts: &[&str], max_len: usize) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in texts.chunks(CHUNK) {
        let batch = encoder.tokenize(chunk, None, max_len)?;
        parts.push(encoder.embed(&batch)?.detach());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Ranks a validation pool: every example's query against all positives and negatives of the validation
/// set; nDCG@10 per query with the example's positives as the relevant documents.
pub fn validate_dense(
    encoder: &Encoder,
    set: &TrainingSet,
    max_query_len: usize,
    max_passage_len: usize,
) -> Result<Validation> {
    let mut pool: Vec<&String> = set
        .examples
        .iter()
        .flat_map(|e| e.positives.iter().chain(&e.negatives))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    pool.sort();
    let texts: Vec<&str> = pool.iter().map(|d| set.corpus[*d].as_str()).collect();
    let queries: Vec<&str> = set.examples.iter().map(|e| e.query.as_str()).collect();
    if queries.is_empty() || texts.is_empty() {
        return Ok(Validation {
            metric: "ndcg@10".into(),
            ..Default::default()
        });
    }
    let d = embed_all(encoder, &texts, max_passage_len)?;
    let q = embed_all(encoder, &queries, max_query_len)?;
    let scores = q.matmul(&d.t()?)?.to_vec2::<f32>()?;
    let per_query: Vec<f64> = set
        .examples
        .iter()
        .zip(&scores)
        .map(|(ex, row)| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let positives: HashSet<&String> = ex.positives.iter().collect();
            let ranked: Vec<bool> = order.iter().take(10).map(|&i| positives.contains(pool[i])).collect();
            ndcg_at(&ranked, positives.len(), 10)
        })
        .collect();
    Ok(Validation {
        metric: "ndcg@10".into(),
        mean: per_query.iter().sum::<f64>() / per_query.len() as f64,
        per_query,
    })
}

impl Objective<Encoder> for Contrastive {
    fn batches(&self, epoch: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        shuffle(&mut order, seed.wrapping_add(epoch as u64 * 7919));
        // Greedy packing: an item whose query or positive is already in the batch waits for the next one, so
        // no query meets itself or its own positive as an in-batch negative.
        let mut batches = Vec::new();
        let mut waiting: Vec<usize> = order;
        while !waiting.is_empty() {
            let mut batch = Vec::new();
            let mut queries = HashSet::new();
            let mut docs = HashSet::new();
            let mut rest = Vec::new();
            for i in waiting {
                let (ex, pos) = &self.items[i];
                if batch.len() < batch_size.max(1) && !queries.contains(ex) && !docs.contains(pos) {
                    queries.insert(*ex);
                    docs.insert(pos.clone());
                    batch.push(i);
                } else {
                    rest.push(i);
                }
            }
            batches.push(batch);
            waiting = rest;
        }
        batches
    }

    /// Multiple-negatives ranking loss with cached embeddings (GradCache, Gao et al. 2021): all vectors of the
    /// micro-batch are first computed without a graph, the loss and its gradient with respect to the vectors
    /// are computed on them, then each small slice of texts is encoded again with a graph and back-propagated
    /// with its vectors' gradient. The loss is exactly the full-batch loss, but no activation tensor is larger
    /// than a slice of `CHUNK` texts, so memory stays small and is reused.
    fn accumulate(&self, encoder: &Encoder, batch: &[usize], epoch: usize, grads: &mut Gradients) -> Result<f64> {
        let mut queries = Vec::with_capacity(batch.len());
        let mut doc_ids: Vec<&String> = Vec::with_capacity(batch.len() * 2);
        for &i in batch {
            let (ex, pos) = &self.items[i];
            queries.push(self.train.examples[*ex].query.as_str());
            doc_ids.push(pos);
        }
        if self.hard_negatives > 0 {
            for (k, &i) in batch.iter().enumerate() {
                let ex = &self.train.examples[self.items[i].0];
                let n = ex.negatives.len();
                for j in 0..self.hard_negatives.min(n) {
                    // A different negative each epoch when there are several.
                    doc_ids.push(&ex.negatives[(epoch * self.hard_negatives + j + k) % n]);
                }
            }
        }
        let texts: Vec<&str> = doc_ids.iter().map(|d| self.train.corpus[*d].as_str()).collect();
        let q_cached = Var::from_tensor(&embed_all(encoder, &queries, self.max_query_len)?)?;
        let d_cached = Var::from_tensor(&embed_all(encoder, &texts, self.max_passage_len)?)?;
        let logits = (q_cached.as_tensor().matmul(&d_cached.as_tensor().t()?)? * self.scale)?;
        // Mask passages that are known positives of a query, other than its own column.
        let cols = doc_ids.len();
        let mut mask = vec![0f32; batch.len() * cols];
        for (r, &i) in batch.iter().enumerate() {
            let positives = &self.train.examples[self.items[i].0].positives;
            for (c, d) in doc_ids.iter().enumerate() {
                if c != r && positives.contains(d) {
                    mask[r * cols + c] = -1e4;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (batch.len(), cols), &Device::Cpu)?;
        let labels = Tensor::arange(0u32, batch.len() as u32, &Device::Cpu)?;
        let loss = candle_nn::loss::cross_entropy(&(logits + mask)?, &labels)?;
        let value = loss.to_scalar::<f32>()? as f64;
        let store = loss.backward()?;
        let missing = || candle_core::Error::Msg("no gradient for the cached vectors".into());
        let q_grad = store.get(q_cached.as_tensor()).ok_or_else(missing)?.clone();
        let d_grad = store.get(d_cached.as_tensor()).ok_or_else(missing)?.clone();
        for (list, grad, max_len) in [
            (&queries, &q_grad, self.max_query_len),
            (&texts, &d_grad, self.max_passage_len),
        ] {
            for (n, chunk) in list.chunks(CHUNK).enumerate() {
                let emb = encoder.embed(&encoder.tokenize(chunk, None, max_len)?)?;
                let g = grad.narrow(0, n * CHUNK, chunk.len())?;
                let surrogate = (emb * g)?.sum_all()?;
                grads.add_part(surrogate.backward()?, encoder.named_vars())?;
            }
        }
        grads.finish_micro_batch();
        Ok(value)
    }

    fn validate(&self, encoder: &Encoder) -> Result<Validation> {
        validate_dense(encoder, &self.validation, self.max_query_len, self.max_passage_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Example;
    use crate::progress::Silent;
    use crate::testing::tiny_model;
    use crate::trainer::{train, TrainOptions};

    /// Fruit names as queries, descriptions that never name the fruit as passages: a random model cannot
    /// match them, a trained one must learn which description belongs to which name.
    fn fruit_set() -> TrainingSet {
        let facts = crate::testing::FRUITS;
        TrainingSet {
            source: "fruit".into(),
            examples: facts
                .iter()
                .map(|(f, _)| Example {
                    query: f.to_string(),
                    positives: vec![format!("d-{f}")],
                    negatives: vec![],
                })
                .collect(),
            corpus: facts.iter().map(|(f, d)| (format!("d-{f}"), d.to_string())).collect(),
        }
    }

    #[test]
    fn batches_never_repeat_a_query_or_positive() {
        let mut set = fruit_set();
        // A second relevant document for apple: two items share its query.
        set.corpus.insert("d-apple2".into(), "red fruit".into());
        set.examples[0].positives.push("d-apple2".into());
        let obj = Contrastive::new(set.clone(), set, 16, 16);
        assert_eq!(obj.items(), 11);
        for epoch in 0..5 {
            let batches = obj.batches(epoch, 4, 1);
            let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..11).collect::<Vec<_>>(), "every item once per epoch");
            for b in &batches {
                let qs: HashSet<usize> = b.iter().map(|&i| obj.items[i].0).collect();
                assert_eq!(qs.len(), b.len());
            }
        }
        assert_eq!(obj.batches(3, 4, 1), obj.batches(3, 4, 1));
        assert_ne!(obj.batches(3, 4, 1), obj.batches(4, 4, 1));
    }

    #[test]
    fn training_learns_the_pairs_saves_a_loadable_model_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        tiny_model(&base, 3);
        let set = fruit_set();
        let opts = TrainOptions {
            epochs: 40,
            batch_size: 5,
            learning_rate: 3e-3,
            warmup: 0.05,
            patience: 0,
            checkpoint_every: 0,
            ..Default::default()
        };
        let encoder = Encoder::load(&base, false, 0).unwrap();
        let obj = Contrastive::new(set.clone(), set.clone(), 16, 16);
        let out = dir.path().join("tuned");
        let summary = train(&encoder, &obj, &opts, &out, false, &Silent).unwrap();
        assert_eq!(summary.steps, 80);
        assert!(
            summary.baseline.mean < 0.7,
            "a random model cannot know the pairs: {}",
            summary.baseline.mean
        );
        assert!(summary.best.mean > 0.95, "trained nDCG@10 {}", summary.best.mean);
        let first: f64 = summary.losses[..4].iter().map(|l| l.1).sum::<f64>() / 4.0;
        let last: f64 = summary.losses[summary.losses.len() - 4..]
            .iter()
            .map(|l| l.1)
            .sum::<f64>()
            / 4.0;
        assert!(last < first * 0.5, "loss {first} -> {last}");

        // The output folder is a model the inference engine loads, and it ranks like the trained encoder.
        let tuned = Encoder::load(&out, false, 0).unwrap();
        let again = validate_dense(&tuned, &set, 16, 16).unwrap();
        assert!((again.mean - summary.best.mean).abs() < 1e-9);
        let engine = quarry_models::SentenceEmbedder::load(&out, 64, 8).unwrap();
        use quarry_core::Embedder;
        let texts = ["apple", "red sweet tree", "purple sour tree"];
        let from_engine = engine.embed(&texts).unwrap();
        let from_candle = embed_all(&tuned, &texts, 64).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in from_engine.iter().zip(&from_candle) {
            let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cos > 0.9999, "engine and trainer disagree: cosine {cos}");
        }

        // Interrupted runs resume from their checkpoint and end where an uninterrupted run would.
        let short = TrainOptions {
            epochs: 4,
            max_steps: Some(8),
            checkpoint_every: 1,
            ..opts.clone()
        };
        let straight_dir = dir.path().join("straight");
        let straight = train(
            &Encoder::load(&base, false, 0).unwrap(),
            &obj,
            &short,
            &straight_dir,
            false,
            &Silent,
        )
        .unwrap();
        let part_dir = dir.path().join("parts");
        let half = TrainOptions {
            max_steps: Some(8),
            ..short.clone()
        };
        struct StopAt(usize, std::cell::Cell<usize>);
        impl crate::progress::Progress for StopAt {
            fn step(&self, r: &crate::progress::StepReport) {
                self.1.set(r.step);
            }
            fn eval(&self, _: &crate::progress::EvalReport) {}
            fn message(&self, _: &str) {}
            fn stop(&self) -> bool {
                self.1.get() >= self.0
            }
        }
        let err = train(
            &Encoder::load(&base, false, 0).unwrap(),
            &obj,
            &half,
            &part_dir,
            false,
            &StopAt(3, 0.into()),
        )
        .unwrap_err();
        assert!(matches!(err, crate::Error::Interrupted { step: 3 }), "{err}");
        let resumed = train(
            &Encoder::load(&base, false, 0).unwrap(),
            &obj,
            &half,
            &part_dir,
            true,
            &Silent,
        )
        .unwrap();
        assert_eq!(resumed.resumed_from, Some(3));
        assert_eq!(resumed.steps, straight.steps);
        let (a, b) = (straight.losses.last().unwrap().1, resumed.losses.last().unwrap().1);
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "final loss {a} vs resumed {b}");
    }
}
