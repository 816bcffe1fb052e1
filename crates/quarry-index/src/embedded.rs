//! The embedded backend: a redb store as the source of truth, with a tantivy BM25 index and an
//! HNSW graph derived from it, all under one data directory.
//!
//! ```text
//! DATA_DIR/store.redb     documents, chunks, vectors, sources, generation counter
//! DATA_DIR/bm25/          tantivy index, commit payload = store generation
//! DATA_DIR/vectors.hnsw   graph file, header tag = store generation
//! ```
//! A derived index whose generation differs from the store's (a crash between the store commit and
//! the index update, a deleted file, a format change) is rebuilt from the store when opened.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use quarry_core::{
    DocumentVersion, Filter, Hit, Index, IndexConfig, IndexStats, IndexedDocument, Metadata, SourceRecord, StoredChunk,
    StoredDocument,
};

use crate::bm25::Bm25;
use crate::error::{Error, Result};
use crate::hnsw::{Hnsw, HnswParams};
use crate::store::{Delta, Store};

struct DocEntry {
    metadata: Metadata,
    chunks: Vec<u64>,
}

struct Derived {
    bm25: Bm25,
    hnsw: Option<Hnsw>,
    hnsw_saved: bool,
    docs: HashMap<String, DocEntry>,
    chunk_doc: HashMap<u64, Arc<str>>,
}

pub struct EmbeddedIndex {
    dir: PathBuf,
    store: Store,
    cfg: IndexConfig,
    model_id: Option<String>,
    state: RwLock<Derived>,
}

impl EmbeddedIndex {
    /// Opens (or creates) the index in `dir`. With `model_id`, refuses a store built by another model.
    pub fn open(dir: &Path, cfg: IndexConfig, model_id: Option<&str>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let store = Store::open(&dir.join("store.redb"))?;
        if let (Some(current), Some(stored)) = (model_id, store.meta("model_id")?) {
            if current != stored {
                return Err(Error::ModelMismatch {
                    stored,
                    current: current.to_string(),
                });
            }
        }
        let bm25_dir = dir.join("bm25");
        let bm25 = match Bm25::open(&bm25_dir) {
            Ok(b) => b,
            Err(_) => {
                // An unreadable derived index is disposable: start it again from the store.
                let _ = std::fs::remove_dir_all(&bm25_dir);
                Bm25::open(&bm25_dir)?
            }
        };
        let mut docs = HashMap::new();
        let mut chunk_doc = HashMap::new();
        for d in store.documents()? {
            let id: Arc<str> = Arc::from(d.id.as_str());
            for c in &d.chunk_ids {
                chunk_doc.insert(*c, id.clone());
            }
            docs.insert(
                d.id,
                DocEntry {
                    metadata: d.metadata,
                    chunks: d.chunk_ids,
                },
            );
        }
        let index = EmbeddedIndex {
            dir: dir.to_path_buf(),
            store,
            cfg,
            model_id: model_id.map(str::to_string),
            state: RwLock::new(Derived {
                bm25,
                hnsw: None,
                hnsw_saved: true,
                docs,
                chunk_doc,
            }),
        };
        index.check_derived()?;
        Ok(index)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn hnsw_path(&self) -> PathBuf {
        self.dir.join("vectors.hnsw")
    }

    fn params(&self) -> HnswParams {
        HnswParams {
            m: self.cfg.hnsw_m,
            ef_construction: self.cfg.hnsw_ef_construction,
        }
    }

    /// Loads derived indexes that match the store's generation; rebuilds the others.
    fn check_derived(&self) -> Result<()> {
        let generation = self.store.generation()?;
        let mut st = self.state.write().map_err(|_| self.poisoned())?;
        let lexical_ok = st.bm25.generation().unwrap_or(0) == generation;
        let loaded = std::fs::File::open(self.hnsw_path())
            .ok()
            .and_then(|f| Hnsw::read_from(&mut BufReader::new(f)).ok())
            .filter(|(h, tag)| *tag == generation && h.len() == st.chunk_doc.len());
        let vector_ok = loaded.is_some() || (generation == 0 && st.chunk_doc.is_empty());
        if let Some((h, _)) = loaded {
            st.hnsw = Some(h);
        }
        if lexical_ok && vector_ok {
            return Ok(());
        }
        self.rebuild_locked(&mut st, !lexical_ok, !vector_ok)
    }

    fn poisoned(&self) -> Error {
        Error::Store {
            path: self.dir.clone(),
            message: "index state lock poisoned by a panic".into(),
        }
    }

    fn rebuild_locked(&self, st: &mut Derived, lexical: bool, vector: bool) -> Result<()> {
        let generation = self.store.generation()?;
        if lexical {
            st.bm25.clear()?;
        }
        let mut vectors: Vec<(u64, Vec<f32>)> = Vec::new();
        self.store.for_each_chunk(|chunk, vector_| {
            if lexical {
                st.bm25
                    .add(chunk.id, &chunk.chunk.contextual_text(chunk.title.as_deref()))?;
            }
            if vector {
                vectors.push((chunk.id, vector_));
            }
            Ok(())
        })?;
        // Linked on all cores: the graph is built in one batch.
        let hnsw = vectors.first().map(|(_, v)| {
            let mut h = Hnsw::new(v.len(), self.params());
            let items: Vec<(u64, &[f32])> = vectors.iter().map(|(id, v)| (*id, v.as_slice())).collect();
            h.insert_batch(&items);
            h
        });
        if lexical {
            st.bm25.commit(generation)?;
        }
        if vector {
            st.hnsw = hnsw;
            st.hnsw_saved = false;
            self.save_hnsw(st, generation)?;
        }
        Ok(())
    }

    fn save_hnsw(&self, st: &mut Derived, generation: u64) -> Result<()> {
        if st.hnsw_saved {
            return Ok(());
        }
        let path = self.hnsw_path();
        let Some(h) = &st.hnsw else {
            let _ = std::fs::remove_file(&path);
            st.hnsw_saved = true;
            return Ok(());
        };
        // Write aside, sync, then rename: a crash leaves the old file or the new one, never half.
        let tmp = path.with_extension("hnsw.tmp");
        let io = |e| Error::Io {
            path: tmp.clone(),
            source: e,
        };
        let f = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::new(f);
        h.write_to(&mut w, generation).map_err(io)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        st.hnsw_saved = true;
        Ok(())
    }

    /// Applies a store write to the derived indexes (under the write lock the caller holds).
    fn apply(
        &self,
        st: &mut Derived,
        delta: Delta,
        docs: &[(String, Metadata, Vec<u64>)],
        removed_docs: &[String],
    ) -> Result<()> {
        let generation = self.store.generation()?;
        for id in &delta.removed {
            st.bm25.remove(*id);
            if let Some(h) = st.hnsw.as_mut() {
                h.remove(*id);
            }
            st.chunk_doc.remove(id);
        }
        for d in removed_docs {
            st.docs.remove(d);
        }
        for (id, text, _) in &delta.added {
            st.bm25.add(*id, text)?;
        }
        if let Some((_, _, first)) = delta.added.first() {
            let h = st.hnsw.get_or_insert_with(|| Hnsw::new(first.len(), self.params()));
            let items: Vec<(u64, &[f32])> = delta.added.iter().map(|(id, _, v)| (*id, v.as_slice())).collect();
            h.insert_batch(&items);
        }
        for (doc_id, metadata, chunks) in docs {
            let key: Arc<str> = Arc::from(doc_id.as_str());
            for c in chunks {
                st.chunk_doc.insert(*c, key.clone());
            }
            st.docs.insert(
                doc_id.clone(),
                DocEntry {
                    metadata: metadata.clone(),
                    chunks: chunks.clone(),
                },
            );
        }
        st.bm25.commit(generation)?;
        st.hnsw_saved = false;
        // Tombstones slow the graph down; past a third of the nodes, rebuild it from the store.
        if st.hnsw.as_ref().is_some_and(|h| h.deleted_fraction() > 0.33) {
            self.rebuild_locked(st, false, true)?;
        }
        Ok(())
    }

    /// Chunk ids whose document matches `filter`.
    fn allowed(st: &Derived, filter: &Filter) -> HashSet<u64> {
        st.docs
            .values()
            .filter(|d| filter.matches(&d.metadata))
            .flat_map(|d| d.chunks.iter().copied())
            .collect()
    }

    fn hits(st: &Derived, scored: Vec<(u64, f32)>) -> Vec<Hit> {
        scored
            .into_iter()
            .filter_map(|(id, score)| {
                st.chunk_doc.get(&id).map(|d| Hit {
                    chunk_id: id,
                    doc_id: d.to_string(),
                    score,
                })
            })
            .collect()
    }

    fn delete_inner(&self, ids: &[String], source: Option<&str>) -> Result<usize> {
        let mut st = self.state.write().map_err(|_| self.poisoned())?;
        let delta = self.store.delete(ids, source)?;
        let n = delta.documents_removed;
        self.apply(&mut st, delta, &[], ids)?;
        Ok(n)
    }
}

impl Index for EmbeddedIndex {
    fn put_documents(&self, docs: Vec<IndexedDocument>) -> quarry_core::Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut st = self.state.write().map_err(|_| self.poisoned())?;
        let delta = self.store.put_documents(&docs, self.model_id.as_deref())?;
        // Chunk ids were assigned in order: walk them back onto their documents.
        let mut ids = delta.added.iter().map(|a| a.0);
        let entries: Vec<(String, Metadata, Vec<u64>)> = docs
            .iter()
            .map(|d| {
                (
                    d.document.id.clone(),
                    d.document.metadata.clone(),
                    ids.by_ref().take(d.chunks.len()).collect(),
                )
            })
            .collect();
        self.apply(&mut st, delta, &entries, &[])?;
        Ok(())
    }

    fn delete_documents(&self, ids: &[String]) -> quarry_core::Result<usize> {
        Ok(self.delete_inner(ids, None)?)
    }

    fn document_version(&self, doc_id: &str) -> quarry_core::Result<Option<DocumentVersion>> {
        Ok(self.store.document(doc_id)?.map(|d| DocumentVersion {
            content_hash: d.content_hash,
            source: d.source,
        }))
    }

    fn document(&self, doc_id: &str) -> quarry_core::Result<Option<StoredDocument>> {
        Ok(self.store.document(doc_id)?)
    }

    fn chunk(&self, chunk_id: u64) -> quarry_core::Result<Option<StoredChunk>> {
        Ok(self.store.chunk(chunk_id)?)
    }

    fn source(&self, source: &str) -> quarry_core::Result<Option<SourceRecord>> {
        Ok(self.store.source(source)?)
    }

    fn put_source(&self, record: SourceRecord) -> quarry_core::Result<()> {
        Ok(self.store.put_source(&record)?)
    }

    fn list_sources(&self) -> quarry_core::Result<Vec<SourceRecord>> {
        Ok(self.store.sources()?)
    }

    fn fingerprints(&self) -> quarry_core::Result<Vec<(String, u64)>> {
        Ok(self.store.fingerprints()?)
    }

    fn delete_source(&self, source: &str) -> quarry_core::Result<usize> {
        let ids = self.store.source(source)?.map(|r| r.doc_ids).unwrap_or_default();
        Ok(self.delete_inner(&ids, Some(source))?)
    }

    fn lexical_search(&self, query: &str, filter: Option<&Filter>, k: usize) -> quarry_core::Result<Vec<Hit>> {
        let st = self.state.read().map_err(|_| self.poisoned())?;
        let scored = match filter {
            None => st.bm25.search(query, k, None)?,
            Some(f) => {
                let allowed = Self::allowed(&st, f);
                if allowed.is_empty() {
                    return Ok(vec![]);
                }
                st.bm25.search(query, k, Some(Arc::new(allowed)))?
            }
        };
        Ok(Self::hits(&st, scored))
    }

    fn vector_search(&self, query: &[f32], filter: Option<&Filter>, k: usize) -> quarry_core::Result<Vec<Hit>> {
        let st = self.state.read().map_err(|_| self.poisoned())?;
        let Some(h) = &st.hnsw else { return Ok(vec![]) };
        if query.len() != h.dim() {
            return Err(Error::DimensionMismatch {
                expected: h.dim(),
                got: query.len(),
            }
            .into());
        }
        let ef = self.cfg.hnsw_ef_search.max(k);
        let scored = match filter {
            None => h.search(query, k, ef, &|_| true),
            Some(f) => {
                let allowed = Self::allowed(&st, f);
                // A walk through a sparse filter may strand itself; few candidates are cheaper to scan.
                if allowed.len() <= self.cfg.exact_search_threshold {
                    h.exact(query, k, allowed.into_iter())
                } else {
                    h.search(query, k, ef, &|id| allowed.contains(&id))
                }
            }
        };
        Ok(Self::hits(&st, scored))
    }

    fn flush(&self) -> quarry_core::Result<()> {
        let mut st = self.state.write().map_err(|_| self.poisoned())?;
        let generation = self.store.generation()?;
        self.save_hnsw(&mut st, generation)?;
        Ok(())
    }

    fn rebuild(&self) -> quarry_core::Result<()> {
        let mut st = self.state.write().map_err(|_| self.poisoned())?;
        self.rebuild_locked(&mut st, true, true)?;
        Ok(())
    }

    fn stats(&self) -> quarry_core::Result<IndexStats> {
        let (documents, chunks, sources) = self.store.counts()?;
        let st = self.state.read().map_err(|_| self.poisoned())?;
        Ok(IndexStats {
            documents,
            chunks,
            sources,
            dimension: self.store.meta("dimension")?.and_then(|d| d.parse().ok()),
            model_id: self.store.meta("model_id")?,
            lexical_entries: st.bm25.num_docs(),
            vector_entries: st.hnsw.as_ref().map_or(0, Hnsw::len),
        })
    }
}
