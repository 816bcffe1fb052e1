//! The source of truth: documents, chunks, vectors and source records in one redb file. Every write
//! is one ACID transaction, and every write bumps a generation counter that derived indexes record,
//! so a derived index that missed a write (a crash between the two) is detected and rebuilt.

use std::path::{Path, PathBuf};

use quarry_core::{IndexedDocument, SourceRecord, StoredChunk, StoredDocument};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::{Error, Result};

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");
const CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("chunks");
const VECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors");
const SOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("sources");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Document id → SimHash, for near-duplicate detection (only documents long enough to compare).
const FINGERPRINTS: TableDefinition<&str, u64> = TableDefinition::new("fingerprints");

/// Bumped when the on-disk layout changes; older stores are migrated or refused.
pub const FORMAT_VERSION: &str = "1";

/// What a write did to chunks, for the derived indexes to follow.
#[derive(Debug, Default)]
pub struct Delta {
    pub removed: Vec<u64>,
    /// (chunk id, text to index lexically, vector)
    pub added: Vec<(u64, String, Vec<f32>)>,
    pub documents_removed: usize,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

fn encode_vec(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_vec(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
                path: path.to_path_buf(),
            },
            other => Error::Store {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        let txn = store.db.begin_write().map_err(|e| store.err(e))?;
        {
            txn.open_table(DOCS).map_err(|e| store.err(e))?;
            txn.open_table(CHUNKS).map_err(|e| store.err(e))?;
            txn.open_table(VECTORS).map_err(|e| store.err(e))?;
            txn.open_table(SOURCES).map_err(|e| store.err(e))?;
            txn.open_table(FINGERPRINTS).map_err(|e| store.err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| store.err(e))?;
            let version = meta
                .get("format_version")
                .map_err(|e| store.err(e))?
                .map(|v| v.value().to_string());
            match version.as_deref() {
                None => {
                    meta.insert("format_version", FORMAT_VERSION)
                        .map_err(|e| store.err(e))?;
                }
                Some(FORMAT_VERSION) => {}
                Some(other) => {
                    return Err(Error::Store {
                        path: path.to_path_buf(),
                        message: format!("format version {other} is not supported (this build reads {FORMAT_VERSION})"),
                    })
                }
            }
        }
        txn.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn corrupt(&self, key: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(META).map_err(|e| self.err(e))?;
        Ok(t.get(key).map_err(|e| self.err(e))?.map(|v| v.value().to_string()))
    }

    pub fn generation(&self) -> Result<u64> {
        Ok(self.meta("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0))
    }

    /// Inserts or replaces documents in one transaction. The first write fixes the model and the
    /// vector dimension of the store.
    pub fn put_documents(&self, docs: &[IndexedDocument], model_id: Option<&str>) -> Result<Delta> {
        let mut delta = Delta::default();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut dt = txn.open_table(DOCS).map_err(|e| self.err(e))?;
            let mut ct = txn.open_table(CHUNKS).map_err(|e| self.err(e))?;
            let mut vt = txn.open_table(VECTORS).map_err(|e| self.err(e))?;
            let mut ft = txn.open_table(FINGERPRINTS).map_err(|e| self.err(e))?;
            let get = |t: &redb::Table<&str, &str>, k: &str| -> Result<Option<String>> {
                Ok(t.get(k).map_err(|e| self.err(e))?.map(|v| v.value().to_string()))
            };
            let mut dim: Option<usize> = get(&meta, "dimension")?.and_then(|d| d.parse().ok());
            if let (Some(current), Some(stored)) = (model_id, get(&meta, "model_id")?) {
                if current != stored {
                    return Err(Error::ModelMismatch {
                        stored,
                        current: current.to_string(),
                    });
                }
            }
            let mut next: u64 = get(&meta, "next_chunk_id")?.and_then(|d| d.parse().ok()).unwrap_or(1);
            for d in docs {
                if d.chunks.len() != d.embeddings.len() {
                    return Err(Error::EmbeddingCount {
                        doc_id: d.document.id.clone(),
                        chunks: d.chunks.len(),
                        embeddings: d.embeddings.len(),
                    });
                }
                for v in &d.embeddings {
                    match dim {
                        Some(expected) if expected != v.len() => {
                            return Err(Error::DimensionMismatch { expected, got: v.len() })
                        }
                        None => dim = Some(v.len()),
                        _ => {}
                    }
                }
                let old = dt
                    .remove(d.document.id.as_str())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec());
                if let Some(old) = old {
                    let old: StoredDocument =
                        serde_json::from_slice(&old).map_err(|e| self.corrupt(&d.document.id, e))?;
                    for id in old.chunk_ids {
                        ct.remove(id).map_err(|e| self.err(e))?;
                        vt.remove(id).map_err(|e| self.err(e))?;
                        delta.removed.push(id);
                    }
                }
                let mut chunk_ids = Vec::with_capacity(d.chunks.len());
                for (chunk, vector) in d.chunks.iter().zip(&d.embeddings) {
                    let id = next;
                    next += 1;
                    let sc = StoredChunk {
                        id,
                        chunk: chunk.clone(),
                        source: d.document.source.clone(),
                        title: d.document.title.clone(),
                    };
                    let json = serde_json::to_vec(&sc).map_err(|e| self.err(e))?;
                    ct.insert(id, json.as_slice()).map_err(|e| self.err(e))?;
                    vt.insert(id, encode_vec(vector).as_slice()).map_err(|e| self.err(e))?;
                    delta
                        .added
                        .push((id, chunk.contextual_text(d.document.title.as_deref()), vector.clone()));
                    chunk_ids.push(id);
                }
                let doc = StoredDocument {
                    id: d.document.id.clone(),
                    source: d.document.source.clone(),
                    title: d.document.title.clone(),
                    text: d.document.text.clone(),
                    metadata: d.document.metadata.clone(),
                    content_hash: d.content_hash.clone(),
                    chunk_ids,
                };
                let json = serde_json::to_vec(&doc).map_err(|e| self.err(e))?;
                dt.insert(d.document.id.as_str(), json.as_slice())
                    .map_err(|e| self.err(e))?;
                match d.fingerprint {
                    Some(f) => ft.insert(d.document.id.as_str(), f).map(|_| ()),
                    None => ft.remove(d.document.id.as_str()).map(|_| ()),
                }
                .map_err(|e| self.err(e))?;
            }
            meta.insert("next_chunk_id", next.to_string().as_str())
                .map_err(|e| self.err(e))?;
            if let Some(d) = dim {
                meta.insert("dimension", d.to_string().as_str())
                    .map_err(|e| self.err(e))?;
            }
            if let Some(m) = model_id {
                meta.insert("model_id", m).map_err(|e| self.err(e))?;
            }
            Self::bump(&mut meta).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(delta)
    }

    fn bump(meta: &mut redb::Table<&str, &str>) -> std::result::Result<(), redb::StorageError> {
        let g: u64 = meta
            .get("generation")?
            .and_then(|v| v.value().parse().ok())
            .unwrap_or(0);
        meta.insert("generation", (g + 1).to_string().as_str())?;
        Ok(())
    }

    /// Deletes documents (and, when `source` is given, that source's record) in one transaction.
    pub fn delete(&self, ids: &[String], source: Option<&str>) -> Result<Delta> {
        let mut delta = Delta::default();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut dt = txn.open_table(DOCS).map_err(|e| self.err(e))?;
            let mut ct = txn.open_table(CHUNKS).map_err(|e| self.err(e))?;
            let mut vt = txn.open_table(VECTORS).map_err(|e| self.err(e))?;
            let mut st = txn.open_table(SOURCES).map_err(|e| self.err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut ft = txn.open_table(FINGERPRINTS).map_err(|e| self.err(e))?;
            for id in ids {
                ft.remove(id.as_str()).map_err(|e| self.err(e))?;
                let old = dt
                    .remove(id.as_str())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec());
                if let Some(old) = old {
                    let old: StoredDocument = serde_json::from_slice(&old).map_err(|e| self.corrupt(id, e))?;
                    for c in old.chunk_ids {
                        ct.remove(c).map_err(|e| self.err(e))?;
                        vt.remove(c).map_err(|e| self.err(e))?;
                        delta.removed.push(c);
                    }
                    delta.documents_removed += 1;
                }
            }
            if let Some(s) = source {
                st.remove(s).map_err(|e| self.err(e))?;
            }
            Self::bump(&mut meta).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(delta)
    }

    pub fn document(&self, id: &str) -> Result<Option<StoredDocument>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(DOCS).map_err(|e| self.err(e))?;
        let Some(v) = t.get(id).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| self.corrupt(id, e))
    }

    pub fn chunk(&self, id: u64) -> Result<Option<StoredChunk>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(CHUNKS).map_err(|e| self.err(e))?;
        let Some(v) = t.get(id).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| self.corrupt(format!("chunk {id}"), e))
    }

    pub fn source(&self, s: &str) -> Result<Option<SourceRecord>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(SOURCES).map_err(|e| self.err(e))?;
        let Some(v) = t.get(s).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| self.corrupt(s, e))
    }

    pub fn put_source(&self, rec: &SourceRecord) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(SOURCES).map_err(|e| self.err(e))?;
            let json = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
            t.insert(rec.source.as_str(), json.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub fn sources(&self) -> Result<Vec<SourceRecord>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(SOURCES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.corrupt(k.value(), e))?);
        }
        Ok(out)
    }

    pub fn fingerprints(&self) -> Result<Vec<(String, u64)>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(FINGERPRINTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    /// Every document (for the in-memory filter table).
    pub fn documents(&self) -> Result<Vec<StoredDocument>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(DOCS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.corrupt(k.value(), e))?);
        }
        Ok(out)
    }

    /// Visits every chunk with its vector, in chunk-id order (for rebuilding derived indexes).
    pub fn for_each_chunk(&self, mut f: impl FnMut(StoredChunk, Vec<f32>) -> Result<()>) -> Result<()> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let ct = txn.open_table(CHUNKS).map_err(|e| self.err(e))?;
        let vt = txn.open_table(VECTORS).map_err(|e| self.err(e))?;
        for row in ct.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let id = k.value();
            let chunk: StoredChunk =
                serde_json::from_slice(v.value()).map_err(|e| self.corrupt(format!("chunk {id}"), e))?;
            let vector = vt
                .get(id)
                .map_err(|e| self.err(e))?
                .map(|v| decode_vec(v.value()))
                .ok_or_else(|| self.corrupt(format!("chunk {id}"), "no vector"))?;
            f(chunk, vector)?;
        }
        Ok(())
    }

    pub fn counts(&self) -> Result<(usize, usize, usize)> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let d = txn
            .open_table(DOCS)
            .map_err(|e| self.err(e))?
            .len()
            .map_err(|e| self.err(e))?;
        let c = txn
            .open_table(CHUNKS)
            .map_err(|e| self.err(e))?
            .len()
            .map_err(|e| self.err(e))?;
        let s = txn
            .open_table(SOURCES)
            .map_err(|e| self.err(e))?
            .len()
            .map_err(|e| self.err(e))?;
        Ok((d as usize, c as usize, s as usize))
    }
}
