//! Small-to-big retrieval: a small chunk matches, its section is what the generator gets.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use quarry_core::{ChunkingConfig, Embedder, IndexConfig, RetrievalConfig, SearchMode};
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent};
use quarry_models::HashEmbedder;
use quarry_retrieve::{Retriever, SearchRequest};

#[test]
fn matching_chunks_expand_to_their_section_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("guide.md");
    let mut md = String::from("# Guide\n\n## Boilers\n\n");
    for i in 0..6 {
        md.push_str(&format!(
            "Boiler note {i}: the pressure valve must be checked every month by a technician.\n\n"
        ));
    }
    md.push_str("The reset switch sits behind the lower panel.\n\n## Gardens\n\nRoses need pruning in early spring.\n");
    std::fs::write(&file, &md).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));
    let index = Arc::new(
        EmbeddedIndex::open(
            &tmp.path().join("data"),
            IndexConfig::default(),
            Some(embedder.model_id()),
        )
        .unwrap(),
    );
    let cfg = ChunkingConfig {
        max_tokens: 30,
        overlap_tokens: 0,
    };
    let s = Ingestor::new(index.as_ref(), embedder.as_ref(), cfg).ingest_paths(&[file], &Silent);
    assert!(s.errors.is_empty(), "{:?}", s.errors);

    let request = |expand: bool| {
        let cfg = RetrievalConfig {
            expand_to_parent: expand,
            ..Default::default()
        };
        let r = Retriever::new(index.clone(), embedder.clone(), cfg);
        let hits = r
            .search(&SearchRequest {
                query: "pressure valve reset switch",
                mode: SearchMode::Bm25,
                top_k: 5,
                filter: None,
                per_document: false,
            })
            .unwrap();
        r.passages(&hits).unwrap()
    };
    let small = request(false);
    assert!(small.len() >= 2, "several chunks of the section match");
    assert!(small.iter().all(|p| p.expanded.is_none()));
    let big = request(true);
    // The matching chunks of the Boilers section merge into one passage: the whole section.
    let boilers: Vec<_> = big
        .iter()
        .filter(|p| p.chunk.chunk.section.last().map(String::as_str) == Some("Boilers"))
        .collect();
    assert_eq!(boilers.len(), 1, "{big:#?}");
    let e = boilers[0].expanded.as_ref().unwrap();
    assert!(
        e.text.starts_with("## Boilers") && e.text.ends_with("lower panel."),
        "{:?}",
        e.text
    );
    let chars: Vec<char> = md.chars().collect();
    assert_eq!(
        chars[e.start..e.end].iter().collect::<String>(),
        e.text,
        "offsets point into the document"
    );
    assert_eq!(boilers[0].evidence().1, e.start);
}
