//! `LlmGenerator`: retrieved passages → a token-budgeted prompt → a language model's answer →
//! per-sentence verification → citations mapped to document spans, or an abstention.

use std::sync::Arc;
use std::time::Instant;

use quarry_core::{
    Answer, Citation, Embedder, Error, Generator, GeneratorConfig, LanguageModel, Message, Passage, Result,
    SentenceCheck, Timings,
};
use quarry_retrieve::{assemble, Context, ContextOptions, Source};

use crate::verify::{claims, Evidence, Verifier};

pub struct LlmGenerator {
    model: Arc<dyn LanguageModel>,
    embedder: Option<Arc<dyn Embedder>>,
    cfg: GeneratorConfig,
}

/// Tokens kept free between the prompt and the window, for tokenisation differences at joins.
const MARGIN: usize = 8;

impl LlmGenerator {
    /// `embedder` (optional) adds semantic similarity to the verifier's lexical check.
    pub fn new(model: Arc<dyn LanguageModel>, embedder: Option<Arc<dyn Embedder>>, cfg: GeneratorConfig) -> Self {
        LlmGenerator { model, embedder, cfg }
    }

    pub fn model(&self) -> &dyn LanguageModel {
        self.model.as_ref()
    }

    fn system_prompt(&self) -> String {
        let p = &self.cfg.prompt;
        let mut s = p.system.replace("{language}", &p.language);
        if !p.answer_format.trim().is_empty() {
            s.push(' ');
            s.push_str(p.answer_format.trim());
        }
        if !p.abstain_text.trim().is_empty() {
            s.push_str(&format!(
                " If the sources do not answer the question, reply exactly: {}",
                p.abstain_text.trim()
            ));
        }
        s
    }

    /// The chat messages for `question` with `context` as the numbered sources.
    pub fn messages(&self, question: &str, context: &Context) -> Vec<Message> {
        let user = if context.sources.is_empty() {
            format!("Question: {question}")
        } else {
            format!(
                "Sources:\n\n{}\n\nQuestion: {question}\nAnswer, citing the sources as [1], [2]:",
                context.render()
            )
        };
        vec![Message::system(self.system_prompt()), Message::user(user)]
    }

    /// Fits the sources into the window: budget = window − instructions and question − reserved
    /// answer tokens, capped at `max_context_tokens`; then the whole prompt is counted with the
    /// model's tokenizer and the budget shrinks until it fits.
    pub fn build_prompt(&self, question: &str, passages: &[Passage]) -> Result<(Context, Vec<Message>)> {
        let window = self.model.context_window();
        let reserve = self.cfg.sampling.max_tokens;
        let fixed = self
            .model
            .prompt_tokens(&self.messages(question, &Context::default()))?;
        // Headers "Sources:" and separators are inside `render`; counted in the final check.
        let available = window.checked_sub(fixed + reserve + MARGIN).ok_or_else(|| {
            Error::Config(format!(
                "the model's window ({window} tokens) cannot hold the instructions and question ({fixed} tokens) \
                 plus {reserve} answer tokens; lower generator.sampling.max_tokens or shorten the prompt"
            ))
        })?;
        let mut opts = ContextOptions {
            budget_tokens: available.min(self.cfg.max_context_tokens),
            reorder: self.cfg.reorder_sources,
            ..ContextOptions::default()
        };
        for _ in 0..6 {
            let context = assemble(passages, self.model.as_ref(), &opts);
            let messages = self.messages(question, &context);
            let total = self.model.prompt_tokens(&messages)?;
            if total + reserve <= window {
                return Ok((context, messages));
            }
            let over = total + reserve - window;
            opts.budget_tokens = opts.budget_tokens.saturating_sub(over + 16);
        }
        Err(Error::Config(format!(
            "could not fit the sources into the model's window of {window} tokens"
        )))
    }

    fn citation(src: &Source, evidence: Option<&Evidence>) -> Citation {
        let (start, end, text) = match evidence {
            Some(e) => (e.start, e.end, e.text.clone()),
            None => (src.start, src.end, src.text.clone()),
        };
        Citation {
            n: src.n,
            doc_id: src.doc_id.clone(),
            source: src.source.clone(),
            chunk_id: src.chunk_ids.first().copied().unwrap_or_default(),
            start,
            end,
            page: src.page,
            section: src.section.clone(),
            text,
        }
    }

    /// The answer when the documents do not hold one: the configured text and the closest sources.
    fn abstain(&self, context: &Context, passages: &[Passage]) -> Answer {
        let mut text = self.cfg.prompt.abstain_text.trim().to_string();
        let mut citations = Vec::new();
        if !context.sources.is_empty() {
            let mut by_score: Vec<&Source> = context.sources.iter().collect();
            by_score.sort_by(|a, b| b.score.total_cmp(&a.score));
            citations = by_score.iter().take(3).map(|s| Self::citation(s, None)).collect();
        } else {
            for (i, p) in passages.iter().take(3).enumerate() {
                let (ev, start) = p.evidence();
                citations.push(Citation {
                    n: i + 1,
                    doc_id: p.chunk.chunk.doc_id.clone(),
                    source: p.chunk.source.clone(),
                    chunk_id: p.chunk.id,
                    start,
                    end: start + ev.chars().count(),
                    page: p.chunk.chunk.page,
                    section: p.chunk.chunk.section.clone(),
                    text: ev.to_string(),
                });
            }
        }
        if !citations.is_empty() {
            let list: Vec<String> = citations.iter().map(|c| format!("[{}] {}", c.n, c.source)).collect();
            text.push_str(&format!(" Closest sources: {}.", list.join("; ")));
        }
        let mut a = Answer::new(text, citations);
        a.abstained = true;
        a
    }

    fn says_it_cannot_answer(&self, text: &str) -> bool {
        let t = text.to_lowercase();
        let own = self.cfg.prompt.abstain_text.trim().to_lowercase();
        (!own.is_empty() && t.contains(own.trim_end_matches('.')))
            || [
                "do not contain",
                "does not contain",
                "don't contain",
                "not mentioned in the sources",
            ]
            .iter()
            .any(|p| t.contains(p))
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl Generator for LlmGenerator {
    fn name(&self) -> &str {
        self.model.model_id()
    }

    fn answer(&self, question: &str, passages: &[Passage]) -> Result<Answer> {
        self.answer_streaming(question, passages, &mut |_| true)
    }

    fn answer_streaming(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Answer> {
        let started = Instant::now();
        let best = passages.iter().map(|p| p.score).fold(f32::NEG_INFINITY, f32::max);
        if passages.is_empty() || best < self.cfg.min_retrieval_score {
            let a = self.abstain(&Context::default(), passages);
            on_text(&a.answer);
            return Ok(a);
        }
        let (context, messages) = self.build_prompt(question, passages)?;
        let assembled = Instant::now();
        let assemble_ms = ms(started);
        // Small models go on to invent the next turn: stop there.
        let mut sampling = self.cfg.sampling.clone();
        for stop in ["\nQuestion:", "\nSources:"] {
            if !sampling.stop.iter().any(|s| s == stop) {
                sampling.stop.push(stop.to_string());
            }
        }
        let completion = self.model.chat(&messages, &sampling, on_text)?;
        let generate_ms = ms(assembled);
        let verify_started = Instant::now();
        let found = claims(&completion.text);
        let verifier = Verifier::new(self.embedder.as_deref(), self.cfg.support_threshold);
        let (checks, evidence): (Vec<SentenceCheck>, Vec<Vec<Evidence>>) = verifier.check(&found, &context)?;

        // One citation per cited source, in order of first citation, spanning its best evidence.
        let mut citations: Vec<Citation> = Vec::new();
        for &n in found.iter().flat_map(|c| &c.cites) {
            if citations.iter().any(|c| c.n == n) {
                continue;
            }
            if let Some(src) = context.source(n) {
                let best = evidence
                    .iter()
                    .flatten()
                    .filter(|e| e.n == n)
                    .max_by(|a, b| a.score.total_cmp(&b.score));
                citations.push(Self::citation(src, best));
            }
        }
        let mut answer = Answer::new(completion.text.trim().to_string(), citations);
        answer.sentences = checks;
        answer.usage = Some(completion.usage);
        let supported = answer.supported_share().unwrap_or(0.0);
        let model_declined = self.says_it_cannot_answer(&completion.text);
        if model_declined || (self.cfg.min_supported > 0.0 && supported < self.cfg.min_supported) {
            let draft = std::mem::take(&mut answer.answer);
            let sentences = std::mem::take(&mut answer.sentences);
            answer = self.abstain(&context, passages);
            answer.draft = Some(draft);
            answer.sentences = sentences;
            answer.usage = Some(completion.usage);
        }
        answer.timings = Timings {
            assemble_ms: Some(assemble_ms),
            first_token_ms: completion.first_token_ms.map(|t| assemble_ms + t),
            generate_ms: Some(generate_ms),
            verify_ms: Some(ms(verify_started)),
            total_ms: Some(ms(started)),
            ..Timings::default()
        };
        Ok(answer)
    }
}
