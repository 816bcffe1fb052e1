//! Quarry's index backends, both implementing `quarry_core::Index`:
//!
//! - the embedded index: one data directory holding the source of truth (a redb store of documents,
//!   chunks, vectors and source records) and the indexes derived from it (tantivy BM25 and an HNSW
//!   graph); derived indexes can always be rebuilt from the store, and are rebuilt automatically when
//!   they are found out of date;
//! - [`PostgresIndex`]: the same data in PostgreSQL with pgvector (HNSW) and full-text search
//!   (tsvector + GIN), searched in the database (see the `postgres` module).
//!
//! [`StoreLocation`] chooses between them from a directory or a `postgres://` URL.
//!
//! In the embedded index, metadata filters are evaluated against the documents' metadata first, and the resulting set of
//! chunk ids restricts BM25 scoring (a tantivy filter collector) and the HNSW walk, so filtered
//! queries return the top-k *matching* chunks.
//!
//! ```no_run
//! use quarry_core::Index;
//! let index = quarry_index::EmbeddedIndex::open(".quarry".as_ref(), Default::default(), None)?;
//! let hits = index.lexical_search("vitamin C scurvy", None, 10)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod bm25;
pub mod embedded;
pub mod error;
pub mod hnsw;
pub mod postgres;
pub mod store;

pub use backend::StoreLocation;
pub use embedded::EmbeddedIndex;
pub use error::{Error, Result};
pub use hnsw::{Hnsw, HnswParams};
pub use postgres::{is_postgres_url, PgOptions, PostgresIndex};
