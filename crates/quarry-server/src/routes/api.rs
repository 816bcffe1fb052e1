//! `/api/search`, `/api/ask` (JSON or Server-Sent Events) and `/api/feedback`.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use quarry_core::{Answer, Filter, Passage, SearchMode, Timings};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::access::Caller;
use crate::engine::{Found, Query, Which};
use crate::error::{Error, Result};
use crate::keys::{hex, now_secs, Scope};
use crate::querylog::{FeedbackRecord, QueryRecord, Rating, Retrieved};
use crate::state::AppState;

/// Retrieval options shared by search and ask.
#[derive(Debug, Default, Deserialize)]
pub struct Retrieval {
    /// `bm25`, `dense` or `hybrid` (default from the configuration).
    pub mode: Option<SearchMode>,
    pub top_k: Option<usize>,
    /// Metadata filters in the CLI syntax (`year>=2015`, `lang=en|fr`), ANDed.
    #[serde(default)]
    pub filters: Vec<String>,
}

impl Retrieval {
    pub fn query(&self, state: &AppState, text: &str, per_document: bool) -> Result<Query> {
        let cfg = &state.engine.config().retrieval;
        let filters = self
            .filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Query {
            text: text.to_string(),
            mode: self.mode.unwrap_or(cfg.mode),
            top_k: self.top_k.unwrap_or(cfg.top_k),
            filters,
            per_document,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct SearchBody {
    pub query: String,
    #[serde(default)]
    pub per_document: bool,
    #[serde(flatten)]
    pub retrieval: Retrieval,
}

pub fn passage_json(p: &Passage) -> Value {
    let c = &p.chunk;
    json!({
        "rank": p.n, "score": p.score, "doc_id": c.chunk.doc_id, "chunk_id": c.id, "source": c.source,
        "title": c.title, "section": c.chunk.section, "page": c.chunk.page, "start": c.chunk.start,
        "end": c.chunk.end, "text": c.chunk.text,
    })
}

pub async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<SearchBody>,
) -> Result<Json<Value>> {
    caller.require(Scope::Read)?;
    let started = Instant::now();
    let q = body.retrieval.query(&state, &body.query, body.per_document)?;
    let (c, q2) = (caller.clone(), q.clone());
    let found = state.blocking(move |e| e.search(&c, &q2)).await?;
    let timings = Timings {
        retrieve_ms: Some(found.timings.total_ms),
        total_ms: Some(ms(started)),
        ..Default::default()
    };
    state.metrics.stages(&timings);
    let query_id = log_query(&state, &caller, "search", &q.text, &found, None, &timings)?;
    Ok(Json(json!({
        "query_id": query_id,
        "query": q.text,
        "mode": q.mode,
        "results": found.passages.iter().map(passage_json).collect::<Vec<_>>(),
        "cached": found.cached,
        "timings": { "search": found.timings, "total_ms": timings.total_ms },
    })))
}

#[derive(Debug, Deserialize)]
pub struct AskBody {
    pub question: String,
    /// `extractive` for the model-free generator; default: the configured one.
    pub generator: Option<String>,
    /// Stream Server-Sent Events (also chosen by `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: bool,
    #[serde(flatten)]
    pub retrieval: Retrieval,
}

/// The generator a request names: `extractive`, or the configured generator by its name (or nothing).
pub fn which(state: &AppState, name: Option<&str>) -> Result<Which> {
    match name {
        None => Ok(Which::Configured),
        Some("extractive") => Ok(Which::Extractive),
        Some(n) if n == state.engine.generator(Which::Configured).name() => Ok(Which::Configured),
        Some(n) => Err(Error::BadRequest(format!(
            "unknown generator `{n}`: `extractive` or `{}`",
            state.engine.generator(Which::Configured).name()
        ))),
    }
}

pub async fn ask(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<AskBody>,
) -> Result<Response> {
    caller.require(Scope::Read)?;
    let which = which(&state, body.generator.as_deref())?;
    let q = body.retrieval.query(&state, &body.question, false)?;
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if body.stream || wants_events {
        return ask_events(state, caller, q, which);
    }
    let (c, q2) = (caller.clone(), q.clone());
    let (answer, found) = state.blocking(move |e| e.answer(&c, &q2, which, &mut |_| true)).await?;
    let (generator, query_id) = record_answer(&state, &caller, "ask", &q, which, &answer, &found);
    let query_id = query_id?;
    let mut v = serde_json::to_value(&answer).map_err(|e| Error::Internal(e.to_string()))?;
    v["query_id"] = json!(query_id);
    v["generator"] = json!(generator);
    Ok(Json(v).into_response())
}

/// `token` events as the answer is generated, then `citations`, `verification` (per-sentence support and
/// the final answer text, which abstention may have replaced) and `done` (query id, timings, usage); an
/// `error` event if answering fails after the stream started.
fn ask_events(state: AppState, caller: Caller, q: Query, which: Which) -> Result<Response> {
    let permit = state.permit()?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let send = |name: &str, data: Value| {
            tx.blocking_send(Ok(Event::default().event(name).data(data.to_string())))
                .is_ok()
        };
        let result = st.engine.answer(&caller, &q, which, &mut |piece| {
            // A client that went away stops generation.
            send("token", json!({ "text": piece }))
        });
        match result {
            Ok((answer, found)) => {
                let (generator, logged) = record_answer(&st, &caller, "ask", &q, which, &answer, &found);
                let _ = send("citations", json!(answer.citations))
                    && send(
                        "verification",
                        json!({ "answer": answer.answer, "abstained": answer.abstained, "sentences": answer.sentences }),
                    )
                    && send(
                        "done",
                        json!({ "query_id": logged.ok(), "generator": generator, "timings": answer.timings, "usage": answer.usage }),
                    );
            }
            Err(e) => {
                let _ = send("error", e.body());
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What every answering route does once an answer is ready: its stage timings go to the metrics, and
/// the question, retrieved and cited chunks and answer to the query log. Returns the generator's name
/// and the query id that feedback refers to (an error if logging failed; the answer stands regardless).
pub fn record_answer(
    state: &AppState,
    caller: &Caller,
    endpoint: &str,
    q: &Query,
    which: Which,
    answer: &Answer,
    found: &Found,
) -> (String, Result<String>) {
    state.metrics.stages(&answer.timings);
    let generator = state.engine.generator(which).name().to_string();
    let query_id = log_query(
        state,
        caller,
        endpoint,
        &q.text,
        found,
        Some((answer, &generator)),
        &answer.timings,
    );
    (generator, query_id)
}

/// Logs a search or an answer; returns the query id that feedback refers to.
pub fn log_query(
    state: &AppState,
    caller: &Caller,
    endpoint: &str,
    question: &str,
    found: &Found,
    answer: Option<(&Answer, &str)>,
    timings: &Timings,
) -> Result<String> {
    let id = hex(&rand::random::<[u8; 8]>());
    state.log.record_query(QueryRecord {
        id: id.clone(),
        time: now_secs(),
        endpoint: endpoint.into(),
        key_id: caller.key_id.clone(),
        tenant: caller.tenant.clone(),
        question: question.into(),
        retrieved: found
            .passages
            .iter()
            .map(|p| Retrieved {
                doc_id: p.chunk.chunk.doc_id.clone(),
                chunk_id: p.chunk.id,
                score: p.score,
            })
            .collect(),
        answer: answer.map(|(a, _)| a.answer.clone()),
        abstained: answer.is_some_and(|(a, _)| a.abstained),
        generator: answer.map(|(_, g)| g.to_string()),
        latency_ms: timings.total_ms.unwrap_or_default(),
        timings: timings.clone(),
        cited: answer.map_or_else(Vec::new, |(a, _)| {
            let mut seen = std::collections::HashSet::new();
            a.citations
                .iter()
                .filter(|c| seen.insert(c.chunk_id))
                .map(|c| Retrieved {
                    doc_id: c.doc_id.clone(),
                    chunk_id: c.chunk_id,
                    score: found
                        .passages
                        .iter()
                        .find(|p| p.chunk.id == c.chunk_id)
                        .map_or(0.0, |p| p.score),
                })
                .collect()
        }),
    })?;
    Ok(id)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    pub query_id: String,
    pub rating: Rating,
    pub comment: Option<String>,
}

pub async fn feedback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<FeedbackBody>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Read)?;
    if body.comment.as_ref().is_some_and(|c| c.len() > 10_000) {
        return Err(Error::BadRequest("comment longer than 10000 bytes".into()));
    }
    state.log.record_feedback(
        caller.tenant.as_deref(),
        FeedbackRecord {
            query_id: body.query_id,
            time: now_secs(),
            key_id: caller.key_id.clone(),
            rating: body.rating,
            comment: body.comment,
        },
    )?;
    Ok((StatusCode::CREATED, Json(json!({ "recorded": true }))))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
