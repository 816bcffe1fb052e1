//! The HTML reports open in a real browser: headless Chromium (Debian's `chromium` package) loads each report
//! from a file, runs its script, and the DOM it dumps shows the page ready, no script error, every chart, and
//! the table filter working (a `#filter=` link narrows the per-query table). No screenshots.
//!
//! Chromium is found at $QUARRY_CHROMIUM, else `chromium` / `chromium-browser` on PATH. scripts/setup.sh
//! installs it where it can; when it is missing this test fails and says how to install it.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use quarry_eval::answers::{AnswerReport, ItemResult, RetrievedContext};
use quarry_eval::compare::{compare, CompareOptions, ScoreTable};
use quarry_eval::html::{answers_page, comparison_page, evaluation_page, query_details};
use quarry_eval::{evaluate_measures, Measure, Qrels, Run};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("QUARRY_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output() {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !p.is_empty() {
                return PathBuf::from(p);
            }
        }
    }
    panic!(
        "headless Chromium is needed for the HTML report test: `apt-get install chromium` (Debian), \
         or set QUARRY_CHROMIUM to a Chromium binary"
    );
}

/// Loads a page (with an optional #fragment) and returns the DOM after its scripts ran.
fn dump_dom(page: &Path, fragment: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}{fragment}", page.display());
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

fn text_of(dom: &str, id: &str) -> String {
    let open = format!("id=\"{id}\"");
    let start = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let from = start + dom[start..].find('>').unwrap() + 1;
    let end = from + dom[from..].find('<').unwrap();
    dom[from..end].to_string()
}

fn fixture() -> (Run, Qrels, HashMap<String, String>) {
    let mut run = Run::new();
    let mut qrels = Qrels::new();
    let mut texts = HashMap::new();
    for q in 0..30 {
        let qid = format!("q{q}");
        let docs: Vec<(String, f64)> = (0..10)
            .map(|d| (format!("d{}", (q * 7 + d) % 50), 10.0 - d as f64))
            .collect();
        run.insert(qid.clone(), docs);
        qrels.insert(
            qid.clone(),
            [(format!("d{}", (q * 7 + q % 4) % 50), 1), ("d99".into(), 1)].into(),
        );
        texts.insert(qid, format!("question number {q} <about> things & stuff"));
    }
    (run, qrels, texts)
}

#[test]
fn reports_render_and_work_in_headless_chromium() {
    let (run, qrels, texts) = fixture();
    let measures = Measure::parse_list("ndcg@10,recall@10,mrr@10").unwrap();
    let e = evaluate_measures(&run, &qrels, &measures);
    let details = query_details(&run, &qrels, &texts, 10);
    let tmp = tempfile::tempdir().unwrap();
    let eval_page = tmp.path().join("eval.html");
    std::fs::write(&eval_page, evaluation_page("Run <test>", "fixture", &e, &details)).unwrap();

    let dom = dump_dom(&eval_page, "");
    assert!(dom.contains("data-ready=\"1\""), "the report's script did not finish");
    assert_eq!(text_of(&dom, "report-errors"), "", "script errors");
    assert_eq!(
        dom.matches("class=\"chart histogram\"").count(),
        3,
        "one histogram per measure"
    );
    assert_eq!(text_of(&dom, "t1-count"), "30");
    // Escaped query text survives as text, not markup.
    assert!(dom.contains("question number 7 &lt;about&gt; things &amp; stuff"));
    // "q1" matches q1 and q10..q19: the filter from the link narrows the table to 11 rows.
    let dom = dump_dom(&eval_page, "#filter=q1");
    assert_eq!(text_of(&dom, "t1-count"), "11");
    assert_eq!(
        dom.matches("style=\"display: none;\"").count(),
        19,
        "the other rows are hidden"
    );

    // A comparison page: B is A with half the queries improved.
    let a = ScoreTable::from_evaluation(&e);
    let mut b = a.clone();
    for (i, row) in b.rows.values_mut().enumerate() {
        if i % 2 == 0 {
            row[0] = (row[0] + 0.3).min(1.0);
        }
    }
    let opts = CompareOptions {
        bootstrap_samples: 1000,
        permutations: 1000,
        ..Default::default()
    };
    let c = compare(&a, &b, &opts, 5);
    let cmp_page = tmp.path().join("cmp.html");
    std::fs::write(&cmp_page, comparison_page(&c, "base", "candidate", &a, &b)).unwrap();
    let dom = dump_dom(&cmp_page, "");
    assert!(dom.contains("data-ready=\"1\""));
    assert_eq!(text_of(&dom, "report-errors"), "");
    assert_eq!(dom.matches("class=\"chart intervals\"").count(), 1);
    assert_eq!(text_of(&dom, "t1-count"), "3", "one row per metric");
    assert_eq!(text_of(&dom, "t2-count"), "5", "five most-changed queries");

    // An answer report with a failure example.
    let item = |id: &str, faith: f64, error: Option<&str>| ItemResult {
        id: id.into(),
        question: format!("question {id}?"),
        gold_answer: Some("gold".into()),
        answer: "an answer <b>not bold</b>".into(),
        contexts: vec![RetrievedContext {
            doc_id: "d1".into(),
            text: "context text".into(),
            gold: true,
        }],
        scores: BTreeMap::from([("faithfulness".to_string(), faith), ("token_f1".to_string(), 0.5)]),
        error: error.map(str::to_string),
        ..Default::default()
    };
    let report = AnswerReport {
        generator: "extractive".into(),
        judge: Some("judge-model".into()),
        judge_stats: None,
        metrics: vec!["faithfulness".into(), "token_f1".into()],
        means: BTreeMap::from([
            ("faithfulness".to_string(), (0.75, 2)),
            ("token_f1".to_string(), (0.5, 2)),
        ]),
        items: vec![
            item("a1", 1.0, None),
            item("a2", 0.5, None),
            item("a3", 0.0, Some("generator failed")),
        ],
        errors: 1,
        abstained: 0,
    };
    let ans_page = tmp.path().join("answers.html");
    std::fs::write(&ans_page, answers_page("Answers", &report, 2)).unwrap();
    let dom = dump_dom(&ans_page, "");
    assert!(dom.contains("data-ready=\"1\""));
    assert_eq!(text_of(&dom, "report-errors"), "");
    assert_eq!(dom.matches("<details>").count(), 2, "two failure examples");
    // The worst first: the error, then the lowest faithfulness.
    let first = dom.find("<summary>a3").unwrap();
    let second = dom.find("<summary>a2").unwrap();
    assert!(first < second);
    assert!(dom.contains("an answer &lt;b&gt;not bold&lt;/b&gt;"));
}
