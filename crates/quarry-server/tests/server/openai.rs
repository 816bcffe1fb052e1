//! The OpenAI-compatible endpoints, in-process and through the real `openai` Python package.

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::*;

const KILN: &str = "The kiln must cool for twelve hours before the door is opened. Opening it early cracks the glaze.";

#[tokio::test]
async fn models_embeddings_and_chat_completions() {
    let f = fixture();
    upload(&f.app, &f.acme, "kiln.txt", KILN, "").await;
    let models = get(&f.app, "/v1/models", Some(&f.acme)).await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"quarry") && ids.contains(&"quarry-extractive"), "{ids:?}");

    // Embeddings as floats and as base64 little-endian f32s agree.
    let floats = post(
        &f.app,
        "/v1/embeddings",
        Some(&f.acme),
        json!({ "input": ["kiln", "glaze"], "model": "m" }),
    )
    .await
    .json();
    assert_eq!(floats["data"].as_array().unwrap().len(), 2);
    assert_eq!(floats["data"][1]["index"], 1);
    let b64 = post(
        &f.app,
        "/v1/embeddings",
        Some(&f.acme),
        json!({ "input": "kiln", "encoding_format": "base64" }),
    )
    .await
    .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // JSON carries the shortest decimal that reads back as the same f32.
    let direct: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded, direct);
    assert!(floats["usage"]["prompt_tokens"].as_u64().unwrap() >= 2);

    // Chat completion: the last user message is the question; citations in the `quarry` field.
    let body = json!({ "model": "quarry-extractive", "temperature": 0.2, "messages": [
        { "role": "user", "content": "Something else entirely" },
        { "role": "assistant", "content": "Sure." },
        { "role": "user", "content": [{ "type": "text", "text": "How long must the kiln cool?" }] },
    ]});
    let r = post(&f.app, "/v1/chat/completions", Some(&f.acme), body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    let content = c["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("twelve hours") && content.contains("[1]"), "{content}");
    assert_eq!(c["quarry"]["citations"][0]["doc_id"], "upload://acme/kiln.txt");
    assert!(c["quarry"]["query_id"].is_string());

    // Streaming: role chunk, content chunks, a stop chunk with the extension field, [DONE].
    let mut stream = body;
    stream["stream"] = json!(true);
    let r = post(&f.app, "/v1/chat/completions", Some(&f.acme), stream).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ev = events(&r.text);
    assert_eq!(ev.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["quarry"]["citations"][0]["doc_id"], "upload://acme/kiln.txt");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));

    let r = post(
        &f.app,
        "/v1/chat/completions",
        Some(&f.acme),
        json!({ "model": "quarry", "messages": [] }),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("user message"));
}

/// The official `openai` Python package against a real server on a loopback port: models, embeddings
/// (its default base64 encoding), chat completions with and without streaming, the extension field,
/// and its error type for a bad key. Installs the package into a venv under the Quarry cache the
/// first time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_works_unchanged() {
    let Some(python) = python_with_openai() else {
        eprintln!("SKIPPED: python3 is not installed, so the openai Python client test cannot run");
        return;
    };
    let f = fixture();
    upload(&f.app, &f.acme, "kiln.txt", KILN, "").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = f.state.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(quarry_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let key = f.acme.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .env("QUARRY_BASE_URL", format!("http://{addr}/v1"))
            .env("QUARRY_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "openai client script failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("openai client: all checks passed"));
}

/// A Python with the `openai` package: a venv under the Quarry cache, created and filled on first use.
/// `None` only when there is no python3 at all; a failing install fails the test.
fn python_with_openai() -> Option<std::path::PathBuf> {
    use std::process::Command;
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&system).arg("--version").output().is_err() {
        return None;
    }
    let cache = std::env::var_os("QUARRY_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/quarry")))
        .expect("QUARRY_CACHE or HOME");
    let venv = cache.join("venv-openai");
    let python = venv.join("bin/python");
    let has_openai = |p: &std::path::Path| {
        Command::new(p)
            .args(["-c", "import openai"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_openai(&python) {
        let st = Command::new(&system).args(["-m", "venv"]).arg(&venv).status().unwrap();
        assert!(st.success(), "python3 -m venv {} failed", venv.display());
        let st = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "openai>=1.40,<4"])
            .status()
            .unwrap();
        assert!(st.success(), "pip install openai failed");
    }
    Some(python)
}
