//! The storage seam: an embedded backend now, PostgreSQL later, behind one trait.

use serde::{Deserialize, Serialize};

use crate::document::{Chunk, Document, Metadata};
use crate::error::Result;
use crate::filter::Filter;
use crate::hit::Hit;

/// A document ready to be stored: its chunks and one embedding per chunk.
#[derive(Debug, Clone)]
pub struct IndexedDocument {
    pub document: Document,
    /// Hash of everything that determines the chunks and vectors (text, title, metadata, chunker and
    /// model settings): equal hashes mean re-ingesting would change nothing.
    pub content_hash: String,
    pub chunks: Vec<Chunk>,
    pub embeddings: Vec<Vec<f32>>,
    /// SimHash of the document's words, for near-duplicate detection; `None` for documents too short
    /// to compare (table rows, records).
    pub fingerprint: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDocument {
    pub id: String,
    pub source: String,
    pub title: Option<String>,
    pub text: String,
    pub metadata: Metadata,
    pub content_hash: String,
    pub chunk_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChunk {
    pub id: u64,
    pub chunk: Chunk,
    pub source: String,
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentVersion {
    pub content_hash: String,
    pub source: String,
}

/// What a source (a file, a URL) contributed at its last complete ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub source: String,
    pub file_hash: String,
    pub doc_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    pub documents: usize,
    pub chunks: usize,
    pub sources: usize,
    pub dimension: Option<usize>,
    pub model_id: Option<String>,
    /// Entries in the derived indexes; equal to `chunks` when they agree with the store.
    pub lexical_entries: usize,
    pub vector_entries: usize,
}

/// A document store with lexical and vector search over its chunks.
///
/// Every write is atomic per call: a document appears with all its chunks, or not at all; replacing
/// a document removes its old chunks from every index.
pub trait Index: Send + Sync {
    /// Inserts or replaces documents (matched by id).
    fn put_documents(&self, docs: Vec<IndexedDocument>) -> Result<()>;
    /// Removes documents and their chunks; returns how many existed.
    fn delete_documents(&self, ids: &[String]) -> Result<usize>;
    /// The stored version of a document: its content hash and source.
    fn document_version(&self, doc_id: &str) -> Result<Option<DocumentVersion>>;
    fn document(&self, doc_id: &str) -> Result<Option<StoredDocument>>;
    fn chunk(&self, chunk_id: u64) -> Result<Option<StoredChunk>>;

    fn source(&self, source: &str) -> Result<Option<SourceRecord>>;
    fn put_source(&self, record: SourceRecord) -> Result<()>;
    fn list_sources(&self) -> Result<Vec<SourceRecord>>;
    /// Removes a source record and every document it contributed.
    fn delete_source(&self, source: &str) -> Result<usize>;
    /// Near-duplicate fingerprints of the stored documents that have one, as (document id, SimHash).
    fn fingerprints(&self) -> Result<Vec<(String, u64)>>;

    /// BM25 over chunk text; only chunks matching `filter` are scored.
    fn lexical_search(&self, query: &str, filter: Option<&Filter>, k: usize) -> Result<Vec<Hit>>;
    /// Nearest chunks by cosine similarity; only chunks matching `filter` are candidates.
    fn vector_search(&self, query: &[f32], filter: Option<&Filter>, k: usize) -> Result<Vec<Hit>>;

    /// Makes derived indexes durable (they can always be rebuilt from the store).
    fn flush(&self) -> Result<()>;
    /// Rebuilds every derived index from the store.
    fn rebuild(&self) -> Result<()>;
    fn stats(&self) -> Result<IndexStats>;
}
