//! The HTTP API end to end: keys, upload → job → search/ask/documents, streaming, feedback in the
//! query log, limits and metrics.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use quarry_server::ServerOptions;
use serde_json::json;

use crate::common::*;

const SCURVY: &str = "# Scurvy\n\nScurvy is caused by a lack of vitamin C in the diet. Sailors on long voyages \
suffered from it until citrus fruit was carried on board.\n\n## Treatment\n\nEating oranges or lemons cures scurvy \
within weeks.\n";

#[tokio::test]
async fn health_is_public_and_everything_else_needs_a_live_key() {
    let f = fixture();
    assert_eq!(get(&f.app, "/health", None).await.status, StatusCode::OK);
    let ready = get(&f.app, "/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["generator"], "extractive");
    // Corpus-wide counts are for operators: not for anonymous callers, nor for a tenant's key.
    for key in [None, Some(f.acme.as_str()), Some("qk_000000000000_nope")] {
        let r = get(&f.app, "/ready", key).await.json();
        assert!(
            r.get("documents").is_none() && r.get("chunks").is_none(),
            "{key:?}: {r}"
        );
    }
    let r = get(&f.app, "/ready", Some(&f.admin)).await.json();
    assert_eq!(
        (r["documents"].as_u64(), r["chunks"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    for (uri, key) in [
        ("/api/documents", None),
        ("/api/documents", Some("qk_000000000000_nope")),
        ("/v1/models", Some("Bearer-less")),
    ] {
        let r = get(&f.app, uri, key).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri} {key:?}");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
        assert_eq!(r.json()["error"]["type"], "authentication_error");
    }
    assert_eq!(
        get(&f.app, "/api/documents", Some(&f.acme)).await.status,
        StatusCode::OK
    );
    // Revoking a key (as `quarry keys revoke` does, from another handle on the file) locks it out at once.
    let store = quarry_server::KeyStore::in_dir(f.dir.path()).unwrap();
    let id = f.acme.split('_').nth(1).unwrap();
    assert!(store.revoke(id).unwrap());
    assert_eq!(
        get(&f.app, "/api/documents", Some(&f.acme)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn upload_search_ask_documents_feedback_and_the_query_log() {
    let f = fixture();
    let job = upload(&f.app, &f.acme, "scurvy.md", SCURVY, "").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["summary"]["documents_added"], 1);
    let doc_id = "upload://acme/scurvy.md";

    // Search.
    let r = post(
        &f.app,
        "/api/search",
        Some(&f.acme),
        json!({ "query": "what causes scurvy", "top_k": 3 }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    let results = v["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["doc_id"] == doc_id), "{v}");
    assert!(
        results
            .iter()
            .any(|r| r["text"].as_str().unwrap().contains("vitamin C")),
        "{v}"
    );
    assert!(v["timings"]["total_ms"].as_f64().unwrap() >= 0.0);

    // Ask (JSON): an extractive answer citing the upload, with stage timings.
    let r = post(
        &f.app,
        "/api/ask",
        Some(&f.acme),
        json!({ "question": "What causes scurvy?", "generator": "extractive" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let a = r.json();
    assert!(a["answer"].as_str().unwrap().contains("[1]"), "{a}");
    assert_eq!(a["citations"][0]["doc_id"], doc_id);
    assert!(a["timings"]["retrieve_ms"].as_f64().is_some() && a["timings"]["total_ms"].as_f64().is_some());
    let query_id = a["query_id"].as_str().unwrap().to_string();

    // Documents: list, get.
    let list = get(&f.app, "/api/documents", Some(&f.acme)).await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["documents"][0]["id"], doc_id);
    assert_eq!(list["documents"][0]["metadata"]["access.tenant"], "acme");
    let d = get(&f.app, &format!("/api/documents/{doc_id}"), Some(&f.acme)).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert!(d.json()["text"].as_str().unwrap().starts_with("# Scurvy"));

    // Feedback, then the log holds question, retrieved ids, answer, latency and the feedback.
    let r = post(
        &f.app,
        "/api/feedback",
        Some(&f.acme),
        json!({ "query_id": query_id, "rating": "down", "comment": "too short" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bad = post(
        &f.app,
        "/api/feedback",
        Some(&f.acme),
        json!({ "query_id": "nope", "rating": "up" }),
    )
    .await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    let logged = quarry_server::querylog::read(&f.dir.path().join("query-log.jsonl")).unwrap();
    let q = logged.iter().find(|q| q.query.id == query_id).unwrap();
    assert_eq!(q.query.question, "What causes scurvy?");
    assert_eq!(q.query.endpoint, "ask");
    assert_eq!(q.query.tenant.as_deref(), Some("acme"));
    assert_eq!(q.query.retrieved[0].doc_id, doc_id);
    assert_eq!(q.query.answer.as_deref(), a["answer"].as_str());
    // The cited passages are logged with their chunk ids, for the training-data flywheel.
    let cited: Vec<u64> = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk_id"].as_u64().unwrap())
        .collect();
    assert!(!cited.is_empty());
    assert_eq!(q.query.cited.iter().map(|c| c.chunk_id).collect::<Vec<_>>(), {
        let mut seen = std::collections::HashSet::new();
        cited.into_iter().filter(|c| seen.insert(*c)).collect::<Vec<_>>()
    });
    assert!(q.query.latency_ms > 0.0);
    assert_eq!(q.feedback.len(), 1);
    assert_eq!(q.feedback[0].rating, quarry_server::querylog::Rating::Down);
    assert_eq!(q.feedback[0].comment.as_deref(), Some("too short"));
    assert_eq!(logged.iter().filter(|q| q.query.endpoint == "search").count(), 1);

    // Re-uploading the same bytes changes nothing; delete removes it from search.
    let again = upload(&f.app, &f.acme, "scurvy.md", SCURVY, "").await;
    assert_eq!(again["summary"]["files_unchanged"], 1, "{again}");
    let r = send(
        &f.app,
        Method::DELETE,
        &format!("/api/documents/{doc_id}"),
        Some(&f.acme),
        Body::empty(),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["deleted"], 1);
    assert!(search_ids(&f.app, &f.acme, json!({ "query": "scurvy" }))
        .await
        .is_empty());
    assert_eq!(
        get(&f.app, &format!("/api/documents/{doc_id}"), Some(&f.acme))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn ask_streams_tokens_then_citations_verification_and_done() {
    let f = fixture();
    upload(&f.app, &f.acme, "scurvy.md", SCURVY, "").await;
    let r = post(
        &f.app,
        "/api/ask",
        Some(&f.acme),
        json!({ "question": "How is scurvy cured?", "stream": true }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = events(&r.text);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    let first_other = names.iter().position(|n| *n != "token").unwrap();
    assert!(first_other > 0, "tokens come first: {names:?}");
    assert_eq!(&names[first_other..], ["citations", "verification", "done"]);
    let streamed: String = ev
        .iter()
        .filter(|(n, _)| n == "token")
        .map(|(_, d)| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let verification: serde_json::Value = serde_json::from_str(&ev[first_other + 1].1).unwrap();
    assert_eq!(streamed, verification["answer"].as_str().unwrap());
    let citations: serde_json::Value = serde_json::from_str(&ev[first_other].1).unwrap();
    assert_eq!(citations[0]["doc_id"], "upload://acme/scurvy.md");
    let done: serde_json::Value = serde_json::from_str(&ev[first_other + 2].1).unwrap();
    assert!(
        done["query_id"].is_string() && done["timings"]["total_ms"].is_number(),
        "{done}"
    );
}

#[tokio::test]
async fn url_ingest_fetches_a_page_in_a_background_job() {
    // A one-page site on a loopback port chosen by the OS.
    let site = axum::Router::new().route(
        "/guide.html",
        axum::routing::get(|| async {
            axum::response::Html(
                "<html><head><title>Kiln guide</title></head><body><main><h1>Kiln guide</h1>\
                 <p>The kiln must cool for twelve hours before the door is opened.</p></main></body></html>",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, site).await });
    let f = fixture();
    let r = post(
        &f.app,
        "/api/ingest/url",
        Some(&f.acme),
        json!({ "url": format!("http://{addr}/guide.html") }),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let job = wait_job(&f.app, &f.acme, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    let ids = search_ids(&f.app, &f.acme, json!({ "query": "how long must the kiln cool" })).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].contains("guide.html"));
    assert!(search_ids(&f.app, &f.globex, json!({ "query": "kiln" }))
        .await
        .is_empty());
    let bad = post(
        &f.app,
        "/api/ingest/url",
        Some(&f.acme),
        json!({ "url": "file:///etc/passwd" }),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn limits_answer_413_429_and_503() {
    let f = fixture_with(ServerOptions {
        max_body_bytes: 1024,
        rate_per_minute: 3,
        max_inflight: 1,
        ..Default::default()
    });
    // Body size.
    let big = "x".repeat(4096);
    let r = send(
        &f.app,
        Method::POST,
        "/api/ingest/file?name=big.txt",
        Some(&f.acme),
        Body::from(big),
        "text/plain",
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // In-flight work: with the only permit held, a search is shed with 503 and Retry-After.
    let permit = f.state.permit().unwrap();
    let r = post(&f.app, "/api/search", Some(&f.globex), json!({ "query": "x" })).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    drop(permit);
    // Rate: globex has used 1 of 3; the 4th request within the minute is refused.
    for _ in 0..2 {
        assert_eq!(get(&f.app, "/v1/models", Some(&f.globex)).await.status, StatusCode::OK);
    }
    let r = get(&f.app, "/v1/models", Some(&f.globex)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Other keys have their own budget.
    assert_eq!(get(&f.app, "/v1/models", Some(&f.admin)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_carry_ids_and_are_counted_in_metrics() {
    let f = fixture();
    let r = get(&f.app, "/api/documents", Some(&f.acme)).await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 16);
    get(&f.app, "/api/documents", None).await;
    upload(&f.app, &f.acme, "scurvy.md", SCURVY, "").await;
    post(
        &f.app,
        "/api/ask",
        Some(&f.acme),
        json!({ "question": "What causes scurvy?" }),
    )
    .await;
    let m = get(&f.app, "/metrics", None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text
            .contains("quarry_http_requests_total{route=\"/api/documents\",status=\"200\"} 1"),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains("quarry_http_requests_total{route=\"/api/documents\",status=\"401\"} 1"));
    assert!(m
        .text
        .contains("quarry_stage_duration_seconds_count{stage=\"retrieve\"} 1"));
    assert!(m
        .text
        .contains("quarry_stage_duration_seconds_count{stage=\"total\"} 1"));
}

#[tokio::test]
async fn shutdown_finishes_the_running_job_cancels_queued_ones_and_leaves_nothing_half_written() {
    let f = fixture();
    let mut ids = Vec::new();
    for i in 0..6 {
        let text = format!(
            "# Note {i}\n\n{}",
            "Kilns are fired slowly and cooled slowly. ".repeat(200)
        );
        let r = send(
            &f.app,
            Method::POST,
            &format!("/api/ingest/file?name=note{i}.md"),
            Some(&f.acme),
            Body::from(text),
            "text/markdown",
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let st = f.state.clone();
    tokio::task::spawn_blocking(move || st.shutdown()).await.unwrap();
    // After shutdown nothing is queued or running, and new work is refused with 503.
    let mut done = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let j = get(&f.app, &format!("/api/jobs/{id}"), Some(&f.acme)).await.json();
        match j["state"].as_str().unwrap() {
            "done" => done.push(format!("upload://acme/note{i}.md")),
            "cancelled" => {}
            other => panic!("job {i} is {other} after shutdown: {j}"),
        }
    }
    let r = send(
        &f.app,
        Method::POST,
        "/api/ingest/file?name=late.md",
        Some(&f.acme),
        Body::from("late"),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    // Exactly the finished jobs' documents are in the index, each whole (every chunk present).
    let list = get(&f.app, "/api/documents?limit=100", Some(&f.acme)).await.json();
    let mut listed: Vec<String> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    done.sort();
    assert_eq!(listed, done);
    for id in &done {
        let d = get(&f.app, &format!("/api/documents/{id}"), Some(&f.acme)).await.json();
        let chunks = d["chunk_ids"].as_array().unwrap();
        assert!(!chunks.is_empty());
        let text = d["text"].as_str().unwrap();
        assert_eq!(text.matches("cooled slowly.").count(), 200, "{id} stored whole");
    }
    // Uploads of finished and cancelled jobs alike are cleaned up.
    let uploads = f.dir.path().join("uploads");
    let left = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "upload folders left behind");
}

#[tokio::test]
async fn resync_reads_a_pages_source_again_and_keeps_its_labels() {
    // A page whose text the test changes between the ingest and the re-sync.
    let page = std::sync::Arc::new(std::sync::Mutex::new(
        "The kiln must cool for twelve hours before the door is opened.".to_string(),
    ));
    let served = page.clone();
    let site = axum::Router::new().route(
        "/kiln.html",
        axum::routing::get(move || {
            let text = served.lock().unwrap().clone();
            async move {
                axum::response::Html(format!(
                    "<html><head><title>Kiln</title></head><body><main><h1>Kiln</h1><p>{text}</p></main></body></html>"
                ))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, site).await });
    let f = fixture();
    let r = post(
        &f.app,
        "/api/ingest/url",
        Some(&f.acme),
        json!({ "url": format!("http://{addr}/kiln.html"), "groups": ["eng"] }),
    )
    .await;
    let job = wait_job(&f.app, &f.acme, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    let ids = search_ids(&f.app, &f.acme, json!({ "query": "kiln cool hours", "mode": "bm25" })).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let doc = ids[0].clone();

    *page.lock().unwrap() = "Glazes are fired at cone six in an electric furnace.".to_string();
    // Who may not: a read-only key (403), another tenant (404, as for a missing id), an unknown id.
    let body = json!({ "document": doc });
    assert_eq!(
        post(&f.app, "/api/sync", Some(&f.acme_hr), body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&f.app, "/api/sync", Some(&f.globex), body.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    let missing = post(&f.app, "/api/sync", Some(&f.acme), json!({ "document": "nope" })).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let r = post(&f.app, "/api/sync", Some(&f.acme), body.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json()["kind"], "resync");
    let job = wait_job(&f.app, &f.acme, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["summary"]["documents_updated"], 1, "{job}");
    // The new text is found, the old one is gone, and the labels stayed: eng reads it, hr does not.
    let found = search_ids(
        &f.app,
        &f.acme,
        json!({ "query": "glazes cone furnace", "mode": "bm25" }),
    )
    .await;
    assert_eq!(found, vec![doc.clone()]);
    // (The title, "Kiln", stays; the old sentence is gone.)
    assert!(search_ids(
        &f.app,
        &f.acme,
        json!({ "query": "twelve hours door opened", "mode": "bm25" })
    )
    .await
    .is_empty());
    let text = get(&f.app, &format!("/api/documents/{doc}"), Some(&f.acme))
        .await
        .json()["text"]
        .to_string();
    assert!(text.contains("cone six") && !text.contains("twelve"), "{text}");
    assert!(search_ids(
        &f.app,
        &f.acme_hr,
        json!({ "query": "glazes cone furnace", "mode": "bm25" })
    )
    .await
    .is_empty());
    let listed = get(&f.app, "/api/documents", Some(&f.acme)).await.json();
    assert_eq!(listed["total"], 1, "{listed}");

    // An upload has no source to read again.
    upload(&f.app, &f.acme, "scurvy.md", SCURVY, "").await;
    let r = post(
        &f.app,
        "/api/sync",
        Some(&f.acme),
        json!({ "document": "upload://acme/scurvy.md" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload the file again"),
        "{}",
        r.text
    );
}
