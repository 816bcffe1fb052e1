//! Checking an answer against its sources, sentence by sentence.
//!
//! Each sentence's `[n]` markers are read, and the sentence (markers removed) is scored against every
//! source, window by window (one sentence, or two consecutive ones):
//! - lexical support: the share of the claim's content words (lower-cased, crude suffix stemming,
//!   stop words and words under 3 letters left out) found in the window;
//! - semantic support: cosine similarity of the claim and the window under the sentence embedder.
//!
//! Support = the larger of the two when they agree (both ≥ half the threshold), else their mean, so
//! neither a paraphrase (low lexical) nor a same-words contradiction (lower cosine) alone decides.
//! A sentence is supported when its best *cited* source reaches `threshold`. When only an uncited
//! source does, the citation points at the wrong source. A sentence with no markers is flagged as
//! uncited, and counts as supported when some source reaches the threshold (grounded, uncited).
//! The best window of each cited source becomes the citation's character span.

use std::collections::HashSet;

use quarry_core::text::CharOffsets;
use quarry_core::{CitationIssue, Embedder, Result, SentenceCheck};
use quarry_retrieve::{Context, Source};
use unicode_segmentation::UnicodeSegmentation;

/// Where in a source a sentence found its support (character offsets into the document).
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub n: usize,
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub score: f32,
}

pub struct Verifier<'a> {
    embedder: Option<&'a dyn Embedder>,
    pub threshold: f32,
}

/// The answer split into sentences with their citation markers.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The sentence as written (markers included).
    pub sentence: String,
    /// The sentence without markers.
    pub text: String,
    pub cites: Vec<usize>,
}

/// Reads `[1]`, `[1, 2]`, `[1][3]`, `[1-3]` markers.
pub fn citations_in(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else { break };
        let inner = &rest[open + 1..open + close];
        let mut ok = Vec::new();
        let valid = !inner.trim().is_empty()
            && inner.split([',', ';']).all(|part| {
                let part = part.trim();
                if let Some((a, b)) = part.split_once(['-', '–']) {
                    match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                        (Ok(a), Ok(b)) if a <= b && b - a < 20 => {
                            ok.extend(a..=b);
                            true
                        }
                        _ => false,
                    }
                } else {
                    part.parse::<usize>().map(|n| ok.push(n)).is_ok()
                }
            });
        if valid {
            for n in ok {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// Removes citation markers (and the space before them).
pub fn strip_citations(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').map(|c| open + c);
        match close {
            Some(c) if !citations_in(&rest[open..=c]).is_empty() => {
                out.push_str(rest[..open].trim_end());
                rest = &rest[c + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// Splits an answer into claims. A marker that opens the next sentence (`... end. [2]`) belongs to
/// the sentence before it.
pub fn claims(answer: &str) -> Vec<Claim> {
    let mut out: Vec<Claim> = Vec::new();
    for s in answer.split_sentence_bounds() {
        let mut trimmed = s.trim();
        if trimmed.is_empty() {
            continue;
        }
        // Markers opening this sentence close the previous one.
        if let Some(prev) = out.last_mut() {
            while trimmed.starts_with('[') {
                let Some(close) = trimmed.find(']') else { break };
                let lead = citations_in(&trimmed[..=close]);
                if lead.is_empty() {
                    break;
                }
                for n in lead {
                    if !prev.cites.contains(&n) {
                        prev.cites.push(n);
                    }
                }
                prev.sentence.push(' ');
                prev.sentence.push_str(&trimmed[..=close]);
                trimmed = trimmed[close + 1..].trim_start();
            }
            if trimmed.is_empty() {
                continue;
            }
        }
        let text = strip_citations(trimmed);
        let cites = citations_in(trimmed);
        if text.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
            // Markers alone, or punctuation: attach to the previous sentence.
            if let Some(prev) = out.last_mut() {
                prev.sentence.push(' ');
                prev.sentence.push_str(trimmed);
                for n in cites {
                    if !prev.cites.contains(&n) {
                        prev.cites.push(n);
                    }
                }
            }
            continue;
        }
        out.push(Claim {
            sentence: trimmed.to_string(),
            text,
            cites,
        });
    }
    out
}

const STOP: &[&str] = &[
    "the",
    "and",
    "for",
    "are",
    "but",
    "not",
    "you",
    "all",
    "any",
    "can",
    "had",
    "her",
    "was",
    "one",
    "our",
    "out",
    "has",
    "have",
    "his",
    "how",
    "its",
    "may",
    "who",
    "did",
    "this",
    "that",
    "with",
    "from",
    "they",
    "them",
    "then",
    "than",
    "were",
    "which",
    "what",
    "when",
    "where",
    "will",
    "would",
    "there",
    "their",
    "these",
    "those",
    "been",
    "being",
    "into",
    "also",
    "such",
    "only",
    "other",
    "some",
    "more",
    "most",
    "very",
    "does",
    "about",
    "over",
    "between",
    "both",
    "each",
    "while",
    "should",
    "could",
    "shall",
    "because",
    "according",
    "source",
    "sources",
];

fn stem(w: &str) -> &str {
    for suf in ["ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"] {
        if w.len() > suf.len() + 3 && w.ends_with(suf) {
            return &w[..w.len() - suf.len()];
        }
    }
    w
}

fn content_words(s: &str) -> Vec<String> {
    s.unicode_words()
        .map(str::to_lowercase)
        .filter(|w| (w.len() >= 3 || w.chars().any(|c| c.is_ascii_digit())) && !STOP.contains(&w.as_str()))
        .map(|w| stem(&w).to_string())
        .collect()
}

/// A window of a source: one sentence or two consecutive ones, with document offsets.
struct Window {
    n: usize,
    start: usize,
    end: usize,
    text: String,
    words: HashSet<String>,
}

fn windows(src: &Source) -> Vec<Window> {
    let offsets = CharOffsets::new(&src.text);
    let sents: Vec<(usize, &str)> = src
        .text
        .split_sentence_bound_indices()
        .filter(|(_, s)| !s.trim().is_empty())
        .collect();
    let mut out = Vec::new();
    for i in 0..sents.len() {
        for len in 1..=2usize {
            if i + len > sents.len() {
                continue;
            }
            let (b0, first) = sents[i];
            let (bl, last) = sents[i + len - 1];
            let lead = first.len() - first.trim_start().len();
            let (sb, eb) = (b0 + lead, bl + last.trim_end().len());
            if eb <= sb {
                continue;
            }
            let text = src.text[sb..eb].to_string();
            out.push(Window {
                n: src.n,
                start: src.start + offsets.char_of(sb),
                end: src.start + offsets.char_of(eb),
                words: content_words(&text).into_iter().collect(),
                text,
            });
        }
    }
    out
}

impl<'a> Verifier<'a> {
    pub fn new(embedder: Option<&'a dyn Embedder>, threshold: f32) -> Self {
        Verifier { embedder, threshold }
    }

    fn combine(&self, lexical: f32, semantic: Option<f32>) -> f32 {
        match semantic {
            None => lexical,
            Some(s) => {
                let half = self.threshold / 2.0;
                if lexical >= half && s >= half {
                    lexical.max(s)
                } else {
                    (lexical + s) / 2.0
                }
            }
        }
    }

    /// Checks every claim. Returns the per-sentence results and, per claim, the evidence found in
    /// each cited source (for citation spans).
    pub fn check(&self, claims: &[Claim], context: &Context) -> Result<(Vec<SentenceCheck>, Vec<Vec<Evidence>>)> {
        let windows: Vec<Window> = context.sources.iter().flat_map(windows).collect();
        // (claim vectors, window vectors)
        type Vectors = Vec<Vec<f32>>;
        let semantic: Option<(Vectors, Vectors)> = match self.embedder {
            Some(e) if !claims.is_empty() && !windows.is_empty() => {
                let c: Vec<&str> = claims.iter().map(|c| c.text.as_str()).collect();
                let w: Vec<&str> = windows.iter().map(|w| w.text.as_str()).collect();
                Some((e.embed(&c)?, e.embed(&w)?))
            }
            _ => None,
        };
        let mut checks = Vec::with_capacity(claims.len());
        let mut evidence = Vec::with_capacity(claims.len());
        for (ci, claim) in claims.iter().enumerate() {
            let words = content_words(&claim.text);
            // Best window score per source number.
            let mut best: Vec<(usize, f32, usize)> = Vec::new(); // (n, score, window index)
            for (wi, w) in windows.iter().enumerate() {
                let lexical = if words.is_empty() {
                    0.0
                } else {
                    words.iter().filter(|x| w.words.contains(*x)).count() as f32 / words.len() as f32
                };
                let sem = semantic
                    .as_ref()
                    .map(|(c, ws)| quarry_core::vector::dot(&c[ci], &ws[wi]).max(0.0));
                let score = self.combine(lexical, sem);
                match best.iter_mut().find(|b| b.0 == w.n) {
                    Some(b) if b.1 >= score => {}
                    Some(b) => *b = (w.n, score, wi),
                    None => best.push((w.n, score, wi)),
                }
            }
            let known: Vec<usize> = claim
                .cites
                .iter()
                .copied()
                .filter(|n| context.source(*n).is_some())
                .collect();
            let cited_best = best
                .iter()
                .filter(|b| known.contains(&b.0))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let overall = best.iter().max_by(|a, b| a.1.total_cmp(&b.1));
            // An uncited sentence is still measured against every source (is it grounded at all?),
            // and flagged as uncited either way.
            let support = if claim.cites.is_empty() {
                overall.map_or(0.0, |b| b.1)
            } else {
                cited_best.map_or(0.0, |b| b.1)
            };
            let supported = support >= self.threshold;
            let issue = if let Some(&n) = claim.cites.iter().find(|n| context.source(**n).is_none()) {
                Some(CitationIssue::UnknownSource { n })
            } else if claim.cites.is_empty() {
                Some(CitationIssue::Uncited)
            } else if supported {
                None
            } else {
                match overall {
                    Some(o) if o.1 >= self.threshold && !known.contains(&o.0) => Some(CitationIssue::WrongSource {
                        cited: claim.cites.clone(),
                        supported_by: o.0,
                    }),
                    _ => Some(CitationIssue::Unsupported),
                }
            };
            evidence.push(
                best.iter()
                    .filter(|b| known.contains(&b.0))
                    .map(|b| {
                        let w = &windows[b.2];
                        Evidence {
                            n: b.0,
                            start: w.start,
                            end: w.end,
                            text: w.text.clone(),
                            score: b.1,
                        }
                    })
                    .collect(),
            );
            checks.push(SentenceCheck {
                text: claim.sentence.clone(),
                cites: claim.cites.clone(),
                support,
                supported: supported
                    && matches!(
                        issue,
                        None | Some(CitationIssue::Uncited) | Some(CitationIssue::UnknownSource { .. })
                    ),
                best_source: overall.filter(|o| o.1 > 0.0).map(|o| o.0),
                issue,
            });
        }
        Ok((checks, evidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: usize, text: &str, start: usize) -> Source {
        Source {
            n,
            doc_id: format!("d{n}"),
            source: format!("d{n}.txt"),
            title: None,
            section: vec![],
            page: None,
            chunk_ids: vec![n as u64],
            text: text.into(),
            start,
            end: start + text.chars().count(),
            score: 1.0,
            tokens: 10,
            truncated: false,
        }
    }

    #[test]
    fn reads_markers_in_their_common_forms() {
        assert_eq!(citations_in("A [1]. B [2, 3][5] and [4-6]."), vec![1, 2, 3, 5, 4, 6]);
        assert_eq!(citations_in("array[i] and [x] and []"), Vec::<usize>::new());
        assert_eq!(
            strip_citations("Scurvy is caused by lack of vitamin C [1][2]."),
            "Scurvy is caused by lack of vitamin C."
        );
        assert_eq!(strip_citations("keep a[i] here [3]"), "keep a[i] here");
        let c = claims("Vitamin C prevents scurvy. [1] Sailors got it on long voyages [2]. [3]");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].cites, vec![1]);
        assert_eq!(c[1].cites, vec![2, 3]);
        assert_eq!(c[1].text, "Sailors got it on long voyages.");
    }

    #[test]
    fn flags_unsupported_wrong_uncited_and_unknown_citations() {
        let ctx = Context {
            sources: vec![
                source(
                    1,
                    "Scurvy is caused by a lack of vitamin C in the diet. Limes prevent it.",
                    100,
                ),
                source(
                    2,
                    "The Eiffel Tower was completed in Paris in 1889 for the World's Fair.",
                    0,
                ),
            ],
            ..Context::default()
        };
        let v = Verifier::new(None, 0.5);
        let answer = "Scurvy comes from a lack of vitamin C [1]. The Eiffel Tower was completed in 1889 [1]. \
                      Limes prevent scurvy. Quantum computers factor primes quickly [2]. Paris has the tower [7].";
        let (checks, evidence) = v.check(&claims(answer), &ctx).expect("lexical check");
        assert_eq!(checks.len(), 5);
        assert!(checks[0].supported && checks[0].issue.is_none(), "{:?}", checks[0]);
        assert_eq!(
            checks[1].issue,
            Some(CitationIssue::WrongSource {
                cited: vec![1],
                supported_by: 2
            })
        );
        assert!(!checks[1].supported);
        assert_eq!(checks[2].issue, Some(CitationIssue::Uncited));
        assert_eq!(checks[2].best_source, Some(1));
        assert!(checks[2].supported, "grounded in source 1, though uncited");
        assert_eq!(checks[3].issue, Some(CitationIssue::Unsupported));
        assert_eq!(checks[4].issue, Some(CitationIssue::UnknownSource { n: 7 }));
        // The evidence span of the first claim is the first sentence of source 1, in document offsets.
        let e = &evidence[0][0];
        assert_eq!((e.n, e.start), (1, 100));
        assert!(e.text.starts_with("Scurvy is caused") && e.end - e.start == e.text.chars().count());
    }
}
