//! The `quarry` binary end to end with the real embedding model (fetched by scripts/setup.sh).

#![allow(clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;
use common::{json, quarry};

use std::process::Command;

fn char_slice(s: &str, start: usize, end: usize) -> String {
    s.chars().skip(start).take(end - start).collect()
}

const SCURVY: &str =
    "# Scurvy\n\nScurvy is a disease résulting from a lack of vitamin C. Early symptoms include weakness, \
feeling tired and sore arms and legs.\n\n## Treatment\n\nTreatment is with vitamin C supplements taken by mouth. \
Citrus fruit such as lemons and limes prevent it.\n";
const TIDES: &str = "Tides are the rise and fall of sea levels caused by the combined effects of the gravitational \
forces exerted by the Moon and the Sun, and the rotation of the Earth.";

#[test]
fn ingest_search_ask_status_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("scurvy.md"), SCURVY).unwrap();
    std::fs::write(corpus.join("tides.txt"), TIDES).unwrap();
    std::fs::write(
        corpus.join("records.jsonl"),
        "{\"_id\":\"r1\",\"title\":\"Volcanoes\",\"text\":\"A volcano is a rupture in the crust of a planet.\",\"metadata\":{\"lang\":\"en\",\"year\":2020}}\n\
         {\"_id\":\"r2\",\"title\":\"Vulkane\",\"text\":\"Ein Vulkan ist eine geologische Struktur.\",\"metadata\":{\"lang\":\"de\",\"year\":2010}}\n\
         {broken\n",
    )
    .unwrap();
    std::fs::write(corpus.join("bad.txt"), b"\xc3\x28 invalid").unwrap();
    let data = tmp.path().join("data");

    let out = quarry(&data, &["ingest", corpus.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "errors make the exit code 1");
    let summary = &json(&out)["summary"];
    assert_eq!(summary["documents_added"], 4, "{summary}");
    let errors = summary["errors"].to_string();
    assert!(errors.contains("bad.txt: invalid UTF-8 at byte 0"), "{errors}");
    assert!(errors.contains("records.jsonl:3: invalid JSON record"), "{errors}");

    // Search, with and without a filter applied inside the index.
    let out = quarry(&data, &["search", "what causes scurvy", "--json", "--top-k", "3"]);
    assert!(out.status.success());
    let res = json(&out);
    assert!(
        res["results"][0]["source"].as_str().unwrap().ends_with("scurvy.md"),
        "{res}"
    );
    let out = quarry(
        &data,
        &["search", "volcano", "--json", "--filter", "lang=de", "--mode", "dense"],
    );
    let res = json(&out);
    let docs: Vec<&str> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(docs, ["r2"], "only the German record passes the filter");
    let out = quarry(
        &data,
        &[
            "search",
            "volcano",
            "--json",
            "--mode",
            "bm25",
            "--filter",
            "year>=2015",
        ],
    );
    let docs: Vec<String> = json(&out)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(docs, ["r1"]);

    // Ask: every citation points at the exact characters of its source document.
    let out = quarry(&data, &["ask", "How is scurvy treated?", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ans = json(&out);
    let cites = ans["citations"].as_array().unwrap();
    assert!(!cites.is_empty(), "{ans}");
    for c in cites {
        let src = c["source"].as_str().unwrap();
        let text = std::fs::read_to_string(src).unwrap();
        let (s, e) = (
            c["start"].as_u64().unwrap() as usize,
            c["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(char_slice(&text, s, e), c["text"].as_str().unwrap());
        assert!(ans["answer"].as_str().unwrap().contains(&format!("[{}]", c["n"])));
    }
    assert!(
        ans["answer"].as_str().unwrap().contains("vitamin C supplements"),
        "{ans}"
    );

    let out = quarry(&data, &["status", "--json"]);
    assert!(out.status.success());
    let stats = &json(&out)["stats"];
    assert_eq!(stats["documents"], 4);
    assert_eq!(stats["lexical_entries"], stats["chunks"]);
    assert_eq!(stats["vector_entries"], stats["chunks"]);

    let out = quarry(&data, &["rebuild"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = quarry(&data, &["search", "moon gravity sea", "--json", "--top-k", "1"]);
    assert!(json(&out)["results"][0]["source"]
        .as_str()
        .unwrap()
        .ends_with("tides.txt"));
}

#[test]
fn missing_model_and_bad_config_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["--data-dir", data.to_str().unwrap(), "search", "x"])
        .env("QUARRY_CACHE", tmp.path().join("empty-cache"))
        .env("HF_HOME", tmp.path().join("empty-hf"))
        .env_remove("HF_HUB_CACHE")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model `all-MiniLM-L6-v2` not found") && err.contains("scripts/setup.sh"),
        "{err}"
    );

    std::fs::write(
        tmp.path().join("quarry.toml"),
        "[chunking]\nmax_tokens = 256\nmax_token = 3\n",
    )
    .unwrap();
    let out = quarry(&data, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quarry.toml: invalid configuration") && err.contains("max_token"),
        "{err}"
    );
}

/// SIGKILL in the middle of a large ingest, then a rerun: the store and both derived indexes agree,
/// nothing is duplicated, and the rerun completes the work.
#[test]
fn killed_ingest_resumes_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("big.jsonl");
    let mut lines = String::new();
    for i in 0..4000 {
        lines.push_str(&format!(
            "{{\"_id\":\"d{i}\",\"text\":\"Record {i} describes sample number {i} taken from site {} in the northern survey.\"}}\n",
            i % 37
        ));
    }
    std::fs::write(&corpus, lines).unwrap();
    let data = tmp.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .arg("--data-dir")
        .arg(&data)
        .arg("ingest")
        .arg(&corpus)
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some batches are committed, then kill without warning.
    let store = data.join("store.redb");
    let start = std::time::Instant::now();
    while std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0) < 2_000_000 {
        assert!(start.elapsed().as_secs() < 120, "ingest made no progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let status = json(&quarry(&data, &["status", "--json"]));
    let stats = &status["stats"];
    let partial = stats["documents"].as_u64().unwrap();
    assert!(partial < 4000, "the kill landed mid-ingest ({partial} documents)");
    assert_eq!(stats["lexical_entries"], stats["chunks"], "{stats}");
    assert_eq!(stats["vector_entries"], stats["chunks"], "{stats}");

    let out = quarry(&data, &["ingest", corpus.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = &json(&out)["summary"];
    assert_eq!(summary["documents_unchanged"].as_u64().unwrap(), partial, "{summary}");
    assert_eq!(
        summary["documents_added"].as_u64().unwrap(),
        4000 - partial,
        "{summary}"
    );
    let stats = json(&quarry(&data, &["status", "--json"]))["stats"].clone();
    assert_eq!(stats["documents"], 4000);
    assert_eq!(stats["chunks"], 4000, "one chunk per short record, none duplicated");
    assert_eq!(stats["lexical_entries"], 4000);
    assert_eq!(stats["vector_entries"], 4000);
    let out = quarry(
        &data,
        &[
            "search",
            "sample number 1234",
            "--mode",
            "bm25",
            "--json",
            "--top-k",
            "1",
        ],
    );
    assert_eq!(json(&out)["results"][0]["doc_id"], "d1234");
}
