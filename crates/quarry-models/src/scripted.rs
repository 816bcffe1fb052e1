//! A deterministic stand-in for a language model, for tests: it replies with a fixed text (streamed
//! word by word), counts one token per word or punctuation mark, and records the prompts it saw.

use std::sync::Mutex;
use std::time::Instant;

use quarry_core::{Completion, FinishReason, LanguageModel, Message, Result, Sampling, TokenCounter, Usage};

pub struct ScriptedModel {
    reply: String,
    window: usize,
    /// Every prompt received, rendered as `role: content` lines.
    pub prompts: Mutex<Vec<String>>,
}

impl ScriptedModel {
    pub fn new(reply: impl Into<String>, window: usize) -> Self {
        ScriptedModel {
            reply: reply.into(),
            window,
            prompts: Mutex::new(Vec::new()),
        }
    }

    fn render(messages: &[Message]) -> String {
        messages
            .iter()
            .map(|m| format!("{}: {}", m.role.as_str(), m.content))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Words and punctuation marks, each one token.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
}

impl TokenCounter for ScriptedModel {
    fn count_tokens(&self, text: &str) -> usize {
        text.split(|c: char| c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| 1 + w.chars().filter(|c| c.is_ascii_punctuation()).count())
            .sum()
    }
}

impl LanguageModel for ScriptedModel {
    fn model_id(&self) -> &str {
        "scripted"
    }

    fn context_window(&self) -> usize {
        self.window
    }

    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        // Three tokens of chat template per message, three for the assistant header.
        Ok(messages
            .iter()
            .map(|m| 3 + self.count_tokens(&m.content))
            .sum::<usize>()
            + 3)
    }

    fn chat(
        &self,
        messages: &[Message],
        sampling: &Sampling,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let started = Instant::now();
        let prompt_tokens = self.prompt_tokens(messages)?;
        if prompt_tokens >= self.window {
            return Err(quarry_core::Error::invalid(
                "prompt",
                format!("{prompt_tokens} tokens do not fit the window of {}", self.window),
            ));
        }
        self.prompts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Self::render(messages));
        let mut text = String::new();
        let mut n = 0;
        let mut finish = FinishReason::Stop;
        let mut first = None;
        for piece in pieces(&self.reply) {
            if n == sampling.max_tokens {
                finish = FinishReason::Length;
                break;
            }
            n += 1;
            text.push_str(piece);
            first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
            if !on_text(piece) {
                finish = FinishReason::Cancelled;
                break;
            }
        }
        Ok(Completion {
            text,
            usage: Usage {
                prompt_tokens,
                completion_tokens: n,
            },
            finish,
            first_token_ms: first,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
