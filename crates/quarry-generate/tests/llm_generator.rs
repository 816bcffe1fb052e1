//! `LlmGenerator` with a scripted model (prompt budget, citations, verification, abstention) and
//! with the real local model (SmolLM2 from scripts/setup.sh) end to end.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use quarry_core::{
    Chunk, CitationIssue, Embedder, Generator, GeneratorConfig, LanguageModel, Passage, Sampling, StoredChunk,
};
use quarry_generate::LlmGenerator;
use quarry_models::{HashEmbedder, ScriptedModel};

const DOC1: &str = "Scurvy. Scurvy is caused by a lack of vitamin C in the diet. Sailors on long voyages \
                    suffered from it until citrus fruit was carried on board. Limes were issued by the Royal Navy.";
const DOC2: &str = "The Eiffel Tower. The Eiffel Tower was completed in Paris in 1889 for the World's Fair. \
                    It is 330 metres tall.";

fn passage(n: usize, doc: &str, start: usize, end: usize, score: f32) -> Passage {
    let text: String = doc.chars().skip(start).take(end - start).collect();
    Passage {
        n,
        score,
        expanded: None,
        chunk: StoredChunk {
            id: n as u64,
            source: format!("doc{n}.md"),
            title: Some(format!("Doc {n}")),
            chunk: Chunk {
                doc_id: format!("doc{n}"),
                ord: 0,
                tokens: text.split_whitespace().count(),
                text,
                start,
                end,
                section: vec!["Facts".into()],
                page: Some(n as u32),
                context: None,
                parent: None,
            },
        },
    }
}

fn passages() -> Vec<Passage> {
    vec![
        passage(1, DOC1, 0, DOC1.chars().count(), 0.9),
        passage(2, DOC2, 0, DOC2.chars().count(), 0.4),
    ]
}

fn generator(reply: &str, cfg: GeneratorConfig) -> (LlmGenerator, Arc<ScriptedModel>) {
    let model = Arc::new(ScriptedModel::new(reply, 4096));
    let g = LlmGenerator::new(model.clone(), None, cfg);
    (g, model)
}

#[test]
fn cited_sentences_are_verified_and_mapped_to_document_spans() {
    let reply = "Scurvy is caused by a lack of vitamin C [1]. The Eiffel Tower was completed in 1889 [1]. \
                 Limes were issued by the Royal Navy [1].";
    let (g, model) = generator(reply, GeneratorConfig::default());
    let mut streamed = String::new();
    let a = g
        .answer_streaming("What causes scurvy?", &passages(), &mut |p| {
            streamed.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(streamed.trim(), a.answer);
    assert!(!a.abstained);
    // The prompt numbered both sources with title and location, and asked for citations.
    let prompt = model.prompts.lock().unwrap()[0].clone();
    assert!(prompt.contains("[1] Doc 1") && prompt.contains("[2] Doc 2"), "{prompt}");
    assert!(
        prompt.contains("cite") && prompt.contains("Question: What causes scurvy?"),
        "{prompt}"
    );

    assert_eq!(a.sentences.len(), 3);
    assert!(a.sentences[0].supported && a.sentences[2].supported);
    assert_eq!(
        a.sentences[1].issue,
        Some(CitationIssue::WrongSource {
            cited: vec![1],
            supported_by: 2
        })
    );
    assert!((a.supported_share().unwrap() - 2.0 / 3.0).abs() < 1e-6);
    // One citation for source 1, spanning the sentence that supports it best, in document offsets.
    assert_eq!(a.citations.len(), 1);
    let c = &a.citations[0];
    assert_eq!(
        (c.doc_id.as_str(), c.page, c.section.as_slice()),
        ("doc1", Some(1), &["Facts".to_string()][..])
    );
    let span: String = DOC1.chars().skip(c.start).take(c.end - c.start).collect();
    assert_eq!(span, c.text);
    assert!(
        c.text.contains("vitamin C") || c.text.contains("Royal Navy"),
        "{}",
        c.text
    );
    let usage = a.usage.unwrap();
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert!(a.timings.total_ms.unwrap() >= a.timings.generate_ms.unwrap());
}

#[test]
fn weak_evidence_unsupported_answers_and_refusals_abstain() {
    // Retrieval scores below the threshold: no model call at all.
    let cfg = GeneratorConfig {
        min_retrieval_score: 0.95,
        ..GeneratorConfig::default()
    };
    let (g, model) = generator("anything", cfg);
    let a = g.answer("What causes scurvy?", &passages()).unwrap();
    assert!(a.abstained && a.answer.starts_with("The documents do not contain the answer."));
    assert!(a.answer.contains("[1] doc1.md"), "{}", a.answer);
    assert_eq!(a.citations.len(), 2);
    assert!(model.prompts.lock().unwrap().is_empty());

    // The model's sentences find no support: the draft is kept, the answer abstains.
    let cfg = GeneratorConfig {
        min_supported: 0.5,
        ..GeneratorConfig::default()
    };
    let (g, _) = generator("Quantum computers factor large primes quickly [1].", cfg);
    let a = g.answer("What causes scurvy?", &passages()).unwrap();
    assert!(a.abstained);
    assert_eq!(
        a.draft.as_deref(),
        Some("Quantum computers factor large primes quickly [1].")
    );
    assert_eq!(a.sentences[0].issue, Some(CitationIssue::Unsupported));

    // The model says the sources do not hold the answer.
    let (g, _) = generator("The documents do not contain the answer.", GeneratorConfig::default());
    assert!(g.answer("Who won the 1998 World Cup?", &passages()).unwrap().abstained);
    // Nothing retrieved.
    let (g, _) = generator("x", GeneratorConfig::default());
    assert!(g.answer("Anything?", &[]).unwrap().abstained);
}

#[test]
fn a_window_too_small_for_the_question_is_a_clear_error() {
    let model = Arc::new(ScriptedModel::new("x", 300));
    let g = LlmGenerator::new(model, None, GeneratorConfig::default());
    let e = g.answer("What causes scurvy?", &passages()).unwrap_err().to_string();
    assert!(e.contains("window (300 tokens)") && e.contains("max_tokens"), "{e}");
}

fn doc_words(n: usize, seed: usize) -> String {
    (0..n)
        .map(|i| format!("w{}{}", (i * 7 + seed) % 97, if i % 12 == 11 { "." } else { "" }))
        .collect::<Vec<_>>()
        .join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever the mix of passage sizes, the prompt plus the reserved answer never exceeds the
    /// window, and the best passage is always among the sources.
    #[test]
    fn prompt_fits_the_window_and_keeps_the_best_passage(
        sizes in prop::collection::vec(1usize..1500, 1..12),
        window in 420usize..3000,
        max_tokens in 16usize..128,
        best in 0usize..12,
    ) {
        let docs: Vec<String> = sizes.iter().enumerate().map(|(i, &n)| doc_words(n, i)).collect();
        let best = best % docs.len();
        let ps: Vec<Passage> = docs.iter().enumerate().map(|(i, d)| {
            let mut p = passage(i + 1, d, 0, d.chars().count(), if i == best { 1.0 } else { 0.5 - i as f32 * 0.01 });
            p.chunk.chunk.doc_id = format!("doc{i}");
            p
        }).collect();
        let model = Arc::new(ScriptedModel::new("ok", window));
        let cfg = GeneratorConfig {
            sampling: Sampling { max_tokens, ..Sampling::default() },
            max_context_tokens: 100_000,
            ..GeneratorConfig::default()
        };
        let g = LlmGenerator::new(model.clone(), None, cfg);
        let (ctx, messages) = g.build_prompt("What is w3?", &ps).unwrap();
        prop_assert!(model.prompt_tokens(&messages).unwrap() + max_tokens <= window);
        prop_assert!(ctx.sources.iter().any(|s| s.doc_id == format!("doc{best}")), "best passage missing");
    }
}

#[test]
fn the_local_model_answers_from_the_sources_and_streams() {
    let path = quarry_models::resolve_gguf("SmolLM2-135M-Instruct", None)
        .unwrap_or_else(|e| panic!("needs scripts/setup.sh: {e}"));
    let model = Arc::new(quarry_models::LocalModel::load(&path, &Default::default()).unwrap());
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));
    let cfg = GeneratorConfig {
        sampling: Sampling {
            max_tokens: 48,
            ..Sampling::default()
        },
        ..GeneratorConfig::default()
    };
    let g = LlmGenerator::new(model.clone(), Some(embedder), cfg);
    let (_, messages) = g.build_prompt("What causes scurvy?", &passages()).unwrap();
    assert!(model.prompt_tokens(&messages).unwrap() + 48 <= model.context_window());
    let mut pieces = 0;
    let a = g
        .answer_streaming("What causes scurvy?", &passages(), &mut |_| {
            pieces += 1;
            true
        })
        .unwrap();
    let text = a.draft.as_deref().unwrap_or(&a.answer);
    assert!(!text.is_empty());
    assert!(pieces > 1, "the answer arrived in pieces");
    assert!(!a.sentences.is_empty());
    let usage = a.usage.unwrap();
    assert!(usage.completion_tokens > 0 && usage.completion_tokens <= 48);
    assert!(a.timings.first_token_ms.is_some());
}
