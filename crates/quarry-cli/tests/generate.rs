//! `quarry ask` with the local GGUF model (streamed and as JSON) and the generators' errors.

#![allow(clippy::unwrap_used)]

mod common;
use common::{json, quarry};

fn indexed() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("scurvy.md"),
        "# Scurvy\n\nScurvy is a disease caused by a lack of vitamin C. Symptoms include weakness, \
         bleeding gums and poor wound healing.\n\n## Treatment\n\nScurvy is treated with vitamin C \
         supplements taken by mouth, and citrus fruit prevents it.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("tides.md"),
        "# Tides\n\nTides are caused by the gravity of the moon and the sun acting on the oceans.\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let out = quarry(&data, &["ingest", docs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (tmp, data)
}

#[test]
fn local_model_answers_with_verification_usage_and_timings() {
    let (_tmp, data) = indexed();
    let out = quarry(
        &data,
        &[
            "ask",
            "How is scurvy treated?",
            "--generator",
            "local",
            "--max-tokens",
            "40",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = json(&out);
    assert!(
        a["generator"].as_str().unwrap().contains("SmolLM2-135M-Instruct"),
        "{a}"
    );
    let text = a["draft"].as_str().or(a["answer"].as_str()).unwrap();
    assert!(!text.trim().is_empty(), "{a}");
    let usage = &a["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 20);
    let generated = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=40).contains(&generated), "{a}");
    let sentences = a["sentences"].as_array().unwrap();
    assert!(!sentences.is_empty(), "{a}");
    assert!(sentences
        .iter()
        .all(|s| s["supported"].is_boolean() && s["support"].is_number()));
    let t = &a["timings"];
    for stage in [
        "retrieve_ms",
        "assemble_ms",
        "first_token_ms",
        "generate_ms",
        "verify_ms",
        "total_ms",
    ] {
        assert!(t[stage].as_f64().is_some(), "{stage} missing: {t}");
    }
    assert!(t["total_ms"].as_f64().unwrap() >= t["generate_ms"].as_f64().unwrap());
    for c in a["citations"].as_array().unwrap() {
        let doc = std::fs::read_to_string(c["source"].as_str().unwrap()).unwrap();
        let (s, e) = (
            c["start"].as_u64().unwrap() as usize,
            c["end"].as_u64().unwrap() as usize,
        );
        let span: String = doc.chars().skip(s).take(e - s).collect();
        assert_eq!(span, c["text"].as_str().unwrap());
    }

    // Streaming prints the answer itself on stdout.
    let out = quarry(
        &data,
        &[
            "ask",
            "How is scurvy treated?",
            "--generator",
            "local",
            "--max-tokens",
            "24",
            "--stream",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).trim().len() > 10);
}

#[test]
fn missing_models_and_unreachable_servers_are_clear_errors() {
    let (tmp, data) = indexed();
    let missing = tmp.path().join("nowhere.gguf");
    let out = quarry(
        &data,
        &[
            "ask",
            "x?",
            "--generator",
            "local",
            "--model",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere.gguf") && err.contains("not found"), "{err}");

    let corrupt = tmp.path().join("corrupt.gguf");
    std::fs::write(&corrupt, b"GGUF\x03\x00\x00\x00 then nothing").unwrap();
    let out = quarry(
        &data,
        &[
            "ask",
            "x?",
            "--generator",
            "local",
            "--model",
            corrupt.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt.gguf"), "{err}");

    // Nothing listens on a port that was just released: connection refused, retried, then an error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        tmp.path().join("quarry.toml"),
        "[generator.openai]\nretries = 1\nconnect_timeout_secs = 2\n",
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}/v1");
    let started = std::time::Instant::now();
    let out = quarry(&data, &["ask", "x?", "--generator", "openai", "--base-url", &base]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed().as_secs() < 30);
}
