//! The reranking stage: the first stage's top-N candidates are rescored and reordered.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use quarry_core::{ChunkingConfig, Embedder, IndexConfig, Reranker, RetrievalConfig, SearchMode};
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent};
use quarry_models::HashEmbedder;
use quarry_retrieve::{Retriever, SearchRequest};

/// Scores a passage by how often it says "urgent" (and records what it was asked to score).
struct Urgency(std::sync::Mutex<Vec<usize>>);

impl Reranker for Urgency {
    fn model_id(&self) -> &str {
        "urgency"
    }
    fn score(&self, _query: &str, passages: &[&str]) -> quarry_core::Result<Vec<f32>> {
        self.0.lock().unwrap().push(passages.len());
        Ok(passages.iter().map(|p| p.matches("urgent").count() as f32).collect())
    }
}

#[test]
fn reranker_pulls_a_deeper_candidate_to_the_top() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    // BM25 prefers the notes that repeat "valve"; the urgent one says it once.
    for (name, text) in [
        ("a.txt", "valve valve valve check the valve"),
        ("b.txt", "valve valve maintenance of the valve"),
        ("c.txt", "valve valve inspection"),
        ("d.txt", "the valve is leaking, urgent urgent repair"),
        ("e.txt", "garden roses"),
    ] {
        std::fs::write(docs.join(name), text).unwrap();
    }
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(32));
    let index = Arc::new(
        EmbeddedIndex::open(
            &tmp.path().join("data"),
            IndexConfig::default(),
            Some(embedder.model_id()),
        )
        .unwrap(),
    );
    let s = Ingestor::new(index.as_ref(), embedder.as_ref(), ChunkingConfig::default()).ingest_paths(&[docs], &Silent);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let req = SearchRequest {
        query: "valve",
        mode: SearchMode::Bm25,
        top_k: 2,
        filter: None,
        per_document: true,
    };
    let plain = Retriever::new(index.clone(), embedder.clone(), RetrievalConfig::default());
    let first_stage = plain.search(&req).unwrap();
    assert!(
        first_stage.iter().all(|h| !h.doc_id.ends_with("d.txt")),
        "{first_stage:?}"
    );

    let urgency = Arc::new(Urgency(Default::default()));
    let reranked =
        Retriever::new(index.clone(), embedder.clone(), RetrievalConfig::default()).with_reranker(urgency.clone(), 10);
    let (hits, timings) = reranked.search_timed(&req).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].doc_id.ends_with("d.txt"), "{hits:?}");
    assert_eq!(hits[0].score, 2.0, "hits carry the reranker's score");
    // All four documents that mention the valve were candidates, not just the top 2.
    assert_eq!(urgency.0.lock().unwrap().as_slice(), &[4]);
    assert!(timings.rerank_ms <= timings.total_ms);

    // With top_n below top_k, only the first top_n are rescored; the rest follow, scored below them.
    let narrow = Retriever::new(index, embedder, RetrievalConfig::default()).with_reranker(urgency.clone(), 1);
    let hits = narrow.search(&req).unwrap();
    assert_eq!(urgency.0.lock().unwrap().last(), Some(&1));
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].doc_id, first_stage[0].doc_id);
    assert_eq!(hits[1].doc_id, first_stage[1].doc_id);
    assert!(hits[1].score < hits[0].score);
}
