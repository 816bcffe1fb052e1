//! An LLM as a judge: versioned prompts, output parsing that never guesses, and a persistent cache so a re-run
//! costs nothing.
//!
//! Every call is keyed by the model id, the prompt's id and version, the filled-in messages and the sampling
//! settings (SHA-256). Changing a prompt's wording without bumping its version would silently reuse old
//! verdicts, so the key covers the text too: a changed prompt is a new key either way, and the version makes
//! the change visible in reports. Outputs that cannot be parsed are counted (`unparsable`) and returned as
//! `None`; the metrics leave such items out and report how many there were.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use quarry_core::{LanguageModel, Message, Sampling};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A judge prompt. `user` holds `{name}` placeholders filled by [`Judge::complete`].
#[derive(Debug, Clone, Copy)]
pub struct Prompt {
    pub id: &'static str,
    pub version: u32,
    pub system: &'static str,
    pub user: &'static str,
    /// Most tokens the answer may take.
    pub max_tokens: usize,
}

impl Prompt {
    pub fn name(&self) -> String {
        format!("{}/v{}", self.id, self.version)
    }

    /// Fills the placeholders; a placeholder without a value is an error (a bug, not a user mistake).
    pub fn render(&self, vars: &[(&str, &str)]) -> Result<Vec<Message>> {
        let mut out = String::with_capacity(self.user.len() + vars.iter().map(|v| v.1.len()).sum::<usize>());
        let mut rest = self.user;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            let key = &rest[open + 1..open + close];
            out.push_str(&rest[..open]);
            let value = vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(|| {
                Error::Quarry(quarry_core::Error::Config(format!(
                    "judge prompt {}: no value for {{{key}}}",
                    self.name()
                )))
            })?;
            out.push_str(value);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        Ok(vec![Message::system(self.system), Message::user(out)])
    }
}

/// Counters of one judge's work.
#[derive(Debug, Default)]
pub struct JudgeStats {
    pub calls: AtomicUsize,
    pub cached: AtomicUsize,
    pub unparsable: AtomicUsize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JudgeStatsSnapshot {
    pub calls: usize,
    pub cached: usize,
    pub unparsable: usize,
}

#[derive(Serialize, Deserialize)]
struct CacheLine {
    key: String,
    prompt: String,
    model: String,
    output: String,
}

/// Judge outputs by key, in memory and (optionally) appended to a JSONL file.
pub struct JudgeCache {
    path: Option<PathBuf>,
    map: Mutex<HashMap<String, String>>,
    file: Mutex<Option<std::fs::File>>,
    /// Lines of the cache file that could not be read (a crash mid-write leaves at most one); skipped.
    pub damaged_lines: usize,
}

impl JudgeCache {
    pub fn in_memory() -> JudgeCache {
        JudgeCache {
            path: None,
            map: Mutex::new(HashMap::new()),
            file: Mutex::new(None),
            damaged_lines: 0,
        }
    }

    pub fn open(path: &Path) -> Result<JudgeCache> {
        let unreadable = |e| Error::Unreadable {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unreadable)?;
        }
        let mut map = HashMap::new();
        let mut damaged = 0;
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(unreadable)?
        } else {
            String::new()
        };
        for line in text.lines() {
            match serde_json::from_str::<CacheLine>(line) {
                Ok(c) => {
                    map.insert(c.key, c.output);
                }
                Err(_) if line.trim().is_empty() => {}
                Err(_) => damaged += 1,
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(unreadable)?;
        // A line cut short by a crash must not swallow the next entry.
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n").map_err(unreadable)?;
        }
        Ok(JudgeCache {
            path: Some(path.to_path_buf()),
            map: Mutex::new(map),
            file: Mutex::new(Some(file)),
            damaged_lines: damaged,
        })
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &str) -> Option<String> {
        self.map.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: String, prompt: String, model: String, output: String) -> Result<()> {
        if let Ok(mut f) = self.file.lock() {
            if let Some(f) = f.as_mut() {
                let line = serde_json::to_string(&CacheLine {
                    key: key.clone(),
                    prompt,
                    model,
                    output: output.clone(),
                })
                .map_err(|e| Error::Quarry(quarry_core::Error::Config(e.to_string())))?;
                writeln!(f, "{line}").map_err(|e| Error::Unreadable {
                    path: self.path.clone().unwrap_or_default(),
                    source: e,
                })?;
            }
        }
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, output);
        }
        Ok(())
    }
}

/// A language model used as a judge.
pub struct Judge {
    model: Arc<dyn LanguageModel>,
    cache: JudgeCache,
    stats: JudgeStats,
}

impl Judge {
    pub fn new(model: Arc<dyn LanguageModel>, cache: JudgeCache) -> Judge {
        Judge {
            model,
            cache,
            stats: JudgeStats::default(),
        }
    }

    pub fn model_id(&self) -> &str {
        self.model.model_id()
    }

    pub fn model(&self) -> &dyn LanguageModel {
        self.model.as_ref()
    }

    pub fn stats(&self) -> JudgeStatsSnapshot {
        JudgeStatsSnapshot {
            calls: self.stats.calls.load(Ordering::Relaxed),
            cached: self.stats.cached.load(Ordering::Relaxed),
            unparsable: self.stats.unparsable.load(Ordering::Relaxed),
        }
    }

    pub fn cache(&self) -> &JudgeCache {
        &self.cache
    }

    /// Tokens left for variable text in a prompt: the model's window minus the prompt's fixed text and answer.
    pub fn budget(&self, prompt: &Prompt) -> usize {
        let fixed = self.model.count_tokens(prompt.system) + self.model.count_tokens(prompt.user) + 32;
        self.model.context_window().saturating_sub(fixed + prompt.max_tokens)
    }

    /// Runs a prompt (greedy unless `seed` > 0 asks for a sample), from the cache when it was seen before.
    pub fn complete(&self, prompt: &Prompt, vars: &[(&str, &str)], seed: u64) -> Result<String> {
        let messages = prompt.render(vars)?;
        let sampling = Sampling {
            temperature: if seed == 0 { 0.0 } else { 0.7 },
            seed,
            max_tokens: prompt.max_tokens,
            ..Sampling::default()
        };
        let mut h = Sha256::new();
        h.update(self.model.model_id().as_bytes());
        h.update([0]);
        h.update(prompt.name().as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(&messages).unwrap_or_default());
        h.update(serde_json::to_vec(&sampling).unwrap_or_default());
        let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(out) = self.cache.get(&key) {
            self.stats.cached.fetch_add(1, Ordering::Relaxed);
            return Ok(out);
        }
        let done = self.model.chat(&messages, &sampling, &mut |_| true)?;
        self.cache
            .put(key, prompt.name(), self.model.model_id().to_string(), done.text.clone())?;
        Ok(done.text)
    }

    /// A yes/no verdict, or `None` (counted as unparsable) when the output is neither.
    pub fn yes_no(&self, prompt: &Prompt, vars: &[(&str, &str)]) -> Result<Option<bool>> {
        let out = self.complete(prompt, vars, 0)?;
        let v = parse_yes_no(&out);
        if v.is_none() {
            self.stats.unparsable.fetch_add(1, Ordering::Relaxed);
        }
        Ok(v)
    }

    /// A list, one item per line (bullets and numbering removed); `None` when nothing usable came back.
    pub fn list(&self, prompt: &Prompt, vars: &[(&str, &str)]) -> Result<Option<Vec<String>>> {
        let out = self.complete(prompt, vars, 0)?;
        let items = parse_list(&out);
        if items.is_empty() {
            self.stats.unparsable.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(items))
    }

    /// A question (e.g. one generated from an answer); `None`, counted as unparsable, when the output holds
    /// no question.
    pub fn question(&self, prompt: &Prompt, vars: &[(&str, &str)], seed: u64) -> Result<Option<String>> {
        let out = self.complete(prompt, vars, seed)?;
        let line = parse_question(&out);
        if line.is_none() {
            self.stats.unparsable.fetch_add(1, Ordering::Relaxed);
        }
        Ok(line)
    }
}

/// Reads a verdict from the start of a judge's output: yes/no (also true/false, supported/unsupported, 1/0),
/// after optional quotes, markdown and a label such as "Answer:". Small models often answer with a sentence
/// instead; its opening clause is read when it plainly asserts or denies ("The statement can be inferred",
/// "The text was not useful"): a negation among the first six words is a no, an affirming phrase ("can be",
/// "is supported", "was useful", ...) without one is a yes. Anything else is `None`.
pub fn parse_yes_no(out: &str) -> Option<bool> {
    let mut s = out.trim().to_lowercase();
    for label in ["answer:", "verdict:", "final answer:", "output:"] {
        if let Some(rest) = s.strip_prefix(label) {
            s = rest.trim().to_string();
        }
    }
    let s = s.trim_start_matches(|c: char| !c.is_alphanumeric());
    let first: String = s.chars().take_while(|c| c.is_alphanumeric()).collect();
    match first.as_str() {
        "yes" | "true" | "supported" | "correct" | "1" => return Some(true),
        "no" | "false" | "unsupported" | "incorrect" | "0" => return Some(false),
        "not" if s.starts_with("not supported") => return Some(false),
        _ => {}
    }
    let opening: Vec<&str> = s
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .take(6)
        .collect();
    if !matches!(opening.first(), Some(&("the" | "this" | "it"))) {
        return None;
    }
    let negations = [
        "not", "cannot", "can't", "doesn't", "isn't", "wasn't", "no", "neither", "never",
    ];
    if opening.iter().any(|w| negations.contains(w)) {
        return Some(false);
    }
    let text = opening.join(" ");
    let affirming = [
        "can be",
        "can indeed",
        "is supported",
        "is directly",
        "is inferred",
        "is stated",
        "is explicitly stated",
        "is correct",
        "is true",
        "was useful",
        "is useful",
        "was helpful",
        "is relevant",
        "does answer",
        "answers",
        "follows",
    ];
    affirming.iter().any(|a| text.contains(a)).then_some(true)
}

/// The first question in a judge's output: the sentence that ends at the first "?", without a lead-in such as
/// "The answer is:". `None` when there is no question mark.
pub fn parse_question(out: &str) -> Option<String> {
    let end = out.find('?')?;
    let head = &out[..end];
    let start = head
        .rfind(['.', '!', ':', '\n', '"'])
        .map_or(0, |i| i + head[i..].chars().next().map_or(1, char::len_utf8));
    let q = out[start..=end].trim().trim_matches('"').trim();
    (q.split_whitespace().count() >= 3).then(|| q.to_string())
}

fn clean_item(line: &str) -> &str {
    let l = line.trim();
    let l = l.trim_start_matches(['-', '*', '•']).trim_start();
    // "1." / "2)" numbering
    let digits = l.chars().take_while(char::is_ascii_digit).count();
    let l = if digits > 0 && l[digits..].starts_with(['.', ')']) {
        l[digits + 1..].trim_start()
    } else {
        l
    };
    l.trim_matches('"').trim()
}

/// Items of a bulleted or numbered list (or plain lines); lines that look like a preamble ("Here are ...:")
/// are dropped.
pub fn parse_list(out: &str) -> Vec<String> {
    out.lines()
        .map(clean_item)
        .filter(|l| l.chars().filter(|c| c.is_alphanumeric()).count() >= 3 && !l.ends_with(':'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_strictly() {
        for y in [
            "Yes",
            "yes.",
            "**Yes** because",
            "Answer: yes",
            "\"TRUE\"",
            "Supported",
            "1",
        ] {
            assert_eq!(parse_yes_no(y), Some(true), "{y}");
        }
        for n in ["No", "no, the text", "Verdict: NO", "Not supported.", "false"] {
            assert_eq!(parse_yes_no(n), Some(false), "{n}");
        }
        for g in [
            "",
            "Maybe",
            "The statement is",
            "yesterday",
            "nope",
            "{\"a\":",
            "Your response is clear",
        ] {
            assert_eq!(parse_yes_no(g), None, "{g}");
        }
        // Sentences from small models that plainly assert or deny.
        assert_eq!(parse_yes_no("The statement can indeed be inferred"), Some(true));
        assert_eq!(parse_yes_no("The text was not useful"), Some(false));
        assert_eq!(parse_yes_no("The statement cannot be directly inferred"), Some(false));
        assert_eq!(
            parse_yes_no("The statement is explicitly stated in the text"),
            Some(true)
        );
        assert_eq!(
            parse_yes_no("Mitochondria can be seen"),
            None,
            "not about the statement or text"
        );
    }

    #[test]
    fn questions_are_cut_out_of_chatter() {
        assert_eq!(
            parse_question("The answer is: Can Snellen E be used before 24 weeks? It was.").as_deref(),
            Some("Can Snellen E be used before 24 weeks?")
        );
        assert_eq!(
            parse_question("The next question is: \"What other areas of science matter?\" The answer").as_deref(),
            Some("What other areas of science matter?")
        );
        assert_eq!(parse_question("Mitochondria play a role."), None);
        assert_eq!(
            parse_question("Why?"),
            None,
            "too short to be a question about anything"
        );
    }

    #[test]
    fn lists_lose_bullets_numbers_and_preambles() {
        let out = "Here are the statements:\n- Scurvy is caused by lack of vitamin C.\n2. Sailors got it.\n\n* ok\n";
        assert_eq!(
            parse_list(out),
            ["Scurvy is caused by lack of vitamin C.", "Sailors got it."]
        );
    }

    #[test]
    fn prompts_fill_placeholders_and_refuse_missing_ones() {
        let p = Prompt {
            id: "t",
            version: 2,
            system: "s",
            user: "Q: {question} / A: {answer}",
            max_tokens: 4,
        };
        let m = p.render(&[("question", "why {x}?"), ("answer", "because")]).unwrap();
        assert_eq!(m[1].content, "Q: why {x}? / A: because");
        assert_eq!(p.name(), "t/v2");
        let e = p.render(&[("question", "q")]).unwrap_err().to_string();
        assert!(e.contains("t/v2") && e.contains("{answer}"), "{e}");
    }
}
