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

/// `quarry [GLOBAL] tune embedder` on pairs.jsonl from the tiny model in `base`, half held out, then `extra`.
fn train_on_pairs(d: &Path, global: &[&str], extra: &[&str]) -> Output {
    let common = [
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
    quarry(d, &[global, &common, extra].concat())
}

#[test]
fn tune_embedder_trains_registers_and_promotes_only_what_is_better() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    quarry_tune::testing::tiny_model(&d.join("base"), 1);
    std::fs::write(d.join("pairs.jsonl"), pairs()).unwrap();
    let train = |extra: &[&str]| train_on_pairs(d, &[], extra);
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

fn chat_line(user: &str, reply: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "system", "content": "Reply in one line."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": reply}
    ]})
    .to_string()
        + "\n"
}

#[test]
fn tune_generator_refuses_bad_conversations_and_registers_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good: String = (0..24)
        .map(|i| chat_line(&format!("Number {i}?"), &format!("N-{i}.")))
        .collect();
    let cases = [
        (
            good.clone() + r#"{"messages": [{"role": "bot", "content": "hi"}]}"#,
            "chat.jsonl:25: unknown role \"bot\"",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}"#.to_string(),
            "chat.jsonl:1: an empty assistant turn",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#.to_string(),
            "chat.jsonl:1: no assistant turn",
        ),
        (
            good.clone() + &chat_line("Number 3?", "N-3."),
            "conversations 4 and 25 are the same",
        ),
        (chat_line("a?", "b."), "1 conversations; at least 20"),
    ];
    for (data, expected) in cases {
        std::fs::write(d.join("chat.jsonl"), data).unwrap();
        let o = quarry(d, &["tune", "generator", "--data", "chat.jsonl"]);
        assert!(!o.status.success());
        assert!(text(&o).contains(expected), "expected {expected:?} in: {}", text(&o));
    }
    std::fs::write(d.join("chat.jsonl"), &good).unwrap();
    let o = quarry(d, &["tune", "generator", "--data", "chat.jsonl", "--modules", "q,attn"]);
    assert!(text(&o).contains("unknown projection \"attn\""), "{}", text(&o));

    // One step on the real local model, with the adapter registered and promoted only if validation improves.
    let o = quarry(
        d,
        &[
            "tune",
            "generator",
            "--data",
            "chat.jsonl",
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--modules",
            "q,v",
            "--rank",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("training on 22 conversations"), "{out}");
    assert!(out.contains("registered as generator-v1"), "{out}");
    let adapter = d.join("data/models/generator-v1");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["r"], 2);
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    assert!(adapter.join("adapter_model.safetensors").is_file());
    let status = text(&quarry(d, &["tune", "status"]));
    assert!(
        status.contains("generator-v1") && status.contains("log-likelihood"),
        "{status}"
    );
}

#[test]
fn generator_data_builds_rag_conversations_that_cite_the_gold_sources() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let docs = [
        (
            "d1",
            "Vitamin C deficiency causes scurvy, with bleeding gums and poor wound healing.",
        ),
        (
            "d2",
            "Regular aerobic exercise lowers resting blood pressure in adults with hypertension.",
        ),
        (
            "d3",
            "Caffeine intake in the evening delays sleep onset and shortens deep sleep.",
        ),
        (
            "d4",
            "Honey bees communicate the direction of food sources with a waggle dance.",
        ),
    ];
    let corpus: String = docs
        .iter()
        .map(|(id, t)| serde_json::json!({"_id": id, "title": "", "text": t}).to_string() + "\n")
        .collect();
    std::fs::write(d.join("corpus.jsonl"), corpus).unwrap();
    let item = |id: &str, q: &str, gold: &str, decision: &str, split: &str| {
        serde_json::json!({"id": id, "question": q, "gold_answer": "It does. More detail follows here.",
            "gold_doc_ids": [gold], "metadata": {"decision": decision, "split": split}})
        .to_string()
            + "\n"
    };
    let set = [
        item(
            "q1",
            "Does vitamin C deficiency cause scurvy?",
            "d1",
            "yes",
            "dev_or_train",
        ),
        item("q2", "Does exercise lower blood pressure?", "d2", "yes", "dev_or_train"),
        item(
            "q3",
            "Does evening caffeine improve deep sleep?",
            "d3",
            "no",
            "dev_or_train",
        ),
        item("q4", "Do bees dance?", "d4", "yes", "test"),
    ]
    .concat();
    std::fs::write(d.join("set.jsonl"), set).unwrap();
    let args = [
        "tune",
        "generator-data",
        "set.jsonl",
        "--corpus",
        "corpus.jsonl",
        "--top-k",
        "2",
    ];
    let o = quarry(d, &[&args[..], &["--out", "chats.jsonl"]].concat());
    assert!(!o.status.success());
    assert!(text(&o).contains("has test items: pass --split"), "{}", text(&o));

    let o = quarry(
        d,
        &[&args[..], &["--split", "dev_or_train", "--out", "chats.jsonl"]].concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(d.join("chats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (line, (decision, gold_text)) in lines
        .iter()
        .zip([("yes", docs[0].1), ("yes", docs[1].1), ("no", docs[2].1)])
    {
        let m = line["messages"].as_array().unwrap();
        assert_eq!(
            m.iter().map(|t| t["role"].as_str().unwrap()).collect::<Vec<_>>(),
            ["system", "user", "assistant"]
        );
        let reply: serde_json::Value = serde_json::from_str(m[2]["content"].as_str().unwrap()).unwrap();
        assert_eq!(reply["decision"], decision);
        // The rationale is the gold answer's first sentence, citing the number the gold passage has in the prompt.
        let rationale = reply["rationale"].as_str().unwrap();
        assert!(rationale.starts_with("It does. ["), "{rationale}");
        let n = &rationale["It does. ".len()..];
        let prompt = m[1]["content"].as_str().unwrap();
        let at = prompt.find(n).unwrap_or_else(|| panic!("{n} not in {prompt}"));
        assert!(
            prompt[at..].lines().take(3).any(|l| l == gold_text),
            "{n} is not the gold passage in {prompt}"
        );
    }
}

#[test]
fn ctrl_c_stops_training_with_a_checkpoint_that_resume_continues() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    quarry_tune::testing::tiny_model(&d.join("base"), 1);
    std::fs::write(d.join("pairs.jsonl"), pairs()).unwrap();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "tune",
            "embedder",
            "--pairs",
            "pairs.jsonl",
            "--base",
            "base",
            "--mine",
            "none",
            "--val-fraction",
            "0.25",
            "--min-examples",
            "10",
            "--batch-size",
            "8",
            "--epochs",
            "100000",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .current_dir(d)
        .env("QUARRY_DATA_DIR", d.join("data"))
        .env_remove("QUARRY_EMBEDDER")
        .args(args(&[]))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    // Wait until training is under way, then interrupt it the way a terminal does.
    while !log.lines().any(|l| l.starts_with("step ")) {
        assert!(err.read_line(&mut log).unwrap() > 0, "quarry ended early: {log}");
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    std::io::Read::read_to_string(&mut err, &mut log).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}\n{log}");
    let stopped: usize = log
        .split("training stopped at step ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no stop message: {log}"));
    let out = d.join("data").join("models").join("embedder-v1");
    assert!(out.join("checkpoint").join("state.json").is_file(), "{log}");
    // Nothing was registered for the interrupted run.
    let status = quarry(d, &["tune", "status", "--json"]);
    assert_eq!(text(&status).trim(), "[]", "{}", text(&status));

    // The same command with --resume continues at that step (two more steps here) and registers the result.
    let until = (stopped + 2).to_string();
    let resume = args(&["--resume", "--max-steps", &until]);
    let o = quarry(d, &resume.iter().map(String::as_str).collect::<Vec<_>>());
    let text = text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!("resuming at step {stopped} of {until}")),
        "{text}"
    );
    assert!(text.contains("registered as embedder-v1"), "{text}");
}

/// The `--json` status of the data directory in `d`.
fn status(d: &Path) -> serde_json::Value {
    let o = quarry(d, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn promoting_an_embedder_reindexes_into_a_new_generation_and_switches_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    quarry_tune::testing::tiny_model(&d.join("base"), 1);
    std::fs::write(d.join("pairs.jsonl"), pairs()).unwrap();
    std::fs::create_dir_all(d.join("docs")).unwrap();
    for (fruit, passage) in quarry_tune::testing::FRUITS {
        std::fs::write(d.join("docs").join(format!("{fruit}.txt")), passage).unwrap();
    }
    let o = quarry(d, &["--embedder", "base", "ingest", "docs"]);
    assert!(o.status.success(), "{}", text(&o));
    let before = status(d);
    assert_eq!(before["stats"]["documents"], 10);
    assert!(before["stats"]["model_id"].as_str().unwrap().starts_with("base@"));

    let train =
        |extra: &[&str]| train_on_pairs(d, &["--embedder", "base"], &[extra, &["--promote-if-better"]].concat());
    let o = train(&["--epochs", "25", "--lr", "3e-3"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("promoted:") && out.contains("re-indexing 10 documents"),
        "{out}"
    );
    assert!(out.contains("switched to"), "{out}");

    // Every command now uses the new generation and the embedder that built it, with no flag.
    let after = status(d);
    assert_eq!(after["stats"]["documents"], 10);
    assert_eq!(after["stats"]["chunks"], before["stats"]["chunks"]);
    assert_eq!(after["stats"]["vector_entries"], after["stats"]["chunks"]);
    assert!(
        after["stats"]["model_id"].as_str().unwrap().starts_with("embedder-v1@"),
        "{after}"
    );
    assert!(
        after["store"].as_str().unwrap().ends_with("generation-embedder-v1"),
        "{after}"
    );
    let o = quarry(d, &["search", "grape", "--mode", "dense", "--top-k", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("grape.txt"), "{}", text(&o));
    // The copy kept the content hashes: a sync of the same folder finds nothing to do.
    let o = quarry(d, &["sync", "docs"]);
    assert!(
        text(&o).contains("0 added, 0 changed, 0 removed, 10 unchanged"),
        "{}",
        text(&o)
    );

    // A promotion whose model cannot be loaded fails and leaves the active generation as it was.
    let o = train(&["--epochs", "1", "--lr", "0"]);
    assert!(o.status.success() && text(&o).contains("not promoted"), "{}", text(&o));
    let v2 = d.join("data").join("models").join("embedder-v2");
    std::fs::rename(v2.join("model.safetensors"), d.join("moved.safetensors")).unwrap();
    let o = quarry(d, &["tune", "promote", "embedder-v2"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(status(d)["store"], after["store"]);
    let o = quarry(d, &["search", "grape", "--mode", "dense", "--top-k", "1"]);
    assert!(text(&o).contains("grape.txt"), "{}", text(&o));

    // Promoted by hand once it is whole: a second switch, the previous generation kept for a rollback.
    std::fs::rename(d.join("moved.safetensors"), v2.join("model.safetensors")).unwrap();
    let o = quarry(d, &["tune", "promote", "embedder-v2"]);
    assert!(o.status.success() && text(&o).contains("switched to"), "{}", text(&o));
    let last = status(d);
    assert!(
        last["store"].as_str().unwrap().ends_with("generation-embedder-v2"),
        "{last}"
    );
    assert_eq!(last["stats"]["documents"], 10);
    assert!(d
        .join("data")
        .join("generation-embedder-v1")
        .join("store.redb")
        .is_file());
    // The snapshots the copies read from are gone.
    assert!(!d.join("data").join(".reindex-snapshot").exists());
    assert!(!d
        .join("data")
        .join("generation-embedder-v1")
        .join(".reindex-snapshot")
        .exists());
    let o = quarry(d, &["tune", "status"]);
    assert!(
        text(&o).contains("built with embedder-v2; replaced generation-embedder-v1"),
        "{}",
        text(&o)
    );
}

#[test]
fn tune_embedder_from_the_query_log_trains_on_thumbs_up_answers_and_their_citations() {
    use quarry_core::querylog::{FeedbackRecord, LogLine, QueryRecord, Rating, Retrieved};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    quarry_tune::testing::tiny_model(&d.join("base"), 1);
    std::fs::create_dir_all(d.join("docs")).unwrap();
    for (fruit, passage) in quarry_tune::testing::FRUITS {
        std::fs::write(d.join("docs").join(format!("{fruit}.txt")), passage).unwrap();
    }
    let o = quarry(d, &["--embedder", "base", "ingest", "docs"]);
    assert!(o.status.success(), "{}", text(&o));
    // The chunk each fruit's passage is in, as the server would log it when an answer cites it.
    let chunk_of = |passage: &str| -> Retrieved {
        let o = quarry(
            d,
            &[
                "--embedder",
                "base",
                "search",
                passage,
                "--mode",
                "bm25",
                "--top-k",
                "1",
                "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let hit = &v["results"][0];
        assert_eq!(hit["text"], passage);
        Retrieved {
            doc_id: hit["doc_id"].as_str().unwrap().to_string(),
            chunk_id: hit["chunk_id"].as_u64().unwrap(),
            score: 1.0,
        }
    };
    let mut lines = Vec::new();
    let mut log = |question: String, cited: Vec<Retrieved>, rating: Option<Rating>| {
        let id = format!("q{}", lines.len());
        let query = QueryRecord {
            id: id.clone(),
            time: 1,
            endpoint: "/api/ask".into(),
            key_id: None,
            tenant: None,
            question,
            retrieved: cited.clone(),
            answer: Some("an answer [1]".into()),
            abstained: cited.is_empty(),
            generator: Some("extractive".into()),
            latency_ms: 1.0,
            timings: Default::default(),
            cited,
        };
        lines.push(serde_json::to_string(&LogLine::Query(Box::new(query))).unwrap());
        if let Some(rating) = rating {
            let fb = FeedbackRecord {
                query_id: id,
                time: 2,
                key_id: None,
                rating,
                comment: None,
            };
            lines.push(serde_json::to_string(&LogLine::Feedback(fb)).unwrap());
        }
    };
    for (fruit, passage) in quarry_tune::testing::FRUITS {
        let c = chunk_of(passage);
        for q in ["{}", "what is {}", "the {}"] {
            log(q.replace("{}", fruit), vec![c.clone()], Some(Rating::Up));
        }
        // Asked again with no feedback: not used.
        log(format!("tell me about {fruit}"), vec![c.clone()], None);
    }
    let wrong = chunk_of("red sour tree");
    log("which fruit is yellow".into(), vec![wrong], Some(Rating::Down));
    log("which fruit is blue".into(), vec![], Some(Rating::Up));
    std::fs::write(d.join("log.jsonl"), lines.join("\n") + "\n").unwrap();

    let o = quarry(
        d,
        &[
            "--embedder",
            "base",
            "tune",
            "embedder",
            "--from-log",
            "log.jsonl",
            "--base",
            "base",
            "--mine",
            "none",
            "--val-fraction",
            "0.3",
            "--min-examples",
            "10",
            "--batch-size",
            "8",
            "--epochs",
            "2",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(
            "42 questions, 31 rated up and 1 down; 30 examples (0 repeated questions merged, 1 answers without \
             citations, 0 cited passages no longer indexed)"
        ),
        "{out}"
    );
    assert!(out.contains("registered as embedder-v1"), "{out}");
    let o = quarry(d, &["tune", "status", "--json"]);
    let versions: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        versions[0]["data"].as_str().unwrap().contains("log.jsonl"),
        "{versions}"
    );
}
