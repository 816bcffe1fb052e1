//! The embedded index through the real ingest pipeline, with the deterministic hashing embedder.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::path::Path;

use quarry_core::{ChunkingConfig, Embedder, Filter, Index, IndexConfig};
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent, Summary};
use quarry_models::HashEmbedder;

fn embedder() -> HashEmbedder {
    HashEmbedder::new(64)
}

fn open(dir: &Path) -> EmbeddedIndex {
    EmbeddedIndex::open(dir, IndexConfig::default(), Some(embedder().model_id())).unwrap()
}

fn ingest(index: &EmbeddedIndex, paths: &[&Path]) -> Summary {
    let e = embedder();
    let cfg = ChunkingConfig {
        max_tokens: 40,
        overlap_tokens: 5,
    };
    let paths: Vec<_> = paths.iter().map(|p| p.to_path_buf()).collect();
    Ingestor::new(index, &e, cfg).ingest_paths(&paths, &Silent)
}

/// The store, BM25 and HNSW agree: same chunk count everywhere.
fn assert_consistent(index: &EmbeddedIndex) {
    let s = index.stats().unwrap();
    assert_eq!(s.lexical_entries, s.chunks, "BM25 agrees with the store: {s:?}");
    assert_eq!(s.vector_entries, s.chunks, "HNSW agrees with the store: {s:?}");
}

fn lexical_docs(index: &EmbeddedIndex, q: &str) -> Vec<String> {
    index
        .lexical_search(q, None, 50)
        .unwrap()
        .into_iter()
        .map(|h| h.doc_id)
        .collect()
}

#[test]
fn reingest_change_and_delete_keep_every_index_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(
        corpus.join("a.md"),
        "# Apples\nApples are red fruit grown in orchards.\n\n## Storage\nKeep apples cool.\n",
    )
    .unwrap();
    std::fs::write(
        corpus.join("b.txt"),
        "Bananas are yellow and grow in tropical climates.",
    )
    .unwrap();
    std::fs::write(
        corpus.join("c.jsonl"),
        "{\"_id\":\"c1\",\"title\":\"Cherries\",\"text\":\"Cherries are small stone fruit.\"}\n{\"_id\":\"c2\",\"text\":\"Dates grow on palms.\"}\n",
    )
    .unwrap();
    let index = open(&tmp.path().join("data"));
    let s = ingest(&index, &[&corpus]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.files, s.documents_added), (3, 4));
    assert_consistent(&index);
    let chunks_before = index.stats().unwrap().chunks;

    // Unchanged: nothing is written.
    let s = ingest(&index, &[&corpus]);
    assert_eq!(
        (
            s.files_unchanged,
            s.documents_added,
            s.documents_updated,
            s.chunks_written
        ),
        (3, 0, 0, 0)
    );
    assert_eq!(index.stats().unwrap().chunks, chunks_before);

    // A changed file replaces its chunks everywhere; a record removed from a JSONL file goes.
    std::fs::write(corpus.join("b.txt"), "Blueberries are blue and grow on shrubs.").unwrap();
    std::fs::write(
        corpus.join("c.jsonl"),
        "{\"_id\":\"c1\",\"title\":\"Cherries\",\"text\":\"Cherries are small stone fruit.\"}\n",
    )
    .unwrap();
    let s = ingest(&index, &[&corpus]);
    assert_eq!(
        (s.documents_updated, s.documents_unchanged, s.documents_removed),
        (1, 2, 1),
        "{s:?}"
    );
    assert!(
        lexical_docs(&index, "bananas tropical").is_empty(),
        "old chunks are gone from BM25"
    );
    assert!(lexical_docs(&index, "dates palms").is_empty());
    assert_eq!(
        lexical_docs(&index, "blueberries"),
        vec![corpus.join("b.txt").canonicalize().unwrap().display().to_string()]
    );
    let v = embedder()
        .embed_query("Bananas are yellow and grow in tropical climates.")
        .unwrap();
    let top = index.vector_search(&v, None, 10).unwrap();
    assert!(
        top.iter().all(|h| index.chunk(h.chunk_id).unwrap().is_some()),
        "no orphan vectors"
    );
    assert!(index.document("c2").unwrap().is_none());
    assert_consistent(&index);

    // A deleted file leaves every index.
    std::fs::remove_file(corpus.join("a.md")).unwrap();
    let s = ingest(&index, &[&corpus]);
    assert_eq!(s.documents_removed, 1);
    assert!(lexical_docs(&index, "orchards").is_empty());
    assert_eq!(index.stats().unwrap().documents, 2);
    assert_consistent(&index);

    // Reopening finds the same state, with the derived indexes current.
    drop(index);
    let index = open(&tmp.path().join("data"));
    assert_eq!(index.stats().unwrap().documents, 2);
    assert_consistent(&index);
    assert_eq!(lexical_docs(&index, "cherries"), vec!["c1".to_string()]);
}

#[test]
fn bad_input_is_reported_by_file_and_the_rest_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("in");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("good.txt"), "Good text about zebras.").unwrap();
    std::fs::write(corpus.join("empty.txt"), "").unwrap();
    std::fs::write(corpus.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    std::fs::write(
        corpus.join("recs.jsonl"),
        "{\"_id\":\"r1\",\"text\":\"okapi\"}\n{oops}\n{\"_id\":\"r2\",\"text\":\"giraffe\"}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(tmp.path().join("missing-target"), corpus.join("dangling.txt")).unwrap();
    std::fs::write(corpus.join("image.png"), b"\x89PNG\r\n").unwrap();
    let index = open(&tmp.path().join("data"));
    let s = ingest(&index, &[&corpus]);
    let errors = s.errors.join("\n");
    assert_eq!(s.errors.len(), 4, "{errors}");
    assert!(errors.contains("empty.txt: empty file"), "{errors}");
    assert!(errors.contains("latin1.txt: invalid UTF-8 at byte 3"), "{errors}");
    assert!(errors.contains("recs.jsonl:2: invalid JSON record"), "{errors}");
    assert!(errors.contains("dangling.txt: cannot read"), "{errors}");
    assert_eq!(s.skipped.len(), 1, "the PNG is skipped, not an error");
    assert_eq!(s.documents_added, 3, "good.txt, r1 and r2");
    assert_consistent(&index);

    // The JSONL with a bad line is retried next time (its record is incomplete); nothing duplicates.
    let s = ingest(&index, &[&corpus]);
    assert_eq!(s.documents_added, 0);
    assert_eq!(s.errors.len(), 4);
    assert_eq!(index.stats().unwrap().documents, 3);

    // A file that turns bad keeps what it contributed before.
    std::fs::write(corpus.join("good.txt"), b"\xff\xfe").unwrap();
    let s = ingest(&index, &[&corpus]);
    assert!(s.errors.iter().any(|e| e.contains("good.txt: invalid UTF-8")));
    assert_eq!(lexical_docs(&index, "zebras").len(), 1);
    assert_consistent(&index);
}

fn filter_corpus(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("meta.jsonl");
    let mut lines = String::new();
    for i in 0..300 {
        let lang = ["en", "de", "fr"][i % 3];
        let topic = if i % 50 == 7 { "rare" } else { "common" };
        lines.push_str(&format!(
            "{{\"_id\":\"d{i}\",\"text\":\"document {i} about rivers and mountains, item{i}\",\"metadata\":{{\"lang\":\"{lang}\",\"year\":{},\"topic\":\"{topic}\"}}}}\n",
            1990 + i % 30
        ));
    }
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn filters_apply_inside_lexical_and_vector_search() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = filter_corpus(tmp.path());
    let index = open(&tmp.path().join("data"));
    let s = ingest(&index, &[&corpus]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let q = "rivers and mountains";
    let qv = embedder().embed_query(q).unwrap();
    let cases = [
        ("lang=de", 100),
        ("topic=rare", 6),
        ("year>=2015", 50),
        ("year=1990..1994", 50),
        ("lang=en|fr", 200),
    ];
    for (expr, matching) in cases {
        let f = Filter::parse(expr).unwrap();
        let doc_ok = |id: &str| {
            let d = index.document(id).unwrap().unwrap();
            f.matches(&d.metadata)
        };
        let k = 10;
        let lex = index.lexical_search(q, Some(&f), k).unwrap();
        let vec = index.vector_search(&qv, Some(&f), k).unwrap();
        for hits in [&lex, &vec] {
            assert_eq!(hits.len(), k.min(matching), "{expr}: top-k of the matching set");
            assert!(
                hits.iter().all(|h| doc_ok(&h.doc_id)),
                "{expr}: only matching documents"
            );
        }
        // The vector results equal exact search over the matching set.
        let mut exact: Vec<(f32, String)> = (0..300)
            .map(|i| format!("d{i}"))
            .filter(|id| doc_ok(id))
            .map(|id| {
                let d = index.document(&id).unwrap().unwrap();
                let v = embedder()
                    .embed(&[&index
                        .chunk(d.chunk_ids[0])
                        .unwrap()
                        .unwrap()
                        .chunk
                        .contextual_text(None)])
                    .unwrap();
                (v[0].iter().zip(&qv).map(|(a, b)| a * b).sum::<f32>(), id)
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let best = exact[0].0;
        assert!(
            (vec[0].score - best).abs() < 1e-5,
            "{expr}: best filtered vector hit is the exact best"
        );
    }
    // A filter that matches nothing returns nothing, not an error.
    let none = Filter::parse("lang=xx").unwrap();
    assert!(index.lexical_search(q, Some(&none), 5).unwrap().is_empty());
    assert!(index.vector_search(&qv, Some(&none), 5).unwrap().is_empty());
}

#[test]
fn stale_or_missing_derived_indexes_are_rebuilt_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = filter_corpus(tmp.path());
    let data = tmp.path().join("data");
    let before = {
        let index = open(&data);
        ingest(&index, &[&corpus]);
        index.lexical_search("item42 rivers", None, 3).unwrap()
    };
    // Lose both derived indexes, as a crash before they were written would.
    std::fs::remove_file(data.join("vectors.hnsw")).unwrap();
    std::fs::remove_dir_all(data.join("bm25")).unwrap();
    let index = open(&data);
    assert_consistent(&index);
    assert_eq!(index.stats().unwrap().chunks, 300);
    let after = index.lexical_search("item42 rivers", None, 3).unwrap();
    assert_eq!(after[0].doc_id, "d42");
    let scores = |h: &[quarry_core::Hit]| h.iter().map(|h| (h.score * 1e4).round() as i64).collect::<Vec<_>>();
    assert_eq!(scores(&after), scores(&before), "same BM25 scores after the rebuild");
    // A truncated graph file is detected, not trusted.
    drop(index);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(data.join("vectors.hnsw"))
        .unwrap();
    f.set_len(100).unwrap();
    let index = open(&data);
    assert_consistent(&index);
}

#[test]
fn a_store_built_with_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = filter_corpus(tmp.path());
    let data = tmp.path().join("data");
    ingest(&open(&data), &[&corpus]);
    let err = EmbeddedIndex::open(&data, IndexConfig::default(), Some("other-model@123"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("built with model hash-64"), "{err}");
    let idx = open(&data);
    let err = idx.vector_search(&[0.0; 3], None, 5).unwrap_err().to_string();
    assert!(err.contains("dimension mismatch"), "{err}");
}
