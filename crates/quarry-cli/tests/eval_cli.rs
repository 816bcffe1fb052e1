//! `quarry eval run` and `quarry eval compare` on run files made here: the numbers, the CI gate's exit code,
//! the Markdown/HTML/JSON outputs, and bad input (duplicates, unknown documents, malformed lines) reported by
//! file and line, never turned into a silently wrong number.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn quarry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .current_dir(dir)
        .env("QUARRY_DATA_DIR", dir.join("data"))
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

/// 40 queries, one relevant document each. Run A finds it at rank 3, run B at rank 1 for the first 30 queries
/// and not at all for the last 10.
fn fixtures(dir: &Path) {
    let mut qrels = String::new();
    let mut a = String::new();
    let mut b = String::new();
    for q in 0..40 {
        qrels.push_str(&format!("q{q} 0 rel{q} 1\nq{q} 0 bad{q} 0\n"));
        for (rank, doc) in [format!("x{q}"), format!("y{q}"), format!("rel{q}")].iter().enumerate() {
            a.push_str(&format!("q{q} Q0 {doc} {} {} A\n", rank + 1, 3 - rank));
        }
        let docs = if q < 30 {
            vec![format!("rel{q}"), format!("x{q}")]
        } else {
            vec![format!("x{q}"), format!("y{q}")]
        };
        for (rank, doc) in docs.iter().enumerate() {
            b.push_str(&format!("q{q} Q0 {doc} {} {} B\n", rank + 1, 2 - rank));
        }
    }
    std::fs::write(dir.join("qrels.txt"), qrels).unwrap();
    std::fs::write(dir.join("a.run"), a).unwrap();
    std::fs::write(dir.join("b.run"), b).unwrap();
}

#[test]
fn compare_reports_intervals_and_the_gate_sets_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixtures(d);
    let out = quarry(
        d,
        &[
            "eval",
            "run",
            "a.run",
            "--qrels",
            "qrels.txt",
            "--measures",
            "mrr@10,hit@1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("mrr@10 0.3333  hit@1 0.0000"), "{}", text(&out));

    // B: MRR 30/40 = 0.75 vs A 1/3: +0.4167. hit@1: 0.75 vs 0.
    let out = quarry(
        d,
        &[
            "eval",
            "compare",
            "a.run",
            "b.run",
            "--qrels",
            "qrels.txt",
            "--measures",
            "mrr@10,hit@1",
            "--fail-if",
            "mrr@10<-0.01",
            "--markdown",
            "cmp.md",
            "--html",
            "cmp.html",
            "--json",
            "cmp.json",
            "--bootstrap",
            "2000",
            "--permutations",
            "2000",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("gate mrr@10<-0.01: pass"), "{t}");
    let row = t.lines().find(|l| l.starts_with("mrr@10")).unwrap();
    assert!(row.contains("+0.4167") && row.contains("30/10/0"), "{row}");
    let md = std::fs::read_to_string(d.join("cmp.md")).unwrap();
    assert!(md.contains("| mrr@10 | 0.3333 | 0.7500 | +0.4167 **"), "{md}");
    assert!(std::fs::read_to_string(d.join("cmp.html"))
        .unwrap()
        .contains("class=\"chart intervals\""));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("cmp.json")).unwrap()).unwrap();
    assert_eq!(json["gates"][0]["passed"], true);
    let p = json["comparison"]["metrics"][0]["p_value"].as_f64().unwrap();
    assert!(p < 0.01, "{p}");

    // The other way round B -> A is a regression: the gate fails with exit code 1 and says why.
    let out = quarry(
        d,
        &[
            "eval",
            "compare",
            "b.run",
            "a.run",
            "--qrels",
            "qrels.txt",
            "--measures",
            "mrr@10",
            "--fail-if",
            "mrr@10<-0.01",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("gate mrr@10<-0.01: FAIL"), "{}", text(&out));

    // A gate on a metric that was not compared is an error, not a pass.
    let out = quarry(
        d,
        &[
            "eval",
            "compare",
            "a.run",
            "b.run",
            "--qrels",
            "qrels.txt",
            "--measures",
            "mrr@10",
            "--fail-if",
            "ndcg@10<0",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not in the comparison"), "{}", text(&out));
}

#[test]
fn bad_runs_and_qrels_are_reported_not_silently_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixtures(d);
    // A duplicated line, and a document the corpus does not have.
    let mut run = std::fs::read_to_string(d.join("a.run")).unwrap();
    run.push_str("q0 Q0 rel0 9 0.5 A\n");
    std::fs::write(d.join("dup.run"), run).unwrap();
    let corpus: String = (0..40)
        .map(|q| format!("{{\"_id\": \"x{q}\", \"text\": \"t\"}}\n"))
        .collect();
    std::fs::write(d.join("corpus.jsonl"), corpus).unwrap();
    let out = quarry(
        d,
        &[
            "eval",
            "run",
            "dup.run",
            "--qrels",
            "qrels.txt",
            "--corpus",
            "corpus.jsonl",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("1 duplicated (query, document) lines") && t.contains("q0/rel0"),
        "{t}"
    );
    assert!(
        t.contains("qrels name 80 documents (in 40 queries) that are not in corpus.jsonl"),
        "{t}"
    );

    std::fs::write(d.join("broken.run"), "q1 Q0 d1 1 0.5 A\nq1 Q0 d2 2 high A\n").unwrap();
    let out = quarry(d, &["eval", "run", "broken.run", "--qrels", "qrels.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("broken.run:2: score \"high\" is not a number"),
        "{}",
        text(&out)
    );

    std::fs::write(d.join("short.run"), "q1 Q0 d1 1\n").unwrap();
    let out = quarry(d, &["eval", "run", "short.run", "--qrels", "qrels.txt"]);
    assert!(
        text(&out).contains("short.run:1: a TREC run line has 6 columns"),
        "{}",
        text(&out)
    );

    let out = quarry(
        d,
        &["eval", "run", "a.run", "--qrels", "qrels.txt", "--measures", "ndcg@ten"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("positive integer"), "{}", text(&out));
}
