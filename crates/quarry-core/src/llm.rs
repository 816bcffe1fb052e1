//! Chat language models: messages in, text streamed out, with token usage.
//!
//! Local GGUF models and OpenAI-compatible servers both implement [`LanguageModel`]. Streaming is a
//! callback that receives each piece of text as it is decoded and may stop generation by returning
//! `false`; async callers run `chat` on a blocking thread and forward the pieces through a channel.

use serde::{Deserialize, Serialize};

use crate::embedder::TokenCounter;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// 0 picks the most likely token every time (greedy, deterministic).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probabilities sum to at least this.
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: no limit).
    pub top_k: usize,
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops before any of these strings; the stop string is not part of the output.
    pub stop: Vec<String>,
    /// Divides the logits of tokens already in the recent window (1.0: off). Small models repeat
    /// themselves without it.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 0.95,
            top_k: 40,
            seed: 42,
            max_tokens: 256,
            stop: Vec::new(),
            repeat_penalty: 1.1,
            repeat_last_n: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn or produced a stop string.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The token callback asked to stop.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
    pub finish: FinishReason,
    /// Milliseconds from the call to the first piece of text (None if nothing was generated).
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// A chat model. Token counts use the model's own tokenizer where it has one (remote models without
/// a local tokenizer give a conservative estimate).
pub trait LanguageModel: TokenCounter {
    /// Identifies the model (a file name with a hash prefix, or `remote-model@base-url`).
    fn model_id(&self) -> &str;
    /// Tokens the model can attend to: prompt and answer together.
    fn context_window(&self) -> usize;
    /// Tokens these messages take once rendered through the model's chat template, including the
    /// header that opens the assistant's turn.
    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize>;
    /// Generates the assistant's reply, calling `on_text` with each decoded piece (return `false`
    /// to stop). A prompt longer than the window is an error, never silently truncated.
    fn chat(
        &self,
        messages: &[Message],
        sampling: &Sampling,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion>;
}
