//! An answer made of the passages' own sentences: no language model, nothing invented. Each chosen
//! sentence is followed by a citation marker that points at its exact span in the source document.

use std::collections::HashSet;
use std::sync::Arc;

use quarry_core::text::CharOffsets;
use quarry_core::{Answer, Citation, Embedder, Generator, Passage, Result};
use unicode_segmentation::UnicodeSegmentation;

pub struct ExtractiveGenerator {
    embedder: Arc<dyn Embedder>,
    /// Sentences in the answer, at most.
    pub max_sentences: usize,
    /// Passages (in rank order) whose sentences are considered.
    pub max_passages: usize,
    /// A sentence is kept only if its score is at least this share of the best sentence's.
    pub relative_threshold: f32,
}

/// A candidate sentence with its place in the document.
struct Candidate<'a> {
    passage: &'a Passage,
    text: &'a str,
    /// Character offsets into the document text.
    start: usize,
    end: usize,
    score: f32,
}

impl ExtractiveGenerator {
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        ExtractiveGenerator {
            embedder,
            max_sentences: 3,
            max_passages: 5,
            relative_threshold: 0.8,
        }
    }

    fn candidates<'a>(&self, passages: &'a [Passage]) -> Vec<Candidate<'a>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for p in passages.iter().take(self.max_passages) {
            let (text, base) = p.evidence();
            let offsets = CharOffsets::new(text);
            for (b, s) in text.split_sentence_bound_indices() {
                let trimmed = s.trim();
                // Fragments (headings, stray numbers) are not answers.
                if trimmed.split_whitespace().count() < 4 || !seen.insert(trimmed.to_lowercase()) {
                    continue;
                }
                let lead = s.len() - s.trim_start().len();
                let (sb, eb) = (b + lead, b + lead + trimmed.len());
                out.push(Candidate {
                    passage: p,
                    text: trimmed,
                    start: base + offsets.char_of(sb),
                    end: base + offsets.char_of(eb),
                    score: 0.0,
                });
            }
        }
        out
    }
}

/// Share of the question's content words (length > 2) that the sentence contains.
fn overlap(question: &HashSet<String>, sentence: &str) -> f32 {
    if question.is_empty() {
        return 0.0;
    }
    let words: HashSet<String> = content_words(sentence).collect();
    question.iter().filter(|w| words.contains(*w)).count() as f32 / question.len() as f32
}

fn content_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.unicode_words()
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
}

impl Generator for ExtractiveGenerator {
    fn name(&self) -> &str {
        "extractive"
    }

    fn answer(&self, question: &str, passages: &[Passage]) -> Result<Answer> {
        let mut cands = self.candidates(passages);
        if cands.is_empty() {
            let mut a = Answer::new(
                "The indexed documents contain nothing that answers this.".into(),
                vec![],
            );
            a.abstained = true;
            return Ok(a);
        }
        let q = self.embedder.embed_query(question)?;
        // A sentence is embedded with its section headings, which often carry what it is about
        // ("Treatment", "Side effects").
        let texts: Vec<String> = cands
            .iter()
            .map(|c| {
                let section = &c.passage.chunk.chunk.section;
                if section.is_empty() {
                    c.text.to_string()
                } else {
                    format!("{}: {}", section.join(" > "), c.text)
                }
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = self.embedder.embed(&refs)?;
        let qwords: HashSet<String> = content_words(question).collect();
        for ((c, v), text) in cands.iter_mut().zip(&vectors).zip(&texts) {
            let cosine: f32 = v.iter().zip(&q).map(|(a, b)| a * b).sum();
            // Semantic match first; shared words and the retriever's rank break near-ties.
            c.score = cosine + 0.2 * overlap(&qwords, text) + 0.05 / c.passage.n as f32;
        }
        let best = cands.iter().map(|c| c.score).fold(f32::NEG_INFINITY, f32::max);
        let mut chosen: Vec<&Candidate> = {
            let mut by_score: Vec<&Candidate> = cands.iter().collect();
            by_score.sort_by(|a, b| b.score.total_cmp(&a.score));
            by_score
                .into_iter()
                .enumerate()
                .filter(|(i, c)| *i == 0 || c.score >= best * self.relative_threshold)
                .map(|(_, c)| c)
                .take(self.max_sentences)
                .collect()
        };
        // Read in document order within a passage, passages in rank order.
        chosen.sort_by_key(|c| (c.passage.n, c.start));
        let mut answer = String::new();
        let mut citations = Vec::new();
        for c in chosen {
            let n = citations.len() + 1;
            if !answer.is_empty() {
                answer.push(' ');
            }
            answer.push_str(c.text);
            answer.push_str(&format!(" [{n}]"));
            citations.push(Citation {
                n,
                doc_id: c.passage.chunk.chunk.doc_id.clone(),
                source: c.passage.chunk.source.clone(),
                chunk_id: c.passage.chunk.id,
                start: c.start,
                end: c.end,
                page: c.passage.chunk.chunk.page,
                section: c.passage.chunk.chunk.section.clone(),
                text: c.text.to_string(),
            });
        }
        Ok(Answer::new(answer, citations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_core::text::char_slice;
    use quarry_core::{Chunk, StoredChunk};
    use quarry_models::HashEmbedder;

    fn passage(n: usize, doc_text: &str, start_char: usize, end_char: usize) -> Passage {
        let text = char_slice(doc_text, start_char, end_char).to_string();
        Passage {
            n,
            score: 1.0,
            expanded: None,
            chunk: StoredChunk {
                id: n as u64 * 100,
                source: format!("doc{n}.txt"),
                title: None,
                chunk: Chunk {
                    doc_id: format!("doc{n}"),
                    ord: 0,
                    text,
                    start: start_char,
                    end: end_char,
                    section: vec![],
                    tokens: 0,
                    page: None,
                    context: None,
                    parent: None,
                },
            },
        }
    }

    #[test]
    fn cites_exact_sentence_spans_in_the_source_document() {
        let doc1 = "Préface. Scurvy is caused by a lack of vitamin C in the diet. Sailors ate limes to prevent it.";
        let doc2 =
            "Unrelated: the tides follow the moon. Vitamin C deficiency causes scurvy within weeks of poor diet.";
        // The first passage starts after "Préface. " (9 chars, one of them multi-byte).
        let p = [
            passage(1, doc1, 9, doc1.chars().count()),
            passage(2, doc2, 0, doc2.chars().count()),
        ];
        let g = ExtractiveGenerator::new(Arc::new(HashEmbedder::new(256)));
        let a = g.answer("What causes scurvy? Lack of vitamin C?", &p).unwrap();
        assert!(!a.citations.is_empty());
        for c in &a.citations {
            let doc = if c.doc_id == "doc1" { doc1 } else { doc2 };
            assert_eq!(
                char_slice(doc, c.start, c.end),
                c.text,
                "offsets map back to the document"
            );
            assert!(a.answer.contains(&format!("{} [{}]", c.text, c.n)));
        }
        assert!(
            a.answer.contains("Scurvy is caused by a lack of vitamin C"),
            "{}",
            a.answer
        );
        assert!(!a.answer.contains("tides"), "{}", a.answer);
    }

    #[test]
    fn no_passages_means_no_claims() {
        let g = ExtractiveGenerator::new(Arc::new(HashEmbedder::new(16)));
        let a = g.answer("anything?", &[]).unwrap();
        assert!(a.citations.is_empty());
        assert!(a.answer.contains("nothing that answers"));
    }
}
