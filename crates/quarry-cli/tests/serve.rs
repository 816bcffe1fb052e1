#![allow(clippy::unwrap_used)]
//! `quarry keys` and `quarry serve` end to end: the real binary and the real embedding model on a loopback
//! port chosen by the OS, a key created by the CLI, an upload ingested by a background job, a cited
//! answer, and a graceful exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

/// One HTTP/1.1 request on a fresh connection; (status, body).
fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[test]
fn keys_then_serve_upload_ask_and_stop_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let created = common::quarry(
        &data,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--scopes",
            "read,ingest",
            "--tenant",
            "acme",
            "--json",
        ],
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key = common::json(&created)["key"].as_str().unwrap().to_string();
    let listed = common::quarry(&data, &["keys", "list", "--json"]);
    let listed_text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed_text.contains("\"acme\"") && !listed_text.contains("hash") && !listed_text.contains(&key));

    let mut child = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();

    assert_eq!(http(&addr, "GET", "/health", None, b"").0, 200);
    assert_eq!(http(&addr, "GET", "/api/documents", None, b"").0, 401);
    let text = "Scurvy is caused by a lack of vitamin C. Citrus fruit prevents it.";
    let (status, body) = http(
        &addr,
        "POST",
        "/api/ingest/file?name=scurvy.txt",
        Some(&key),
        text.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    let job: Value = serde_json::from_str(&body).unwrap();
    let path = format!("/api/jobs/{}", job["id"].as_str().unwrap());
    let mut state = String::new();
    for _ in 0..600 {
        let j: Value = serde_json::from_str(&http(&addr, "GET", &path, Some(&key), b"").1).unwrap();
        state = j["state"].as_str().unwrap().to_string();
        if state != "queued" && state != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state, "done");
    let (status, body) = http(
        &addr,
        "POST",
        "/api/ask",
        Some(&key),
        br#"{"question": "What causes scurvy?"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(a["citations"][0]["doc_id"], "upload://acme/scurvy.txt", "{a}");
    assert!(a["answer"].as_str().unwrap().contains("vitamin C"));

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
    assert!(data.join("query-log.jsonl").is_file());
}
