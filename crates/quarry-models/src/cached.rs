//! An embedder that remembers: vectors are kept by the SHA-256 of their text (and the model id), in memory and
//! in an append-only file, so re-indexing text that did not change (a parameter sweep, a re-chunking that
//! leaves most chunks as they were) costs no model time.
//!
//! File layout: records of `[32-byte text hash][dimension × f32 little-endian]`. A record cut short by a
//! crash is ignored (and overwritten by the next append), so the file never serves a partial vector.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use quarry_core::{Embedder, Error, Result, TokenCounter};
use sha2::{Digest, Sha256};

pub struct CachedEmbedder {
    inner: Arc<dyn Embedder>,
    path: Option<PathBuf>,
    map: Mutex<HashMap<[u8; 32], Vec<f32>>>,
    file: Mutex<Option<std::fs::File>>,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

fn key(model: &str, text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.finalize().into()
}

impl CachedEmbedder {
    pub fn in_memory(inner: Arc<dyn Embedder>) -> CachedEmbedder {
        CachedEmbedder {
            inner,
            path: None,
            map: Mutex::new(HashMap::new()),
            file: Mutex::new(None),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        }
    }

    /// Opens (or creates) the cache file for `inner`'s model. Use one file per model id.
    pub fn open(inner: Arc<dyn Embedder>, path: &Path) -> Result<CachedEmbedder> {
        let io = |e| Error::io(path, e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let dim = inner.dimension();
        let record = 32 + 4 * dim;
        let mut map = HashMap::new();
        let mut valid = 0u64;
        if path.exists() {
            let bytes = std::fs::read(path).map_err(io)?;
            for rec in bytes.chunks_exact(record) {
                let mut k = [0u8; 32];
                k.copy_from_slice(&rec[..32]);
                let v = rec[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                map.insert(k, v);
            }
            valid = (bytes.len() / record * record) as u64;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // Drop a torn last record, then append after the valid ones.
        file.set_len(valid).map_err(io)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(CachedEmbedder {
            inner,
            path: Some(path.to_path_buf()),
            map: Mutex::new(map),
            file: Mutex::new(Some(file)),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        })
    }

    /// (texts served from the cache, texts embedded by the model) since this embedder was made.
    pub fn counts(&self) -> (usize, usize) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TokenCounter for CachedEmbedder {
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
}

impl Embedder for CachedEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let model = self.inner.model_id().to_string();
        let keys: Vec<[u8; 32]> = texts.iter().map(|t| key(&model, t)).collect();
        let mut out: Vec<Option<Vec<f32>>> = {
            let map = self
                .map
                .lock()
                .map_err(|_| Error::Config("embedding cache lock poisoned".into()))?;
            keys.iter().map(|k| map.get(k).cloned()).collect()
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|i| out[*i].is_none()).collect();
        self.hits.fetch_add(texts.len() - missing.len(), Ordering::Relaxed);
        self.misses.fetch_add(missing.len(), Ordering::Relaxed);
        if !missing.is_empty() {
            let batch: Vec<&str> = missing.iter().map(|i| texts[*i]).collect();
            let vectors = self.inner.embed(&batch)?;
            let mut bytes = Vec::new();
            let mut map = self
                .map
                .lock()
                .map_err(|_| Error::Config("embedding cache lock poisoned".into()))?;
            for (i, v) in missing.iter().zip(vectors) {
                if self.path.is_some() && !map.contains_key(&keys[*i]) {
                    bytes.extend_from_slice(&keys[*i]);
                    for x in &v {
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                }
                map.insert(keys[*i], v.clone());
                out[*i] = Some(v);
            }
            drop(map);
            if let (Some(path), Ok(mut f)) = (&self.path, self.file.lock()) {
                if let Some(f) = f.as_mut() {
                    f.write_all(&bytes).map_err(|e| Error::io(path, e))?;
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        // Queries may be embedded differently from documents; they are cheap and not cached.
        self.inner.embed_query(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashEmbedder;

    #[test]
    fn vectors_survive_reopening_and_a_torn_record_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("emb.bin");
        let inner: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(8));
        let direct = inner.embed(&["alpha beta", "gamma"]).unwrap();
        {
            let c = CachedEmbedder::open(inner.clone(), &path).unwrap();
            assert_eq!(c.embed(&["alpha beta", "gamma"]).unwrap(), direct);
            assert_eq!(c.embed(&["gamma", "delta"]).unwrap()[0], direct[1]);
            assert_eq!(c.counts(), (1, 3));
        }
        // A crash mid-append leaves a partial record.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        let c = CachedEmbedder::open(inner.clone(), &path).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.embed(&["alpha beta", "gamma"]).unwrap(), direct);
        assert_eq!(c.counts(), (2, 0));
        c.embed(&["epsilon"]).unwrap();
        drop(c);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * (32 + 4 * 8));
    }
}
