//! Getting documents into Quarry: loaders (one file per format), structure-aware token-aware
//! chunking, and the incremental ingest pipeline that writes through the `Index` trait.
//!
//! This crate depends only on `quarry-core`: it drives any `Embedder` and any `Index`, so the same
//! pipeline feeds the embedded store and the PostgreSQL backend.
//!
//! ```no_run
//! # fn run(index: &dyn quarry_core::Index, embedder: &dyn quarry_core::Embedder) {
//! use quarry_ingest::{Ingestor, Silent};
//! let ingestor = Ingestor::new(index, embedder, Default::default());
//! let summary = ingestor.ingest_paths(&["docs/".into()], &Silent);
//! println!("{} added, {} errors", summary.documents_added, summary.errors.len());
//! # }
//! ```

pub mod boilerplate;
pub mod chunker;
pub mod crawl;
pub mod csv;
pub mod dedup;
pub mod docx;
pub mod error;
pub mod html;
pub mod json;
pub mod jsonl;
pub mod loader;
mod math;
pub mod pdf;
pub mod pipeline;
pub mod query;
pub mod record;
pub mod reindex;
pub mod sql;
pub mod sqlite;
pub mod text;
pub mod web;

pub use chunker::{Chunker, TextFormat};
pub use error::{Error, Result};
pub use loader::{LoadOptions, Loaded, Loader, Loaders};
pub use pipeline::{source_name, Ingestor, Observer, Silent, Summary};
pub use record::RowTemplate;
pub use reindex::{reembed, Reindexed};
