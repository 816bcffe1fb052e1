//! Fine-tuning for Quarry on CPU: contrastive training of the sentence embedder, a cross-encoder reranker
//! trained from the same data, and the training loop, optimizer and data checks they share.
//!
//! Models are trained with candle's autograd and saved in the layout the inference code in `quarry-models`
//! loads, so a tuned model is used exactly like a downloaded one.

pub mod causal;
pub mod chat;
pub mod contrastive;
pub mod data;
pub mod encoder;
pub mod error;
pub mod optim;
pub mod progress;
pub mod registry;
pub mod rerank;
pub mod trainer;

/// Builds tiny model folders for tests (here and in the crates above).
#[doc(hidden)]
pub mod testing;

pub use data::{Example, TrainingSet};
pub use encoder::Encoder;
pub use error::{Error, Result};
pub use progress::{Progress, Silent};
pub use trainer::{train, TrainOptions, TrainSummary, Validation};
