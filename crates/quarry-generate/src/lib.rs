//! Turning retrieved passages into answers that cite their sources.
//!
//! - `LlmGenerator`: any `quarry_core::LanguageModel` (local GGUF, OpenAI-compatible) answers from
//!   a token-budgeted context; every sentence is then verified against the sources it cites
//!   (`verify`), citations are mapped to document spans, and weak evidence leads to an abstention.
//! - `ExtractiveGenerator`: no model; the passages' best-matching sentences, each followed by `[n]`
//!   and mapped to its character span in the source document.
//!
//! ```no_run
//! # fn run(embedder: std::sync::Arc<dyn quarry_core::Embedder>, passages: &[quarry_core::Passage]) -> quarry_core::Result<()> {
//! use quarry_core::Generator;
//! let answer = quarry_generate::ExtractiveGenerator::new(embedder).answer("what causes scurvy?", passages)?;
//! println!("{}", answer.answer);
//! # Ok(()) }
//! ```

pub mod extractive;
pub mod factory;
pub mod llm;
pub mod verify;

pub use extractive::ExtractiveGenerator;
pub use factory::{from_config, language_model};
pub use llm::LlmGenerator;
pub use verify::Verifier;
