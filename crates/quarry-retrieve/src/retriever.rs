//! One entry point for search: BM25, dense or hybrid, with metadata filters, over any `Index`.

use std::sync::Arc;
use std::time::Instant;

use quarry_core::{
    Embedder, Expanded, Filter, Fusion, Hit, Index, Passage, Reranker, Result, RetrievalConfig, SearchMode,
};
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
    /// Cross-encoder rescoring of the top candidates (0 without a reranker).
    pub rerank_ms: f64,
    pub total_ms: f64,
}

pub struct Retriever {
    index: Arc<dyn Index>,
    embedder: Arc<dyn Embedder>,
    cfg: RetrievalConfig,
    /// A second stage: the first `usize` candidates are rescored by the reranker.
    reranker: Option<(Arc<dyn Reranker>, usize)>,
}

impl Retriever {
    pub fn new(index: Arc<dyn Index>, embedder: Arc<dyn Embedder>, cfg: RetrievalConfig) -> Self {
        Retriever {
            index,
            embedder,
            cfg,
            reranker: None,
        }
    }

    /// Adds a reranking stage: the top `top_n` first-stage candidates are rescored by `reranker` and
    /// reordered; hits carry the reranker's scores. When more than `top_n` hits are asked for, the rest follow
    /// in first-stage order.
    pub fn with_reranker(mut self, reranker: Arc<dyn Reranker>, top_n: usize) -> Self {
        self.reranker = Some((reranker, top_n.max(1)));
        self
    }

    pub fn reranker(&self) -> Option<&Arc<dyn Reranker>> {
        self.reranker.as_ref().map(|(r, _)| r)
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
        let wanted = match &self.reranker {
            Some((_, n)) => req.top_k.max(*n),
            None => req.top_k,
        };
        let depth = match req.mode {
            SearchMode::Hybrid => self.cfg.candidates.max(wanted),
            _ => wanted,
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
        if let Some((reranker, n)) = &self.reranker {
            let s = Instant::now();
            // The first `n` are rescored; deeper candidates (when more are asked for) follow in their
            // first-stage order, scored below every reranked hit.
            hits.truncate(req.top_k.max(*n));
            let tail = hits.split_off((*n).min(hits.len()));
            hits = self.rerank(reranker.as_ref(), req.query, hits)?;
            let floor = hits.last().map_or(0.0, |h| h.score);
            hits.extend(tail.into_iter().enumerate().map(|(i, h)| Hit {
                score: floor - 1.0 - i as f32 * 1e-3,
                ..h
            }));
            t.rerank_ms = ms(s);
        }
        hits.truncate(req.top_k);
        t.total_ms = ms(start);
        Ok((hits, t))
    }

    /// Rescores hits with the reranker (on each chunk's text as it was embedded: title, section, text) and
    /// sorts them by the new scores; ties keep the first stage's order.
    fn rerank(&self, reranker: &dyn Reranker, query: &str, hits: Vec<Hit>) -> Result<Vec<Hit>> {
        let mut texts = Vec::with_capacity(hits.len());
        let mut kept = Vec::with_capacity(hits.len());
        for h in hits {
            if let Some(c) = self.index.chunk(h.chunk_id)? {
                texts.push(c.chunk.contextual_text(c.title.as_deref()));
                kept.push(h);
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let scores = reranker.score(query, &refs)?;
        let mut rescored: Vec<(usize, Hit)> = kept
            .into_iter()
            .zip(scores)
            .map(|(h, score)| Hit { score, ..h })
            .enumerate()
            .collect();
        rescored.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
        Ok(rescored.into_iter().map(|(_, h)| h).collect())
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
