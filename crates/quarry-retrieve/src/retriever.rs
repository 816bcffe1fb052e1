//! One entry point for search: BM25, dense or hybrid, with metadata filters, over any `Index`.

use std::sync::Arc;
use std::time::Instant;

use quarry_core::{Embedder, Expanded, Filter, Fusion, Hit, Index, Passage, Result, RetrievalConfig, SearchMode};
use serde::Serialize;

use crate::fusion::{collapse_documents, rrf, weighted, FuseBy};

#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    pub query: &'a str,
    pub mode: SearchMode,
    pub top_k: usize,
    pub filter: Option<&'a Filter>,
    /// Return at most one hit (the best chunk) per document.
    pub per_document: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SearchTimings {
    pub embed_ms: f64,
    pub lexical_ms: f64,
    pub vector_ms: f64,
    pub total_ms: f64,
}

pub struct Retriever {
    index: Arc<dyn Index>,
    embedder: Arc<dyn Embedder>,
    cfg: RetrievalConfig,
}

impl Retriever {
    pub fn new(index: Arc<dyn Index>, embedder: Arc<dyn Embedder>, cfg: RetrievalConfig) -> Self {
        Retriever { index, embedder, cfg }
    }

    pub fn index(&self) -> &Arc<dyn Index> {
        &self.index
    }

    pub fn config(&self) -> &RetrievalConfig {
        &self.cfg
    }

    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        self.search_timed(req).map(|(hits, _)| hits)
    }

    pub fn search_timed(&self, req: &SearchRequest) -> Result<(Vec<Hit>, SearchTimings)> {
        let start = Instant::now();
        let mut t = SearchTimings::default();
        // Per-document results need more chunks than documents; fused lists need depth on both sides.
        let depth = match req.mode {
            SearchMode::Hybrid => self.cfg.candidates.max(req.top_k),
            _ => req.top_k,
        };
        let depth = if req.per_document { depth * 3 } else { depth };
        let lexical = |t: &mut SearchTimings| -> Result<Vec<Hit>> {
            let s = Instant::now();
            let hits = self.index.lexical_search(req.query, req.filter, depth)?;
            t.lexical_ms = ms(s);
            Ok(if req.per_document {
                collapse_documents(hits)
            } else {
                hits
            })
        };
        let dense = |t: &mut SearchTimings| -> Result<Vec<Hit>> {
            let s = Instant::now();
            let v = self.embedder.embed_query(req.query)?;
            t.embed_ms = ms(s);
            let s = Instant::now();
            let hits = self.index.vector_search(&v, req.filter, depth)?;
            t.vector_ms = ms(s);
            Ok(if req.per_document {
                collapse_documents(hits)
            } else {
                hits
            })
        };
        let mut hits = match req.mode {
            SearchMode::Bm25 => lexical(&mut t)?,
            SearchMode::Dense => dense(&mut t)?,
            SearchMode::Hybrid => {
                let (l, d) = (lexical(&mut t)?, dense(&mut t)?);
                let n = self.cfg.candidates;
                let (l, d) = (&l[..l.len().min(n)], &d[..d.len().min(n)]);
                let by = if req.per_document {
                    FuseBy::Document
                } else {
                    FuseBy::Chunk
                };
                match self.cfg.fusion {
                    Fusion::Rrf => rrf(&[l, d], self.cfg.rrf_k, by),
                    Fusion::Weighted => weighted(l, d, self.cfg.dense_weight, by),
                }
            }
        };
        hits.truncate(req.top_k);
        t.total_ms = ms(start);
        Ok((hits, t))
    }

    /// Hits with their stored chunks, numbered from 1 in rank order, as evidence for a generator.
    pub fn passages(&self, hits: &[Hit]) -> Result<Vec<Passage>> {
        let mut out: Vec<Passage> = Vec::with_capacity(hits.len());
        let mut spans = std::collections::HashSet::new();
        for h in hits {
            let Some(chunk) = self.index.chunk(h.chunk_id)? else {
                continue;
            };
            let mut expanded = None;
            if self.cfg.expand_to_parent {
                if let Some((start, end)) = chunk.chunk.parent {
                    // Two chunks of one section become one passage, ranked where the better one was.
                    if !spans.insert((chunk.chunk.doc_id.clone(), start, end)) {
                        continue;
                    }
                    if let Some(doc) = self.index.document(&chunk.chunk.doc_id)? {
                        let text = quarry_core::text::char_slice(&doc.text, start, end).to_string();
                        expanded = Some(Expanded { text, start, end });
                    }
                }
            }
            out.push(Passage {
                n: out.len() + 1,
                chunk,
                score: h.score,
                expanded,
            });
        }
        Ok(out)
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
