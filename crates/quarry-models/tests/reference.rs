//! The real model against golden vectors from Python sentence-transformers
//! (scripts/reference_embeddings.py wrote tests/data/minilm_reference.json).

#![allow(clippy::unwrap_used)] // test helpers panic on setup failures by design

use quarry_core::{Embedder, ModelConfig, TokenCounter};
use quarry_models::SentenceEmbedder;

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn load() -> SentenceEmbedder {
    SentenceEmbedder::from_config(&ModelConfig {
        batch_size: 3,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("the model test needs the real model (run scripts/setup.sh): {e}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers_and_batching_does_not_change_vectors() {
    let reference: Reference =
        serde_json::from_str(include_str!("data/minilm_reference.json")).expect("reference file parses");
    let model = load();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.max_tokens(), 256);
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let batched = model.embed(&texts).unwrap();
    for (i, (got, want)) in batched.iter().zip(&reference.embeddings).enumerate() {
        let c = cosine(got, want);
        assert!(c >= 0.9999, "text {i} ({:?}): cosine {c}", texts[i]);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        let single = model.embed(&[texts[i]]).unwrap().remove(0);
        assert!(cosine(&single, got) > 0.99999, "batch != single for text {i}");
    }
    // The long text really was truncated (it has well over 256 word pieces).
    assert!(model.count_tokens(texts[texts.len() - 1]) > 256);
}
