//! The routes, and the layers around them.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::json;

use crate::error::Error;
use crate::middleware::{authenticate, observe};
use crate::state::AppState;
use crate::webapp;

pub mod api;
pub mod documents;
pub mod eval;
pub mod openai;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, metrics, the web app's files and the OpenAPI document.
    Public,
    /// Everything else: an API key (scopes are checked by each handler).
    Key,
}

/// Every route, in one table: `router` is built from it, and the OpenAPI test checks `/openapi.json`
/// against it, so a route cannot be added without being documented.
pub fn table() -> Vec<(&'static str, Access, MethodRouter<AppState>)> {
    use Access::{Key, Public};
    vec![
        ("/health", Public, get(health)),
        ("/ready", Public, get(ready)),
        ("/metrics", Public, get(metrics)),
        ("/openapi.json", Public, get(openapi)),
        ("/", Public, get(webapp::index)),
        ("/app/", Public, get(webapp::index)),
        ("/app/{*file}", Public, get(webapp::file)),
        ("/api/search", Key, post(api::search)),
        ("/api/ask", Key, post(api::ask)),
        ("/api/feedback", Key, post(api::feedback)),
        ("/api/documents", Key, get(documents::list)),
        (
            "/api/documents/{*id}",
            Key,
            get(documents::get).delete(documents::delete),
        ),
        ("/api/sync", Key, post(documents::resync)),
        ("/api/ingest/file", Key, post(documents::ingest_file)),
        ("/api/ingest/url", Key, post(documents::ingest_url)),
        ("/api/jobs", Key, get(documents::jobs)),
        ("/api/jobs/{id}", Key, get(documents::job)),
        ("/api/eval/runs", Key, get(eval::list).post(eval::start)),
        ("/api/eval/runs/{id}", Key, get(eval::get)),
        ("/api/eval/runs/{id}/report", Key, get(eval::report)),
        ("/v1/models", Key, get(openai::models)),
        ("/v1/embeddings", Key, post(openai::embeddings)),
        ("/v1/chat/completions", Key, post(openai::chat_completions)),
    ]
}

/// The whole application: public health routes and the web app, and everything else behind API keys.
pub fn router(state: AppState) -> Router {
    let (mut public, mut protected) = (Router::new(), Router::new());
    for (path, access, handler) in table() {
        match access {
            Access::Public => public = public.route(path, handler),
            Access::Key => protected = protected.route(path, handler),
        }
    }
    public
        .merge(protected.route_layer(from_fn_with_state(state.clone(), authenticate)))
        .fallback(no_route)
        .route_layer(from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.opts.max_body_bytes))
        .with_state(state)
}

/// The OpenAPI 3.1 description of every route in [`table`], written by hand.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Unknown paths get the same error body as everything else.
async fn no_route(method: Method, uri: Uri) -> Error {
    Error::NotFound(format!("route `{method} {}`", uri.path()))
}

/// Liveness: the process answers.
async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the index answers and the ingest queue is open. Corpus-wide counts are for operators only:
/// they are in the answer when the server runs without keys or the request carries an admin key, so an
/// unauthenticated caller learns nothing about other tenants' documents.
async fn ready(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let stats = state.engine.index().stats();
    match stats {
        Ok(s) => {
            let mut body = json!({
                "status": "ready",
                "generator": state.engine.generator(crate::engine::Which::Configured).name(),
                "auth": state.opts.auth,
            });
            if !state.opts.auth || presents_admin_key(&state, &headers) {
                body["documents"] = json!(s.documents);
                body["chunks"] = json!(s.chunks);
            }
            (StatusCode::OK, Json(body))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": e.to_string() })),
        ),
    }
}

/// Whether a public route's request carries a live admin key (no error and no rate-limit charge otherwise).
fn presents_admin_key(state: &AppState, headers: &HeaderMap) -> bool {
    crate::middleware::bearer(headers)
        .and_then(|k| state.keys.verify(k).ok().flatten())
        .is_some_and(|k| crate::access::Caller::from_key(&k).has(crate::keys::Scope::Admin))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
