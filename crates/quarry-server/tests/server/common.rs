//! A server over a fresh data directory with four keys, driven in-process through `Router::oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use quarry_core::{Config, GeneratorKind};
use quarry_server::{AppState, KeyStore, NewKey, Scope, ServerOptions};
use serde_json::Value;
use tower::ServiceExt;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub app: Router,
    /// Admin without a tenant: sees everything.
    pub admin: String,
    /// acme, groups [eng], read + ingest.
    pub acme: String,
    /// acme, groups [hr], read only.
    pub acme_hr: String,
    /// globex, read + ingest.
    pub globex: String,
}

pub fn config() -> Config {
    let mut c = Config::default();
    c.generator.kind = GeneratorKind::Extractive;
    c
}

pub fn key(store: &KeyStore, tenant: Option<&str>, groups: &[&str], scopes: &[Scope]) -> String {
    store
        .create(NewKey {
            name: "test".into(),
            scopes: scopes.to_vec(),
            tenant: tenant.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
        .unwrap()
        .0
}

pub fn fixture_with(opts: ServerOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::in_dir(dir.path()).unwrap();
    let admin = key(&store, None, &[], &[Scope::Admin]);
    let acme = key(&store, Some("acme"), &["eng"], &[Scope::Read, Scope::Ingest]);
    let acme_hr = key(&store, Some("acme"), &["hr"], &[Scope::Read]);
    let globex = key(&store, Some("globex"), &[], &[Scope::Read, Scope::Ingest]);
    // The hashing embedder: deterministic and instant; the real model is exercised by the CLI tests.
    let embedder = Arc::new(quarry_models::HashEmbedder::new(256));
    let state = AppState::open(dir.path(), config(), embedder, opts).unwrap();
    let app = quarry_server::router(state.clone());
    Fixture {
        dir,
        state,
        app,
        admin,
        acme,
        acme_hr,
        globex,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(ServerOptions::default())
}

/// A response: status, headers and the body as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub async fn send(app: &Router, method: Method, uri: &str, key: Option<&str>, body: Body, ctype: &str) -> Reply {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", ctype);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(app: &Router, uri: &str, key: Option<&str>) -> Reply {
    send(app, Method::GET, uri, key, Body::empty(), "application/json").await
}

pub async fn post(app: &Router, uri: &str, key: Option<&str>, body: Value) -> Reply {
    send(
        app,
        Method::POST,
        uri,
        key,
        Body::from(body.to_string()),
        "application/json",
    )
    .await
}

/// Uploads a file and waits for its ingest job; returns the finished job.
pub async fn upload(app: &Router, key: &str, name: &str, text: &str, extra: &str) -> Value {
    let r = send(
        app,
        Method::POST,
        &format!("/api/ingest/file?name={name}{extra}"),
        Some(key),
        Body::from(text.to_string()),
        "application/octet-stream",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    wait_job(app, key, r.json()["id"].as_str().unwrap()).await
}

/// Polls a job until it leaves the queue (bounded: 60 s).
pub async fn wait_job(app: &Router, key: &str, id: &str) -> Value {
    for _ in 0..3000 {
        let j = get(app, &format!("/api/jobs/{id}"), Some(key)).await.json();
        if !matches!(j["state"].as_str(), Some("queued" | "running")) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} did not finish");
}

/// Search results' document ids.
pub async fn search_ids(app: &Router, key: &str, body: Value) -> Vec<String> {
    let r = post(app, "/api/search", Some(key), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["doc_id"].as_str().unwrap().to_string())
        .collect()
}

/// Server-Sent Events as (event name, data) pairs.
pub fn events(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        if !data.is_empty() {
            out.push((name, data.join("\n")));
        }
    }
    out
}
