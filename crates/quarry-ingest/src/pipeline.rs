//! The ingest pipeline: files → loaders → chunks → embeddings → index, incrementally.
//!
//! A file whose bytes (and the chunking/model settings) are unchanged is skipped whole; inside a
//! changed file only documents whose content hash changed are re-embedded; documents that left a
//! file are removed from every index. Writes go to the index in batches, each atomic, and a file's
//! source record is written last, so a crash mid-file leaves a consistent store and the rerun
//! completes the work without duplicates.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use quarry_core::{ChunkingConfig, Document, Embedder, Index, IndexedDocument, SourceRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::chunker::{Chunker, TextFormat};
use crate::dedup::{simhash, NearDuplicates};
use crate::error::Error;
use crate::loader::{LoadOptions, Loaders};

/// Progress callbacks; the CLI draws bars from them, tests ignore them.
pub trait Observer: Sync {
    fn files_planned(&self, _total: usize) {}
    fn file_started(&self, _path: &Path) {}
    fn documents_planned(&self, _total: usize) {}
    fn documents_done(&self, _n: usize) {}
}

pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub files: usize,
    pub files_unchanged: usize,
    pub documents_added: usize,
    pub documents_updated: usize,
    pub documents_unchanged: usize,
    pub documents_removed: usize,
    pub chunks_written: usize,
    /// Files with no loader (reported, not errors).
    pub skipped: Vec<String>,
    /// Documents not indexed because an indexed document is a near-duplicate of them.
    pub duplicates: Vec<String>,
    pub errors: Vec<String>,
}

impl Summary {
    /// Adds another pass's counts and messages to this one.
    pub fn merge(&mut self, other: Summary) {
        self.files += other.files;
        self.files_unchanged += other.files_unchanged;
        self.documents_added += other.documents_added;
        self.documents_updated += other.documents_updated;
        self.documents_unchanged += other.documents_unchanged;
        self.documents_removed += other.documents_removed;
        self.chunks_written += other.chunks_written;
        self.skipped.extend(other.skipped);
        self.duplicates.extend(other.duplicates);
        self.errors.extend(other.errors);
    }

    /// True when the pass changed nothing in the index.
    pub fn is_noop(&self) -> bool {
        self.documents_added + self.documents_updated + self.documents_removed == 0
    }
}

/// A document to write: with its content hash, whether an older version is stored, and its fingerprint.
type Pending = (Document, String, bool, Option<u64>);

pub struct Ingestor<'a> {
    index: &'a dyn Index,
    embedder: &'a dyn Embedder,
    chunking: ChunkingConfig,
    settings_hash: String,
    batch_docs: usize,
    loaders: Loaders,
    rows: crate::record::RowTemplate,
    dedup: bool,
    /// Metadata set on every document, over whatever its source says (access labels).
    labels: quarry_core::Metadata,
    /// Fingerprints of indexed documents, loaded on first use.
    near: std::sync::Mutex<Option<NearDuplicates>>,
}

impl<'a> Ingestor<'a> {
    pub fn new(index: &'a dyn Index, embedder: &'a dyn Embedder, chunking: ChunkingConfig) -> Self {
        // The embedding model is not part of it: an index holds one model's vectors (it refuses another), and
        // chunks do not depend on the model, so a re-index with a new model (`reindex::reembed`) keeps the
        // hashes and a later sync finds nothing changed.
        let settings = serde_json::json!({
            "max_tokens": chunking.max_tokens,
            "overlap_tokens": chunking.overlap_tokens,
            "chunker": 2,
        });
        let settings_hash = hex(&Sha256::digest(settings.to_string().as_bytes()));
        Ingestor {
            index,
            embedder,
            chunking,
            settings_hash,
            batch_docs: 64,
            loaders: Loaders::default(),
            rows: Default::default(),
            dedup: true,
            labels: quarry_core::Metadata::new(),
            near: std::sync::Mutex::new(None),
        }
    }

    /// Turns near-duplicate detection off (on by default): every document is indexed, as benchmark
    /// corpora with judged documents need.
    pub fn with_dedup(mut self, on: bool) -> Self {
        self.dedup = on;
        self
    }

    /// Uses loaders built with these options (row templates); they are part of the settings hash,
    /// so changing them re-ingests what they affect.
    pub fn with_loaders(mut self, opts: &LoadOptions) -> Self {
        self.loaders = Loaders::new(opts);
        self.rows = opts.rows.clone();
        let mut h = Sha256::new();
        h.update(self.settings_hash.as_bytes());
        h.update(format!("{:?}|{:?}", opts.rows.text, opts.rows.title).as_bytes());
        self.settings_hash = hex(&h.finalize());
        self
    }

    /// Sets these metadata entries on every document ingested, replacing any entry of the same key that the
    /// source itself carries, so a file cannot claim labels (an access tenant) it was not given. Part of the
    /// settings hash: the same file ingested under other labels is written again.
    pub fn with_labels(mut self, labels: quarry_core::Metadata) -> Self {
        let mut h = Sha256::new();
        h.update(self.settings_hash.as_bytes());
        h.update(serde_json::to_vec(&labels).unwrap_or_default());
        self.settings_hash = hex(&h.finalize());
        self.labels = labels;
        self
    }

    pub(crate) fn index(&self) -> &dyn Index {
        self.index
    }

    pub(crate) fn loaders(&self) -> &Loaders {
        &self.loaders
    }

    pub(crate) fn row_template(&self) -> &crate::record::RowTemplate {
        &self.rows
    }

    /// Ingests files and folders. A folder is mirrored: sources previously ingested from below it
    /// that no longer exist are removed.
    pub fn ingest_paths(&self, paths: &[PathBuf], observer: &dyn Observer) -> Summary {
        let mut summary = Summary::default();
        let mut files = Vec::new();
        let mut roots = Vec::new();
        for p in paths {
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => {
                    roots.push(source_name(p));
                    files.extend(walk(p, &mut summary));
                }
                Ok(_) => files.push(p.clone()),
                Err(e) => summary.errors.push(
                    Error::Unreadable {
                        path: p.clone(),
                        source: e,
                    }
                    .to_string(),
                ),
            }
        }
        observer.files_planned(files.len());
        // Sources that vanished leave first, so a renamed file is not taken for a near-duplicate of itself.
        let named: Vec<(&PathBuf, String)> = files.iter().map(|f| (f, source_name(f))).collect();
        let seen: HashSet<String> = named.iter().map(|(_, s)| s.clone()).collect();
        for root in roots {
            self.remove_vanished(&root, &seen, &mut summary);
        }
        let mut done = HashSet::new();
        for (f, src) in &named {
            observer.file_started(f);
            if done.insert(src.as_str()) {
                self.ingest_file(f, src, &mut summary, observer);
            }
        }
        if let Err(e) = self.index.flush() {
            summary.errors.push(format!("flushing indexes: {e}"));
        }
        summary
    }

    /// Ingests one file under a source name of the caller's choosing (a server names uploads by tenant and
    /// file name, not by where it keeps them): skipped when unchanged, else its documents are replaced.
    pub fn ingest_file_as(&self, path: &Path, source: &str, observer: &dyn Observer) -> Summary {
        let mut summary = Summary::default();
        observer.files_planned(1);
        observer.file_started(path);
        self.ingest_file(path, source, &mut summary, observer);
        if let Err(e) = self.index.flush() {
            summary.errors.push(format!("flushing indexes: {e}"));
        }
        summary
    }

    /// Applies changes reported for paths (by a file watcher): a file that exists is ingested (skipped when
    /// unchanged), a folder that exists is mirrored, and a path that no longer exists is removed from every
    /// index together with everything that was ingested from below it.
    pub fn apply_changes(&self, paths: &[PathBuf], observer: &dyn Observer) -> Summary {
        let mut summary = Summary::default();
        let mut present = Vec::new();
        let mut gone = BTreeSet::new();
        for p in paths {
            if p.exists() {
                present.push(p.clone());
            } else {
                gone.insert(source_name(p));
            }
        }
        if !gone.is_empty() {
            match self.index.list_sources() {
                Ok(sources) => {
                    for rec in sources.iter().filter(|r| {
                        gone.iter()
                            .any(|g| r.source == *g || r.source.starts_with(&format!("{g}/")))
                    }) {
                        self.remove_source(rec, &mut summary);
                    }
                }
                Err(e) => summary.errors.push(format!("listing sources: {e}")),
            }
        }
        if present.is_empty() {
            if let Err(e) = self.index.flush() {
                summary.errors.push(format!("flushing indexes: {e}"));
            }
            return summary;
        }
        let more = self.ingest_paths(&present, observer);
        summary.merge(more);
        summary
    }

    fn remove_vanished(&self, root: &str, seen: &HashSet<String>, summary: &mut Summary) {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        match self.index.list_sources() {
            Ok(sources) => {
                for rec in sources
                    .iter()
                    .filter(|r| r.source.starts_with(&prefix) && !seen.contains(&r.source))
                {
                    self.remove_source(rec, summary);
                }
            }
            Err(e) => summary.errors.push(format!("listing sources: {e}")),
        }
    }

    /// Removes a source and everything it contributed from every index.
    pub(crate) fn remove_source(&self, rec: &SourceRecord, summary: &mut Summary) {
        match self.index.delete_source(&rec.source) {
            Ok(n) => {
                summary.documents_removed += n;
                self.forget(&rec.doc_ids);
            }
            Err(e) => summary.errors.push(format!("{}: removing: {e}", rec.source)),
        }
    }

    fn forget(&self, ids: &[String]) {
        if let Ok(mut near) = self.near.lock() {
            if let Some(n) = near.as_mut() {
                ids.iter().for_each(|id| n.remove(id));
            }
        }
    }

    /// The nearest indexed document to `fp` other than `id`; records `fp` for `id` when there is none.
    fn near_duplicate(&self, id: &str, fp: u64) -> quarry_core::Result<Option<(String, u32)>> {
        let mut near = self
            .near
            .lock()
            .map_err(|_| quarry_core::Error::backend(Error::Poisoned))?;
        if near.is_none() {
            *near = Some(NearDuplicates::new(self.index.fingerprints()?));
        }
        let Some(n) = near.as_mut() else { return Ok(None) };
        match n.find(fp, id) {
            Some((other, d)) => Ok(Some((other.to_string(), d))),
            None => {
                n.insert(id, fp);
                Ok(None)
            }
        }
    }

    fn ingest_file(&self, path: &Path, source: &str, summary: &mut Summary, observer: &dyn Observer) {
        summary.files += 1;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                return summary.errors.push(
                    Error::Unreadable {
                        path: path.into(),
                        source: e,
                    }
                    .to_string(),
                )
            }
        };
        let load = |bytes: &[u8]| match self.loaders.detect(path, bytes) {
            Some(loader) => loader.load(path, source, bytes).map(Some),
            None => Ok(None),
        };
        self.ingest_bytes(path, source, &bytes, load, summary, observer);
    }

    /// Ingests one source whose bytes are in hand: skipped when they (and the settings) are unchanged,
    /// else loaded by `load` (`Ok(None)`: a type Quarry does not read) and written document by document.
    pub(crate) fn ingest_bytes(
        &self,
        path: &Path,
        source: &str,
        bytes: &[u8],
        load: impl FnOnce(&[u8]) -> Result<Option<crate::loader::Loaded>, Error>,
        summary: &mut Summary,
        observer: &dyn Observer,
    ) {
        if bytes.is_empty() {
            return summary.errors.push(Error::Empty { path: path.into() }.to_string());
        }
        let hasher = self.file_hasher(bytes);
        self.ingest_hashed(path, source, hasher, || load(bytes), summary, observer);
    }

    /// The file hash of a source's bytes, still open: a caller whose documents depend on more than the bytes
    /// (the crawler's boilerplate removal) adds that before [`Self::ingest_hashed`] finishes it.
    pub(crate) fn file_hasher(&self, bytes: &[u8]) -> Sha256 {
        let mut h = Sha256::new();
        h.update(self.settings_hash.as_bytes());
        h.update(bytes);
        h
    }

    /// [`Self::ingest_bytes`] of a source with bytes, its file hash computed by the caller (see
    /// [`Self::file_hasher`]).
    pub(crate) fn ingest_hashed(
        &self,
        path: &Path,
        source: &str,
        file_hasher: Sha256,
        load: impl FnOnce() -> Result<Option<crate::loader::Loaded>, Error>,
        summary: &mut Summary,
        observer: &dyn Observer,
    ) {
        let file_hash = hex(&file_hasher.finalize());
        let previous = match self.index.source(source) {
            Ok(p) => p,
            Err(e) => return summary.errors.push(format!("{source}: {e}")),
        };
        if let Some(prev) = &previous {
            if prev.file_hash == file_hash {
                summary.files_unchanged += 1;
                summary.documents_unchanged += prev.doc_ids.len();
                return;
            }
        }
        // A file that no longer loads keeps what it contributed before: bad input never erases data.
        let loaded = match load() {
            Ok(Some(l)) => l,
            Ok(None) => return summary.skipped.push(path.display().to_string()),
            Err(e) => return summary.errors.push(e.to_string()),
        };
        let complete = loaded.errors.is_empty();
        summary.errors.extend(loaded.errors.iter().map(|e| e.to_string()));
        let format = loaded.format.unwrap_or(TextFormat::Plain);

        let mut pending = Vec::new();
        let mut has_duplicates = false;
        // Ids this file now validly holds and that are stored (unchanged, or written below).
        let mut kept: BTreeSet<String> = BTreeSet::new();
        for mut doc in loaded.documents {
            doc.metadata
                .extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let hash = self.content_hash(&doc);
            match self.index.document_version(&doc.id) {
                Ok(Some(v)) if v.source != source => summary.errors.push(
                    Error::DuplicateId {
                        path: path.into(),
                        id: doc.id.clone(),
                        other: v.source,
                    }
                    .to_string(),
                ),
                Ok(Some(v)) if v.content_hash == hash => {
                    summary.documents_unchanged += 1;
                    kept.insert(doc.id);
                }
                Ok(version) => {
                    let fp = if self.dedup { simhash(&doc.text) } else { None };
                    match fp.map(|fp| self.near_duplicate(&doc.id, fp)).transpose() {
                        Ok(Some(Some((other, bits)))) => {
                            summary.duplicates.push(format!(
                                "{}: {} is a near-duplicate of {other} ({bits} of 64 fingerprint bits differ); not indexed",
                                path.display(),
                                doc.id
                            ));
                            has_duplicates = true;
                        }
                        Ok(_) => pending.push((doc, hash, version.is_some(), fp)),
                        Err(e) => summary.errors.push(format!("{source}: {e}")),
                    }
                }
                Err(e) => summary.errors.push(format!("{source}: {e}")),
            }
        }
        observer.documents_planned(pending.len());
        let mut failed = false;
        for batch in pending.chunks(self.batch_docs) {
            match self.write_batch(batch, format) {
                Ok(chunks) => {
                    summary.chunks_written += chunks;
                    for (doc, _, existed, _) in batch {
                        if *existed {
                            summary.documents_updated += 1;
                        } else {
                            summary.documents_added += 1;
                        }
                        kept.insert(doc.id.clone());
                    }
                    observer.documents_done(batch.len());
                }
                Err(e) => {
                    summary.errors.push(
                        Error::Index {
                            path: path.into(),
                            source: e,
                        }
                        .to_string(),
                    );
                    failed = true;
                    break;
                }
            }
        }
        let complete = complete && !failed;
        let previous_ids = previous.map(|p| p.doc_ids).unwrap_or_default();
        if complete {
            // Documents that left the file leave every index.
            let gone: Vec<String> = previous_ids.iter().filter(|id| !kept.contains(*id)).cloned().collect();
            if !gone.is_empty() {
                self.forget(&gone);
                match self.index.delete_documents(&gone) {
                    Ok(n) => summary.documents_removed += n,
                    Err(e) => summary.errors.push(format!("{source}: removing documents: {e}")),
                }
            }
        } else {
            // An incomplete pass keeps what the file contributed before and is retried next time.
            kept.extend(previous_ids);
        }
        let record = SourceRecord {
            source: source.to_string(),
            // A file with near-duplicates is looked at again next time: the original may be gone by then.
            file_hash: if complete && !has_duplicates {
                file_hash
            } else {
                String::new()
            },
            doc_ids: kept.into_iter().collect(),
        };
        if let Err(e) = self.index.put_source(record) {
            summary.errors.push(format!("{source}: {e}"));
        }
    }

    fn write_batch(&self, batch: &[Pending], format: TextFormat) -> quarry_core::Result<usize> {
        let chunker = Chunker::new(self.embedder, &self.chunking);
        let mut docs = Vec::with_capacity(batch.len());
        let mut texts = Vec::new();
        for (doc, hash, _, fingerprint) in batch {
            let chunks = chunker.chunk(doc, format);
            texts.extend(chunks.iter().map(|c| c.contextual_text(doc.title.as_deref())));
            docs.push(IndexedDocument {
                document: doc.clone(),
                content_hash: hash.clone(),
                chunks,
                embeddings: vec![],
                fingerprint: *fingerprint,
            });
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut vectors = self.embedder.embed(&refs)?.into_iter();
        let mut total = 0;
        for d in &mut docs {
            d.embeddings = vectors.by_ref().take(d.chunks.len()).collect();
            total += d.chunks.len();
        }
        self.index.put_documents(docs)?;
        Ok(total)
    }

    fn content_hash(&self, doc: &Document) -> String {
        let body = serde_json::to_vec(&(&self.settings_hash, &doc.id, &doc.title, &doc.text, &doc.metadata))
            .unwrap_or_default();
        hex(&Sha256::digest(&body))
    }
}

/// The identifier stored for a file: its canonical path where it exists, so the same file ingested
/// from another working directory is recognised.
/// A path that no longer exists is named through its nearest existing ancestor, so a deleted file maps to
/// the name it was ingested under.
pub fn source_name(p: &Path) -> String {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c.display().to_string();
    }
    let mut missing = Vec::new();
    let mut cur = p;
    while let (Some(parent), Some(name)) = (cur.parent(), cur.file_name()) {
        missing.push(name.to_os_string());
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(mut c) = std::fs::canonicalize(parent) {
            c.extend(missing.iter().rev());
            return c.display().to_string();
        }
        cur = parent;
    }
    p.display().to_string()
}

/// Paths below `root` that a folder sync never reads: hidden files and folders, editor backups and swap
/// files, and downloads still in progress.
pub fn ignored(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.') && name != "." && name != ".."
    }) || path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.ends_with('~')
            || n.starts_with("~$")
            || [".swp", ".swx", ".tmp", ".part", ".crdownload"]
                .iter()
                .any(|e| n.ends_with(e))
    })
}

/// Files below a folder in a stable order; hidden files and folders are skipped.
fn walk(root: &Path, summary: &mut Summary) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let it = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !ignored(root, e.path()));
    for entry in it {
        match entry {
            Ok(e) if e.file_type().is_file() || e.path_is_symlink() => out.push(e.into_path()),
            Ok(_) => {}
            Err(e) => summary
                .errors
                .push(format!("{}: {e}", e.path().unwrap_or(root).display())),
        }
    }
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
