//! The routes, and the layers around them.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::middleware::{authenticate, observe};
use crate::state::AppState;
use crate::webapp;

pub mod api;
pub mod documents;
pub mod eval;
pub mod openai;

/// The whole application: public health routes and the web app, and everything else behind API keys.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/api/search", post(api::search))
        .route("/api/ask", post(api::ask))
        .route("/api/feedback", post(api::feedback))
        .route("/api/documents", get(documents::list))
        .route("/api/documents/{*id}", get(documents::get).delete(documents::delete))
        .route("/api/ingest/file", post(documents::ingest_file))
        .route("/api/ingest/url", post(documents::ingest_url))
        .route("/api/jobs", get(documents::jobs))
        .route("/api/jobs/{id}", get(documents::job))
        .route("/api/eval/runs", get(eval::list).post(eval::start))
        .route("/api/eval/runs/{id}", get(eval::get))
        .route("/api/eval/runs/{id}/report", get(eval::report))
        .route("/v1/models", get(openai::models))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route_layer(from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(webapp::index))
        .route("/app/", get(webapp::index))
        .route("/app/{*file}", get(webapp::file))
        .merge(protected)
        .route_layer(from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.opts.max_body_bytes))
        .with_state(state)
}

/// Liveness: the process answers.
async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the index answers and the ingest queue is open.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.engine.index().stats();
    match stats {
        Ok(s) => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "documents": s.documents,
                "chunks": s.chunks,
                "generator": state.engine.generator(crate::engine::Which::Configured).name(),
                "auth": state.opts.auth,
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": e.to_string() })),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
