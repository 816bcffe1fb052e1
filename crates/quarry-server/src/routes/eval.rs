//! `/api/eval/runs`: retrieval evaluations of a posted eval set against the caller's documents, as
//! background runs (see [`crate::evals`]).

use std::path::Path as FsPath;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use quarry_core::SearchMode;
use quarry_eval::evalset::EvalSet;
use quarry_eval::Measure;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::evals::Request;
use crate::keys::Scope;
use crate::state::AppState;

/// Most questions in one run.
const MAX_QUESTIONS: usize = 2000;

/// The eval set: JSONL text (one `{"id"?, "question", "gold_doc_ids"}` a line, as `quarry eval` reads),
/// or the same items as a JSON array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EvalSetBody {
    Jsonl(String),
    Items(Vec<Value>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    pub eval_set: EvalSetBody,
    pub name: Option<String>,
    /// `bm25`, `dense` or `hybrid` (default from the configuration).
    pub mode: Option<SearchMode>,
    /// Documents retrieved per question (default 100).
    pub depth: Option<usize>,
    /// Comma-separated measures, e.g. `ndcg@10,recall@100,mrr@10` (default: `quarry eval`'s set).
    pub measures: Option<String>,
}

impl RunBody {
    fn validate(self, state: &AppState) -> Result<Request> {
        let text = match self.eval_set {
            EvalSetBody::Jsonl(t) => t,
            EvalSetBody::Items(items) => items.iter().map(|i| format!("{i}\n")).collect(),
        };
        let set = EvalSet::parse(&text, FsPath::new("eval_set")).map_err(|e| Error::BadRequest(e.to_string()))?;
        if set.items.len() > MAX_QUESTIONS {
            return Err(Error::BadRequest(format!(
                "eval_set has {} questions; at most {MAX_QUESTIONS} a run",
                set.items.len()
            )));
        }
        if set.items.iter().all(|i| i.gold_doc_ids.is_empty()) {
            return Err(Error::BadRequest(
                "eval_set has no question with gold_doc_ids: nothing to score".into(),
            ));
        }
        let depth = self.depth.unwrap_or(100);
        if depth == 0 || depth > 1000 {
            return Err(Error::BadRequest("depth must be between 1 and 1000".into()));
        }
        let measures = match self.measures.as_deref() {
            None => Measure::defaults(),
            Some(m) => Measure::parse_list(m).map_err(|e| Error::BadRequest(format!("measures: {e}")))?,
        };
        if measures.is_empty() {
            return Err(Error::BadRequest("measures: none given".into()));
        }
        let name = self
            .name
            .unwrap_or_default()
            .trim()
            .chars()
            .take(200)
            .collect::<String>();
        Ok(Request {
            name: if name.is_empty() { "evaluation".into() } else { name },
            set,
            mode: self.mode.unwrap_or(state.engine.config().retrieval.mode),
            depth,
            measures,
        })
    }
}

/// `POST /api/eval/runs`: 202 with the queued run.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RunBody>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Eval)?;
    let req = body.validate(&state)?;
    let run = state.evals.submit(&caller, req)?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<usize>,
}

/// `GET /api/eval/runs`: the runs the caller may see, newest first, without per-question scores.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>> {
    caller.require(Scope::Eval)?;
    let runs = state.evals.list(&caller, p.limit.unwrap_or(20).clamp(1, 200))?;
    Ok(Json(json!({ "runs": runs })))
}

/// `GET /api/eval/runs/{id}`: a run with its metrics and per-question scores.
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Eval)?;
    Ok(Json(state.evals.get(&caller, &id)?))
}

/// `GET /api/eval/runs/{id}/report`: the self-contained HTML report. It is served sandboxed (an opaque
/// origin), so its script can never reach the web app's stored key.
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response> {
    caller.require(Scope::Eval)?;
    let html = state.evals.report(&caller, &id)?;
    let mut resp = html.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox allow-scripts; default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}
