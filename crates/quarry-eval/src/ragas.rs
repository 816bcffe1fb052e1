//! Answer metrics judged by a language model, following the definitions of RAGAS (Es et al., "RAGAS:
//! Automated Evaluation of Retrieval Augmented Generation", EACL 2024 demos, and the ragas documentation).
//!
//! | metric | definition |
//! |---|---|
//! | faithfulness | the answer is broken into statements; each is judged against the retrieved context; score = supported statements / statements |
//! | answer relevance | N questions are generated from the answer; score = mean cosine similarity between the question's embedding and theirs, 0 when the answer is noncommittal |
//! | context precision | each retrieved context, in rank order, is judged useful (or not) for reaching the reference answer; score = Σₖ precision@k · vₖ / Σₖ vₖ (0 when none is useful) |
//! | context recall | each sentence of the reference answer is judged attributable (or not) to the retrieved context; score = attributable / sentences |
//! | answer correctness | 0.75 · F1 + 0.25 · cosine(answer, reference), F1 = TP / (TP + ½(FP + FN)), TP/FP = answer statements supported / not supported by the reference, FN = reference statements not supported by the answer |
//!
//! Differences from the ragas package, on purpose: verdicts are asked one statement at a time with a yes/no
//! answer instead of one JSON document per answer (small local judges cannot keep a JSON schema, and a
//! verdict that cannot be read is then counted and left out rather than failing the whole answer), and
//! context recall splits the reference into sentences with a sentence splitter rather than by the judge.
//! Context precision uses the answer instead of the reference when an item has no reference (ragas'
//! "without reference" variant).

use quarry_core::Embedder;
use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

use crate::error::Result;
use crate::judge::{Judge, Prompt};

/// The judge prompts. Bump `version` whenever the wording changes.
pub mod prompts {
    use crate::judge::Prompt;

    pub const STATEMENTS: Prompt = Prompt {
        id: "statements",
        version: 1,
        system: "You split answers into short factual statements.",
        user: "Question: {question}\nAnswer: {answer}\n\nRewrite the answer as a list of short statements. Each \
               statement states one fact and can be understood on its own (replace pronouns with what they refer \
               to). Write one statement per line, starting with \"- \". Write nothing else.",
        max_tokens: 200,
    };

    pub const SUPPORTED: Prompt = Prompt {
        id: "supported",
        version: 1,
        system: "You check whether a statement follows from a text. You reply with one word: yes or no.",
        user: "Text:\n{context}\n\nStatement: {statement}\n\nCan the statement be directly inferred from the text \
               above? Reply yes or no.",
        max_tokens: 12,
    };

    pub const QUESTION: Prompt = Prompt {
        id: "question-for-answer",
        version: 1,
        system: "You write the question that an answer responds to.",
        user: "Answer: {answer}\n\nWrite one question that this answer responds to. Reply with the question only.",
        max_tokens: 48,
    };

    pub const NONCOMMITTAL: Prompt = Prompt {
        id: "noncommittal",
        version: 1,
        system: "You judge answers. You reply with one word: yes or no.",
        user: "Answer: {answer}\n\nIs this answer evasive, vague or noncommittal, for example \"I don't know\" or \
               \"the documents do not say\"? Reply yes or no.",
        max_tokens: 12,
    };

    pub const CONTEXT_USEFUL: Prompt = Prompt {
        id: "context-useful",
        version: 1,
        system: "You judge whether a text helps to answer a question. You reply with one word: yes or no.",
        user: "Text:\n{context}\n\nQuestion: {question}\nAnswer: {reference}\n\nWas the text above useful in \
               arriving at this answer to the question? Reply yes or no.",
        max_tokens: 12,
    };

    pub const ALL: [Prompt; 5] = [STATEMENTS, SUPPORTED, QUESTION, NONCOMMITTAL, CONTEXT_USEFUL];
}

/// Where an answer's statements come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statements {
    /// The judge rewrites the answer as statements (ragas); when its output cannot be read, the answer's
    /// sentences are used and the fallback is recorded.
    Judge,
    /// The answer's sentences, without asking the judge (deterministic; suits small judges).
    Sentences,
}

/// One question's material.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub question: &'a str,
    pub answer: &'a str,
    /// Retrieved contexts in rank order.
    pub contexts: &'a [String],
    pub reference: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub statement: String,
    /// None: the judge's output could not be read.
    pub supported: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JudgedScores {
    pub faithfulness: Option<f64>,
    pub faithfulness_verdicts: Vec<Verdict>,
    /// The statements are the answer's sentences because the judge gave no usable list.
    pub statements_fallback: bool,
    pub answer_relevance: Option<f64>,
    pub generated_questions: Vec<String>,
    pub noncommittal: Option<bool>,
    pub context_precision: Option<f64>,
    pub context_useful: Vec<Option<bool>>,
    pub context_recall: Option<f64>,
    pub reference_verdicts: Vec<Verdict>,
    pub answer_correctness: Option<f64>,
    pub correctness: Option<Correctness>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correctness {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub f1: f64,
    pub similarity: f64,
}

/// Sentences of a text (Unicode sentence boundaries), trimmed, without empty ones.
pub fn sentences(text: &str) -> Vec<String> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .map(str::to_string)
        .collect()
}

/// Cosine similarity of two texts' embeddings (the embedder's vectors are unit length).
pub fn similarity(embedder: &dyn Embedder, a: &str, b: &str) -> Result<f64> {
    let v = embedder.embed(&[a, b])?;
    Ok(f64::from(quarry_core::vector::dot(&v[0], &v[1])))
}

/// Σₖ precision@k · vₖ / Σₖ vₖ over the contexts with a verdict (unreadable verdicts are left out).
pub fn average_precision(useful: &[Option<bool>]) -> Option<f64> {
    let v: Vec<bool> = useful.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    let (mut hits, mut sum) = (0usize, 0f64);
    for (i, u) in v.iter().enumerate() {
        if *u {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    Some(if hits == 0 { 0.0 } else { sum / hits as f64 })
}

/// Share of `true` among the readable verdicts.
pub fn supported_share(v: &[Verdict]) -> Option<f64> {
    let known: Vec<bool> = v.iter().filter_map(|x| x.supported).collect();
    (!known.is_empty()).then(|| known.iter().filter(|x| **x).count() as f64 / known.len() as f64)
}

/// Which metrics to compute.
#[derive(Debug, Clone, Copy)]
pub struct Which {
    pub faithfulness: bool,
    pub answer_relevance: bool,
    pub context_precision: bool,
    pub context_recall: bool,
    pub answer_correctness: bool,
}

impl Which {
    pub const ALL: Which = Which {
        faithfulness: true,
        answer_relevance: true,
        context_precision: true,
        context_recall: true,
        answer_correctness: true,
    };
}

/// RAGAS-style scoring with one judge and one embedder.
pub struct Ragas<'a> {
    pub judge: &'a Judge,
    pub embedder: &'a dyn Embedder,
    pub statements: Statements,
    /// Questions generated per answer for answer relevance (ragas: 3).
    pub questions_per_answer: usize,
}

impl<'a> Ragas<'a> {
    pub fn new(judge: &'a Judge, embedder: &'a dyn Embedder) -> Ragas<'a> {
        Ragas {
            judge,
            embedder,
            statements: Statements::Judge,
            questions_per_answer: 3,
        }
    }

    /// The contexts as one numbered text that fits the prompt's token budget (later contexts are cut first).
    fn context_text(&self, prompt: &Prompt, contexts: &[String], reserve: usize) -> String {
        let model = self.judge.model();
        let mut budget = self.judge.budget(prompt).saturating_sub(reserve);
        let mut out = String::new();
        for (i, c) in contexts.iter().enumerate() {
            let piece = format!("[{}] {}\n\n", i + 1, c.trim());
            let t = model.count_tokens(&piece);
            if t <= budget {
                out.push_str(&piece);
                budget -= t;
                continue;
            }
            if budget > 16 {
                let keep = piece.len() * budget / t.max(1);
                let mut cut = keep.min(piece.len());
                while !piece.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push_str(&piece[..cut]);
            }
            break;
        }
        out.trim_end().to_string()
    }

    /// The statements of a text: from the judge, or its sentences (and whether that was a fallback).
    pub fn statements_of(&self, question: &str, text: &str) -> Result<(Vec<String>, bool)> {
        if self.statements == Statements::Sentences {
            return Ok((sentences(text), false));
        }
        // A statement that shares no content word with the text was not extracted from it (a judge that answers
        // with something else): such statements are dropped, and with none left the sentences stand in.
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() > 3)
                .map(str::to_lowercase)
                .collect()
        };
        let vocab: std::collections::HashSet<String> = words(text).into_iter().collect();
        let items: Vec<String> = self
            .judge
            .list(&prompts::STATEMENTS, &[("question", question), ("answer", text)])?
            .unwrap_or_default()
            .into_iter()
            .filter(|st| words(st).iter().any(|w| vocab.contains(w)))
            .collect();
        if items.is_empty() {
            Ok((sentences(text), true))
        } else {
            Ok((items, false))
        }
    }

    fn verdicts(&self, statements: &[String], context: &[String]) -> Result<Vec<Verdict>> {
        let reserve = statements
            .iter()
            .map(|s| self.judge.model().count_tokens(s))
            .max()
            .unwrap_or(0);
        let text = self.context_text(&prompts::SUPPORTED, context, reserve);
        statements
            .iter()
            .map(|s| {
                Ok(Verdict {
                    statement: s.clone(),
                    supported: self
                        .judge
                        .yes_no(&prompts::SUPPORTED, &[("context", &text), ("statement", s)])?,
                })
            })
            .collect()
    }

    /// The judge's verdict on one statement against contexts (the faithfulness check on its own).
    pub fn supported(&self, statement: &str, contexts: &[String]) -> Result<Option<bool>> {
        Ok(self.verdicts(&[statement.to_string()], contexts)?.remove(0).supported)
    }

    pub fn score(&self, s: &Sample, which: Which) -> Result<JudgedScores> {
        let mut out = JudgedScores::default();
        let answer_statements = if which.faithfulness || which.answer_correctness {
            let (st, fallback) = self.statements_of(s.question, s.answer)?;
            out.statements_fallback = fallback;
            st
        } else {
            Vec::new()
        };
        if which.faithfulness && !s.contexts.is_empty() {
            out.faithfulness_verdicts = self.verdicts(&answer_statements, s.contexts)?;
            out.faithfulness = supported_share(&out.faithfulness_verdicts);
        }
        if which.answer_relevance {
            let noncommittal = self.judge.yes_no(&prompts::NONCOMMITTAL, &[("answer", s.answer)])?;
            out.noncommittal = noncommittal;
            for seed in 1..=self.questions_per_answer as u64 {
                if let Some(q) = self.judge.question(&prompts::QUESTION, &[("answer", s.answer)], seed)? {
                    out.generated_questions.push(q);
                }
            }
            if !out.generated_questions.is_empty() {
                let mut texts: Vec<&str> = vec![s.question];
                texts.extend(out.generated_questions.iter().map(String::as_str));
                let v = self.embedder.embed(&texts)?;
                let mean = v[1..]
                    .iter()
                    .map(|g| f64::from(quarry_core::vector::dot(&v[0], g)))
                    .sum::<f64>()
                    / (v.len() - 1) as f64;
                out.answer_relevance = Some(if noncommittal == Some(true) { 0.0 } else { mean });
            }
        }
        if which.context_precision && !s.contexts.is_empty() {
            let reference = s.reference.unwrap_or(s.answer);
            let reserve = self.judge.model().count_tokens(s.question) + self.judge.model().count_tokens(reference);
            for c in s.contexts {
                let text = self.context_text(&prompts::CONTEXT_USEFUL, std::slice::from_ref(c), reserve);
                out.context_useful.push(self.judge.yes_no(
                    &prompts::CONTEXT_USEFUL,
                    &[("context", &text), ("question", s.question), ("reference", reference)],
                )?);
            }
            out.context_precision = average_precision(&out.context_useful);
        }
        if let (true, Some(reference)) = (which.context_recall, s.reference) {
            if !s.contexts.is_empty() {
                out.reference_verdicts = self.verdicts(&sentences(reference), s.contexts)?;
                out.context_recall = supported_share(&out.reference_verdicts);
            }
        }
        if let (true, Some(reference)) = (which.answer_correctness, s.reference) {
            let (ref_statements, _) = self.statements_of(s.question, reference)?;
            let a_vs_ref = self.verdicts(&answer_statements, &[reference.to_string()])?;
            let ref_vs_a = self.verdicts(&ref_statements, &[s.answer.to_string()])?;
            let tp = a_vs_ref.iter().filter(|v| v.supported == Some(true)).count();
            let fp = a_vs_ref.iter().filter(|v| v.supported == Some(false)).count();
            let fn_ = ref_vs_a.iter().filter(|v| v.supported == Some(false)).count();
            if tp + fp + fn_ > 0 {
                let f1 = tp as f64 / (tp as f64 + 0.5 * (fp + fn_) as f64);
                let sim = similarity(self.embedder, s.answer, reference)?;
                out.answer_correctness = Some(0.75 * f1 + 0.25 * sim);
                out.correctness = Some(Correctness {
                    tp,
                    fp,
                    fn_,
                    f1,
                    similarity: sim,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_precision_is_ragas_average_precision() {
        // Useful at ranks 1 and 3: (1/1 + 2/3) / 2.
        let ap = average_precision(&[Some(true), Some(false), Some(true)]).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(average_precision(&[Some(false), Some(false)]), Some(0.0));
        assert_eq!(average_precision(&[None, None]), None);
        // An unreadable verdict is left out, not counted as "not useful".
        assert_eq!(average_precision(&[None, Some(true)]), Some(1.0));
    }

    #[test]
    fn sentence_split_drops_empty_pieces() {
        assert_eq!(
            sentences("Scurvy is a disease. It is caused by a lack of vitamin C.  "),
            ["Scurvy is a disease.", "It is caused by a lack of vitamin C."]
        );
        assert!(sentences(" ... ").is_empty());
    }
}
