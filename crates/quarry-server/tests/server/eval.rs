//! Evaluation runs over the API: a posted eval set is scored against the documents the submitting key
//! reads (access labels apply to evaluation retrieval too), runs are shown only to keys that may see
//! them, and the HTML report is quarry-eval's.

use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use quarry_server::{KeyStore, Scope};
use serde_json::{json, Value};

use crate::common::*;

/// Polls a run until it leaves the queue (bounded: 60 s).
async fn wait_run(app: &Router, key: &str, id: &str) -> Value {
    for _ in 0..3000 {
        let r = get(app, &format!("/api/eval/runs/{id}"), Some(key)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let v = r.json();
        if !matches!(v["state"].as_str(), Some("queued" | "running")) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("evaluation run {id} did not finish");
}

fn eval_set() -> String {
    [
        json!({ "id": "scurvy", "question": "What causes scurvy?", "gold_doc_ids": ["upload://acme/scurvy.txt"] }),
        json!({ "id": "kiln", "question": "How hot does a kiln fire clay?", "gold_doc_ids": ["upload://acme/kiln.txt"] }),
        json!({ "id": "payroll", "question": "When is payroll paid?", "gold_doc_ids": ["upload://acme/payroll.txt"] }),
        json!({ "id": "anvil", "question": "What are anvils forged from?", "gold_doc_ids": ["upload://globex/anvil.txt"] }),
        json!({ "id": "unjudged", "question": "Anything about glazes?" }),
    ]
    .iter()
    .map(|v| format!("{v}\n"))
    .collect()
}

#[tokio::test]
async fn runs_score_retrieval_under_the_submitters_labels_and_render_the_report() {
    let f = fixture();
    for (key, name, text, extra) in [
        (
            &f.acme,
            "scurvy.txt",
            "Scurvy is caused by a lack of vitamin C in the diet.",
            "",
        ),
        (
            &f.acme,
            "kiln.txt",
            "A kiln fires clay at temperatures above nine hundred degrees.",
            "",
        ),
        (
            &f.acme,
            "payroll.txt",
            "Payroll is paid on the last working day of each month.",
            "&groups=hr",
        ),
        (
            &f.globex,
            "anvil.txt",
            "Anvils are forged from steel and weigh a great deal.",
            "",
        ),
    ] {
        assert_eq!(upload(&f.app, key, name, text, extra).await["state"], "done");
    }
    let store = KeyStore::in_dir(f.dir.path()).unwrap();
    let acme_eval = key(&store, Some("acme"), &["eng"], &[Scope::Eval]);
    let acme_hr_eval = key(&store, Some("acme"), &["hr"], &[Scope::Eval]);
    let globex_eval = key(&store, Some("globex"), &[], &[Scope::Eval]);

    // Keys without the eval scope may not start runs.
    let body = json!({ "eval_set": eval_set(), "name": "smoke <1>", "measures": "hit@10,mrr@10" });
    let r = post(&f.app, "/api/eval/runs", Some(&f.acme), body.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let r = post(&f.app, "/api/eval/runs", Some(&acme_eval), body.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let run = wait_run(&f.app, &acme_eval, &id).await;
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!((run["questions"].as_u64(), run["judged"].as_u64()), (Some(5), Some(4)));
    assert_eq!(run["measures"], json!(["hit@10", "mrr@10"]));
    // acme/eng reads scurvy and kiln, not hr's payroll nor globex's anvil: those can never be found.
    assert_eq!(run["gold_not_visible"], 2, "{run}");
    let hit = |run: &Value, q: &str| run["per_query"][q]["hit@10"].as_f64().unwrap();
    assert_eq!(
        ["scurvy", "kiln", "payroll", "anvil"].map(|q| hit(&run, q)),
        [1.0, 1.0, 0.0, 0.0],
        "{run}"
    );
    assert_eq!(run["metrics"]["hit@10"], 0.5);

    // The same set run by an admin (every tenant) finds every gold document.
    let r = post(&f.app, "/api/eval/runs", Some(&f.admin), body.clone()).await;
    let admin_run = wait_run(&f.app, &f.admin, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(admin_run["gold_not_visible"], 0, "{admin_run}");
    assert_eq!(admin_run["metrics"]["hit@10"], 1.0, "{admin_run}");

    // The report: quarry-eval's page, served sandboxed, with the question text escaped.
    let rep = get(&f.app, &format!("/api/eval/runs/{id}/report"), Some(&acme_eval)).await;
    assert_eq!(rep.status, StatusCode::OK, "{}", rep.text);
    assert!(rep.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(rep.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert!(
        rep.text.contains("data-ready") && rep.text.contains("What causes scurvy?"),
        "not the report"
    );
    assert_eq!(
        rep.text.matches("class=\"chart histogram\"").count(),
        2,
        "one histogram per measure"
    );

    // Who sees the run: its tenant's keys holding the submitter's groups, and admins.
    let listed = |v: Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        listed(get(&f.app, "/api/eval/runs", Some(&acme_eval)).await.json()),
        std::slice::from_ref(&id)
    );
    let all = get(&f.app, "/api/eval/runs", Some(&f.admin)).await.json();
    assert_eq!(listed(all.clone()).len(), 2);
    assert!(
        all["runs"][0].get("per_query").is_none(),
        "listings leave out per-question scores"
    );
    for other in [&globex_eval, &acme_hr_eval] {
        assert!(listed(get(&f.app, "/api/eval/runs", Some(other)).await.json()).is_empty());
        for uri in [format!("/api/eval/runs/{id}"), format!("/api/eval/runs/{id}/report")] {
            assert_eq!(
                get(&f.app, &uri, Some(other)).await.status,
                StatusCode::NOT_FOUND,
                "{uri}"
            );
        }
    }
}

#[tokio::test]
async fn unusable_eval_sets_are_refused_with_the_reason() {
    let f = fixture();
    let cases = [
        (
            json!({ "eval_set": "{\"question\": \"no gold\"}\n" }),
            "no question with gold_doc_ids",
        ),
        (
            json!({ "eval_set": "{\"question\": \"ok\", \"gold_doc_ids\": [\"d\"]}\nnot json\n" }),
            "eval_set:2:",
        ),
        (
            json!({ "eval_set": [{ "question": "q", "gold_doc_ids": ["d"] }], "depth": 0 }),
            "depth",
        ),
        (
            json!({ "eval_set": [{ "question": "q", "gold_doc_ids": ["d"] }], "measures": "ndcg@x" }),
            "measures",
        ),
    ];
    for (body, why) in cases {
        let r = post(&f.app, "/api/eval/runs", Some(&f.admin), body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            r.json()["error"]["message"].as_str().unwrap().contains(why),
            "{body}: {}",
            r.text
        );
    }
    // A JSON array of items is accepted as well as JSONL text.
    let r = post(
        &f.app,
        "/api/eval/runs",
        Some(&f.admin),
        json!({ "eval_set": [{ "question": "q", "gold_doc_ids": ["d"] }], "mode": "bm25", "depth": 5 }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(
        (r.json()["mode"].clone(), r.json()["depth"].clone()),
        (json!("bm25"), json!(5))
    );
    assert_eq!(
        get(&f.app, "/api/eval/runs/nope/report", Some(&f.admin)).await.status,
        StatusCode::NOT_FOUND
    );
}
