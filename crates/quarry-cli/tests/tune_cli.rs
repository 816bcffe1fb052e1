//! `quarry tune`: training from a pairs file on a tiny model, the registry and promotion, and bad data refused
//! with the file and line.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn quarry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .current_dir(dir)
        .env("QUARRY_DATA_DIR", dir.join("data"))
        .env_remove("QUARRY_EMBEDDER")
        .env_remove("QUARRY_RERANKER")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Fruit names as queries, descriptions that never name them as passages (a random model cannot match them).
fn pairs() -> String {
    quarry_tune::testing::FRUITS
        .iter()
        .flat_map(|(q, p)| {
            // Each fruit asked four ways, so no (query, passage) pair repeats and held-out phrasings of a fruit
            // can be learned from the others.
            ["{}", "what is {}", "the {}", "a {}"]
                .map(|f| serde_json::json!({"query": f.replace("{}", q), "positive": p}).to_string() + "\n")
        })
        .collect()
}

#[test]
fn tune_embedder_trains_registers_and_promotes_only_what_is_better() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    quarry_tune::testing::tiny_model(&d.join("base"), 1);
    std::fs::write(d.join("pairs.jsonl"), pairs()).unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            "embedder",
            "--pairs",
            "pairs.jsonl",
            "--base",
            "base",
            "--mine",
            "none",
            "--val-fraction",
            "0.5",
            "--min-examples",
            "10",
            "--batch-size",
            "8",
            "--warmup",
            "0.05",
            "--patience",
            "0",
        ];
        args.extend_from_slice(extra);
        quarry(d, &args)
    };
    let o = train(&["--epochs", "25", "--lr", "3e-3", "--promote-if-better"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("registered as embedder-v1"), "{out}");
    assert!(out.contains("promoted:") && !out.contains("not promoted"), "{out}");
    assert!(
        out.contains("examples/s") && out.contains("validation at step"),
        "{out}"
    );
    let model = d.join("data").join("models").join("embedder-v1");
    assert!(model.join("model.safetensors").is_file() && model.join("tokenizer.json").is_file());
    assert!(model.join("training.json").is_file());

    // A second run that cannot train (zero learning rate) is registered but not promoted.
    let o = train(&["--epochs", "1", "--lr", "0", "--promote-if-better"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("not promoted"), "{out}");
    let o = quarry(d, &["tune", "status", "--json"]);
    let versions: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let o = quarry(d, &["tune", "status"]);
    let out = text(&o);
    assert!(
        out.contains("embedder-v1 (current)") && out.contains("embedder-v2  "),
        "{out}"
    );

    // The tuned folder works as the embedder of an ordinary ingest + search.
    std::fs::create_dir_all(d.join("docs")).unwrap();
    std::fs::write(d.join("docs").join("a.txt"), "purple sweet vine").unwrap();
    let o = quarry(d, &["--embedder", model.to_str().unwrap(), "ingest", "docs"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quarry(
        d,
        &[
            "--embedder",
            model.to_str().unwrap(),
            "search",
            "grape",
            "--mode",
            "dense",
        ],
    );
    assert!(o.status.success() && text(&o).contains("a.txt"), "{}", text(&o));
}

#[test]
fn bad_training_data_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    quarry_tune::testing::tiny_model(&d.join("base"), 1);
    let run = |pairs: &str, extra: &[&str]| {
        std::fs::write(d.join("pairs.jsonl"), pairs).unwrap();
        let mut args = vec![
            "tune",
            "embedder",
            "--pairs",
            "pairs.jsonl",
            "--base",
            "base",
            "--mine",
            "none",
        ];
        args.extend_from_slice(extra);
        quarry(d, &args)
    };
    let o = run(
        "{\"query\": \"a\", \"positive\": \"red\"}\n{\"query\": \"\", \"positive\": \"x\"}\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("pairs.jsonl:2") && text(&o).contains("empty pair"),
        "{}",
        text(&o)
    );
    let few: String = pairs().lines().take(5).map(|l| format!("{l}\n")).collect();
    let o = run(&few, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("at least 20"), "{}", text(&o));
    let dup = format!("{}{}", pairs(), pairs());
    let o = run(&dup, &[]);
    assert!(
        text(&o).contains("duplicate pair") && text(&o).contains("--dedup"),
        "{}",
        text(&o)
    );
    assert!(
        !d.join("data").join("models").join("registry.json").exists(),
        "nothing registered"
    );
}
