//! Synthetic test sets for teams without labels: questions written by a language model from chunks sampled
//! from the team's own index, filtered for quality, with the source chunk's document as the gold.
//!
//! Sampling is seeded and spread over documents (at most one chunk per document, chunks long enough to ask
//! about). Each question goes through filters, and every rejection is counted by reason:
//! - `unreadable`: no question came back;
//! - `length`: fewer than 4 or more than 40 words;
//! - `not a question`: no question mark and no interrogative opening;
//! - `not standalone`: it points at the text ("this study", "the passage", "according to the authors"), so
//!   it cannot be asked of a whole corpus;
//! - `ungrounded`: it shares no content word with its chunk;
//! - `copied`: it repeats a run of 10 or more words of the chunk verbatim (a lexical giveaway that would
//!   favour keyword search);
//! - `duplicate`: the same question (normalised) was already kept;
//! - `not answerable`: with a judge, the judge said the chunk does not answer it.
//!
//! A set built this way can rank systems without labels; check that it ranks them as real judgements do
//! ([`kendall_tau`]) before trusting it for fine distinctions.

use std::collections::{BTreeMap, HashSet};

use quarry_core::{Index, LanguageModel, Message, Sampling};
use serde::Serialize;

use crate::compare::SplitMix64;
use crate::error::Result;
use crate::evalset::{EvalItem, EvalSet};
use crate::judge::{Judge, Prompt};

pub const QUESTION_FROM_TEXT: Prompt = Prompt {
    id: "synth-question",
    version: 1,
    system: "You write exam questions about scientific and technical texts.",
    user: "Text:\n{text}\n\nWrite one question that a reader could answer using this text. The question must make \
           sense on its own, without seeing the text: name the subject instead of writing \"this study\" or \"the \
           text\". Reply with the question only.",
    max_tokens: 48,
};

pub const ANSWERABLE: Prompt = Prompt {
    id: "synth-answerable",
    version: 1,
    system: "You check exam questions. You reply with one word: yes or no.",
    user: "Text:\n{text}\n\nQuestion: {question}\n\nDoes the text above answer this question? Reply yes or no.",
    max_tokens: 12,
};

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub questions: usize,
    pub seed: u64,
    /// Chunks shorter than this many tokens are not sampled.
    pub min_tokens: usize,
    /// Most chunks tried, as a multiple of `questions` (rejected questions are replaced from the rest).
    pub oversample: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            questions: 100,
            seed: 42,
            min_tokens: 40,
            oversample: 3,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SynthReport {
    pub tried: usize,
    pub kept: usize,
    pub rejected: BTreeMap<String, usize>,
    /// A few rejected questions per reason, for a person to check the filters.
    pub rejected_examples: BTreeMap<String, Vec<String>>,
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "in", "on", "for", "to", "and", "or", "is", "are", "was", "were", "be", "been", "by",
    "with", "what", "which", "who", "whom", "how", "why", "when", "where", "does", "do", "did", "can", "could", "that",
    "this", "these", "those", "it", "its", "as", "at", "from", "into", "than", "there", "their", "has", "have", "had",
    "not", "no", "any", "between", "after", "before", "during", "about",
];

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Why a generated question is rejected, or None when it passes the filters that need no model.
pub fn reject_reason(question: &str, chunk: &str) -> Option<&'static str> {
    let w = words(question);
    if w.len() < 4 || w.len() > 40 {
        return Some("length");
    }
    let interrogative = [
        "what", "which", "who", "whom", "whose", "how", "why", "when", "where", "does", "do", "did", "is", "are",
        "was", "were", "can", "could", "should", "will", "would", "has", "have", "in", "among", "to",
    ];
    if !question.trim_end().ends_with('?') && !interrogative.contains(&w[0].as_str()) {
        return Some("not a question");
    }
    let q = question.to_lowercase();
    let pointers = [
        "this study",
        "the study",
        "this text",
        "the text",
        "the passage",
        "this passage",
        "the article",
        "this article",
        "the paper",
        "this paper",
        "the authors",
        "according to",
        "mentioned above",
        "the above",
        "this research",
        "this review",
        "the review",
        "this experiment",
        "the experiment",
        "this document",
        "the document",
    ];
    if pointers.iter().any(|p| q.contains(p)) {
        return Some("not standalone");
    }
    let chunk_words = words(chunk);
    let vocab: HashSet<&str> = chunk_words.iter().map(String::as_str).collect();
    let content: Vec<&String> = w.iter().filter(|t| !STOPWORDS.contains(&t.as_str())).collect();
    if !content.iter().any(|t| vocab.contains(t.as_str())) {
        return Some("ungrounded");
    }
    const RUN: usize = 10;
    if w.len() >= RUN {
        let grams: HashSet<&[String]> = chunk_words.windows(RUN).collect();
        if w.windows(RUN).any(|g| grams.contains(g)) {
            return Some("copied");
        }
    }
    None
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.trim().trim_matches('"').trim())
        .map(|l| l.strip_prefix("Question:").unwrap_or(l).trim())
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Chunks to ask about: at most one per document, seeded, long enough; `(doc_id, chunk_id, text)`.
pub fn sample_chunks(index: &dyn Index, opts: &SynthOptions) -> Result<Vec<(String, u64, String)>> {
    let mut docs: Vec<String> = index.list_sources()?.into_iter().flat_map(|s| s.doc_ids).collect();
    docs.sort();
    docs.dedup();
    let mut rng = SplitMix64::new(opts.seed);
    // Fisher–Yates shuffle, then take documents in that order until enough chunks are found.
    for i in (1..docs.len()).rev() {
        let j = rng.below(i + 1);
        docs.swap(i, j);
    }
    let want = opts.questions.saturating_mul(opts.oversample.max(1));
    let mut out = Vec::new();
    for doc_id in docs {
        if out.len() >= want {
            break;
        }
        let Some(doc) = index.document(&doc_id)? else { continue };
        let mut candidates = Vec::new();
        for id in &doc.chunk_ids {
            if let Some(c) = index.chunk(*id)? {
                if c.chunk.tokens >= opts.min_tokens {
                    candidates.push(c);
                }
            }
        }
        if candidates.is_empty() {
            continue;
        }
        let c = candidates.swap_remove(rng.below(candidates.len()));
        let text = match &c.title {
            Some(t) if !t.is_empty() && !c.chunk.text.starts_with(t.as_str()) => format!("{t}\n{}", c.chunk.text),
            _ => c.chunk.text.clone(),
        };
        out.push((doc_id, c.id, text));
    }
    Ok(out)
}

/// Writes questions from sampled chunks with `model` (optionally checked by `judge`), keeping the first
/// `opts.questions` that pass the filters. `progress(kept, tried)` is called after each chunk.
pub fn synthesize(
    index: &dyn Index,
    model: &dyn LanguageModel,
    judge: Option<&Judge>,
    opts: &SynthOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EvalSet, SynthReport)> {
    let chunks = sample_chunks(index, opts)?;
    let mut report = SynthReport::default();
    let mut set = EvalSet::default();
    let mut seen = HashSet::new();
    let sampling = Sampling {
        temperature: 0.0,
        max_tokens: QUESTION_FROM_TEXT.max_tokens,
        ..Sampling::default()
    };
    let reject = |report: &mut SynthReport, why: &str, q: &str| {
        *report.rejected.entry(why.to_string()).or_default() += 1;
        let ex = report.rejected_examples.entry(why.to_string()).or_default();
        if ex.len() < 3 {
            ex.push(q.to_string());
        }
    };
    for (doc_id, chunk_id, text) in chunks {
        if set.items.len() >= opts.questions {
            break;
        }
        report.tried += 1;
        let messages: Vec<Message> = QUESTION_FROM_TEXT.render(&[("text", &text)])?;
        let out = model.chat(&messages, &sampling, &mut |_| true)?;
        match first_line(&out.text) {
            None => reject(&mut report, "unreadable", &out.text),
            Some(q) => {
                let norm = words(&q).join(" ");
                if let Some(why) = reject_reason(&q, &text) {
                    reject(&mut report, why, &q);
                } else if !seen.insert(norm) {
                    reject(&mut report, "duplicate", &q);
                } else if let Some(false) = match judge {
                    Some(j) => j.yes_no(&ANSWERABLE, &[("text", &text), ("question", &q)])?,
                    None => None,
                } {
                    reject(&mut report, "not answerable", &q);
                } else {
                    let mut metadata = serde_json::Map::new();
                    metadata.insert("chunk_id".into(), chunk_id.into());
                    metadata.insert("generator".into(), model.model_id().into());
                    metadata.insert("prompt".into(), QUESTION_FROM_TEXT.name().into());
                    set.items.push(EvalItem {
                        id: format!("synth-{}", set.items.len() + 1),
                        question: q,
                        gold_answer: None,
                        gold_doc_ids: vec![doc_id],
                        metadata,
                    });
                }
            }
        }
        progress(set.items.len(), report.tried);
    }
    report.kept = set.items.len();
    Ok((set, report))
}

/// Kendall's τ-b between two scorings of the same systems (ties in either count as neither concordant nor
/// discordant, with the τ-b correction). 1: same order; −1: reversed.
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let da = a[i] - a[j];
            let db = b[i] - b[j];
            if da == 0.0 && db == 0.0 {
                continue;
            } else if da == 0.0 {
                ties_a += 1;
            } else if db == 0.0 {
                ties_b += 1;
            } else if (da > 0.0) == (db > 0.0) {
                concordant += 1;
            } else {
                discordant += 1;
            }
        }
    }
    let denom = (((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) as f64).sqrt();
    if denom == 0.0 {
        f64::NAN
    } else {
        (concordant - discordant) as f64 / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_reject_for_the_stated_reason() {
        let chunk = "Vitamin D supplementation reduced the risk of hip fractures in elderly women living in nursing \
                     homes over a period of three years of follow up.";
        assert_eq!(
            reject_reason(
                "Does vitamin D supplementation reduce hip fractures in elderly women?",
                chunk
            ),
            None
        );
        assert_eq!(reject_reason("Why?", chunk), Some("length"));
        assert_eq!(
            reject_reason("Vitamin D supplementation and hip fractures.", chunk),
            Some("not a question")
        );
        assert_eq!(
            reject_reason("What did this study find about vitamin D?", chunk),
            Some("not standalone")
        );
        assert_eq!(
            reject_reason("What is the topic of this review about vitamin D?", chunk),
            Some("not standalone")
        );
        assert_eq!(
            reject_reason("What is the capital city of Peru today?", chunk),
            Some("ungrounded")
        );
        assert_eq!(
            reject_reason(
                "Did vitamin D supplementation reduce the risk of hip fractures in elderly women living in nursing homes?",
                chunk
            ),
            Some("copied")
        );
    }

    #[test]
    fn kendall_tau_b() {
        assert_eq!(kendall_tau(&[0.1, 0.2, 0.3], &[1.0, 2.0, 3.0]), 1.0);
        assert_eq!(kendall_tau(&[0.1, 0.2, 0.3], &[3.0, 2.0, 1.0]), -1.0);
        // One swapped pair of three: (2 - 1) / 3.
        assert!((kendall_tau(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-12);
        // A tie in one ranking: C = 2, D = 0, one pair tied in b → 2 / sqrt(3 * 2).
        assert!((kendall_tau(&[1.0, 2.0, 3.0], &[1.0, 2.0, 2.0]) - 2.0 / 6f64.sqrt()).abs() < 1e-12);
        assert!(kendall_tau(&[1.0, 1.0], &[2.0, 2.0]).is_nan());
    }
}
