//! Turning retrieved passages into answers that cite their sources.
//!
//! Now: `ExtractiveGenerator`, which answers with the passages' best-matching sentences, each
//! followed by `[n]` and mapped to its character span in the source document. LLM generators
//! (local GGUF, OpenAI-compatible) implement the same `quarry_core::Generator` trait.
//!
//! ```no_run
//! # fn run(embedder: std::sync::Arc<dyn quarry_core::Embedder>, passages: &[quarry_core::Passage]) -> quarry_core::Result<()> {
//! use quarry_core::Generator;
//! let answer = quarry_generate::ExtractiveGenerator::new(embedder).answer("what causes scurvy?", passages)?;
//! println!("{}", answer.answer);
//! # Ok(()) }
//! ```

pub mod extractive;

pub use extractive::ExtractiveGenerator;
