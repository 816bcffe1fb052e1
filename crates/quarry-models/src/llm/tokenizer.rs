//! The tokenizer a GGUF file carries in its metadata, rebuilt as a `tokenizers` BPE tokenizer, plus
//! a streaming decoder that turns token ids back into text without splitting UTF-8 characters.
//!
//! Supported: byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, SmolLM, Llama 3, Qwen and most
//! recent llama-family models). The pre-tokenizer follows `tokenizer.ggml.pre`: `smollm` and
//! `starcoder`-style vocabularies split digits one by one before GPT-2's regex.

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use super::gguf::{Gguf, Value};
use crate::error::{Error, Result};

/// GGUF `token_type` values.
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Each token's bytes (byte-level alphabet undone); empty for control tokens.
    bytes: Vec<Vec<u8>>,
    control: Vec<bool>,
    pub tokens: Vec<String>,
    pub bos: Option<u32>,
    pub eos: u32,
    pub add_bos: bool,
}

impl GgufTokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<GgufTokenizer> {
        let bad = |message: String| Error::Invalid {
            path: g.path.clone(),
            message,
        };
        let model = g.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer `{model}` is not supported (byte-level BPE, `gpt2`, is); convert the model with a BPE tokenizer"
            )));
        }
        let tokens: Vec<String> = g
            .strings("tokenizer.ggml.tokens")?
            .into_iter()
            .map(String::from)
            .collect();
        let merges: Vec<(String, String)> = g
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("malformed merge `{m}`")))
            })
            .collect::<Result<_>>()?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| bad(format!("building the BPE tokenizer: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
        let pre: PreTokenizerWrapper = match pre {
            "smollm" | "starcoder" | "refact" | "deepseek-coder" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            _ => byte_level.into(),
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevel::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(&special);

        let unicode_to_byte = byte_alphabet();
        let control: Vec<bool> = types.iter().map(|&t| t == CONTROL).collect();
        let bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| match ty {
                CONTROL => Vec::new(),
                USER_DEFINED => t.as_bytes().to_vec(),
                _ => t
                    .chars()
                    .flat_map(|c| match unicode_to_byte.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
            })
            .collect();
        let id = |key: &str| g.get(key).and_then(Value::as_u64).map(|v| v as u32);
        let eos = id("tokenizer.ggml.eos_token_id").ok_or_else(|| bad("no eos_token_id in the metadata".into()))?;
        let add_bos = matches!(g.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)));
        Ok(GgufTokenizer {
            inner,
            bytes,
            control,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos,
            add_bos,
            tokens,
        })
    }

    /// Token ids of `text`; control tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Generation(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn count(&self, text: &str) -> usize {
        self.encode(text).map(|v| v.len()).unwrap_or(text.len())
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(true)
    }

    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// GPT-2's byte-level alphabet, reversed: the printable character that stands for each byte.
fn byte_alphabet() -> HashMap<char, u8> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        if let Some(ch) = char::from_u32(c) {
            map.insert(ch, b as u8);
        }
    }
    map
}

/// Accumulates generated bytes and releases text only in whole UTF-8 characters, holding back any
/// tail that could be the start of a stop string.
pub struct TextStream {
    pending: Vec<u8>,
    text: String,
    emitted: usize,
    stops: Vec<String>,
}

impl TextStream {
    pub fn new(stops: &[String]) -> Self {
        TextStream {
            pending: Vec::new(),
            text: String::new(),
            emitted: 0,
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
        }
    }

    /// Adds a token's bytes. Returns the text that is now safe to show, and whether a stop string
    /// was completed (the text is then cut before it).
    pub fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // An invalid sequence (not just an unfinished one): replace it and move on.
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                self.text.push_str(&s);
                return self.release();
            }
        };
        let rest = self.pending.split_off(valid);
        let done = std::mem::replace(&mut self.pending, rest);
        self.text.push_str(std::str::from_utf8(&done).unwrap_or_default());
        self.release()
    }

    fn release(&mut self) -> (String, bool) {
        // A completed stop string ends generation.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.text[self.emitted..].find(s.as_str()))
            .min()
        {
            let end = self.emitted + at;
            self.text.truncate(end);
            let out = self.text[self.emitted..].to_string();
            self.emitted = end;
            return (out, true);
        }
        // Hold back a suffix that is a prefix of some stop string.
        let mut safe = self.text.len();
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.text.ends_with(&s[..i]) {
                    safe = safe.min(self.text.len() - i);
                }
            }
        }
        let safe = safe.max(self.emitted);
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        (out, false)
    }

    /// Everything not yet released (at the end of generation).
    pub fn finish(&mut self) -> String {
        if !self.pending.is_empty() {
            let tail = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
            self.text.push_str(&tail);
        }
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }

    pub fn text(&self) -> &str {
        &self.text[..self.emitted]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_covers_every_byte_once() {
        let m = byte_alphabet();
        assert_eq!(m.len(), 256);
        assert_eq!(m.get(&'Ġ'), Some(&b' '));
        assert_eq!(m.get(&'Ċ'), Some(&b'\n'));
        assert_eq!(m.get(&'a'), Some(&b'a'));
    }

    #[test]
    fn stream_releases_whole_characters_and_stops_before_stop_strings() {
        let mut s = TextStream::new(&["\nQuestion:".to_string()]);
        let e = "é".as_bytes();
        assert_eq!(s.push(b"caf"), ("caf".into(), false));
        assert_eq!(s.push(&e[..1]), (String::new(), false));
        assert_eq!(s.push(&e[1..]), ("é".into(), false));
        // "\nQue" could begin the stop string: held back, then released when it does not.
        assert_eq!(s.push(b" ok\nQue"), (" ok".into(), false));
        assert_eq!(s.push(b"en"), ("\nQueen".into(), false));
        assert_eq!(s.push(b"\nQuestion: next"), (String::new(), true));
        assert_eq!(s.text(), "café ok\nQueen");
    }
}
