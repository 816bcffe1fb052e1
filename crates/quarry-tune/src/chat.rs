//! Generator adapter training data: conversations in JSONL, one per line, in the chat fine-tuning format
//! OpenAI and most tools use: `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`.
//! The loss is on the assistant turns only; conversations are rendered with the model's own chat template and
//! tokenised with its own tokenizer, exactly as generation sees them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use quarry_core::{Message, Role};
use quarry_models::LocalModel;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::causal::CausalLm;
use crate::data::shuffle;
use crate::error::{Error, Result};
use crate::optim::Gradients;
use crate::trainer::{Objective, Validation};

#[derive(Debug, Clone, Default)]
pub struct ChatSet {
    pub source: String,
    pub conversations: Vec<Vec<Message>>,
}

#[derive(Deserialize)]
struct Line {
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    content: String,
}

impl ChatSet {
    /// Reads and checks a chat JSONL file: every line a conversation with known roles, non-empty turns and at
    /// least one assistant turn; errors name the file and line.
    pub fn load(path: &Path) -> Result<ChatSet> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
            path: path.to_path_buf(),
            source: e,
        })?;
        let bad = |line: usize, message: String| Error::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut set = ChatSet {
            source: path.display().to_string(),
            conversations: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(raw)
                .map_err(|e| bad(i + 1, format!("not a {{\"messages\": [...]}} conversation: {e}")))?;
            let mut msgs = Vec::with_capacity(line.messages.len());
            for m in line.messages {
                let role = match m.role.as_str() {
                    "system" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => return Err(bad(i + 1, format!("unknown role {other:?} (system, user, assistant)"))),
                };
                if m.content.trim().is_empty() {
                    return Err(bad(i + 1, format!("an empty {} turn", m.role)));
                }
                msgs.push(Message {
                    role,
                    content: m.content,
                });
            }
            if !msgs.iter().any(|m| m.role == Role::Assistant) {
                return Err(bad(i + 1, "no assistant turn to learn from".into()));
            }
            if msgs.first().is_some_and(|m| m.role == Role::Assistant) {
                return Err(bad(i + 1, "the conversation starts with the assistant".into()));
            }
            set.conversations.push(msgs);
        }
        Ok(set)
    }

    /// Refuses too few conversations and repeated ones (the same turns twice), naming the copies.
    pub fn validate(&self, min_examples: usize) -> Result<()> {
        let data_err = |message: String| Error::Data {
            source_name: self.source.clone(),
            message,
        };
        if self.conversations.len() < min_examples {
            return Err(data_err(format!(
                "{} conversations; at least {min_examples} are needed to train and validate",
                self.conversations.len()
            )));
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, c) in self.conversations.iter().enumerate() {
            if let Some(first) = seen.insert(conversation_key(c), i) {
                return Err(data_err(format!(
                    "conversations {} and {} are the same (remove duplicates: they weigh twice and leak into \
                     validation)",
                    first + 1,
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// (training, validation): a seeded shuffle, then the last `fraction` held out.
    pub fn split(mut self, fraction: f64, seed: u64) -> (ChatSet, ChatSet) {
        shuffle(&mut self.conversations, seed);
        let n = self.conversations.len();
        let held = ((n as f64 * fraction).round() as usize).clamp(usize::from(n > 1), n.saturating_sub(1));
        let val = self.conversations.split_off(n - held);
        let source = self.source.clone();
        (
            self,
            ChatSet {
                source,
                conversations: val,
            },
        )
    }

    /// sha256 over the conversations, for the registry.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for c in &self.conversations {
            h.update(conversation_key(c).as_bytes());
            h.update([0u8]);
        }
        h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

fn conversation_key(c: &[Message]) -> String {
    c.iter()
        .map(|m| format!("{}\u{1}{}", m.role.as_str(), m.content))
        .collect::<Vec<_>>()
        .join("\u{2}")
}

/// A conversation as token ids, with the positions whose token the loss counts (the assistant's).
#[derive(Debug, Clone)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub target: Vec<bool>,
}

/// Renders `conversation` with the model's template: every assistant turn is the rendered prompt up to its
/// header, then its content and the end-of-turn token, which are the learned tokens.
pub fn tokenize(model: &LocalModel, conversation: &[Message]) -> Result<Tokenized> {
    let mut out = Tokenized {
        ids: Vec::new(),
        target: Vec::new(),
    };
    let eos = model.tokenizer().eos;
    for (i, m) in conversation.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let prefix = model.encode_chat(&conversation[..i])?;
        if !prefix.starts_with(&out.ids) {
            return Err(Error::Data {
                source_name: model.path().display().to_string(),
                message: "the chat template renders a conversation's beginning differently as it grows; multi-turn \
                          training needs a prefix-stable template"
                    .into(),
            });
        }
        let new = prefix.len() - out.ids.len();
        out.ids.extend_from_slice(&prefix[out.ids.len()..]);
        out.target.extend(std::iter::repeat_n(false, new));
        let reply = model.tokenizer().encode(&m.content)?;
        out.target.extend(std::iter::repeat_n(true, reply.len() + 1));
        out.ids.extend(reply);
        out.ids.push(eos);
    }
    Ok(out)
}

/// Tokenises a set, leaving out conversations longer than `max_len` tokens; returns them and how many were
/// left out.
pub fn tokenize_all(model: &LocalModel, set: &ChatSet, max_len: usize) -> Result<(Vec<Tokenized>, usize)> {
    let mut kept = Vec::with_capacity(set.conversations.len());
    let mut long = 0;
    for c in &set.conversations {
        let t = tokenize(model, c)?;
        if t.ids.len() > max_len {
            long += 1;
        } else {
            kept.push(t);
        }
    }
    Ok((kept, long))
}

/// Next-token loss on the assistant's tokens; validation is the mean log-likelihood per validation
/// conversation (negated loss: higher is better).
pub struct LmObjective {
    pub train: Vec<Tokenized>,
    pub validation: Vec<Tokenized>,
    pub source: PathBuf,
}

impl LmObjective {
    fn nll(model: &CausalLm, t: &Tokenized) -> Result<Option<Tensor>> {
        model.loss(&t.ids, &t.target)
    }
}

impl Objective<CausalLm> for LmObjective {
    fn batches(&self, epoch: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        shuffle(&mut order, seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
    }

    fn accumulate(&self, model: &CausalLm, batch: &[usize], _epoch: usize, grads: &mut Gradients) -> Result<f64> {
        let mut total = 0.0;
        for &i in batch {
            let Some(loss) = Self::nll(model, &self.train[i])? else {
                continue;
            };
            total += loss.to_scalar::<f32>()? as f64;
            let store = (loss / batch.len() as f64)?.backward()?;
            grads.add_part(store, model.named_vars())?;
        }
        grads.finish_micro_batch();
        Ok(total / batch.len().max(1) as f64)
    }

    fn validate(&self, model: &CausalLm) -> Result<Validation> {
        let mut per = Vec::with_capacity(self.validation.len());
        for t in &self.validation {
            if let Some(loss) = Self::nll(model, t)? {
                per.push(-(loss.to_scalar::<f32>()? as f64));
            }
        }
        let mean = per.iter().sum::<f64>() / per.len().max(1) as f64;
        Ok(Validation {
            metric: "log-likelihood per token".into(),
            mean,
            per_query: per,
        })
    }
}
