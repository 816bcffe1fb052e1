//! The training loop shared by every model Quarry tunes: micro-batches with gradient accumulation, AdamW
//! with warm-up and linear decay, gradient clipping, validation with early stopping (the best weights are
//! what the output directory holds), checkpoints to resume from, and progress reports.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use candle_core::Var;

use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::optim::{learning_rate, AdamW, Gradients};
use crate::progress::{EvalReport, Progress, StepReport};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    /// Examples per micro-batch (for contrastive training also the number of in-batch negatives + 1).
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step.
    pub accumulate: usize,
    pub learning_rate: f64,
    /// Share of the steps spent warming the learning rate up.
    pub warmup: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Validate every this many steps (0: at the end of each epoch only).
    pub eval_every: usize,
    /// Stop after this many validations without improvement.
    pub patience: usize,
    /// Write a checkpoint every this many steps (and at every validation).
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Stop after this many steps (for quick runs and tests).
    pub max_steps: Option<usize>,
    /// Learning-rate multiplier of a new scoring head (`pooler.*`, `classifier.*`).
    pub head_lr_scale: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 1,
            batch_size: 32,
            accumulate: 1,
            learning_rate: 2e-5,
            warmup: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            eval_every: 0,
            patience: 3,
            checkpoint_every: 25,
            seed: 42,
            max_steps: None,
            head_lr_scale: 1.0,
        }
    }
}

/// A validation result: the mean of a per-query metric, and the per-query values (for paired tests).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Validation {
    pub metric: String,
    pub mean: f64,
    pub per_query: Vec<f64>,
}

/// A model the training loop can optimise, checkpoint and save: an encoder, or an adapter on a frozen model.
pub trait Trainable {
    /// The trained parameters, by name.
    fn named_vars(&self) -> &[(String, Var)];
    /// Writes the usable result (a model directory, or an adapter directory) to `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    /// Writes the trained parameters alone (checkpoints).
    fn save_weights(&self, path: &Path) -> Result<()>;
    fn load_weights(&self, path: &Path) -> Result<()>;
}

impl Trainable for Encoder {
    fn named_vars(&self) -> &[(String, Var)] {
        Encoder::named_vars(self)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        Encoder::save(self, dir)
    }
    fn save_weights(&self, path: &Path) -> Result<()> {
        Encoder::save_weights(self, path)
    }
    fn load_weights(&self, path: &Path) -> Result<()> {
        Encoder::load_weights(self, path)
    }
}

/// What is trained: how an epoch is cut into micro-batches, the loss of one, and how a model is validated
/// (higher is better).
pub trait Objective<M: ?Sized> {
    /// Micro-batches of item indices for an epoch, deterministic in (epoch, seed).
    fn batches(&self, epoch: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>>;
    /// Adds the gradients of a micro-batch's loss to `grads` (as one micro-batch) and returns the loss.
    fn accumulate(&self, model: &M, batch: &[usize], epoch: usize, grads: &mut Gradients) -> Result<f64>;
    fn validate(&self, model: &M) -> Result<Validation>;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    step: usize,
    epoch: usize,
    /// Micro-batches of `epoch` already trained on.
    done_in_epoch: usize,
    best: f64,
    evals_without_gain: usize,
    history: Vec<HistoryPoint>,
    losses: Vec<(usize, f64)>,
    train_secs: f64,
    examples: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub step: usize,
    pub metric: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub options: TrainOptions,
    pub steps: usize,
    pub total_steps: usize,
    pub examples: usize,
    pub train_secs: f64,
    pub examples_per_sec: f64,
    pub baseline: Validation,
    pub best: Validation,
    /// Step whose weights were kept (0: training never beat the starting model).
    pub best_step: usize,
    pub early_stopped: bool,
    pub resumed_from: Option<usize>,
    pub history: Vec<HistoryPoint>,
    /// (step, mean loss of the step)
    pub losses: Vec<(usize, f64)>,
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(|e| Error::Unwritable {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Trains `encoder` on `objective`, writing the best model to `out` (a complete model directory) and a
/// checkpoint to `out/checkpoint`. With `resume`, continues from that checkpoint.
pub fn train<M: Trainable + ?Sized>(
    encoder: &M,
    objective: &dyn Objective<M>,
    opts: &TrainOptions,
    out: &Path,
    resume: bool,
    progress: &dyn Progress,
) -> Result<TrainSummary> {
    std::fs::create_dir_all(out).map_err(|e| Error::Unwritable {
        path: out.to_path_buf(),
        source: e,
    })?;
    let ckpt = checkpoint_dir(out);
    let accumulate = opts.accumulate.max(1);
    let per_epoch = objective
        .batches(0, opts.batch_size, opts.seed)
        .len()
        .div_ceil(accumulate);
    if per_epoch == 0 {
        return Err(Error::Data {
            source_name: out.display().to_string(),
            message: "no training batches: the data is empty".into(),
        });
    }
    let mut total_steps = per_epoch * opts.epochs.max(1);
    if let Some(m) = opts.max_steps {
        total_steps = total_steps.min(m);
    }
    let warmup = ((total_steps as f64) * opts.warmup).round() as usize;
    let mut optimizer = AdamW::new(encoder.named_vars(), opts.weight_decay)?;
    for head in ["pooler.", "classifier."] {
        optimizer.scale_learning_rate(head, opts.head_lr_scale);
    }

    let baseline_path = out.join("baseline-validation.json");
    let (mut state, baseline, resumed_from) = if resume && ckpt.join("state.json").is_file() {
        let state_path = ckpt.join("state.json");
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::Unreadable {
            path: state_path.clone(),
            source: e,
        })?;
        let state: State = serde_json::from_str(&text).map_err(|e| Error::Model {
            path: state_path.clone(),
            message: format!("not a checkpoint state: {e}"),
        })?;
        encoder.load_weights(&ckpt.join("model.safetensors"))?;
        optimizer.load(&ckpt.join("optimizer.safetensors"))?;
        let baseline: Validation = std::fs::read_to_string(&baseline_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        progress.message(&format!("resuming at step {} of {total_steps}", state.step));
        let from = state.step;
        (state, baseline, Some(from))
    } else {
        progress.message("validating the starting model");
        let baseline = objective.validate(encoder)?;
        write_json(&baseline_path, &baseline)?;
        encoder.save(out)?;
        write_json(&out.join("best-validation.json"), &baseline)?;
        progress.eval(&EvalReport {
            step: 0,
            metric: baseline.mean,
            best: baseline.mean,
            improved: false,
        });
        let state = State {
            best: baseline.mean,
            history: vec![HistoryPoint {
                step: 0,
                metric: baseline.mean,
            }],
            ..Default::default()
        };
        (state, baseline, None)
    };

    let save_checkpoint = |state: &State, optimizer: &AdamW| -> Result<()> {
        std::fs::create_dir_all(&ckpt).map_err(|e| Error::Unwritable {
            path: ckpt.clone(),
            source: e,
        })?;
        // Write to temporary names, then rename: a crash never leaves a half-written checkpoint.
        encoder.save_weights(&ckpt.join("model.safetensors.tmp"))?;
        optimizer.save(&ckpt.join("optimizer.safetensors.tmp"))?;
        write_json(&ckpt.join("state.json.tmp"), state)?;
        for name in ["model.safetensors", "optimizer.safetensors", "state.json"] {
            let from = ckpt.join(format!("{name}.tmp"));
            std::fs::rename(&from, ckpt.join(name)).map_err(|e| Error::Unwritable { path: from, source: e })?;
        }
        Ok(())
    };

    let started = Instant::now();
    let secs_before = state.train_secs;
    let examples_before = state.examples;
    let mut early_stopped = false;
    let mut best_step = state
        .history
        .iter()
        .filter(|h| h.metric >= state.best)
        .map(|h| h.step)
        .next()
        .unwrap_or(0);
    let mut best_validation: Validation = std::fs::read_to_string(out.join("best-validation.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| baseline.clone());

    'epochs: while state.step < total_steps && state.epoch < opts.epochs.max(1) {
        let batches = objective.batches(state.epoch, opts.batch_size, opts.seed);
        let groups: Vec<&[Vec<usize>]> = batches.chunks(accumulate).collect();
        let first_group = state.done_in_epoch / accumulate;
        for group in groups.iter().skip(first_group) {
            if state.step >= total_steps {
                break 'epochs;
            }
            let mut grads = Gradients::default();
            let mut loss_sum = 0.0;
            let mut examples = 0;
            for batch in group.iter() {
                loss_sum += objective.accumulate(encoder, batch, state.epoch, &mut grads)?;
                examples += batch.len();
            }
            let grad_norm = grads.clip(opts.max_grad_norm)?;
            let lr = learning_rate(state.step, warmup, total_steps, opts.learning_rate);
            optimizer.update(&grads, lr)?;
            state.step += 1;
            state.done_in_epoch += group.len();
            state.examples += examples;
            let loss = loss_sum / group.len() as f64;
            state.losses.push((state.step, loss));
            let run_secs = started.elapsed().as_secs_f64();
            state.train_secs = secs_before + run_secs;
            let rate = (state.examples - examples_before) as f64 / run_secs.max(1e-9);
            let per_step = run_secs / (state.step - resumed_from.unwrap_or(0)).max(1) as f64;
            progress.step(&StepReport {
                step: state.step,
                total_steps,
                epoch: state.epoch + 1,
                loss,
                learning_rate: lr,
                grad_norm,
                examples_per_sec: rate,
                eta_secs: per_step * (total_steps - state.step) as f64,
            });

            let end_of_epoch = state.done_in_epoch >= batches.len();
            let due =
                (opts.eval_every > 0 && state.step % opts.eval_every == 0) || end_of_epoch || state.step == total_steps;
            if due {
                let v = objective.validate(encoder)?;
                let improved = v.mean > state.best;
                state.history.push(HistoryPoint {
                    step: state.step,
                    metric: v.mean,
                });
                if improved {
                    state.best = v.mean;
                    state.evals_without_gain = 0;
                    best_step = state.step;
                    encoder.save(out)?;
                    write_json(&out.join("best-validation.json"), &v)?;
                    best_validation = v.clone();
                } else {
                    state.evals_without_gain += 1;
                }
                progress.eval(&EvalReport {
                    step: state.step,
                    metric: v.mean,
                    best: state.best,
                    improved,
                });
                if end_of_epoch {
                    state.epoch += 1;
                    state.done_in_epoch = 0;
                }
                save_checkpoint(&state, &optimizer)?;
                if opts.patience > 0 && state.evals_without_gain >= opts.patience {
                    progress.message(&format!(
                        "early stop: {} validations without improvement",
                        state.evals_without_gain
                    ));
                    early_stopped = true;
                    break 'epochs;
                }
                if end_of_epoch {
                    continue 'epochs;
                }
            } else if opts.checkpoint_every > 0 && state.step % opts.checkpoint_every == 0 {
                save_checkpoint(&state, &optimizer)?;
            }
            if progress.stop() {
                save_checkpoint(&state, &optimizer)?;
                return Err(Error::Interrupted { step: state.step });
            }
        }
        state.epoch += 1;
        state.done_in_epoch = 0;
    }

    let summary = TrainSummary {
        options: opts.clone(),
        steps: state.step,
        total_steps,
        examples: state.examples,
        train_secs: state.train_secs,
        examples_per_sec: state.examples as f64 / state.train_secs.max(1e-9),
        baseline,
        best: best_validation,
        best_step,
        early_stopped,
        resumed_from,
        history: state.history.clone(),
        losses: state.losses.clone(),
    };
    write_json(&out.join("training.json"), &summary)?;
    Ok(summary)
}

/// nDCG@k of one ranking with binary relevance.
pub fn ndcg_at(ranked_relevant: &[bool], relevant_total: usize, k: usize) -> f64 {
    let dcg: f64 = ranked_relevant
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant_total.min(k)).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    if ideal == 0.0 {
        0.0
    } else {
        dcg / ideal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_of_simple_rankings() {
        assert_eq!(ndcg_at(&[true, false], 1, 10), 1.0);
        assert!((ndcg_at(&[false, true], 1, 10) - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(ndcg_at(&[false; 5], 1, 10), 0.0);
        assert_eq!(ndcg_at(&[false, true], 1, 1), 0.0);
    }
}
