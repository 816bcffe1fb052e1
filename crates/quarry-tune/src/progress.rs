//! What a training run reports while it works, and how it is told to stop.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub total_steps: usize,
    pub epoch: usize,
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    /// Training examples per second over the run so far (this process).
    pub examples_per_sec: f64,
    pub eta_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub step: usize,
    pub metric: f64,
    pub best: f64,
    pub improved: bool,
}

/// Receives progress; `stop` is polled after every step (a `true` checkpoints and ends the run).
pub trait Progress {
    fn step(&self, report: &StepReport);
    fn eval(&self, report: &EvalReport);
    fn message(&self, text: &str);
    fn stop(&self) -> bool {
        false
    }
}

/// Progress that goes nowhere (tests, library callers that only want the result).
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _: &StepReport) {}
    fn eval(&self, _: &EvalReport) {}
    fn message(&self, _: &str) {}
}
