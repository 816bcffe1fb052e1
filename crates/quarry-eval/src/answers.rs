//! End-to-end answer evaluation over an eval set: retrieve, answer with the configured generator, then score
//! every item with the cheap proxies (exact match, token F1, ROUGE-L, embedding similarity against the gold
//! answer; gold-document recall of the retrieval; Quarry's own citation verifier) and, when a judge is given,
//! the RAGAS metrics. One item's failure (a generator error, say) is recorded on that item and counted; it
//! never stops the run or turns into a zero.

use std::collections::BTreeMap;
use std::time::Instant;

use quarry_core::{Embedder, Generator, SearchMode};
use quarry_retrieve::{Retriever, SearchRequest};
use serde::Serialize;

use crate::compare::ScoreTable;
use crate::error::Result;
use crate::evalset::{EvalItem, EvalSet};
use crate::judge::JudgeStatsSnapshot;
use crate::lexical::{exact_match, rouge_l, token_f1};
use crate::ragas::{similarity, JudgedScores, Ragas, Sample, Which};

#[derive(Debug, Clone)]
pub struct AnswerEvalOptions {
    pub mode: SearchMode,
    pub top_k: usize,
    pub which: Which,
    /// Evaluate only the first N items.
    pub limit: Option<usize>,
}

impl Default for AnswerEvalOptions {
    fn default() -> Self {
        AnswerEvalOptions {
            mode: SearchMode::Hybrid,
            top_k: 5,
            which: Which::ALL,
            limit: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrievedContext {
    pub doc_id: String,
    pub text: String,
    /// The document is one of the item's gold documents.
    pub gold: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ItemResult {
    pub id: String,
    pub question: String,
    pub gold_answer: Option<String>,
    pub answer: String,
    pub abstained: bool,
    pub contexts: Vec<RetrievedContext>,
    /// Named metric values (see [`AnswerReport::metrics`]); absent when not applicable.
    pub scores: BTreeMap<String, f64>,
    pub judged: Option<JudgedScores>,
    /// Quarry's own per-sentence citation checks, from the generator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verifier: Vec<quarry_core::SentenceCheck>,
    pub error: Option<String>,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswerReport {
    pub generator: String,
    pub judge: Option<String>,
    pub judge_stats: Option<JudgeStatsSnapshot>,
    /// Metric names in report order.
    pub metrics: Vec<String>,
    /// Mean of each metric over the items where it applies, and how many items that was.
    pub means: BTreeMap<String, (f64, usize)>,
    pub items: Vec<ItemResult>,
    pub errors: usize,
    pub abstained: usize,
}

impl AnswerReport {
    pub fn score_table(&self) -> ScoreTable {
        ScoreTable {
            metrics: self.metrics.clone(),
            rows: self
                .items
                .iter()
                .map(|it| {
                    let row = self
                        .metrics
                        .iter()
                        .map(|m| it.scores.get(m).copied().unwrap_or(f64::NAN))
                        .collect();
                    (it.id.clone(), row)
                })
                .collect(),
        }
    }
}

/// Metric names, in the order reports show them.
pub const METRICS: [&str; 14] = [
    "decision_accuracy",
    "format_adherence",
    "faithfulness",
    "answer_relevance",
    "context_precision",
    "context_recall",
    "answer_correctness",
    "verifier_supported",
    "gold_doc_recall",
    "token_f1",
    "exact_match",
    "rouge_l",
    "semantic_similarity",
    "abstained",
];

fn one_item(
    item: &EvalItem,
    retriever: &Retriever,
    generator: &dyn Generator,
    embedder: &dyn Embedder,
    ragas: Option<&Ragas>,
    opts: &AnswerEvalOptions,
) -> Result<ItemResult> {
    let start = Instant::now();
    let mut r = ItemResult {
        id: item.id.clone(),
        question: item.question.clone(),
        gold_answer: item.gold_answer.clone(),
        ..Default::default()
    };
    let hits = retriever.search(&SearchRequest {
        query: &item.question,
        mode: opts.mode,
        top_k: opts.top_k,
        filter: None,
        per_document: false,
    })?;
    let passages = retriever.passages(&hits)?;
    r.contexts = passages
        .iter()
        .map(|p| RetrievedContext {
            doc_id: p.chunk.chunk.doc_id.clone(),
            text: p.evidence().0.to_string(),
            gold: item.gold_doc_ids.contains(&p.chunk.chunk.doc_id),
        })
        .collect();
    if !item.gold_doc_ids.is_empty() {
        let found: std::collections::HashSet<&str> = r
            .contexts
            .iter()
            .filter(|c| c.gold)
            .map(|c| c.doc_id.as_str())
            .collect();
        r.scores.insert(
            "gold_doc_recall".into(),
            found.len() as f64 / item.gold_doc_ids.len() as f64,
        );
    }
    let answer = generator.answer(&item.question, &passages)?;
    r.answer = quarry_generate::verify::strip_citations(&answer.answer);
    r.abstained = answer.abstained;
    r.scores
        .insert("abstained".into(), f64::from(u8::from(answer.abstained)));
    r.verifier = answer.sentences.clone();
    if let Some(s) = answer.supported_share() {
        r.scores.insert("verifier_supported".into(), f64::from(s));
    }
    if let Some(gold) = &item.gold_answer {
        r.scores.insert("token_f1".into(), token_f1(&r.answer, gold));
        r.scores.insert("exact_match".into(), exact_match(&r.answer, gold));
        r.scores.insert("rouge_l".into(), rouge_l(&r.answer, gold));
        r.scores
            .insert("semantic_similarity".into(), similarity(embedder, &r.answer, gold)?);
    }
    if let Some(gold) = item.metadata.get("decision").and_then(|d| d.as_str()) {
        let reading = crate::decision::read_decision(&answer.answer);
        let right = reading.decision.is_some_and(|d| d.eq_ignore_ascii_case(gold.trim()));
        r.scores.insert("decision_accuracy".into(), f64::from(u8::from(right)));
        r.scores
            .insert("format_adherence".into(), f64::from(u8::from(reading.format_ok)));
    }
    if let Some(ragas) = ragas {
        let contexts: Vec<String> = r.contexts.iter().map(|c| c.text.clone()).collect();
        // An abstention makes no claims: faithfulness does not apply (its rate is reported on its own).
        let mut which = opts.which;
        which.faithfulness &= !answer.abstained;
        let j = ragas.score(
            &Sample {
                question: &item.question,
                answer: &r.answer,
                contexts: &contexts,
                reference: item.gold_answer.as_deref(),
            },
            which,
        )?;
        for (name, v) in [
            ("faithfulness", j.faithfulness),
            ("answer_relevance", j.answer_relevance),
            ("context_precision", j.context_precision),
            ("context_recall", j.context_recall),
            ("answer_correctness", j.answer_correctness),
        ] {
            if let Some(v) = v {
                r.scores.insert(name.into(), v);
            }
        }
        r.judged = Some(j);
    }
    r.latency_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(r)
}

/// Evaluates every item of `set` (at most `opts.limit`); `progress(done, total)` is called after each item.
pub fn evaluate_answers(
    set: &EvalSet,
    retriever: &Retriever,
    generator: &dyn Generator,
    embedder: &dyn Embedder,
    ragas: Option<&Ragas>,
    opts: &AnswerEvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> AnswerReport {
    let items: Vec<&EvalItem> = set.items.iter().take(opts.limit.unwrap_or(usize::MAX)).collect();
    let mut results = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let r = one_item(item, retriever, generator, embedder, ragas, opts).unwrap_or_else(|e| ItemResult {
            id: item.id.clone(),
            question: item.question.clone(),
            gold_answer: item.gold_answer.clone(),
            error: Some(e.to_string()),
            ..Default::default()
        });
        results.push(r);
        progress(i + 1, items.len());
    }
    let metrics: Vec<String> = METRICS
        .iter()
        .filter(|m| results.iter().any(|r| r.scores.contains_key(**m)))
        .map(|m| m.to_string())
        .collect();
    let means = metrics
        .iter()
        .map(|m| {
            let v: Vec<f64> = results.iter().filter_map(|r| r.scores.get(m).copied()).collect();
            (m.clone(), (v.iter().sum::<f64>() / v.len().max(1) as f64, v.len()))
        })
        .collect();
    AnswerReport {
        generator: generator.name().to_string(),
        judge: ragas.map(|r| r.judge.model_id().to_string()),
        judge_stats: ragas.map(|r| r.judge.stats()),
        metrics,
        means,
        errors: results.iter().filter(|r| r.error.is_some()).count(),
        abstained: results.iter().filter(|r| r.abstained).count(),
        items: results,
    }
}
