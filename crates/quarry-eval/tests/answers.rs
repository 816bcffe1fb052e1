//! Answer evaluation end to end on a small corpus, with a rule-based judge whose verdicts are known in
//! advance: the RAGAS metrics come out as defined, the judge cache makes a re-run free, and a judge that
//! returns garbage is counted and left out instead of producing a number.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use quarry_core::{
    Completion, Config, Embedder, FinishReason, Generator, LanguageModel, Message, Result, Sampling, TokenCounter,
    Usage,
};
use quarry_eval::answers::{evaluate_answers, AnswerEvalOptions};
use quarry_eval::evalset::EvalSet;
use quarry_eval::judge::{Judge, JudgeCache};
use quarry_eval::ragas::{Ragas, Sample, Statements, Which};
use quarry_generate::ExtractiveGenerator;
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent};
use quarry_models::HashEmbedder;
use quarry_retrieve::Retriever;

/// A judge that follows simple, checkable rules. `garbage` makes every reply unreadable.
struct RuleJudge {
    garbage: bool,
    calls: AtomicUsize,
}

fn content_words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 3)
        .map(str::to_lowercase)
        .collect()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let a = s.find(start).map_or(0, |i| i + start.len());
    let b = s[a..].find(end).map_or(s.len(), |i| a + i);
    &s[a..b]
}

impl TokenCounter for RuleJudge {
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

impl LanguageModel for RuleJudge {
    fn model_id(&self) -> &str {
        if self.garbage {
            "rule-judge-garbage"
        } else {
            "rule-judge"
        }
    }
    fn context_window(&self) -> usize {
        4096
    }
    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        Ok(messages.iter().map(|m| self.count_tokens(&m.content)).sum())
    }
    fn chat(&self, messages: &[Message], _: &Sampling, _: &mut dyn FnMut(&str) -> bool) -> Result<Completion> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let user = &messages[1].content;
        let text = if self.garbage {
            "banana split, thank you".to_string()
        } else if user.contains("Rewrite the answer as a list") {
            let answer = between(user, "Answer: ", "\n\nRewrite");
            quarry_eval::ragas::sentences(answer)
                .iter()
                .map(|s| format!("- {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        } else if user.contains("Can the statement be directly inferred") {
            let context = between(user, "Text:\n", "\n\nStatement: ").to_lowercase();
            let statement = between(user, "Statement: ", "\n\nCan the statement");
            let ok = content_words(statement).iter().all(|w| context.contains(w.as_str()));
            (if ok { "Yes." } else { "No." }).to_string()
        } else if user.contains("Write one question") {
            "What causes scurvy?".to_string()
        } else if user.contains("noncommittal") {
            (if user.contains("do not contain") { "yes" } else { "no" }).to_string()
        } else if user.contains("useful in arriving") {
            let context = between(user, "Text:\n", "\n\nQuestion: ").to_lowercase();
            let reference = between(user, "\nAnswer: ", "\n\nWas the text");
            let ok = content_words(reference).iter().any(|w| context.contains(w.as_str()));
            (if ok { "yes" } else { "no" }).to_string()
        } else {
            "unexpected prompt".to_string()
        };
        Ok(Completion {
            text,
            usage: Usage::default(),
            finish: FinishReason::Stop,
            first_token_ms: None,
            total_ms: 0.0,
        })
    }
}

fn judge(garbage: bool, cache: JudgeCache) -> (Arc<RuleJudge>, Judge) {
    let m = Arc::new(RuleJudge {
        garbage,
        calls: AtomicUsize::new(0),
    });
    (m.clone(), Judge::new(m, cache))
}

#[test]
fn ragas_metrics_follow_their_definitions() {
    let (_, j) = judge(false, JudgeCache::in_memory());
    let embedder = HashEmbedder::new(256);
    let mut ragas = Ragas::new(&j, &embedder);
    ragas.statements = Statements::Judge;
    let contexts = vec![
        "Scurvy is caused by a lack of vitamin C in the diet.".to_string(),
        "Sailors on long voyages often developed scurvy.".to_string(),
        "The Eiffel Tower is in Paris.".to_string(),
    ];
    let s = ragas
        .score(
            &Sample {
                question: "What causes scurvy?",
                answer: "Scurvy is caused by a lack of vitamin C. Scurvy is cured by eating chocolate.",
                contexts: &contexts,
                reference: Some("A lack of vitamin C caused scurvy. Sailors often developed scurvy."),
            },
            Which::ALL,
        )
        .unwrap();
    // Two statements, the first supported by the context, the second not.
    assert_eq!(s.faithfulness, Some(0.5));
    assert_eq!(s.faithfulness_verdicts.len(), 2);
    // Both reference sentences are in the context.
    assert_eq!(s.context_recall, Some(1.0));
    // Useful, useful, not useful: AP = (1 + 1) / 2.
    assert_eq!(s.context_useful, [Some(true), Some(true), Some(false)]);
    assert_eq!(s.context_precision, Some(1.0));
    // The generated question equals the real one: relevance = cosine 1.
    assert!(
        (s.answer_relevance.unwrap() - 1.0).abs() < 1e-5,
        "{:?}",
        s.answer_relevance
    );
    // Correctness: answer statement 1 is supported by the reference (TP), statement 2 not (FP); of the
    // reference's statements, "Sailors often developed scurvy" is not in the answer (FN).
    let c = s.correctness.clone().unwrap();
    assert_eq!((c.tp, c.fp, c.fn_), (1, 1, 1));
    assert!((c.f1 - 0.5).abs() < 1e-12);
    assert!((s.answer_correctness.unwrap() - (0.75 * 0.5 + 0.25 * c.similarity)).abs() < 1e-12);
}

#[test]
fn garbage_from_the_judge_is_counted_and_never_becomes_a_score() {
    let (_, j) = judge(true, JudgeCache::in_memory());
    let embedder = HashEmbedder::new(64);
    let ragas = Ragas::new(&j, &embedder);
    let contexts = vec!["Scurvy is caused by a lack of vitamin C.".to_string()];
    let s = ragas
        .score(
            &Sample {
                question: "What causes scurvy?",
                answer: "A lack of vitamin C.",
                contexts: &contexts,
                reference: Some("Vitamin C deficiency."),
            },
            Which::ALL,
        )
        .unwrap();
    // The statement list was unreadable: the answer's sentences stand in, and the fallback is recorded.
    assert!(s.statements_fallback);
    assert_eq!(s.faithfulness, None);
    assert_eq!(s.faithfulness_verdicts[0].supported, None);
    assert_eq!(s.context_precision, None);
    assert_eq!(s.context_recall, None);
    assert_eq!(s.answer_correctness, None);
    // Garbage lines still make a "question"? No: "banana split, thank you" is a line, so relevance is computed
    // from it, but the noncommittal verdict is unreadable and counted.
    assert_eq!(s.noncommittal, None);
    let stats = j.stats();
    assert!(stats.unparsable >= 6, "{stats:?}");
}

fn small_index(tmp: &std::path::Path) -> (Arc<EmbeddedIndex>, Arc<HashEmbedder>) {
    let corpus = tmp.join("corpus.jsonl");
    std::fs::write(
        &corpus,
        [
            r#"{"_id": "d1", "title": "Scurvy", "text": "Scurvy is caused by a lack of vitamin C. Sailors on long voyages developed scurvy."}"#,
            r#"{"_id": "d2", "title": "Rickets", "text": "Rickets is caused by a lack of vitamin D. It softens the bones of children."}"#,
            r#"{"_id": "d3", "title": "Paris", "text": "The Eiffel Tower stands in Paris. It was built for a world fair."}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let cfg = Config::default();
    let embedder = Arc::new(HashEmbedder::new(256));
    let index = Arc::new(EmbeddedIndex::open(&tmp.join("data"), cfg.index.clone(), Some(embedder.model_id())).unwrap());
    let summary = Ingestor::new(index.as_ref(), embedder.as_ref(), cfg.chunking.clone())
        .with_dedup(false)
        .ingest_paths(&[corpus], &Silent);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    (index, embedder)
}

#[test]
fn answers_are_scored_end_to_end_and_a_rerun_hits_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (index, embedder) = small_index(tmp.path());
    let retriever = Retriever::new(
        index,
        embedder.clone() as Arc<dyn Embedder>,
        Config::default().retrieval,
    );
    let generator = ExtractiveGenerator::new(embedder.clone() as Arc<dyn Embedder>);
    let set = EvalSet::parse(
        r#"{"id": "q1", "question": "What causes scurvy?", "gold_answer": "Scurvy is caused by a lack of vitamin C.", "gold_doc_ids": ["d1"]}
{"id": "q2", "question": "What causes rickets in children?", "gold_answer": "A lack of vitamin D.", "gold_doc_ids": ["d2"]}
"#,
        std::path::Path::new("set.jsonl"),
    )
    .unwrap();
    let cache_path = tmp.path().join("judge-cache.jsonl");
    let opts = AnswerEvalOptions {
        top_k: 2,
        ..Default::default()
    };
    let run = |cache: JudgeCache| {
        let (model, j) = judge(false, cache);
        let ragas = Ragas::new(&j, embedder.as_ref());
        let r = evaluate_answers(
            &set,
            &retriever,
            &generator as &dyn Generator,
            embedder.as_ref(),
            Some(&ragas),
            &opts,
            &mut |_, _| {},
        );
        (r, model.calls.load(Ordering::SeqCst), j.stats())
    };
    let (first, calls, stats) = run(JudgeCache::open(&cache_path).unwrap());
    assert_eq!(
        first.errors,
        0,
        "{:?}",
        first.items.iter().map(|i| &i.error).collect::<Vec<_>>()
    );
    assert!(calls > 0);
    // Every call is either answered by the model or, when the same prompt came up before, by the cache.
    assert_eq!(calls + stats.cached, stats.calls);
    for item in &first.items {
        // The extractive generator copies sentences from the context: every statement is supported.
        assert_eq!(item.scores.get("faithfulness"), Some(&1.0), "{item:?}");
        assert_eq!(item.scores.get("gold_doc_recall"), Some(&1.0), "{item:?}");
        assert!(item.scores["token_f1"] > 0.3, "{item:?}");
        assert!(item.contexts.iter().any(|c| c.gold));
    }
    assert_eq!(first.means["faithfulness"], (1.0, 2));
    let table = first.score_table();
    assert_eq!(table.rows.len(), 2);
    assert!(table.metrics.contains(&"context_precision".to_string()));

    // Same questions, same prompts, same judge: everything comes from the cache file.
    let lines_before = std::fs::read_to_string(&cache_path).unwrap().lines().count();
    let (second, calls, stats) = run(JudgeCache::open(&cache_path).unwrap());
    let after = std::fs::read_to_string(&cache_path).unwrap();
    let new: Vec<&str> = after.lines().skip(lines_before).collect();
    assert_eq!(calls, 0, "a re-run must not call the judge; new cache lines: {new:#?}");
    assert_eq!(stats.cached, stats.calls);
    assert_eq!(second.means, first.means);

    // A damaged last line (a crash mid-write) is skipped and counted, the rest still serves.
    let mut bytes = std::fs::read(&cache_path).unwrap();
    bytes.extend_from_slice(b"{\"key\": \"trunc");
    std::fs::write(&cache_path, bytes).unwrap();
    let cache = JudgeCache::open(&cache_path).unwrap();
    assert_eq!(cache.damaged_lines, 1);
    assert!(!cache.is_empty());
}
