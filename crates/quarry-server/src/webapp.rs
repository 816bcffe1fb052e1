//! The web app: one HTML page, a stylesheet and a script, compiled into the binary (no Node, no build
//! step, nothing fetched from elsewhere) and served without authentication — the page holds no data. It
//! calls the API like any client, with the key the user pastes once (kept in the browser's
//! localStorage), or with none when the server runs `--no-auth`.
//!
//! Document text reaches the page only through `textContent` and text nodes, never as markup; the
//! Content-Security-Policy allows scripts from this origin only, so even a slip would not run injected
//! script.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Result};

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");

/// Inline styles are allowed for the evaluation report shown in a script-less sandboxed frame; scripts
/// come from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary only; revalidating is cheap and never serves an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /`: the app.
pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /app/{file}`: the app's files; `/app/` and `/app/index.html` are the page itself.
pub async fn file(Path(name): Path<String>) -> Result<Response> {
    Ok(match name.as_str() {
        "" | "index.html" => asset(INDEX, "text/html; charset=utf-8"),
        "app.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => asset(STYLE, "text/css; charset=utf-8"),
        _ => return Err(Error::NotFound(format!("file `/app/{name}`"))),
    })
}
