//! Quarry as a service: `quarry serve` puts one data directory behind an HTTP API.
//!
//! Owns the routes (search, ask with Server-Sent Events, documents, ingest jobs, feedback), the
//! OpenAI-compatible endpoints (`/v1/chat/completions` with citations in a `quarry` extension field,
//! `/v1/embeddings`, `/v1/models`), API keys with scopes, per-tenant access labels enforced inside every
//! index query, the query log, limits (body size, in-flight work, ingest queue, per-key rate, timeouts)
//! and observability (request ids in tracing spans, Prometheus `/metrics`), and the web app served at `/`
//! (embedded HTML, CSS and script that call the same API), and retrieval evaluations run as background
//! jobs under the caller's access labels (`/api/eval/runs`, with `quarry_eval`'s HTML report). It does not own retrieval,
//! generation or ingest: it calls the library crates, as the CLI does, and runs their synchronous work
//! on blocking threads so the async runtime never waits on a model.
//!
//! ```no_run
//! # async fn run(config: quarry_core::Config, embedder: std::sync::Arc<dyn quarry_core::Embedder>) -> quarry_server::Result<()> {
//! use quarry_server::{AppState, ServerOptions};
//! let state = AppState::open(".quarry".as_ref(), config, embedder, ServerOptions::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.map_err(|e| quarry_server::Error::Internal(e.to_string()))?;
//! quarry_server::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod access;
pub mod engine;
pub mod error;
pub mod evals;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod querylog;
pub mod routes;
pub mod state;
pub mod webapp;
pub mod worker;

pub use access::Caller;
pub use error::{Error, Result};
pub use keys::{KeyRecord, KeyStore, NewKey, Scope};
pub use routes::router;
pub use state::{AppState, ServerOptions};

/// Serves until `shutdown` resolves: stops accepting connections, lets in-flight requests finish, then
/// lets the running ingest job finish and cancels queued ones.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = router(state.clone());
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.shutdown()).await?;
    served.map_err(|e| Error::Internal(format!("serving: {e}")))
}
