//! A chat model behind an OpenAI-compatible HTTP API (OpenAI, llama.cpp's server, vLLM, Ollama…).
//!
//! One `POST {base_url}/chat/completions` per call, streamed as server-sent events; the pieces reach the
//! caller's callback as they arrive. A server that ignores `stream: true` and answers with one JSON body is
//! accepted too.
//!
//! What goes over the wire, and why:
//! - `temperature`, `top_p`, `max_tokens`, `seed` and `stop` (when non-empty) are sent as they are.
//!   `top_k` and `repeat_last_n` have no OpenAI equivalent and are not sent.
//! - OpenAI has no `repeat_penalty` (a divisor on the logits of recently seen tokens, 1.0 = off); the
//!   nearest knob is `frequency_penalty` (subtracted from a token's logit per earlier occurrence, 0 = off,
//!   up to 2). It is sent only when `repeat_penalty != 1.0`, as `repeat_penalty - 1.0` clamped to [0, 2]:
//!   the usual 1.1 becomes a mild 0.1, and values below 1.0 (which encourage repetition) become 0.
//! - Timeouts: `connect_timeout_secs` bounds connecting; `timeout_secs` bounds the whole exchange, from
//!   sending the request to the last byte of the streamed answer (0 turns either off). Raise `timeout_secs`
//!   for long answers from slow servers.
//! - Retries (`retries` of them) follow connection failures, timeouts, 429 and 5xx, after 0.5 s, 1 s, 2 s…
//!   (at most 8 s), or after the server's `Retry-After` (at most 30 s). Nothing is retried once a piece of
//!   the answer has been passed to the callback: the caller would see it twice.
//!
//! Token counts use `tokenizer` (a `tokenizer.json`) when configured and are then exact for the content;
//! without it they are estimated as one token per 3 bytes of UTF-8, rounded up. BPE vocabularies average
//! about 4 bytes per token on English and most European text and about 3 on CJK, so the estimate errs high
//! there; it can err low on scripts or emoji that a vocabulary splits into single bytes. Chat templates
//! add tokens around each message that the server does not report in advance: [`MESSAGE_OVERHEAD`] per
//! message and [`ASSISTANT_HEADER`] for the turn that opens the answer (OpenAI's published accounting for
//! its chat models).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use quarry_core::{
    Completion, Error, FinishReason, LanguageModel, Message, OpenAiConfig, Result, Sampling, TokenCounter, Usage,
};
use serde_json::{json, Value};
use tokenizers::Tokenizer;

/// Template tokens around each message (role marker, separators).
pub const MESSAGE_OVERHEAD: usize = 4;
/// Template tokens that open the assistant's turn.
pub const ASSISTANT_HEADER: usize = 3;

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);
/// A server-sent-events line longer than this is a broken stream, not an answer.
const MAX_LINE_BYTES: usize = 1 << 20;
/// A non-streamed answer larger than this is a broken response.
const MAX_JSON_BYTES: u64 = 16 << 20;
/// Only the start of an error body is read: enough for the server's message.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// An OpenAI-compatible chat completions client. Cheap to share: `Send + Sync`, one connection pool.
pub struct OpenAiModel {
    id: String,
    endpoint: String,
    model: String,
    api_key_env: String,
    timeout_secs: u64,
    connect_timeout_secs: u64,
    retries: u32,
    context_window: usize,
    tokenizer: Option<Tokenizer>,
    agent: ureq::Agent,
}

impl fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env)
            .field("exact_token_counts", &self.tokenizer.is_some())
            .finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// Builds the client; loads the tokenizer if one is configured. Nothing is sent until [`chat`].
    ///
    /// [`chat`]: LanguageModel::chat
    pub fn from_config(cfg: &OpenAiConfig) -> Result<Self> {
        let base_url = cfg.base_url.trim().trim_end_matches('/');
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "generator.openai.base_url must start with http:// or https:// (got `{}`)",
                cfg.base_url
            )));
        }
        if cfg.model.trim().is_empty() {
            return Err(Error::Config("generator.openai.model must not be empty".into()));
        }
        if cfg.context_window == 0 {
            return Err(Error::Config("generator.openai.context_window must be positive".into()));
        }
        let tokenizer = cfg.tokenizer.as_deref().map(load_tokenizer).transpose()?;
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Error statuses are answers to read (the server's message, Retry-After), not transport errors.
            .http_status_as_error(false)
            .timeout_connect(secs(cfg.connect_timeout_secs))
            .timeout_global(secs(cfg.timeout_secs))
            .build()
            .into();
        Ok(OpenAiModel {
            id: format!("{}@{base_url}", cfg.model),
            endpoint: format!("{base_url}/chat/completions"),
            model: cfg.model.clone(),
            api_key_env: cfg.api_key_env.clone(),
            timeout_secs: cfg.timeout_secs,
            connect_timeout_secs: cfg.connect_timeout_secs,
            retries: cfg.retries,
            context_window: cfg.context_window,
            tokenizer,
            agent,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether token counts come from the model's tokenizer rather than the byte estimate.
    pub fn exact_token_counts(&self) -> bool {
        self.tokenizer.is_some()
    }

    fn request_body(&self, messages: &[Message], sampling: &Sampling) -> Vec<u8> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": decimal(sampling.temperature),
            "top_p": decimal(sampling.top_p),
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !sampling.stop.is_empty() {
            body["stop"] = json!(sampling.stop);
        }
        if sampling.repeat_penalty != 1.0 {
            body["frequency_penalty"] = json!(frequency_penalty(sampling.repeat_penalty));
        }
        serde_json::to_vec(&body).expect("a JSON value always serialises")
    }

    /// The API key, if its variable is set and non-empty. Read per call so a rotated key takes effect.
    fn api_key(&self) -> Option<String> {
        if self.api_key_env.is_empty() {
            return None;
        }
        std::env::var(&self.api_key_env).ok().filter(|k| !k.trim().is_empty())
    }

    fn service(&self, message: impl Into<String>, transient: bool) -> Error {
        Error::Service {
            endpoint: self.endpoint.clone(),
            message: message.into(),
            transient,
        }
    }

    /// One HTTP exchange. The answer so far lives in `answer` so the caller can tell whether any of it
    /// reached the callback before a failure.
    fn attempt(
        &self,
        body: &[u8],
        key: Option<&str>,
        answer: &mut Answer,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), Failure> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream, application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {}", key.trim()));
        }
        let response = request.send(body).map_err(|e| Failure::from(self.transport_error(e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = retry_after(response.headers());
            let server_message = error_body_message(response.into_body());
            return Err(Failure {
                error: self.status_error(status, server_message, key.is_some()),
                retry_after,
            });
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut reader = BufReader::new(response.into_body().into_reader());
        let is_json = if content_type.contains("text/event-stream") {
            false
        } else if content_type.contains("json") {
            true
        } else {
            // No usable content type: an SSE stream starts with a field name or a comment, JSON with `{`.
            first_non_space(&mut reader).map_err(|e| Failure::from(self.read_error(e)))? == Some(b'{')
        };
        if is_json {
            self.read_json(reader, answer, on_text)
        } else {
            self.read_events(reader, answer, on_text)
        }
        .map_err(Failure::from)
    }

    /// A server that ignored `stream: true`: the whole answer in one body.
    fn read_json(&self, reader: impl Read, answer: &mut Answer, on_text: &mut dyn FnMut(&str) -> bool) -> Result<()> {
        let mut bytes = Vec::new();
        reader
            .take(MAX_JSON_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_error(e))?;
        if bytes.len() as u64 > MAX_JSON_BYTES {
            return Err(self.service(format!("response is larger than {} MiB", MAX_JSON_BYTES >> 20), false));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            self.service(
                format!(
                    "response is not valid json ({e}): {}",
                    snippet(&String::from_utf8_lossy(&bytes))
                ),
                false,
            )
        })?;
        if let Some(message) = error_message(&v) {
            return Err(self.service(format!("server reported an error: {message}"), false));
        }
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| self.service("response has no choices", false))?;
        answer.usage = parse_usage(&v);
        let content = choice
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .unwrap_or("");
        answer.finish = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(finish_reason)
            .or(Some(FinishReason::Stop));
        if !answer.push(content, on_text) {
            answer.finish = Some(FinishReason::Cancelled);
        }
        Ok(())
    }

    /// Server-sent events: `data:` lines (one event may span several), blank lines end an event, `:` lines
    /// are comments, `data: [DONE]` ends the stream.
    fn read_events(
        &self,
        mut reader: impl BufRead,
        answer: &mut Answer,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<()> {
        let mut line = Vec::new();
        let mut event = Event::default();
        loop {
            line.clear();
            let more = read_line(&mut reader, &mut line, MAX_LINE_BYTES).map_err(|e| self.read_error(e))?;
            if !more {
                break;
            }
            if line.len() > MAX_LINE_BYTES {
                return Err(self.service(
                    format!("malformed stream: a line is longer than {} MiB", MAX_LINE_BYTES >> 20),
                    false,
                ));
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let line =
                std::str::from_utf8(&line).map_err(|_| self.service("malformed stream: not valid utf-8", false))?;
            if line.is_empty() {
                if self.dispatch(std::mem::take(&mut event), answer, on_text)? {
                    return Ok(());
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => event.data.push(value.to_string()),
                "event" => event.name = value.to_string(),
                _ => {} // id, retry: meaningless for a one-shot request
            }
        }
        // Some servers close without the blank line after their last event.
        if self.dispatch(event, answer, on_text)? {
            return Ok(());
        }
        if answer.finish.is_some() {
            return Ok(()); // a finish_reason without [DONE]: complete, if terse
        }
        Err(self.service(
            "malformed stream: it ended before the answer was complete (no finish_reason and no [DONE])",
            false,
        ))
    }

    /// Applies one event; `Ok(true)` ends the stream ([DONE] or the callback asked to stop).
    fn dispatch(&self, event: Event, answer: &mut Answer, on_text: &mut dyn FnMut(&str) -> bool) -> Result<bool> {
        if event.data.is_empty() {
            return Ok(false);
        }
        let data = event.data.join("\n");
        if data.trim() == "[DONE]" {
            answer.done = true;
            return Ok(true);
        }
        if event.name == "error" {
            let message = serde_json::from_str::<Value>(&data)
                .ok()
                .and_then(|v| error_message(&v))
                .unwrap_or_else(|| snippet(&data));
            return Err(self.service(format!("server reported an error in the stream: {message}"), false));
        }
        let chunks: Vec<Value> = match serde_json::from_str(&data) {
            Ok(v) => vec![v],
            // Tolerate servers that send one JSON object per `data:` line without blank lines between.
            Err(e) => match event.data.iter().map(|d| serde_json::from_str(d)).collect() {
                Ok(vs) if event.data.len() > 1 => vs,
                _ => {
                    return Err(self.service(
                        format!("malformed stream event (invalid json: {e}): {}", snippet(&data)),
                        false,
                    ))
                }
            },
        };
        for chunk in &chunks {
            if let Some(message) = error_message(chunk) {
                return Err(self.service(format!("server reported an error in the stream: {message}"), false));
            }
            if let Some(usage) = parse_usage(chunk) {
                answer.usage = Some(usage);
            }
            let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
                continue;
            };
            if let Some(piece) = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
            {
                if !answer.push(piece, on_text) {
                    answer.finish = Some(FinishReason::Cancelled);
                    return Ok(true);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                answer.finish = Some(finish_reason(reason));
            }
        }
        Ok(false)
    }

    fn transport_error(&self, e: ureq::Error) -> Error {
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect) => self.service(
                format!(
                    "could not connect within {} s (connect_timeout_secs)",
                    self.connect_timeout_secs
                ),
                true,
            ),
            ureq::Error::Timeout(_) => self.timeout_error(),
            ureq::Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                self.service("connection refused (is the server running?)", true)
            }
            ureq::Error::Io(e) => self.service(format!("connection failed: {e}"), true),
            ureq::Error::ConnectionFailed => self.service("connection failed", true),
            ureq::Error::HostNotFound => self.service("host not found", false),
            ureq::Error::BadUri(uri) => self.service(format!("invalid url: {uri}"), false),
            ureq::Error::Http(e) => self.service(
                format!(
                    "invalid request (is the api key in {} a valid header value?): {e}",
                    self.api_key_env
                ),
                false,
            ),
            other => self.service(other.to_string(), false),
        }
    }

    fn timeout_error(&self) -> Error {
        self.service(
            format!("no complete answer within {} s (timeout_secs)", self.timeout_secs),
            true,
        )
    }

    /// An error while reading the body: ureq wraps its own errors (timeouts) in `io::Error`.
    fn read_error(&self, e: io::Error) -> Error {
        match ureq::Error::from(e) {
            ureq::Error::Timeout(_) => self.timeout_error(),
            ureq::Error::Io(e) => self.service(format!("reading the answer failed: {e}"), true),
            other => self.service(format!("reading the answer failed: {other}"), false),
        }
    }

    fn status_error(&self, status: u16, server_message: Option<String>, key_sent: bool) -> Error {
        let reason = ureq::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(|r| format!("{status} {}", r.to_lowercase()))
            .unwrap_or_else(|| status.to_string());
        let detail = server_message.map(|m| format!(": {m}")).unwrap_or_default();
        let env = &self.api_key_env;
        match status {
            401 | 403 if key_sent => self.service(
                format!("the api key was rejected ({reason}{detail}); check the key in ${env}"),
                false,
            ),
            401 | 403 => self.service(
                format!("the server requires an api key ({reason}{detail}); set ${env}"),
                false,
            ),
            404 => self.service(
                format!(
                    "not found ({reason}{detail}); check base_url (up to /v1) and model `{}`",
                    self.model
                ),
                false,
            ),
            429 => self.service(format!("rate limited ({reason}{detail})"), true),
            500..=599 => self.service(format!("server error ({reason}{detail})"), true),
            _ => self.service(format!("request rejected ({reason}{detail})"), false),
        }
    }
}

impl TokenCounter for OpenAiModel {
    fn count_tokens(&self, text: &str) -> usize {
        match &self.tokenizer {
            Some(t) => t
                .encode(text, false)
                .map(|e| e.len())
                .unwrap_or_else(|_| estimate_tokens(text)),
            None => estimate_tokens(text),
        }
    }
}

impl LanguageModel for OpenAiModel {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    fn prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        Ok(messages
            .iter()
            .map(|m| self.count_tokens(&m.content) + MESSAGE_OVERHEAD)
            .sum::<usize>()
            + ASSISTANT_HEADER)
    }

    fn chat(
        &self,
        messages: &[Message],
        sampling: &Sampling,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let start = Instant::now();
        let prompt_tokens = self.prompt_tokens(messages)?;
        if prompt_tokens > self.context_window {
            return Err(Error::Model {
                model: self.id.clone(),
                message: format!(
                    "the prompt takes {prompt_tokens} tokens{}, more than the context window of {}",
                    if self.exact_token_counts() { "" } else { " (estimated)" },
                    self.context_window
                ),
            });
        }
        let body = self.request_body(messages, sampling);
        let key = self.api_key();
        let mut answer = Answer::new(start);
        let mut attempt = 0;
        loop {
            let failure = match self.attempt(&body, key.as_deref(), &mut answer, on_text) {
                Ok(()) => break,
                Err(f) => f,
            };
            if !failure.error.is_transient() || !answer.text.is_empty() || attempt >= self.retries {
                return Err(gave_up(failure.error, attempt + 1));
            }
            std::thread::sleep(failure.retry_after.unwrap_or_else(|| backoff(attempt)));
            attempt += 1;
            answer = Answer::new(start);
        }
        let usage = answer.usage.unwrap_or_else(|| Usage {
            prompt_tokens,
            completion_tokens: self.count_tokens(&answer.text),
        });
        Ok(Completion {
            text: answer.text,
            usage,
            finish: answer.finish.unwrap_or(FinishReason::Stop),
            first_token_ms: answer.first_token_ms,
            total_ms: millis(start),
        })
    }
}

/// The answer as it arrives.
struct Answer {
    start: Instant,
    text: String,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    first_token_ms: Option<f64>,
    done: bool,
}

impl Answer {
    fn new(start: Instant) -> Self {
        Answer {
            start,
            text: String::new(),
            usage: None,
            finish: None,
            first_token_ms: None,
            done: false,
        }
    }

    /// Records a piece and passes it on; returns the callback's verdict.
    fn push(&mut self, piece: &str, on_text: &mut dyn FnMut(&str) -> bool) -> bool {
        if piece.is_empty() {
            return true;
        }
        self.first_token_ms.get_or_insert_with(|| millis(self.start));
        self.text.push_str(piece);
        on_text(piece)
    }
}

#[derive(Default)]
struct Event {
    name: String,
    data: Vec<String>,
}

struct Failure {
    error: Error,
    /// The server's requested delay before retrying.
    retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

fn load_tokenizer(path: &str) -> Result<Tokenizer> {
    let path = PathBuf::from(path);
    let err = |e: tokenizers::Error| crate::Error::Tokenizer {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut tokenizer = Tokenizer::from_file(&path).map_err(err)?;
    // A tokenizer.json may truncate or pad to a fixed length, which would make counts wrong.
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(err)?;
    Ok(tokenizer)
}

/// One token per 3 bytes, rounded up (see the module docs for when this errs high or low).
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3)
}

/// `repeat_penalty - 1.0` clamped to [0, 2], rounded to 6 decimals so 1.1 is sent as 0.1, not 0.10000000000000009.
fn frequency_penalty(repeat_penalty: f32) -> f64 {
    let p = (decimal(repeat_penalty) - 1.0).clamp(0.0, 2.0);
    (p * 1e6).round() / 1e6
}

/// The f64 nearest the f32's shortest decimal form, so 0.95f32 is sent as 0.95, not 0.949999988079071.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

fn parse_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let field = |name: &str| u.get(name).and_then(Value::as_u64).map(|n| n as usize);
    Some(Usage {
        prompt_tokens: field("prompt_tokens")?,
        completion_tokens: field("completion_tokens")?,
    })
}

/// `{"error": {"message": …}}` (OpenAI), `{"error": "…"}` or `{"message": …}` (some compatible servers).
fn error_message(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    if e.is_null() {
        return None;
    }
    e.get("message")
        .and_then(Value::as_str)
        .or_else(|| e.as_str())
        .map(str::to_string)
        .or_else(|| Some(snippet(&e.to_string())))
}

fn error_body_message(body: ureq::Body) -> Option<String> {
    let mut bytes = Vec::new();
    body.into_reader().take(MAX_ERROR_BYTES).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => error_message(&v).or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string)),
        Err(_) => Some(snippet(text.trim())).filter(|s| !s.is_empty()),
    }
}

/// `retry-after-ms` (OpenAI, Azure) or `retry-after` in seconds; HTTP dates are ignored.
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    let secs = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))?;
    Some(Duration::from_secs_f64(secs.min(RETRY_AFTER_MAX.as_secs_f64())))
}

/// 0.5 s, 1 s, 2 s, … up to [`BACKOFF_MAX`].
fn backoff(attempt: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1 << attempt.min(16)).min(BACKOFF_MAX)
}

fn gave_up(error: Error, attempts: u32) -> Error {
    match error {
        Error::Service {
            endpoint,
            message,
            transient,
        } if attempts > 1 => Error::Service {
            endpoint,
            message: format!("{message} (gave up after {attempts} attempts)"),
            transient,
        },
        other => other,
    }
}

/// Reads up to and including `\n`, stopping early once `buf` holds more than `max` bytes. `Ok(false)` at
/// the end of the stream.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (used, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..used]);
        reader.consume(used);
        if found || buf.len() > max {
            return Ok(true);
        }
    }
}

fn first_non_space(reader: &mut impl BufRead) -> io::Result<Option<u8>> {
    loop {
        let available = reader.fill_buf()?;
        let Some(&first) = available.first() else {
            return Ok(None);
        };
        if !first.is_ascii_whitespace() {
            return Ok(Some(first));
        }
        reader.consume(1);
    }
}

/// The start of a text for an error message, on one line.
fn snippet(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_penalty_maps_repeat_penalty() {
        for (repeat, want) in [(1.1, 0.1), (1.3, 0.3), (1.05, 0.05), (0.8, 0.0), (5.0, 2.0), (1.0, 0.0)] {
            assert_eq!(frequency_penalty(repeat), want, "repeat_penalty {repeat}");
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let got: Vec<u64> = (0..7).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn estimate_rounds_up() {
        for (text, want) in [("", 0), ("a", 1), ("abc", 1), ("abcd", 2), ("日本", 2)] {
            assert_eq!(estimate_tokens(text), want, "{text:?}");
        }
    }

    #[test]
    fn error_messages_from_common_shapes() {
        let cases = [
            (json!({"error": {"message": "bad key", "type": "x"}}), Some("bad key")),
            (json!({"error": "overloaded"}), Some("overloaded")),
            (json!({"error": null, "choices": []}), None),
            (json!({"choices": []}), None),
        ];
        for (v, want) in cases {
            assert_eq!(error_message(&v).as_deref(), want, "{v}");
        }
    }

    #[test]
    fn read_line_splits_and_bounds() {
        let mut r = io::Cursor::new(b"ab\r\ncd\nlast".to_vec());
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        while read_line(&mut r, &mut buf, 100).expect("cursor reads") {
            lines.push(String::from_utf8(std::mem::take(&mut buf)).expect("ascii"));
        }
        assert_eq!(lines, ["ab\r\n", "cd\n", "last"]);
        let mut r = BufReader::with_capacity(4, io::Cursor::new(vec![b'x'; 64]));
        assert!(read_line(&mut r, &mut buf, 10).expect("cursor reads"));
        assert!(buf.len() > 10 && buf.len() < 64);
    }
}
