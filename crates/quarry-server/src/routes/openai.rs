//! OpenAI-compatible endpoints, so existing clients work unchanged: `/v1/models`, `/v1/embeddings`,
//! and a RAG-augmented `/v1/chat/completions` — it retrieves with the last user message (under the
//! caller's access filter), answers from what it found, and returns the citations, per-sentence
//! verification and stage timings in an extension field, `quarry`, next to the standard ones.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::access::Caller;
use crate::engine::{Query, Which};
use crate::error::{Error, Result};
use crate::keys::{hex, now_secs, Scope};
use crate::routes::api::{record_answer, Retrieval};
use crate::state::AppState;

/// The model a client names: `quarry` answers with the configured generator, `quarry-extractive` without
/// a model.
pub const MODEL: &str = "quarry";
pub const MODEL_EXTRACTIVE: &str = "quarry-extractive";

pub async fn models(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Json<Value>> {
    caller.require(Scope::Read)?;
    let model = |id: &str| json!({ "id": id, "object": "model", "created": 0, "owned_by": "quarry" });
    Ok(Json(json!({
        "object": "list",
        "data": [model(MODEL), model(MODEL_EXTRACTIVE), model(state.engine.embedder().model_id())],
    })))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsBody {
    pub input: Input,
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32s, what the `openai` Python client asks for).
    pub encoding_format: Option<String>,
}

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<EmbeddingsBody>,
) -> Result<Json<Value>> {
    caller.require(Scope::Read)?;
    let texts = match body.input {
        Input::One(t) => vec![t],
        Input::Many(ts) => ts,
    };
    if texts.is_empty() || texts.len() > 2048 {
        return Err(Error::BadRequest("input must hold 1 to 2048 texts".into()));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(Error::BadRequest(format!("unknown encoding_format `{other}`"))),
    };
    let (vectors, tokens) = state
        .blocking(move |e| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let tokens: usize = texts.iter().map(|t| e.embedder().count_tokens(t)).sum();
            Ok((e.embed(&refs)?, tokens))
        })
        .await?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": body.model.unwrap_or_else(|| state.engine.embedder().model_id().to_string()),
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
    None(Option<()>),
}

impl Default for Content {
    fn default() -> Self {
        Content::None(None)
    }
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(ps) => ps
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
            Content::None(_) => String::new(),
        }
    }
}

/// The standard fields Quarry reads (others, such as `temperature`, are accepted and ignored), plus an
/// optional `quarry` object with retrieval options: `{"mode", "top_k", "filters"}`.
#[derive(Debug, Deserialize)]
pub struct ChatBody {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub quarry: Option<Retrieval>,
}

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ChatBody>,
) -> Result<Response> {
    caller.require(Scope::Read)?;
    let which = match body.model.as_str() {
        MODEL_EXTRACTIVE => Which::Extractive,
        _ => Which::Configured,
    };
    let question = body
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.text())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::BadRequest("messages must include a user message with text".into()))?;
    let q = body.quarry.unwrap_or_default().query(&state, &question, false)?;
    let id = format!("chatcmpl-{}", hex(&rand::random::<[u8; 12]>()));
    let created = now_secs();
    if body.stream {
        return stream(state, caller, q, which, id, body.model, created);
    }
    let (c, q2) = (caller.clone(), q.clone());
    let (answer, found) = state.blocking(move |e| e.answer(&c, &q2, which, &mut |_| true)).await?;
    let (generator, query_id) = record_answer(&state, &caller, "chat", &q, which, &answer, &found);
    let query_id = query_id?;
    let usage = answer.usage.unwrap_or_default();
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer.answer },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
        "quarry": extension(&query_id, &generator, &answer),
    }))
    .into_response())
}

/// The extension field: what a RAG client needs beyond the text.
fn extension(query_id: &str, generator: &str, a: &quarry_core::Answer) -> Value {
    json!({
        "query_id": query_id,
        "generator": generator,
        "citations": a.citations,
        "abstained": a.abstained,
        "sentences": a.sentences,
        "timings": a.timings,
    })
}

/// `chat.completion.chunk` events: the role, then the answer text as generated, then an empty delta with
/// `finish_reason: "stop"` that carries the `quarry` extension field, then `[DONE]`.
fn stream(
    state: AppState,
    caller: Caller,
    q: Query,
    which: Which,
    id: String,
    model: String,
    created: u64,
) -> Result<Response> {
    let permit = state.permit()?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let chunk = |delta: Value, finish: Option<&str>, extra: Option<Value>| {
            let mut v = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            });
            if let Some(x) = extra {
                v["quarry"] = x;
            }
            tx.blocking_send(Ok(Event::default().data(v.to_string()))).is_ok()
        };
        if !chunk(json!({ "role": "assistant", "content": "" }), None, None) {
            return;
        }
        let result = state.engine.answer(&caller, &q, which, &mut |piece| {
            chunk(json!({ "content": piece }), None, None)
        });
        match result {
            Ok((answer, found)) => {
                let (generator, query_id) = record_answer(&state, &caller, "chat", &q, which, &answer, &found);
                let query_id = query_id.unwrap_or_default();
                let _ = chunk(json!({}), Some("stop"), Some(extension(&query_id, &generator, &answer)));
            }
            Err(e) => {
                let _ = tx.blocking_send(Ok(Event::default().data(e.body().to_string())));
            }
        }
        let _ = tx.blocking_send(Ok(Event::default().data("[DONE]")));
    });
    Ok(Sse::new(ReceiverStream::new(rx)).into_response())
}
