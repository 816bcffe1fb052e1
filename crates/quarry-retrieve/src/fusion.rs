//! Combining ranked lists: reciprocal rank fusion and weighted min-max-normalised scores.
//! Both are deterministic: ties are broken by chunk id.

use std::collections::HashMap;

use quarry_core::Hit;

/// What fusion identifies hits by: the chunk, or (for per-document results) the document, so a
/// document found through different chunks by BM25 and dense search is credited by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuseBy {
    Chunk,
    Document,
}

/// Accumulates fused scores per key, remembering the first hit seen for each key.
struct Acc {
    by: FuseBy,
    scores: HashMap<String, (f32, Hit)>,
}

impl Acc {
    fn new(by: FuseBy) -> Self {
        Acc {
            by,
            scores: HashMap::new(),
        }
    }

    fn add(&mut self, h: &Hit, score: f32) {
        let key = match self.by {
            FuseBy::Chunk => h.chunk_id.to_string(),
            FuseBy::Document => h.doc_id.clone(),
        };
        self.scores.entry(key).or_insert_with(|| (0.0, h.clone())).0 += score;
    }

    fn finish(self) -> Vec<Hit> {
        let mut out: Vec<Hit> = self.scores.into_values().map(|(score, h)| Hit { score, ..h }).collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
        out
    }
}

/// Reciprocal rank fusion (Cormack et al., 2009): score = Σ over lists of 1 / (k + rank), rank from 1.
/// Lists must hold each key once (collapse them first when fusing by document).
pub fn rrf(lists: &[&[Hit]], k: f32, by: FuseBy) -> Vec<Hit> {
    let mut acc = Acc::new(by);
    for list in lists {
        for (rank, h) in list.iter().enumerate() {
            acc.add(h, 1.0 / (k + rank as f32 + 1.0));
        }
    }
    acc.finish()
}

/// `w`·dense + (1 − `w`)·bm25, each min-max normalised over its own list; a hit missing from a list
/// contributes 0 for it.
pub fn weighted(bm25: &[Hit], dense: &[Hit], w: f32, by: FuseBy) -> Vec<Hit> {
    let mut acc = Acc::new(by);
    for (list, weight) in [(bm25, 1.0 - w), (dense, w)] {
        let (lo, hi) = list.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| {
            (lo.min(h.score), hi.max(h.score))
        });
        for h in list {
            let norm = if hi > lo { (h.score - lo) / (hi - lo) } else { 1.0 };
            acc.add(h, weight * norm);
        }
    }
    acc.finish()
}

/// Keeps the best hit of each document, in order (the list must be sorted best first).
pub fn collapse_documents(hits: Vec<Hit>) -> Vec<Hit> {
    let mut seen = std::collections::HashSet::new();
    hits.into_iter().filter(|h| seen.insert(h.doc_id.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hit(id: u64, score: f32) -> Hit {
        Hit {
            chunk_id: id,
            doc_id: format!("d{}", id / 10),
            score,
        }
    }

    #[test]
    fn rrf_hand_computed() {
        let a = [hit(1, 9.0), hit(2, 8.0), hit(3, 7.0)];
        let b = [hit(3, 0.9), hit(1, 0.8)];
        let f = rrf(&[&a, &b], 60.0, FuseBy::Chunk);
        let ids: Vec<u64> = f.iter().map(|h| h.chunk_id).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!((f[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-7);
        assert!((f[1].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
    }

    #[test]
    fn weighted_hand_computed() {
        let bm25 = [hit(1, 10.0), hit(2, 5.0), hit(3, 0.0)];
        let dense = [hit(3, 0.9), hit(2, 0.5)];
        let f = weighted(&bm25, &dense, 0.25, FuseBy::Chunk);
        let get = |id| f.iter().find(|h| h.chunk_id == id).unwrap().score;
        assert!((get(1) - 0.75).abs() < 1e-6);
        assert!((get(2) - (0.75 * 0.5 + 0.0)).abs() < 1e-6);
        assert!((get(3) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn fusing_by_document_credits_a_document_found_through_different_chunks() {
        // Document 1 is found by BM25 through chunk 11 and by dense search through chunk 12.
        let bm25 = [hit(11, 9.0), hit(21, 8.0)];
        let dense = [hit(12, 0.9), hit(31, 0.8)];
        let by_doc = rrf(&[&bm25, &dense], 60.0, FuseBy::Document);
        assert_eq!(by_doc.len(), 3, "one hit per document");
        assert_eq!(by_doc[0].doc_id, "d1");
        assert!((by_doc[0].score - 2.0 / 61.0).abs() < 1e-7);
        let by_chunk = rrf(&[&bm25, &dense], 60.0, FuseBy::Chunk);
        assert_eq!(by_chunk.len(), 4);
        let w = weighted(&bm25, &dense, 0.5, FuseBy::Document);
        assert_eq!(w.iter().filter(|h| h.doc_id == "d1").count(), 1);
    }

    #[test]
    fn collapse_keeps_first_hit_per_document() {
        let hits = vec![hit(11, 3.0), hit(12, 2.0), hit(21, 1.5), hit(13, 1.0)];
        let ids: Vec<u64> = collapse_documents(hits).iter().map(|h| h.chunk_id).collect();
        assert_eq!(ids, [11, 21]);
    }

    proptest! {
        #[test]
        fn rrf_is_deterministic_and_order_free(
            a in proptest::collection::vec(0u64..50, 0..30),
            b in proptest::collection::vec(0u64..50, 0..30),
            k in 0.0f32..100.0,
        ) {
            let dedup = |v: Vec<u64>| { let mut s = std::collections::HashSet::new(); v.into_iter().filter(|x| s.insert(*x)).map(|x| hit(x, 1.0)).collect::<Vec<_>>() };
            let (a, b) = (dedup(a), dedup(b));
            let f1 = rrf(&[&a, &b], k, FuseBy::Chunk);
            let f2 = rrf(&[&b, &a], k, FuseBy::Chunk);
            prop_assert_eq!(&f1, &f2);
            prop_assert_eq!(&f1, &rrf(&[&a, &b], k, FuseBy::Chunk));
            let mut all: Vec<u64> = a.iter().chain(&b).map(|h| h.chunk_id).collect();
            all.sort(); all.dedup();
            prop_assert_eq!(f1.len(), all.len());
            prop_assert!(f1.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}
