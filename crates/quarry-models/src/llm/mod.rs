//! Local chat models from GGUF files: the file reader, quantised kernels, the llama forward pass,
//! the tokenizer and chat template the file carries, sampling, and `LocalModel`, which puts them
//! behind `quarry_core::LanguageModel`.
//!
//! ```no_run
//! use quarry_core::{LanguageModel, Message, Sampling};
//! let path = quarry_models::resolve_gguf("SmolLM2-135M-Instruct", None)?;
//! let model = quarry_models::LocalModel::load(&path, &Default::default())?;
//! let reply = model.chat(&[Message::user("Say hello.")], &Sampling::default(), &mut |piece| {
//!     print!("{piece}");
//!     true
//! })?;
//! eprintln!("\n{} tokens", reply.usage.completion_tokens);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attention;
pub mod gemm;
pub mod gguf;
pub mod llama;
pub mod local;
pub mod lora;
pub mod quant;
pub mod sampler;
pub mod template;
pub mod tokenizer;

pub use local::{LocalModel, LocalOptions};
