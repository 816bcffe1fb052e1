//! `/openapi.json` against the real router: the documented paths are exactly the router's table, and
//! each path answers exactly the documented methods (every other method gets 405).

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use quarry_server::ServerOptions;
use serde_json::Value;

use crate::common::*;

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// Every `$ref` in the document, to check they all resolve.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_exists() {
    // Without keys, so every route reaches its handler.
    let f = fixture_with(ServerOptions {
        auth: false,
        ..Default::default()
    });
    let r = get(&f.app, "/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");

    let mut found = Vec::new();
    refs(&doc, &mut found);
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }

    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.iter().any(|m| m.as_str().eq_ignore_ascii_case(k)))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect();
    // The router's own table, in OpenAPI's template syntax (`{*id}` catches the rest of the path).
    let served: BTreeSet<String> = quarry_server::routes::table()
        .into_iter()
        .map(|(path, _, _)| path.replace("{*", "{"))
        .collect();
    let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(
        served.difference(&documented_paths).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "routes missing from /openapi.json"
    );
    assert_eq!(
        documented_paths.difference(&served).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented paths the router does not serve"
    );

    for (path, methods) in &documented {
        assert!(!methods.is_empty(), "{path} documents no operation");
        let concrete = path.replace("{id}", "x").replace("{file}", "x");
        assert!(!concrete.contains('{'), "unfilled parameter in {path}");
        for method in METHODS {
            let r = send(
                &f.app,
                method.clone(),
                &concrete,
                None,
                Body::empty(),
                "application/json",
            )
            .await;
            let unrouted = r.status == StatusCode::NOT_FOUND
                && r.json()["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("route ");
            let answered = !unrouted && r.status != StatusCode::METHOD_NOT_ALLOWED;
            let listed = methods.contains(&method.as_str().to_ascii_lowercase());
            assert_eq!(
                answered, listed,
                "{method} {concrete}: status {} ({}), documented: {listed}",
                r.status, r.text
            );
        }
    }

    // Unknown paths get the usual error body.
    let r = get(&f.app, "/api/nothing-here", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["message"], "route `GET /api/nothing-here` not found");
}
