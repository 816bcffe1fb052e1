//! The live index: `sync` reports, `watch` follows a folder, and a mixed folder of real formats answers
//! with page and row citations. Uses the real embedding model (scripts/setup.sh).

#![allow(clippy::unwrap_used)]

mod common;
use common::{documents, json, quarry};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn top_sources(data: &Path, query: &str, mode: &str) -> Vec<String> {
    let out = quarry(data, &["search", query, "--json", "--top-k", "3", "--mode", mode]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sync_reports_added_changed_removed_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.md"), "# Apples\n\nApples grow on trees in orchards.").unwrap();
    std::fs::write(dir.join("b.txt"), "Bananas are yellow and grow in bunches.").unwrap();
    std::fs::write(dir.join("fish.csv"), "name,water\ntrout,fresh\ncod,salt\nsalmon,both\n").unwrap();
    std::fs::write(dir.join(".hidden.md"), "never indexed").unwrap();
    let data = tmp.path().join("data");
    let d = dir.to_str().unwrap();

    let s = json(&quarry(&data, &["sync", d, "--json"]))["summary"].clone();
    assert_eq!(
        (s["documents_added"].as_u64(), s["documents_removed"].as_u64()),
        (Some(5), Some(0)),
        "{s}"
    );

    std::fs::write(
        dir.join("a.md"),
        "# Apples\n\nApples grow on trees; cider is made from them.",
    )
    .unwrap();
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    std::fs::write(dir.join("c.md"), "# Cherries\n\nCherries are small stone fruit.").unwrap();
    std::fs::write(
        dir.join("fish.csv"),
        "name,water\ntrout,fresh\ncod,salt\nsalmon,both\npike,fresh\n",
    )
    .unwrap();
    let out = quarry(&data, &["sync", d]);
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    // c.md and the pike row are new; a.md changed; b.txt left; the three old rows are unchanged.
    assert!(
        line.starts_with("2 added, 1 changed, 1 removed, 3 unchanged;"),
        "{line}"
    );
    assert!(top_sources(&data, "bananas yellow bunches", "bm25")
        .iter()
        .all(|s| !s.ends_with("b.txt")));
    let pike = top_sources(&data, "pike", "bm25");
    assert!(pike[0].ends_with("fish.csv#row=4"), "{pike:?}");
    let out = quarry(&data, &["sync", d]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0 added, 0 changed, 0 removed, 6 unchanged;"));
}

/// Lines the watcher prints, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {want:?} from quarry watch: {e}"),
        }
    }
}

#[test]
fn watch_applies_changes_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("notes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("owls.md"),
        "# Owls\n\nOwls hunt at night and swallow their prey whole.",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .arg("--data-dir")
        .arg(&data)
        .args(["watch", dir.to_str().unwrap(), "--debounce-ms", "300"])
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let first = wait_for(&rx, "synced:");
    assert!(first.contains("1 added"), "{first}");
    wait_for(&rx, "watching");

    let start = std::time::Instant::now();
    std::fs::write(
        dir.join("otters.md"),
        "# Otters\n\nSea otters hold hands while they sleep.",
    )
    .unwrap();
    std::fs::write(dir.join("otters.md.swp"), "editor swap file").unwrap();
    let line = wait_for(&rx, "applied:");
    assert!(line.contains("1 added, 0 changed, 0 removed"), "{line}");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    // The watcher holds the data directory only while applying, so searches work alongside it.
    let hits = top_sources(&data, "otters sleep holding hands", "bm25");
    assert!(hits[0].ends_with("otters.md"), "{hits:?}");

    std::fs::remove_file(dir.join("owls.md")).unwrap();
    let line = wait_for(&rx, "applied:");
    assert!(line.contains("1 removed"), "{line}");
    std::fs::write(
        dir.join("otters.md"),
        "# Otters\n\nRiver otters slide down muddy banks.",
    )
    .unwrap();
    let line = wait_for(&rx, "applied:");
    assert!(line.contains("1 changed"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();

    let status = json(&quarry(&data, &["status", "--json"]));
    assert_eq!(status["stats"]["documents"], 1, "{status}");
    let hits = top_sources(&data, "muddy banks", "bm25");
    assert!(hits[0].ends_with("otters.md"), "{hits:?}");
    assert!(top_sources(&data, "owls prey", "bm25")
        .iter()
        .all(|s| !s.ends_with("owls.md")));
}

#[test]
fn mixed_formats_answer_with_page_and_row_citations() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dump = tmp.path().join("bands.sql");
    std::fs::write(
        &dump,
        "CREATE TABLE Artist (ArtistId INTEGER, Name TEXT, Country TEXT);\n\
         INSERT INTO Artist VALUES (1, 'AC/DC', 'Australia'), (2, 'Guns N'' Roses', 'United States');\n\
         INSERT INTO Artist VALUES (3, 'Kraftwerk', 'Germany');\n",
    )
    .unwrap();
    let docs = documents();
    let files = [
        docs.join("pdf/nics-background-checks-2015-11.pdf"),
        docs.join("pdf/multicolumn.pdf"),
        docs.join("docx/mammoth-footnotes.docx"),
        docs.join("html/keep-tabular-data/source.html"),
        dump.clone(),
    ];
    let mut args = vec!["ingest", "--json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = quarry(&data, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(json(&out)["summary"]["documents_added"], 7);

    // A table row of the PDF, found by the values in it, cited with its page.
    let out = quarry(
        &data,
        &["search", "background checks in Wyoming", "--json", "--top-k", "3"],
    );
    let res = json(&out);
    let hit = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["text"].as_str().unwrap().contains("| Wyoming |"))
        .unwrap_or_else(|| panic!("no chunk with the Wyoming row in {res}"));
    assert!(
        hit["doc_id"]
            .as_str()
            .unwrap()
            .ends_with("nics-background-checks-2015-11.pdf"),
        "{hit}"
    );
    assert_eq!(hit["page"], 1);
    // The row's chunk carries the table header, so its numbers keep their meaning.
    assert!(
        hit["context"].as_str().unwrap().contains("| State / Territory |"),
        "{hit}"
    );
    // The footnote of the Word file.
    let out = quarry(&data, &["ask", "what walks into a bar?", "--json", "--top-k", "3"]);
    let answer = json(&out);
    assert!(
        answer["citations"][0]["doc_id"]
            .as_str()
            .unwrap()
            .ends_with("mammoth-footnotes.docx"),
        "{answer}"
    );
    assert!(answer["answer"].as_str().unwrap().contains("tachyon"), "{answer}");
    // The second page of a two-column PDF, cited with its page.
    let out = quarry(
        &data,
        &[
            "search",
            "multicolumn Lorem Ipsum",
            "--json",
            "--top-k",
            "10",
            "--mode",
            "bm25",
        ],
    );
    let pages: Vec<u64> = json(&out)["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["doc_id"].as_str().unwrap().ends_with("multicolumn.pdf"))
        .filter_map(|r| r["page"].as_u64())
        .collect();
    assert!(
        !pages.is_empty() && pages.iter().all(|p| (1..=3).contains(p)),
        "{pages:?}"
    );
    // A database row, cited by table and row, filterable by its columns.
    let out = quarry(
        &data,
        &[
            "ask",
            "Which band is from the United States?",
            "--json",
            "--filter",
            "table=Artist",
        ],
    );
    let answer = json(&out);
    let cited = answer["citations"][0]["doc_id"].as_str().unwrap();
    assert!(cited.ends_with("bands.sql#Artist/row=2"), "{answer}");
    // The web page's table, by a value in it.
    let hits = top_sources(&data, "Friday Facts 0.17 in sight", "hybrid");
    assert!(hits[0].ends_with("source.html"), "{hits:?}");
}

const ARTICLE: &str =
    "# Lighthouses\n\nA lighthouse is a tower, building, or other structure designed to emit light from a \
system of lamps and lenses and to serve as a beacon for navigational aid for maritime pilots at sea or on inland \
waterways. Lighthouses mark dangerous coastlines, hazardous shoals, reefs, rocks, and safe entries to harbors; they \
also assist in aerial navigation. Once widely used, the number of operational lighthouses has declined due to the \
expense of maintenance and the advent of much cheaper, more sophisticated, and more effective electronic navigational \
systems.";

#[test]
fn near_duplicates_are_reported_then_indexed_once_the_original_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-original.md"), ARTICLE).unwrap();
    // The same article exported again: other line breaks, case and punctuation.
    let copy = ARTICLE.replace(". ", ".\n\n").replace(';', ",").to_uppercase();
    std::fs::write(dir.join("b-copy.txt"), copy).unwrap();
    let data = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let s = json(&quarry(&data, &["sync", d, "--json"]))["summary"].clone();
    assert_eq!(s["documents_added"], 1, "{s}");
    let dup = s["duplicates"][0].as_str().unwrap();
    assert!(
        dup.contains("b-copy.txt") && dup.contains("near-duplicate of") && dup.contains("a-original.md"),
        "{dup}"
    );
    // --keep-duplicates indexes it anyway; without it, removing the original lets the copy in.
    std::fs::remove_file(dir.join("a-original.md")).unwrap();
    let s = json(&quarry(&data, &["sync", d, "--json"]))["summary"].clone();
    assert_eq!(
        (s["documents_added"].as_u64(), s["documents_removed"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert!(top_sources(&data, "lighthouse beacon maritime", "bm25")[0].ends_with("b-copy.txt"));
    std::fs::write(dir.join("c-again.md"), ARTICLE).unwrap();
    let s = json(&quarry(&data, &["sync", d, "--json", "--keep-duplicates"]))["summary"].clone();
    assert_eq!(s["documents_added"], 1, "{s}");
    assert!(s["duplicates"].as_array().unwrap().is_empty(), "{s}");
}

#[test]
fn bad_files_are_named_and_nothing_indexed_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inbox");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.md"),
        "# Kiln\n\nThe kiln fires at 1200 degrees for stoneware glazes.",
    )
    .unwrap();
    std::fs::write(dir.join("broken.pdf"), b"%PDF-1.7\nnot really a pdf").unwrap();
    std::fs::write(dir.join("notzip.docx"), b"this is not a zip archive").unwrap();
    std::fs::write(dir.join("ragged.csv"), "name,colour\nash,grey\nbirch\nelm,brown\n").unwrap();
    std::fs::write(dir.join("bad.sql"), "INSERT INTO t VALUES (1, 'unterminated);\n").unwrap();
    std::fs::write(dir.join("empty.txt"), b"").unwrap();
    std::fs::write(dir.join("latin1.txt"), b"caf\xe9 cr\xe8me").unwrap();
    // One enormous line, no newline: split between words, indexed.
    let line: String = (0..6_000).map(|i| format!("word{} ", i % 997)).collect::<String>() + "needleinthehaystack";
    std::fs::write(dir.join("oneline.txt"), &line).unwrap();
    let data = tmp.path().join("data");
    let d = dir.to_str().unwrap();

    let out = quarry(&data, &["ingest", d, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = json(&out)["summary"].clone();
    let errors: Vec<String> = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    for (file, says) in [
        ("broken.pdf", "not a readable PDF"),
        ("notzip.docx", ""),
        ("ragged.csv:3", "row has 1 fields but the header has 2"),
        ("bad.sql", ""),
        ("empty.txt", "empty file"),
        ("latin1.txt", "invalid UTF-8 at byte 3"),
    ] {
        assert!(
            errors.iter().any(|e| e.contains(file) && e.contains(says)),
            "no error naming {file} ({says}) in {errors:#?}"
        );
    }
    // good.md, two good CSV rows, the long line.
    assert_eq!(s["documents_added"], 4, "{s}");
    assert!(top_sources(&data, "needleinthehaystack", "bm25")[0].ends_with("oneline.txt"));

    // A file that turns bad keeps what it contributed: bad input never erases data.
    std::fs::write(dir.join("good.md"), b"\xff\xfe\xfa garbage").unwrap();
    let out = quarry(&data, &["sync", d, "--json"]);
    let s = json(&out)["summary"].clone();
    assert_eq!(s["documents_removed"], 0, "{s}");
    assert!(top_sources(&data, "kiln stoneware glazes", "bm25")[0].ends_with("good.md"));
}
