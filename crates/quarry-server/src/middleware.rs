//! Layers every request passes: a request id with a tracing span and metrics, then authentication
//! and the per-key rate limit.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::keys::hex;
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of a request: the client's `x-request-id` when it is short and printable, else a fresh one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| hex(&rand::random::<[u8; 8]>()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", id = %id, method = %req.method(), route = %route);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    span.in_scope(|| tracing::info!(status, ms = secs * 1e3, "response"));
    state.metrics.request(&route, status, secs);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// The key of an `Authorization: Bearer <key>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// Resolves the caller from `Authorization: Bearer <key>` (or lets everyone in as an unrestricted caller
/// when the server runs without keys) and applies the key's rate limit.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response> {
    let caller = if state.opts.auth {
        let presented = bearer(req.headers()).ok_or(Error::Unauthorized)?;
        let key = state.keys.verify(presented)?.ok_or(Error::Unauthorized)?;
        state.check_rate(&key.id)?;
        Caller::from_key(&key)
    } else {
        Caller::unrestricted()
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
