//! Retrieval over any `quarry_core::Index`: BM25, dense and hybrid search (reciprocal rank fusion
//! or weighted normalised scores), metadata filters passed down into the index, per-document
//! collapsing, turning hits into numbered passages for a generator, and assembling those passages
//! into the numbered, deduplicated sources of a prompt within a token budget (`context`).
//!
//! ```no_run
//! # fn run(retriever: &quarry_retrieve::Retriever) -> quarry_core::Result<()> {
//! use quarry_core::SearchMode;
//! use quarry_retrieve::SearchRequest;
//! let hits = retriever.search(&SearchRequest {
//!     query: "does vitamin D prevent fractures?", mode: SearchMode::Hybrid, top_k: 10,
//!     filter: None, per_document: true,
//! })?;
//! # Ok(()) }
//! ```

pub mod context;
pub mod fusion;
pub mod retriever;

pub use context::{assemble, Context, ContextOptions, Source};
pub use fusion::{collapse_documents, rrf, weighted, FuseBy};
pub use retriever::{Retriever, SearchRequest, SearchTimings};
