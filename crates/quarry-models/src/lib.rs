//! Model implementations behind `quarry-core`'s traits: the sentence embedder (BERT-family
//! safetensors + tokenizer.json, run by Quarry's own packed-batch encoder), a chat client for OpenAI-compatible
//! servers ([`OpenAiModel`]), where models are found on disk, and a deterministic hashing embedder for tests.
//!
//! Models are loaded from a directory, Quarry's cache (filled by `scripts/setup.sh`) or a
//! Hugging Face cache; nothing is downloaded at run time.
//!
//! ```no_run
//! use quarry_core::{Embedder, ModelConfig};
//! let embedder = quarry_models::SentenceEmbedder::from_config(&ModelConfig::default())?;
//! let v = embedder.embed_query("what causes scurvy?")?;
//! assert_eq!(v.len(), embedder.dimension());
//! # Ok::<(), quarry_core::Error>(())
//! ```

pub mod bert;
pub mod cached;
pub mod cross;
pub mod error;
pub mod hashing;
pub mod kernels;
pub mod llm;
pub mod openai;
pub mod resolve;
pub mod scripted;
pub mod sentence;

pub use cached::CachedEmbedder;
pub use cross::CrossEncoder;
pub use error::{Error, Result};
pub use hashing::HashEmbedder;
pub use llm::{LocalModel, LocalOptions};
pub use openai::OpenAiModel;
pub use resolve::{cache_root, resolve_gguf, resolve_model_dir};
pub use scripted::ScriptedModel;
pub use sentence::SentenceEmbedder;
