//! The vocabulary every Quarry crate speaks: documents, chunks, metadata filters, search hits and
//! citations; the traits at the seams (`Embedder`, `TokenCounter`, `Index`, `Generator`); the shared
//! error type and the configuration schema.
//!
//! This crate owns no I/O and no runtime: it depends only on `serde`, `serde_json` and `thiserror`, so any crate
//! (or a third-party backend) can implement Quarry's traits without pulling the rest in.
//!
//! ```
//! use quarry_core::{Filter, MetaValue, Metadata};
//! let mut meta = Metadata::new();
//! meta.insert("year".into(), MetaValue::Number(2021.0));
//! let f = Filter::parse("year>=2020").unwrap();
//! assert!(f.matches(&meta));
//! ```

pub mod config;
pub mod document;
pub mod embedder;
pub mod error;
pub mod filter;
pub mod generator;
pub mod hit;
pub mod index;
pub mod llm;
pub mod querylog;
pub mod text;
pub mod vector;

pub use config::{
    ChunkingConfig, Config, Fusion, GeneratorConfig, GeneratorKind, IndexConfig, ModelConfig, OpenAiConfig,
    PgLexicalRanking, PromptConfig, RetrievalConfig,
};
pub use document::{Chunk, Document, MetaValue, Metadata};
pub use embedder::{Embedder, Reranker, TokenCounter};
pub use error::{Error, Result};
pub use filter::Filter;
pub use generator::{Answer, Citation, CitationIssue, Expanded, Generator, Passage, SentenceCheck, Timings};
pub use hit::{Hit, SearchMode};
pub use index::{DocumentVersion, Index, IndexStats, IndexedDocument, SourceRecord, StoredChunk, StoredDocument};
pub use llm::{Completion, FinishReason, LanguageModel, Message, Role, Sampling, Usage};
