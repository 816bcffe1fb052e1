//! Context assembly: ranked passages → the numbered sources a generator prompt shows, within a
//! token budget.
//!
//! [`assemble`] takes passages as [`Retriever::passages`](crate::Retriever::passages) returns them and
//! proceeds in six steps:
//!
//! 1. **Evidence.** Each passage contributes [`Passage::evidence`] (the expanded parent span, or the
//!    chunk text) and its start offset; its end is start + the text's length in chars. Passages are
//!    ranked by score, best first, ties kept in input order.
//! 2. **Duplicates.** In rank order, a passage is dropped when its text equals a kept passage's after
//!    lowercasing and collapsing whitespace, or when the Jaccard similarity of their word 3-shingles
//!    is at least [`ContextOptions::near_duplicate_threshold`] (mirrors and boilerplate say the same
//!    thing twice; the better-ranked copy stays). A threshold above 1 turns near-duplicates off.
//! 3. **Merging.** With [`ContextOptions::merge_adjacent`], spans of one document that overlap or
//!    touch (by char offsets; chunks overlap by design) become one source: the union of the texts
//!    (both are exact slices of the document, so the union is the first text followed by the part
//!    of the second beyond the first's end), the best score, every chunk id, and the section and
//!    page of the span that starts first. One source instead of two saves a header and the overlap.
//! 4. **Filling.** Sources are added greedily by score. A source is added whole when its rendered
//!    block fits the remaining budget. The best source is always kept: when it does not fit even
//!    alone it is cut to fit, at a sentence end, or at a word boundary when its first sentence alone
//!    is too long. A later source that does not fit is cut at a sentence end so that it fits, if the
//!    cut keeps at least [`ContextOptions::min_source_tokens`]; otherwise it is skipped and the next
//!    (possibly smaller) sources are tried. Text is never cut inside a word. A cut source has
//!    `truncated` set and its `end` moved, so `text` is still the document's `[start, end)`.
//! 5. **Order.** With [`ContextOptions::reorder`], the strongest sources go to both ends of the
//!    context and the weakest to the middle (ranks 1, 3, 5, …, 4, 2), because models use evidence in
//!    the middle of a long context least ("Lost in the Middle", Liu et al. 2023). Sources are then
//!    numbered 1..n in display order, the numbers the generator cites.
//! 6. **Nothing to show.** No passages, or a budget of 0, give an empty context.
//!
//! # Token accounting
//!
//! Each block (header line + text) is counted on its own with the caller's [`TokenCounter`]; the
//! context's total is the sum of the blocks plus one token per `"\n\n"` separator. Blocks are
//! counted while filling with the widest number any source can receive, then recounted with their
//! final numbers; if a counter makes the recount exceed the budget (a shorter number costing more),
//! the weakest sources are dropped until it fits or only the best is left. For counters that add up across a blank line (word counters, character counters,
//! WordPiece) `counter.count_tokens(&context.render())` is then at most the budget. A BPE tokenizer
//! may merge text across the separators differently, so callers that must not overflow a model's
//! window re-check the full prompt.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use quarry_core::{Passage, TokenCounter};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

/// Words per shingle for near-duplicate detection: long enough that shared vocabulary alone does
/// not make two texts similar, short enough that one edit changes few shingles.
const SHINGLE_WORDS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextOptions {
    /// Tokens the rendered context may take, separators included.
    pub budget_tokens: usize,
    /// Word-shingle Jaccard similarity at or above which a passage repeats a better one.
    pub near_duplicate_threshold: f32,
    /// Merge overlapping or touching spans of one document into one source.
    pub merge_adjacent: bool,
    /// Put the best sources at the beginning and the end, the weakest in the middle.
    pub reorder: bool,
    /// A source cut to fit must keep at least this many tokens of text, else it is left out.
    pub min_source_tokens: usize,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            budget_tokens: 2048,
            near_duplicate_threshold: 0.8,
            merge_adjacent: true,
            reorder: false,
            min_source_tokens: 24,
        }
    }
}

/// One numbered block of evidence in the prompt: a span of one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// 1-based number shown in the prompt and cited by the answer.
    pub n: usize,
    pub doc_id: String,
    pub source: String,
    pub title: Option<String>,
    /// Headings enclosing the start of the span, outermost first.
    pub section: Vec<String>,
    /// Page the span starts on, for paged sources.
    pub page: Option<u32>,
    /// Chunks the span was built from, in document order.
    pub chunk_ids: Vec<u64>,
    /// The text shown: exactly the document's text between `start` and `end`.
    pub text: String,
    /// Character offsets (end exclusive) of `text` in the document.
    pub start: usize,
    pub end: usize,
    /// Best score among the passages merged into this source.
    pub score: f32,
    /// Tokens of the rendered block (header line and text).
    pub tokens: usize,
    /// The span was cut short to fit the budget.
    pub truncated: bool,
}

impl Source {
    /// The block's first line: `[3] Title — Section > Sub, p. 4`. Without a title the source name
    /// stands in; the location (section path and/or page) is left out when unknown.
    pub fn header(&self) -> String {
        header(self.n, self.title.as_deref(), &self.source, &self.section, self.page)
    }

    /// The header line followed by the text.
    pub fn render(&self) -> String {
        block(&self.header(), &self.text)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// In display order, numbered from 1.
    pub sources: Vec<Source>,
    /// Sum of the sources' block tokens plus one per separator: within the budget (see the module
    /// documentation for the token accounting).
    pub tokens: usize,
    /// Passages left out for lack of budget.
    pub dropped: usize,
    /// Passages left out as exact or near duplicates of better-ranked ones.
    pub duplicates: usize,
}

impl Context {
    /// The sources' blocks, separated by blank lines.
    pub fn render(&self) -> String {
        self.sources.iter().map(Source::render).collect::<Vec<_>>().join("\n\n")
    }

    /// The source shown as `[n]`.
    pub fn source(&self, n: usize) -> Option<&Source> {
        self.sources.iter().find(|s| s.n == n)
    }
}

/// Builds the numbered sources for a prompt from ranked passages, within `opts.budget_tokens` as
/// counted by `counter`. See the module documentation for the steps.
pub fn assemble(passages: &[Passage], counter: &dyn TokenCounter, opts: &ContextOptions) -> Context {
    if passages.is_empty() || opts.budget_tokens == 0 {
        return Context {
            dropped: passages.len(),
            ..Context::default()
        };
    }
    let mut ranked: Vec<&Passage> = passages.iter().collect();
    ranked.sort_by(|a, b| rank_score(b.score).total_cmp(&rank_score(a.score)));
    let (spans, duplicates) = dedup(&ranked, opts.near_duplicate_threshold);
    let spans = if opts.merge_adjacent { merge(spans) } else { spans };
    let (picked, dropped) = fill(spans, counter, opts);
    let (sources, tokens, dropped) = finish(picked, dropped, counter, opts);
    Context {
        sources,
        tokens,
        dropped,
        duplicates,
    }
}

/// NaN scores rank last rather than first.
fn rank_score(score: f32) -> f32 {
    if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score
    }
}

/// A candidate source: a span of one document built from one or more passages.
struct Span<'a> {
    /// The passage whose span starts first: its section and page locate the span.
    head: &'a Passage,
    /// Position in rank order of the best passage in the span: breaks score ties.
    rank: usize,
    score: f32,
    text: String,
    start: usize,
    end: usize,
    chunk_ids: Vec<u64>,
    passages: usize,
}

impl<'a> Span<'a> {
    fn new(p: &'a Passage, rank: usize) -> Self {
        let (text, start) = p.evidence();
        Span {
            head: p,
            rank,
            score: rank_score(p.score),
            text: text.to_string(),
            start,
            end: start + text.chars().count(),
            chunk_ids: vec![p.chunk.id],
            passages: 1,
        }
    }

    fn doc_id(&self) -> &str {
        &self.head.chunk.chunk.doc_id
    }

    /// Extends this span with one of the same document that starts within or right after it.
    fn absorb(&mut self, other: Span<'a>) {
        debug_assert!(other.start >= self.start && other.start <= self.end);
        if other.end > self.end {
            let skip = self.end - other.start;
            let from = other.text.char_indices().nth(skip).map_or(other.text.len(), |(b, _)| b);
            self.text.push_str(&other.text[from..]);
            self.end = other.end;
        }
        self.score = self.score.max(other.score);
        self.rank = self.rank.min(other.rank);
        self.chunk_ids.extend(other.chunk_ids);
        self.passages += other.passages;
    }
}

/// What duplicate detection compares: the normalised text and its set of hashed word shingles.
struct Fingerprint {
    normalized: String,
    shingles: HashSet<u64>,
}

impl Fingerprint {
    fn new(text: &str) -> Self {
        let normalized = text
            .split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<String> = text.unicode_words().map(str::to_lowercase).collect();
        let k = SHINGLE_WORDS.min(words.len()).max(1);
        let shingles = words
            .windows(k)
            .map(|w| {
                let mut h = DefaultHasher::new();
                w.hash(&mut h);
                h.finish()
            })
            .collect();
        Fingerprint { normalized, shingles }
    }

    fn jaccard(&self, other: &Fingerprint) -> f32 {
        if self.shingles.is_empty() || other.shingles.is_empty() {
            return 0.0;
        }
        let shared = self.shingles.intersection(&other.shingles).count();
        let union = self.shingles.len() + other.shingles.len() - shared;
        shared as f32 / union as f32
    }
}

/// Keeps passages (in rank order) that do not repeat a kept one; returns them and the number dropped.
fn dedup<'a>(ranked: &[&'a Passage], threshold: f32) -> (Vec<Span<'a>>, usize) {
    let mut kept: Vec<(Span<'a>, Fingerprint)> = Vec::with_capacity(ranked.len());
    let mut duplicates = 0;
    for (rank, p) in ranked.iter().enumerate() {
        let span = Span::new(p, rank);
        let fp = Fingerprint::new(&span.text);
        let repeats = kept
            .iter()
            .any(|(_, k)| k.normalized == fp.normalized || k.jaccard(&fp) >= threshold);
        if repeats {
            duplicates += 1;
        } else {
            kept.push((span, fp));
        }
    }
    (kept.into_iter().map(|(s, _)| s).collect(), duplicates)
}

/// Merges overlapping or touching spans of the same document; returns spans in rank order.
fn merge(mut spans: Vec<Span<'_>>) -> Vec<Span<'_>> {
    // Longer first at equal starts, so the merged span's location comes from the widest one.
    spans.sort_by(|a, b| {
        a.doc_id()
            .cmp(b.doc_id())
            .then(a.start.cmp(&b.start))
            .then(b.end.cmp(&a.end))
    });
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(last) if last.doc_id() == s.doc_id() && s.start <= last.end => last.absorb(s),
            _ => out.push(s),
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.rank.cmp(&b.rank)));
    out
}

/// A span chosen for the context, possibly cut to `len` bytes of its text.
struct Picked<'a> {
    span: Span<'a>,
    len: usize,
}

/// Chooses spans greedily by score within the budget; returns them in rank order and the number
/// of passages left out.
fn fill<'a>(spans: Vec<Span<'a>>, counter: &dyn TokenCounter, opts: &ContextOptions) -> (Vec<Picked<'a>>, usize) {
    // Numbers are assigned after ordering; count with the widest one any source can get.
    let widest = spans.len();
    let mut remaining = opts.budget_tokens;
    let mut picked: Vec<Picked> = Vec::new();
    let mut dropped = 0;
    for (i, span) in spans.into_iter().enumerate() {
        let separator = usize::from(!picked.is_empty());
        let Some(avail) = remaining.checked_sub(separator) else {
            dropped += span.passages;
            continue;
        };
        let head = &span.head.chunk;
        let line = header(
            widest,
            head.title.as_deref(),
            &head.source,
            &head.chunk.section,
            head.chunk.page,
        );
        let fits = |len: usize| {
            let n = counter.count_tokens(&block(&line, &span.text[..len]));
            (n <= avail).then_some(n)
        };
        let best = i == 0;
        let chosen = match fits(span.text.len()) {
            Some(n) => Some((span.text.len(), n)),
            None => cut(&span.text, best, &fits)
                .filter(|&(len, _)| best || counter.count_tokens(&span.text[..len]) >= opts.min_source_tokens),
        };
        match chosen {
            Some((len, n)) => {
                remaining = avail - n;
                picked.push(Picked { span, len });
            }
            None => dropped += span.passages,
        }
    }
    (picked, dropped)
}

/// The longest non-empty prefix of `text` (as a byte length, and the tokens `fits` counted) that
/// ends at a sentence end and fits; with `words`, failing that, the longest that ends at a word end.
fn cut(text: &str, words: bool, fits: &dyn Fn(usize) -> Option<usize>) -> Option<(usize, usize)> {
    let whole = text.trim_end().len();
    let ends = |bounds: Vec<usize>| -> Vec<usize> {
        let mut v: Vec<usize> = bounds.into_iter().filter(|&e| e > 0 && e < whole).collect();
        v.dedup();
        v
    };
    let sentences = ends(
        text.split_sentence_bound_indices()
            .map(|(b, s)| text[..b + s.len()].trim_end().len())
            .collect(),
    );
    if let Some(found) = longest_fitting(&sentences, fits) {
        return Some(found);
    }
    if !words {
        return None;
    }
    let words = ends(
        text.split_word_bound_indices()
            .filter(|(_, w)| !w.trim().is_empty())
            .map(|(b, w)| b + w.len())
            .collect(),
    );
    longest_fitting(&words, fits)
}

/// Binary search for the last cut point that fits, assuming longer prefixes never take fewer
/// tokens. Whatever the counter does, the point returned was counted and fits.
fn longest_fitting(points: &[usize], fits: &dyn Fn(usize) -> Option<usize>) -> Option<(usize, usize)> {
    let (mut lo, mut hi) = (0, points.len());
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fits(points[mid]) {
            Some(n) => {
                found = Some((points[mid], n));
                lo = mid + 1;
            }
            None => hi = mid,
        }
    }
    found
}

/// Orders, numbers and counts the picked spans; drops the weakest while the final count exceeds
/// the budget (only counters that are not monotone in the number's width get there).
fn finish(
    mut picked: Vec<Picked<'_>>,
    mut dropped: usize,
    counter: &dyn TokenCounter,
    opts: &ContextOptions,
) -> (Vec<Source>, usize, usize) {
    loop {
        let order: Vec<usize> = if opts.reorder {
            let front = (0..picked.len()).step_by(2);
            let back = (1..picked.len()).step_by(2).rev();
            front.chain(back).collect()
        } else {
            (0..picked.len()).collect()
        };
        let sources: Vec<Source> = order
            .iter()
            .enumerate()
            .map(|(pos, &i)| source(&picked[i], pos + 1, counter))
            .collect();
        let tokens = sources.iter().map(|s| s.tokens).sum::<usize>() + sources.len().saturating_sub(1);
        if tokens <= opts.budget_tokens || picked.len() <= 1 {
            return (sources, tokens, dropped);
        }
        if let Some(weakest) = picked.pop() {
            dropped += weakest.span.passages;
        }
    }
}

fn source(p: &Picked<'_>, n: usize, counter: &dyn TokenCounter) -> Source {
    let span = &p.span;
    let head = &span.head.chunk;
    let text = span.text[..p.len].to_string();
    let truncated = p.len < span.text.len();
    let end = if truncated {
        span.start + text.chars().count()
    } else {
        span.end
    };
    let mut s = Source {
        n,
        doc_id: head.chunk.doc_id.clone(),
        source: head.source.clone(),
        title: head.title.clone(),
        section: head.chunk.section.clone(),
        page: head.chunk.page,
        chunk_ids: span.chunk_ids.clone(),
        text,
        start: span.start,
        end,
        score: span.score,
        tokens: 0,
        truncated,
    };
    s.tokens = counter.count_tokens(&s.render());
    s
}

fn block(header: &str, text: &str) -> String {
    let mut out = String::with_capacity(header.len() + 1 + text.len());
    out.push_str(header);
    out.push('\n');
    out.push_str(text);
    out
}

/// `[n] Name — Section > Sub, p. 4`, on one line whatever the metadata holds.
fn header(n: usize, title: Option<&str>, source: &str, section: &[String], page: Option<u32>) -> String {
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let title = title.map(one_line).filter(|t| !t.is_empty());
    let mut path: Vec<String> = section.iter().map(|s| one_line(s)).filter(|s| !s.is_empty()).collect();
    // A Markdown document's top heading is usually its title: don't say it twice.
    if title.is_some() && path.first() == title.as_ref() {
        path.remove(0);
    }
    let mut location: Vec<String> = Vec::new();
    if !path.is_empty() {
        location.push(path.join(" > "));
    }
    if let Some(p) = page {
        location.push(format!("p. {p}"));
    }
    // Without a title, the source; an absolute path is cut to its file name, which says as much to the model in
    // fewer tokens and does not show where the file lives.
    let name = title.unwrap_or_else(|| {
        let absolute = source.starts_with('/') || source.get(1..3) == Some(":\\");
        let shown = match absolute {
            true => source.rsplit(['/', '\\']).find(|s| !s.is_empty()).unwrap_or(source),
            false => source,
        };
        one_line(shown)
    });
    let mut out = format!("[{n}] {name}");
    if !location.is_empty() {
        out.push_str(" — ");
        out.push_str(&location.join(", "));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quarry_core::text::char_slice;
    use quarry_core::{Chunk, Expanded, StoredChunk};

    /// Whitespace-separated words plus ASCII punctuation marks, like a WordPiece tokenizer.
    struct WordCounter;
    impl TokenCounter for WordCounter {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count() + text.chars().filter(|c| c.is_ascii_punctuation()).count()
        }
    }

    /// One token per four characters, rounded up.
    struct CharCounter;
    impl TokenCounter for CharCounter {
        fn count_tokens(&self, text: &str) -> usize {
            text.chars().count().div_ceil(4)
        }
    }

    /// A passage over `doc_text[start..end)` (chars) of document `doc`.
    fn passage(id: u64, doc: &str, doc_text: &str, start: usize, end: usize, score: f32) -> Passage {
        Passage {
            n: 0,
            chunk: StoredChunk {
                id,
                chunk: Chunk {
                    doc_id: doc.into(),
                    ord: id as u32,
                    text: char_slice(doc_text, start, end).to_string(),
                    start,
                    end,
                    section: vec![],
                    tokens: 0,
                    page: None,
                    context: None,
                    parent: None,
                },
                source: format!("{doc}.txt"),
                title: None,
            },
            score,
            expanded: None,
        }
    }

    /// A whole-text passage of its own document.
    fn text_passage(id: u64, text: &str, score: f32) -> Passage {
        passage(id, &format!("d{id}"), text, 0, text.chars().count(), score)
    }

    fn opts(budget: usize) -> ContextOptions {
        ContextOptions {
            budget_tokens: budget,
            ..ContextOptions::default()
        }
    }

    fn sentences(n: usize, prefix: &str) -> String {
        (0..n)
            .map(|i| format!("{prefix} sentence number {i} says something."))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let long = sentences(20, "Vitamin");
        let mut edited = long.clone();
        edited.replace_range(0..7, "Calcium");
        let other = (0..20)
            .map(|i| format!("Calcium intake in cohort {i} was measured twice."))
            .collect::<Vec<_>>()
            .join(" ");
        // (texts, threshold, expected kept chunk ids, expected duplicates)
        let cases: Vec<(Vec<String>, f32, Vec<u64>, usize)> = vec![
            (vec!["Hello world.".into(), "hello   WORLD.".into()], 0.8, vec![1], 1),
            (vec!["Hello world.".into(), "Goodbye world.".into()], 0.8, vec![1, 2], 0),
            (vec![long.clone(), edited.clone()], 0.8, vec![1], 1),
            (vec![long.clone(), edited.clone()], 1.01, vec![1, 2], 0),
            (vec![long.clone(), other], 0.8, vec![1, 2], 0),
            (vec![long.clone(), long.clone(), edited], 0.8, vec![1], 2),
        ];
        for (texts, threshold, kept, duplicates) in cases {
            let ps: Vec<Passage> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| text_passage(i as u64 + 1, t, 1.0 - i as f32 * 0.1))
                .collect();
            let o = ContextOptions {
                near_duplicate_threshold: threshold,
                ..opts(10_000)
            };
            let ctx = assemble(&ps, &WordCounter, &o);
            let ids: Vec<u64> = ctx.sources.iter().flat_map(|s| s.chunk_ids.clone()).collect();
            assert_eq!(ids, kept, "{texts:?} at {threshold}");
            assert_eq!(ctx.duplicates, duplicates, "{texts:?} at {threshold}");
        }
    }

    #[test]
    fn the_better_ranked_copy_is_kept() {
        let ps = vec![
            text_passage(1, "Same text here.", 0.2),
            text_passage(2, "Same text here.", 0.9),
        ];
        let ctx = assemble(&ps, &WordCounter, &opts(100));
        assert_eq!(ctx.sources.len(), 1);
        assert_eq!(ctx.sources[0].chunk_ids, vec![2]);
        assert_eq!(ctx.sources[0].score, 0.9);
    }

    #[test]
    fn adjacent_and_overlapping_chunks_merge_with_exact_offsets() {
        let doc = "Café opens at nine. Prices are in €. The terrace closes early. Dogs are welcome.";
        let n = doc.chars().count();
        // (chunk spans in rank order, merge, expected sources as (start, end, chunk ids))
        type Case = (Vec<(usize, usize)>, bool, Vec<(usize, usize, Vec<u64>)>);
        let cases: Vec<Case> = vec![
            (vec![(20, 50), (0, 30)], true, vec![(0, 50, vec![2, 1])]),
            (vec![(0, 20), (20, n)], true, vec![(0, n, vec![1, 2])]),
            (vec![(0, n), (10, 30)], true, vec![(0, n, vec![1, 2])]),
            (vec![(0, 19), (20, n)], true, vec![(0, 19, vec![1]), (20, n, vec![2])]),
            (
                vec![(20, 50), (0, 30)],
                false,
                vec![(20, 50, vec![1]), (0, 30, vec![2])],
            ),
            (vec![(40, n), (0, 20), (15, 45)], true, vec![(0, n, vec![2, 3, 1])]),
        ];
        for (spans, merge, expected) in cases {
            let ps: Vec<Passage> = spans
                .iter()
                .enumerate()
                .map(|(i, &(s, e))| passage(i as u64 + 1, "d", doc, s, e, 1.0 - i as f32 * 0.1))
                .collect();
            let o = ContextOptions {
                merge_adjacent: merge,
                near_duplicate_threshold: 2.0,
                ..opts(10_000)
            };
            let ctx = assemble(&ps, &WordCounter, &o);
            let got: Vec<(usize, usize, Vec<u64>)> = ctx
                .sources
                .iter()
                .map(|s| (s.start, s.end, s.chunk_ids.clone()))
                .collect();
            assert_eq!(got, expected, "{spans:?}");
            for s in &ctx.sources {
                assert_eq!(s.text, char_slice(doc, s.start, s.end));
            }
            assert_eq!(
                ctx.sources[0].score, 1.0,
                "a merged source has its best passage's score"
            );
        }
    }

    #[test]
    fn expanded_spans_are_the_evidence() {
        let doc = sentences(6, "Parent");
        let mut p = passage(1, "d", &doc, 40, 60, 1.0);
        let end = doc.chars().count();
        p.expanded = Some(Expanded {
            text: doc.clone(),
            start: 0,
            end,
        });
        let ctx = assemble(&[p], &WordCounter, &opts(1000));
        assert_eq!((ctx.sources[0].start, ctx.sources[0].end), (0, end));
        assert_eq!(ctx.sources[0].text, doc);
    }

    #[test]
    fn a_later_source_is_cut_at_a_sentence_end() {
        let first = sentences(3, "First");
        let second = sentences(10, "Second");
        let ps = vec![text_passage(1, &first, 0.9), text_passage(2, &second, 0.5)];
        let whole = assemble(&ps, &WordCounter, &opts(10_000));
        let budget = whole.tokens - 12;
        let o = ContextOptions {
            min_source_tokens: 5,
            ..opts(budget)
        };
        let ctx = assemble(&ps, &WordCounter, &o);
        assert_eq!(ctx.sources.len(), 2);
        let cut = &ctx.sources[1];
        assert!(cut.truncated);
        assert!(cut.text.ends_with("says something."), "{:?}", cut.text);
        assert!(second.starts_with(&cut.text) && cut.text.len() < second.len());
        assert_eq!(cut.end, cut.start + cut.text.chars().count());
        assert!(!ctx.sources[0].truncated);
        assert!(ctx.tokens <= budget);
        // Words add up across a blank line: the separator token is the only slack.
        assert_eq!(WordCounter.count_tokens(&ctx.render()) + 1, ctx.tokens);
    }

    #[test]
    fn a_cut_too_small_is_skipped_and_smaller_sources_still_fit() {
        let ps = vec![
            text_passage(1, &sentences(3, "First"), 0.9),
            text_passage(2, &sentences(10, "Second"), 0.5),
            text_passage(3, "A short note.", 0.1),
        ];
        let first_alone = assemble(&ps[..1], &WordCounter, &opts(10_000)).tokens;
        // Room for the first, a separator, the short note and a few words: not enough for the
        // second's first sentence plus min_source_tokens.
        let budget = first_alone + 1 + 8 + 4;
        let ctx = assemble(&ps, &WordCounter, &opts(budget));
        let ids: Vec<u64> = ctx.sources.iter().flat_map(|s| s.chunk_ids.clone()).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(ctx.dropped, 1);
        assert!(ctx.tokens <= budget);
    }

    #[test]
    fn the_best_source_is_always_kept_and_cut_to_fit() {
        let many = sentences(50, "Best");
        let one_long_sentence = format!("{}.", vec!["word"; 300].join(" "));
        // (text, budget, counter, cut ends with)
        let cases: Vec<(&str, usize, &dyn TokenCounter, &str)> = vec![
            (many.as_str(), 40, &WordCounter, "says something."),
            (many.as_str(), 40, &CharCounter, "says something."),
            (one_long_sentence.as_str(), 20, &WordCounter, "word"),
            (one_long_sentence.as_str(), 20, &CharCounter, "word"),
        ];
        for (text, budget, counter, suffix) in cases {
            let ps = vec![text_passage(1, text, 0.9), text_passage(2, "Tiny.", 0.1)];
            let ctx = assemble(&ps, counter, &opts(budget));
            let best = &ctx.sources[0];
            assert_eq!(best.chunk_ids, vec![1]);
            assert!(best.truncated);
            assert!(best.text.ends_with(suffix), "{:?}", best.text);
            assert_eq!(best.text, char_slice(text, best.start, best.end));
            assert!(counter.count_tokens(&ctx.render()) <= budget);
            assert!(ctx.tokens <= budget);
        }
    }

    #[test]
    fn empty_inputs_give_an_empty_context() {
        let ctx = assemble(&[], &WordCounter, &opts(100));
        assert_eq!(ctx, Context::default());
        let ctx = assemble(&[text_passage(1, "Some text.", 1.0)], &WordCounter, &opts(0));
        assert!(ctx.sources.is_empty());
        assert_eq!((ctx.tokens, ctx.dropped), (0, 1));
        assert_eq!(ctx.render(), "");
    }

    #[test]
    fn reordering_puts_the_best_at_both_ends_and_numbers_in_display_order() {
        let ps: Vec<Passage> = (1..=6)
            .map(|i| text_passage(i, &format!("Distinct passage about topic {i}."), 1.0 - i as f32 * 0.1))
            .collect();
        // (reorder, ranks in display order)
        let cases = [(false, vec![1, 2, 3, 4, 5, 6]), (true, vec![1, 3, 5, 6, 4, 2])];
        for (reorder, expected) in cases {
            let o = ContextOptions {
                reorder,
                ..opts(10_000)
            };
            let ctx = assemble(&ps, &WordCounter, &o);
            let ranks: Vec<u64> = ctx.sources.iter().map(|s| s.chunk_ids[0]).collect();
            assert_eq!(ranks, expected);
            let numbers: Vec<usize> = ctx.sources.iter().map(|s| s.n).collect();
            assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6]);
            assert!(ctx.render().starts_with("[1] d1.txt\n"));
            assert_eq!(ctx.source(2).unwrap().chunk_ids, vec![expected[1]]);
            assert!(ctx.source(7).is_none());
        }
    }

    #[test]
    fn headers_name_the_source_and_where_in_it() {
        // (title, source, section, page, expected)
        type Case = (
            Option<&'static str>,
            &'static str,
            &'static [&'static str],
            Option<u32>,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                Some("Guide"),
                "g.md",
                &["Install", "Linux"],
                Some(4),
                "[3] Guide — Install > Linux, p. 4",
            ),
            (Some("Guide"), "g.md", &["Install"], None, "[3] Guide — Install"),
            (Some("Guide"), "g.md", &[], Some(2), "[3] Guide — p. 2"),
            (Some("Guide"), "g.md", &[], None, "[3] Guide"),
            (None, "docs/g.md", &["Install"], None, "[3] docs/g.md — Install"),
            (None, "report.pdf", &[], Some(7), "[3] report.pdf — p. 7"),
            (None, "/srv/data/corpus.jsonl", &[], None, "[3] corpus.jsonl"),
            (None, "C:\\data\\notes.txt", &[], None, "[3] notes.txt"),
            (Some("Guide"), "g.md", &["Guide", "Use"], None, "[3] Guide — Use"),
            (Some("  "), "g.md", &["A\nB"], None, "[3] g.md — A B"),
        ];
        for &(title, source, section, page, expected) in cases {
            let src = Source {
                n: 3,
                doc_id: "d".into(),
                source: source.into(),
                title: title.map(str::to_string),
                section: section.iter().map(|s| s.to_string()).collect(),
                page,
                chunk_ids: vec![1],
                text: "Body.".into(),
                start: 0,
                end: 5,
                score: 1.0,
                tokens: 0,
                truncated: false,
            };
            assert_eq!(src.header(), expected);
            assert_eq!(src.render(), format!("{expected}\nBody."));
        }
    }

    /// Words of the synthetic documents, some of them more than one byte per char.
    const VOCAB: &str = "the study found vitamin dose fracture risk trial patients über café naïve results were \
                         significant placebo group €5 daily years";

    /// A synthetic document of `words` words in sentences of 1–20 words, some ending a paragraph,
    /// and the char offsets (start, end) of each word.
    fn synthetic(seed: u64, words: usize) -> (String, Vec<(usize, usize)>) {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let vocab: Vec<&str> = VOCAB.split_whitespace().collect();
        let (mut text, mut offsets, mut chars) = (String::new(), Vec::with_capacity(words), 0usize);
        let mut left_in_sentence = 0;
        for i in 0..words {
            if i > 0 {
                let sep = if left_in_sentence == 0 && next() % 4 == 0 {
                    "\n\n"
                } else {
                    " "
                };
                text.push_str(sep);
                chars += sep.chars().count();
            }
            if left_in_sentence == 0 {
                left_in_sentence = 1 + (next() % 20) as usize;
            }
            let mut w = vocab[(next() % vocab.len() as u64) as usize].to_string();
            left_in_sentence -= 1;
            if left_in_sentence == 0 || i + 1 == words {
                w.push('.');
            }
            let n = w.chars().count();
            offsets.push((chars, chars + n));
            text.push_str(&w);
            chars += n;
        }
        (text, offsets)
    }

    /// (document, first word as a fraction of the document, words 1..2000, score, expand by words)
    type Spec = (usize, f64, usize, f32, Option<usize>);

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0..3usize,
            0.0..1.0f64,
            1..2000usize,
            0.0..1.0f32,
            prop::option::of(1..300usize),
        )
    }

    fn build(docs: &[(String, Vec<(usize, usize)>)], specs: &[Spec]) -> Vec<Passage> {
        specs
            .iter()
            .enumerate()
            .map(|(i, &(d, frac, len, score, expand))| {
                let (text, words) = &docs[d];
                let first = ((words.len() - 1) as f64 * frac) as usize;
                let last = (first + len - 1).min(words.len() - 1);
                let (start, end) = (words[first].0, words[last].1);
                let mut p = passage(i as u64, &format!("doc{d}"), text, start, end, score);
                p.chunk.title = (d != 2).then(|| format!("Document {d}"));
                p.chunk.chunk.section = vec!["Results".into(), format!("Part {}", first / 500)];
                p.chunk.chunk.page = (d == 1).then_some(1 + first as u32 / 300);
                if let Some(by) = expand {
                    let (s, e) = (
                        words[first.saturating_sub(by)].0,
                        words[(last + by).min(words.len() - 1)].1,
                    );
                    p.expanded = Some(Expanded {
                        text: char_slice(text, s, e).to_string(),
                        start: s,
                        end: e,
                    });
                }
                p
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn context_fits_keeps_the_best_and_quotes_documents_exactly(
            seed in any::<u64>(),
            specs in prop::collection::vec(spec(), 1..12),
            budget in prop_oneof![0..64usize, 0..4000usize],
            merge in any::<bool>(),
            reorder in any::<bool>(),
            min_source_tokens in 0..64usize,
        ) {
            let docs: Vec<_> = (0..3u64).map(|d| synthetic(seed ^ d, 2500)).collect();
            let passages = build(&docs, &specs);
            let best = passages
                .iter()
                .fold(None::<&Passage>, |b, p| match b { Some(b) if b.score >= p.score => Some(b), _ => Some(p) })
                .unwrap();
            let o = ContextOptions {
                budget_tokens: budget,
                near_duplicate_threshold: 0.8,
                merge_adjacent: merge,
                reorder,
                min_source_tokens,
            };
            let counters: [&dyn TokenCounter; 2] = [&WordCounter, &CharCounter];
            for counter in counters {
                let ctx = assemble(&passages, counter, &o);
                // (a) the rendered context fits the budget.
                prop_assert!(ctx.tokens <= budget);
                prop_assert!(counter.count_tokens(&ctx.render()) <= budget);
                // (b) the best chunk is always shown once there is room for a header and a few words.
                if budget >= 40 {
                    prop_assert!(
                        ctx.sources.iter().any(|s| s.chunk_ids.contains(&best.chunk.id)),
                        "best chunk {} missing", best.chunk.id
                    );
                }
                // (c) every source quotes its document exactly, and is numbered in display order.
                for (i, s) in ctx.sources.iter().enumerate() {
                    let d: usize = s.doc_id.trim_start_matches("doc").parse().unwrap();
                    prop_assert_eq!(&s.text, char_slice(&docs[d].0, s.start, s.end));
                    prop_assert_eq!(s.n, i + 1);
                    prop_assert!(!s.text.is_empty());
                }
                let shown: usize = ctx.sources.iter().map(|s| s.chunk_ids.len()).sum();
                prop_assert_eq!(shown + ctx.dropped + ctx.duplicates, passages.len());
            }
        }
    }
}
