//! The web app's files are served without a key, with types and a script policy; the jobs list the
//! upload panel polls shows a tenant its own jobs only.

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn the_app_is_served_without_a_key_and_only_its_own_files() {
    let f = fixture();
    for (uri, ctype, needle) in [
        ("/", "text/html", "<script src=\"/app/app.js\""),
        ("/app/", "text/html", "id=\"ask-form\""),
        ("/app/index.html", "text/html", "id=\"viewer\""),
        ("/app/app.js", "text/javascript", "function openDocument"),
        ("/app/app.css", "text/css", "mark {"),
    ] {
        let r = get(&f.app, uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert!(r.headers["content-type"].to_str().unwrap().starts_with(ctype), "{uri}");
        assert!(r.text.contains(needle), "{uri} lacks {needle}");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
    }
    // The script never turns text into markup.
    let js = get(&f.app, "/app/app.js", None).await.text;
    assert!(!js.contains("innerHTML") && !js.contains("insertAdjacentHTML") && !js.contains("document.write"));
    for uri in ["/app/../keys.json", "/app/keys.json", "/app/app.js.map"] {
        assert_eq!(get(&f.app, uri, None).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn the_jobs_list_shows_a_tenant_its_own_uploads_newest_first() {
    let f = fixture();
    upload(&f.app, &f.acme, "a.txt", "Alpha text about kilns.", "").await;
    upload(&f.app, &f.acme, "b.txt", "Beta text about glazes.", "").await;
    upload(&f.app, &f.globex, "c.txt", "Gamma text about anvils.", "").await;
    let targets = |v: serde_json::Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["target"].as_str().unwrap().to_string())
            .collect()
    };
    let acme = get(&f.app, "/api/jobs", Some(&f.acme)).await;
    assert_eq!(acme.status, StatusCode::OK, "{}", acme.text);
    assert_eq!(targets(acme.json()), ["upload://acme/b.txt", "upload://acme/a.txt"]);
    let admin = targets(get(&f.app, "/api/jobs?limit=2", Some(&f.admin)).await.json());
    assert_eq!(admin, ["upload://globex/c.txt", "upload://acme/b.txt"]);
    // Reading keys without the ingest scope see no jobs.
    assert_eq!(
        get(&f.app, "/api/jobs", Some(&f.acme_hr)).await.status,
        StatusCode::FORBIDDEN
    );
}
