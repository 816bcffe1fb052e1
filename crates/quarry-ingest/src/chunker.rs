//! Token-aware recursive chunking: sections (headings) → paragraphs → sentences → words.
//!
//! Every chunk is a contiguous slice of the document text, so its character offsets map back to the
//! exact source; its size is measured with the embedding model's own tokenizer.

use quarry_core::text::CharOffsets;
use quarry_core::{Chunk, ChunkingConfig, Document, TokenCounter};
use unicode_segmentation::UnicodeSegmentation;

/// How a document's text is structured, which decides the first level of splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    Plain,
    /// ATX headings (`# Title`) open sections; fenced code blocks are kept whole where they fit.
    Markdown,
}

/// A byte range of the text with the headings that enclose it.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub path: Vec<String>,
    pub start: usize,
    pub end: usize,
}

pub struct Chunker<'a> {
    counter: &'a dyn TokenCounter,
    max_tokens: usize,
    overlap_tokens: usize,
}

/// A byte range with its token count.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    tokens: usize,
}

/// A section longer than this many chunks is too long to hand to a generator whole: its chunks' parents
/// are their neighbourhoods instead.
const PARENT_MAX_CHUNKS: usize = 4;

/// A finished chunk's byte range, token count and context (a table header).
#[derive(Debug, Clone)]
struct Span {
    start: usize,
    end: usize,
    tokens: usize,
    context: Option<String>,
}

impl Span {
    fn new(start: usize, end: usize, tokens: usize) -> Self {
        Span {
            start,
            end,
            tokens,
            context: None,
        }
    }
}

impl<'a> Chunker<'a> {
    pub fn new(counter: &'a dyn TokenCounter, cfg: &ChunkingConfig) -> Self {
        Chunker {
            counter,
            max_tokens: cfg.max_tokens.max(1),
            overlap_tokens: cfg.overlap_tokens,
        }
    }

    pub fn chunk(&self, doc: &Document, format: TextFormat) -> Vec<Chunk> {
        let text = doc.text.as_str();
        let sections = match format {
            TextFormat::Plain => vec![Section {
                path: vec![],
                start: 0,
                end: text.len(),
            }],
            TextFormat::Markdown => markdown_sections(text),
        };
        // Paged text (PDF) separates pages with form feeds; a chunk never crosses a page.
        let paged = doc.metadata.contains_key("pages") || text.contains('\u{c}');
        let page_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\u{c}').map(|(i, _)| i + 1))
            .collect();
        let page_of = |byte: usize| page_starts.partition_point(|&s| s <= byte) as u32;
        let offsets = CharOffsets::new(text);
        let mut chunks = Vec::new();
        for section in sections {
            let first = chunks.len();
            let mut a = section.start;
            while a < section.end {
                let b = text[a..section.end].find('\u{c}').map_or(section.end, |i| a + i);
                let part = Section {
                    path: section.path.clone(),
                    start: a,
                    end: b,
                };
                for span in self.split_section(text, &part, format) {
                    chunks.push(Chunk {
                        doc_id: doc.id.clone(),
                        ord: chunks.len() as u32,
                        text: text[span.start..span.end].to_string(),
                        start: offsets.char_of(span.start),
                        end: offsets.char_of(span.end),
                        section: section.path.clone(),
                        tokens: span.tokens,
                        page: paged.then(|| page_of(span.start)),
                        context: span.context,
                        parent: None,
                    });
                }
                a = b + 1;
            }
            if chunks.len() - first > 1 {
                // The parent is the section when it is a readable size, else the chunk with its neighbours.
                let (s, e) = trim_range(text, section.start, section.end);
                if self.counter.count_tokens(&text[s..e]) <= PARENT_MAX_CHUNKS * self.max_tokens {
                    let parent = (offsets.char_of(s), offsets.char_of(e));
                    chunks[first..].iter_mut().for_each(|c| c.parent = Some(parent));
                } else {
                    let bounds: Vec<(usize, usize)> = chunks[first..].iter().map(|c| (c.start, c.end)).collect();
                    for (i, c) in chunks[first..].iter_mut().enumerate() {
                        let from = bounds[i.saturating_sub(1)].0;
                        let to = bounds[(i + 1).min(bounds.len() - 1)].1;
                        c.parent = Some((from, to));
                    }
                }
            }
        }
        chunks
    }

    /// Chunks of one section. Paragraphs are packed together; a table too big for one chunk is split
    /// between rows, each part carrying the table's header as context; a code block too big is split
    /// between lines.
    fn split_section(&self, text: &str, s: &Section, format: TextFormat) -> Vec<Span> {
        let (start, end) = trim_range(text, s.start, s.end);
        if start >= end {
            return vec![];
        }
        let tokens = self.counter.count_tokens(&text[start..end]);
        if tokens <= self.max_tokens {
            return vec![Span::new(start, end, tokens)];
        }
        let mut out = Vec::new();
        let mut run: Vec<Piece> = Vec::new();
        for (a, b) in paragraphs(text, start, end, format) {
            let (a, b) = trim_range(text, a, b);
            if a >= b {
                continue;
            }
            let tokens = self.counter.count_tokens(&text[a..b]);
            if tokens <= self.max_tokens {
                run.push(Piece {
                    start: a,
                    end: b,
                    tokens,
                });
                continue;
            }
            let block = &text[a..b];
            if format == TextFormat::Markdown && is_table(block) {
                out.extend(self.merge(text, &std::mem::take(&mut run)));
                out.extend(self.split_table(text, a, b));
            } else if format == TextFormat::Markdown && is_fence(block) {
                out.extend(self.merge(text, &std::mem::take(&mut run)));
                let lines = self.line_pieces(text, a, b);
                out.extend(self.merge(text, &lines));
            } else {
                run.extend(self.pieces(text, a, b, 1));
            }
        }
        out.extend(self.merge(text, &run));
        out
    }

    /// Rows of an oversized pipe table, packed into chunks that each carry the header as context.
    fn split_table(&self, text: &str, start: usize, end: usize) -> Vec<Span> {
        let mut lines = line_ranges(text, start, end);
        // Header: the first row, plus the `|---|` separator when present.
        let header_lines = if lines.len() > 1 && is_separator(&text[lines[1].0..lines[1].1]) {
            2
        } else {
            1
        };
        // The context is the header row alone: the `|---|` line says nothing, and on a wide table it costs
        // as many tokens as the names.
        let header = text[lines[0].0..lines[0].1].trim().to_string();
        lines.drain(..header_lines.min(lines.len()));
        let header_tokens = self.counter.count_tokens(&header);
        // The header travels with every part, like a section heading: it is embedded with the rows but only
        // half of it counts against their budget, so a wide table (25 columns) still gets whole rows per
        // chunk, and header + rows stay within twice the budget (the embedder's window). A header longer
        // than the budget itself is dropped rather than crowding out every row.
        let (context, budget) = if header_tokens <= self.max_tokens {
            (Some(header), (self.max_tokens - header_tokens / 2).max(1))
        } else {
            (None, self.max_tokens)
        };
        let sub = Chunker {
            counter: self.counter,
            max_tokens: budget,
            overlap_tokens: 0,
        };
        let rows: Vec<Piece> = lines
            .into_iter()
            .flat_map(|(a, b)| sub.line_piece(text, a, b))
            .collect();
        let mut spans = sub.merge(text, &rows);
        spans.iter_mut().for_each(|s| s.context = context.clone());
        spans
    }

    /// Lines of a code block as pieces (a line too long falls back to words).
    fn line_pieces(&self, text: &str, start: usize, end: usize) -> Vec<Piece> {
        line_ranges(text, start, end)
            .into_iter()
            .flat_map(|(a, b)| self.line_piece(text, a, b))
            .collect()
    }

    /// One line as a piece, or as word pieces when it alone is over the budget.
    fn line_piece(&self, text: &str, a: usize, b: usize) -> Vec<Piece> {
        let tokens = self.counter.count_tokens(&text[a..b]);
        if tokens <= self.max_tokens {
            vec![Piece {
                start: a,
                end: b,
                tokens,
            }]
        } else {
            self.pieces(text, a, b, 2)
        }
    }

    /// Splits [start, end) into pieces of at most `max_tokens`, at the coarsest level that works
    /// (1 sentences, 2 words, 3 characters).
    fn pieces(&self, text: &str, start: usize, end: usize, level: usize) -> Vec<Piece> {
        let ranges = match level {
            0 | 1 => sentences(text, start, end),
            2 => words(text, start, end),
            _ => chars(text, start, end),
        };
        let mut out = Vec::new();
        for (a, b) in ranges {
            let (a, b) = trim_range(text, a, b);
            if a >= b {
                continue;
            }
            let tokens = self.counter.count_tokens(&text[a..b]);
            if tokens <= self.max_tokens || level >= 3 {
                out.push(Piece {
                    start: a,
                    end: b,
                    tokens,
                });
            } else {
                out.extend(self.pieces(text, a, b, level + 1));
            }
        }
        out
    }

    /// Greedily packs consecutive pieces into chunks, carrying up to `overlap_tokens` of trailing
    /// pieces into the next chunk. A packed chunk is re-counted, since token counts of a
    /// concatenation need not be the sum of the parts; an over-full chunk gives back its last piece.
    fn merge(&self, text: &str, pieces: &[Piece]) -> Vec<Span> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < pieces.len() {
            let mut j = i;
            let mut sum = 0;
            while j < pieces.len() && (j == i || sum + pieces[j].tokens <= self.max_tokens) {
                sum += pieces[j].tokens;
                j += 1;
            }
            // Verify with the real tokenizer; shrink until it fits (a single piece always fits).
            let mut counted = self.counter.count_tokens(&text[pieces[i].start..pieces[j - 1].end]);
            while counted > self.max_tokens && j > i + 1 {
                j -= 1;
                counted = self.counter.count_tokens(&text[pieces[i].start..pieces[j - 1].end]);
            }
            out.push(Span::new(pieces[i].start, pieces[j - 1].end, counted));
            if j >= pieces.len() {
                break;
            }
            // Step back over trailing pieces for overlap, but always advance past `i`.
            let mut next = j;
            let mut overlap = 0;
            while next > i + 1 && overlap + pieces[next - 1].tokens <= self.overlap_tokens {
                overlap += pieces[next - 1].tokens;
                next -= 1;
            }
            i = next;
        }
        out
    }
}

/// Splits Markdown into sections at ATX headings (outside fenced code), tracking the heading path.
pub fn markdown_sections(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut current_start = 0;
    let mut current_path: Vec<String> = Vec::new();
    let mut in_fence = false;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence {
            if let Some((level, title)) = atx_heading(trimmed) {
                if pos > current_start {
                    sections.push(Section {
                        path: current_path.clone(),
                        start: current_start,
                        end: pos,
                    });
                }
                path.retain(|(l, _)| *l < level);
                path.push((level, title));
                current_path = path.iter().map(|(_, t)| t.clone()).collect();
                current_start = pos;
            }
        }
        pos += line.len();
    }
    if text.len() > current_start {
        sections.push(Section {
            path: current_path,
            start: current_start,
            end: text.len(),
        });
    }
    sections
}

fn atx_heading(line: &str) -> Option<(usize, String)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t') || rest.starts_with('\n')) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim().to_string();
    Some((level, title))
}

fn trim_range(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead == s.len() {
        return (start, start);
    }
    (start + lead, end - trail)
}

/// Paragraphs separated by blank lines; a fenced code block (Markdown) is never cut at its blank lines.
fn paragraphs(text: &str, start: usize, end: usize, format: TextFormat) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut para_start = start;
    let mut pos = start;
    let mut in_fence = false;
    let mut prev_blank = false;
    for line in text[start..end].split_inclusive('\n') {
        let t = line.trim();
        if format == TextFormat::Markdown && (t.starts_with("```") || t.starts_with("~~~")) {
            in_fence = !in_fence;
        }
        let blank = t.is_empty();
        if !blank && prev_blank && !in_fence && pos > para_start {
            out.push((para_start, pos));
            para_start = pos;
        }
        prev_blank = blank && !in_fence;
        pos += line.len();
    }
    if end > para_start {
        out.push((para_start, end));
    }
    out
}

/// Line ranges (without their newline) of [start, end).
fn line_ranges(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = start;
    for line in text[start..end].split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if !body.trim().is_empty() {
            out.push((pos, pos + body.len()));
        }
        pos += line.len();
    }
    out
}

/// A Markdown pipe table: every line starts with `|`.
fn is_table(block: &str) -> bool {
    block.lines().count() > 1 && block.lines().all(|l| l.trim_start().starts_with('|'))
}

fn is_separator(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.contains('-') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// A fenced code block and nothing else.
fn is_fence(block: &str) -> bool {
    let t = block.trim();
    (t.starts_with("```") && t.ends_with("```")) || (t.starts_with("~~~") && t.ends_with("~~~"))
}

fn sentences(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    text[start..end]
        .split_sentence_bound_indices()
        .map(|(i, s)| (start + i, start + i + s.len()))
        .collect()
}

/// Word-boundary pieces, with whitespace attached to the preceding word so pieces stay contiguous.
fn words(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, w) in text[start..end].split_word_bound_indices() {
        let (a, b) = (start + i, start + i + w.len());
        match out.last_mut() {
            Some(last) if w.trim().is_empty() => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}

/// Last resort for a single "word" longer than the limit (a base64 blob): fixed runs of chars.
fn chars(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut run_start = start;
    for (n, (i, _)) in text[start..end].char_indices().enumerate() {
        if n > 0 && n % 16 == 0 {
            out.push((run_start, start + i));
            run_start = start + i;
        }
    }
    out.push((run_start, end));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quarry_core::text::char_slice;

    /// Counts whitespace-separated words plus punctuation marks: a deterministic stand-in for a
    /// WordPiece tokenizer, with the same non-additivity at word boundaries.
    struct WordCounter;
    impl TokenCounter for WordCounter {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count() + text.chars().filter(|c| c.is_ascii_punctuation()).count()
        }
    }

    fn doc(text: &str) -> Document {
        Document {
            id: "d".into(),
            source: "mem".into(),
            title: None,
            text: text.into(),
            metadata: Default::default(),
        }
    }

    fn cfg(max: usize, overlap: usize) -> ChunkingConfig {
        ChunkingConfig {
            max_tokens: max,
            overlap_tokens: overlap,
        }
    }

    #[test]
    fn short_text_is_one_chunk() {
        let c = Chunker::new(&WordCounter, &cfg(50, 5));
        let chunks = c.chunk(&doc("  Hello world.  "), TextFormat::Plain);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "Hello world.");
        assert_eq!((chunks[0].start, chunks[0].end), (2, 14));
    }

    #[test]
    fn markdown_headings_become_section_paths() {
        let md = "# Guide\nintro\n\n## Install\nrun it\n\n```\n# not a heading\n```\n### Linux\napt\n## Use\nask\n";
        let c = Chunker::new(&WordCounter, &cfg(100, 0));
        let chunks = c.chunk(&doc(md), TextFormat::Markdown);
        let paths: Vec<String> = chunks.iter().map(|c| c.section.join("/")).collect();
        assert_eq!(
            paths,
            vec!["Guide", "Guide/Install", "Guide/Install/Linux", "Guide/Use"]
        );
        assert!(chunks[1].text.contains("# not a heading"));
    }

    #[test]
    fn long_paragraphs_split_at_sentences_with_overlap() {
        let text = (0..40)
            .map(|i| format!("Sentence number {i} is here."))
            .collect::<Vec<_>>()
            .join(" ");
        let c = Chunker::new(&WordCounter, &cfg(30, 8));
        let chunks = c.chunk(&doc(&text), TextFormat::Plain);
        assert!(chunks.len() > 5);
        for w in chunks.windows(2) {
            assert!(w[1].start < w[0].end, "consecutive chunks overlap");
            assert!(w[1].start > w[0].start, "chunks advance");
        }
        for ch in &chunks {
            assert!(ch.text.starts_with("Sentence"), "starts at a sentence: {:?}", ch.text);
        }
    }

    #[test]
    fn unsplittable_word_falls_back_to_characters() {
        let blob = "x".repeat(500);
        struct CharCounter;
        impl TokenCounter for CharCounter {
            fn count_tokens(&self, text: &str) -> usize {
                text.chars().count().div_ceil(4)
            }
        }
        let c = Chunker::new(&CharCounter, &cfg(8, 0));
        let chunks = c.chunk(&doc(&blob), TextFormat::Plain);
        assert!(chunks.len() > 10);
        assert!(chunks.iter().all(|c| c.tokens <= 8));
        let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined, blob);
    }

    #[test]
    fn pages_split_chunks_and_number_them() {
        let text = "First page text.\u{c}Second page.\u{c}\u{c}Fourth page after an empty one.";
        let c = Chunker::new(&WordCounter, &cfg(100, 0));
        let chunks = c.chunk(&doc(text), TextFormat::Markdown);
        let got: Vec<(Option<u32>, &str)> = chunks.iter().map(|c| (c.page, c.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(1), "First page text."),
                (Some(2), "Second page."),
                (Some(4), "Fourth page after an empty one.")
            ]
        );
        for ch in &chunks {
            assert_eq!(char_slice(text, ch.start, ch.end), ch.text);
        }
    }

    #[test]
    fn big_tables_split_between_rows_and_carry_their_header() {
        let mut md = String::from("# Stats\n\nIntro line.\n\n| State | Count |\n|---|---|\n");
        for i in 0..30 {
            md.push_str(&format!("| State{i} | {} |\n", i * 7));
        }
        md.push_str("\nAfter the table.\n");
        let c = Chunker::new(&WordCounter, &cfg(40, 0));
        let chunks = c.chunk(&doc(&md), TextFormat::Markdown);
        let table: Vec<&Chunk> = chunks.iter().filter(|c| c.text.contains("| State")).collect();
        assert!(table.len() > 2, "the table is split: {}", table.len());
        for ch in &table {
            assert_eq!(ch.context.as_deref(), Some("| State | Count |"));
            for line in ch.text.lines() {
                assert!(
                    line.starts_with("| State") && line.ends_with('|'),
                    "whole rows only: {line:?}"
                );
            }
            assert!(ch.tokens <= 40);
        }
        assert!(
            chunks.iter().all(|c| c.parent.is_some()),
            "a split section gives its chunks a parent"
        );
        // This section is over four chunks long: each chunk's parent is the chunk with its neighbours.
        for (i, c) in chunks.iter().enumerate() {
            let (ps, pe) = c.parent.unwrap();
            assert_eq!(ps, chunks[i.saturating_sub(1)].start);
            assert_eq!(pe, chunks[(i + 1).min(chunks.len() - 1)].end);
            assert!(char_slice(&md, ps, pe).contains(&c.text));
        }
    }

    #[test]
    fn big_code_blocks_split_between_lines() {
        let mut md = String::from("```\n");
        for i in 0..40 {
            md.push_str(&format!("let x{i} = compute({i}, {});\n", i + 1));
        }
        md.push_str("```\n");
        let c = Chunker::new(&WordCounter, &cfg(30, 0));
        let chunks = c.chunk(&doc(&md), TextFormat::Markdown);
        assert!(chunks.len() > 3);
        for ch in &chunks {
            let body = ch.text.trim_start_matches("```").trim();
            for line in body.lines().filter(|l| !l.starts_with("```")) {
                assert!(
                    line.starts_with("let x") && line.ends_with(");"),
                    "whole lines only: {line:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn chunks_map_back_and_fit(
            words in proptest::collection::vec("[a-zA-Zé€]{1,12}[.,!?]?", 0..400),
            breaks in proptest::collection::vec(0usize..4, 0..400),
            max in 8usize..60,
            overlap_frac in 0usize..3,
            md in any::<bool>(),
        ) {
            let mut text = String::new();
            for (i, w) in words.iter().enumerate() {
                match breaks.get(i).copied().unwrap_or(0) {
                    0 | 1 => text.push(' '),
                    2 => text.push_str("\n\n"),
                    _ => text.push_str("\n## Heading\n"),
                }
                text.push_str(w);
            }
            let overlap = max * overlap_frac / 8;
            let c = Chunker::new(&WordCounter, &cfg(max, overlap));
            let format = if md { TextFormat::Markdown } else { TextFormat::Plain };
            let d = doc(&text);
            let chunks = c.chunk(&d, format);
            let mut prev_start = 0;
            for (i, ch) in chunks.iter().enumerate() {
                prop_assert_eq!(ch.ord as usize, i);
                prop_assert_eq!(char_slice(&text, ch.start, ch.end), ch.text.as_str());
                prop_assert!(ch.tokens <= max, "chunk over the limit: {} tokens > {}", ch.tokens, max);
                prop_assert_eq!(ch.tokens, WordCounter.count_tokens(&ch.text));
                prop_assert!(ch.start >= prev_start, "chunks are in document order");
                prev_start = ch.start;
            }
            // Every non-space character of the text is inside some chunk.
            let mut inside = vec![false; text.chars().count()];
            for ch in &chunks { inside[ch.start..ch.end].iter_mut().for_each(|x| *x = true); }
            for (k, c) in text.chars().enumerate() {
                prop_assert!(inside[k] || c.is_whitespace(), "char {} ({:?}) not covered", k, c);
            }
        }
    }
}
