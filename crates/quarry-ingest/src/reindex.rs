//! Re-embedding an index with another model: the copy behind a blue/green switch of embedders.
//!
//! Documents and chunks are copied exactly as they are stored (no source is read again, so a re-index
//! works when the sources have moved or a web site is offline); only the vectors are computed again, with
//! the chunk's contextual text as ingest embeds it. The target is brought in line with the source: documents
//! it already holds with the same content hash are kept (so an interrupted copy continues where it stopped),
//! changed ones are written again and ones the source no longer has are removed.

use std::collections::{BTreeSet, HashMap};

use quarry_core::{Document, Embedder, Error, Index, IndexedDocument, Result};

/// What a re-index did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reindexed {
    /// Documents embedded and written to the target.
    pub written: usize,
    /// Documents the target already held with the same content (an earlier, interrupted copy).
    pub kept: usize,
    /// Documents removed from the target because the source no longer has them.
    pub removed: usize,
    /// Chunks embedded.
    pub chunks: usize,
}

/// Copies every source and document of `from` into `to`, embedding the chunks with `embedder` (the model
/// `to` was opened for). `progress` receives (documents done, documents in total). Writes go in batches of
/// `batch_docs` documents, each atomic, and a source's record is written only after all its documents: a
/// crash leaves `to` consistent and a second call finishes the job. Fails, naming the source, when a listed
/// document or chunk is not stored (the source index disagrees with itself).
pub fn reembed(
    from: &dyn Index,
    to: &dyn Index,
    embedder: &dyn Embedder,
    batch_docs: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<Reindexed> {
    let sources = from.list_sources()?;
    let fingerprints: HashMap<String, u64> = from.fingerprints()?.into_iter().collect();
    let total: usize = sources.iter().map(|s| s.doc_ids.len()).sum();
    let mut done = Reindexed::default();
    let mut pending: Vec<IndexedDocument> = Vec::new();
    let mut count = 0;
    let flush = |pending: &mut Vec<IndexedDocument>, done: &mut Reindexed| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = pending
            .iter()
            .flat_map(|d| d.chunks.iter().map(|c| c.contextual_text(d.document.title.as_deref())))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut vectors = embedder.embed(&refs)?.into_iter();
        for d in pending.iter_mut() {
            d.embeddings = vectors.by_ref().take(d.chunks.len()).collect();
            done.chunks += d.chunks.len();
        }
        done.written += pending.len();
        to.put_documents(std::mem::take(pending))
    };
    let wanted: BTreeSet<&str> = sources
        .iter()
        .flat_map(|s| s.doc_ids.iter().map(String::as_str))
        .collect();
    for record in &sources {
        let before = to.source(&record.source)?;
        for id in &record.doc_ids {
            let stored = from
                .document(id)?
                .ok_or_else(|| Error::invalid(&record.source, format!("document {id} is listed but not stored")))?;
            count += 1;
            if to
                .document_version(id)?
                .is_some_and(|v| v.content_hash == stored.content_hash && v.source == stored.source)
            {
                done.kept += 1;
                progress(count, total);
                continue;
            }
            let mut chunks = Vec::with_capacity(stored.chunk_ids.len());
            for c in &stored.chunk_ids {
                let chunk = from
                    .chunk(*c)?
                    .ok_or_else(|| Error::invalid(&record.source, format!("chunk {c} of {id} is not stored")))?;
                chunks.push(chunk.chunk);
            }
            pending.push(IndexedDocument {
                document: Document {
                    id: stored.id,
                    source: stored.source,
                    title: stored.title,
                    text: stored.text,
                    metadata: stored.metadata,
                },
                content_hash: stored.content_hash,
                chunks,
                embeddings: vec![],
                fingerprint: fingerprints.get(id).copied(),
            });
            if pending.len() >= batch_docs.max(1) {
                flush(&mut pending, &mut done)?;
                progress(count, total);
            }
        }
        flush(&mut pending, &mut done)?;
        progress(count, total);
        // Documents this source had in the target and no source has now.
        if let Some(before) = before {
            let stale: Vec<String> = before
                .doc_ids
                .into_iter()
                .filter(|d| !wanted.contains(d.as_str()))
                .collect();
            if !stale.is_empty() {
                done.removed += to.delete_documents(&stale)?;
            }
        }
        to.put_source(record.clone())?;
    }
    // Sources the target holds and the source index no longer has.
    let keep: BTreeSet<&str> = sources.iter().map(|s| s.source.as_str()).collect();
    for old in to.list_sources()? {
        if !keep.contains(old.source.as_str()) {
            done.removed += to.delete_source(&old.source)?;
        }
    }
    to.flush()?;
    Ok(done)
}
