#![allow(clippy::unwrap_used)]
//! Loaders against the real documents in shared/documents and their known texts (SOURCE.md).

use std::collections::BTreeMap;
use std::path::Path;

use quarry_core::{ChunkingConfig, Document, MetaValue, TokenCounter};
use quarry_ingest::{Chunker, Loaders, TextFormat};

mod common;
use common::{load, shared, Words};

fn text(d: &Document) -> &str {
    &d.text
}

#[test]
fn csv_spectrum_parses_exactly_as_expected() {
    let dir = shared().join("csv/csv-spectrum");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        let expected_path = path.with_extension("expected.json");
        let expected: Vec<BTreeMap<String, String>> =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let parse = |text: &str| -> Vec<BTreeMap<String, String>> {
            let rows = quarry_ingest::csv::parse(&path, text, b',').unwrap();
            rows.iter()
                .map(|r| r.fields.iter().map(|(k, v)| (k.clone(), v.render())).collect())
                .collect()
        };
        let name = path.file_stem().unwrap().to_str().unwrap();
        if name.ends_with("_crlf") && !text.contains('\r') {
            // This copy of the *_crlf files lost its CRs (see SOURCE.md): rebuild the upstream bytes, which the
            // expectation describes exactly, and check the LF copy against the same expectation with LF.
            assert_eq!(
                parse(&text.replace('\n', "\r\n")),
                expected,
                "{} with CRLF",
                path.display()
            );
            let lf: Vec<BTreeMap<String, String>> = expected
                .iter()
                .map(|r| r.iter().map(|(k, v)| (k.clone(), v.replace("\r\n", "\n"))).collect())
                .collect();
            assert_eq!(parse(&text), lf, "{}", path.display());
        } else {
            assert_eq!(parse(&text), expected, "{}", path.display());
        }
        checked += 1;
    }
    assert_eq!(checked, 10);
}

#[test]
fn chinook_tracks_csv_gives_one_document_per_row_with_filterable_columns() {
    let l = load("csv/chinook-tracks.csv");
    assert_eq!(l.documents.len(), 3503);
    let samba = l
        .documents
        .iter()
        .find(|d| {
            d.metadata.get("TrackName").and_then(MetaValue::as_str) == Some("Samba De Uma Nota Só (One Note Samba)")
        })
        .unwrap();
    assert!(samba.text.contains("TrackName: Samba De Uma Nota Só"));
    assert!(samba.id.starts_with("csv/chinook-tracks.csv#row="));
    let rock = quarry_core::Filter::parse("Genre=Rock").unwrap();
    let n = l.documents.iter().filter(|d| rock.matches(&d.metadata)).count();
    assert!(n > 1000 && n < 3503, "{n} rock tracks");
}

#[test]
fn chinook_sql_dumps_give_the_known_row_counts_in_both_dialects() {
    let expected = [
        ("album", 347),
        ("artist", 275),
        ("customer", 59),
        ("employee", 8),
        ("genre", 25),
        ("invoice", 412),
        ("invoiceline", 2240),
        ("mediatype", 5),
        ("playlist", 18),
        ("playlisttrack", 8715),
        ("track", 3503),
    ];
    for file in ["sql/Chinook_Sqlite.sql", "sql/Chinook_PostgreSql.sql"] {
        let text = std::fs::read_to_string(shared().join(file)).unwrap();
        let tables = quarry_ingest::sql::parse_dump(&text).unwrap();
        // PostgreSQL names tables snake_case (media_type); compare without underscores and case.
        let counts: BTreeMap<String, usize> = tables
            .iter()
            .map(|t| (t.name.to_ascii_lowercase().replace('_', ""), t.rows.len()))
            .collect();
        let want: BTreeMap<String, usize> = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(counts, want, "{file}");
    }
    let l = load("sql/Chinook_Sqlite.sql");
    assert_eq!(l.documents.len(), 15_607);
    let gnr = l
        .documents
        .iter()
        .find(|d| d.text == "ArtistId: 88\nName: Guns N' Roses")
        .unwrap();
    assert_eq!(gnr.id, "sql/Chinook_Sqlite.sql#Artist/row=88");
    assert_eq!(gnr.metadata["table"], MetaValue::String("Artist".into()));
}

/// Every line of the generated reference text appears in the extracted text, in order.
fn contains_in_order(haystack: &str, lines: &[&str]) -> Result<(), String> {
    let mut pos = 0;
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        match haystack[pos..].find(line) {
            Some(i) => pos += i + line.len(),
            None => return Err(format!("{line:?} missing after byte {pos}")),
        }
    }
    Ok(())
}

#[test]
fn docx_files_keep_their_text_in_document_order() {
    for entry in std::fs::read_dir(shared().join("docx")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("docx") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let l = load(&format!("docx/{name}"));
        assert_eq!(l.documents.len(), 1, "{name}");
        let reference = std::fs::read_to_string(path.with_extension("reference-text.txt")).unwrap();
        let mut lines: Vec<&str> = reference.lines().collect();
        // The reference lists the text box twice (DrawingML and VML copies); Quarry reads it once.
        if name == "mammoth-text-box.docx" {
            lines.dedup();
        }
        // The reference text has no footnote markers; Quarry writes `[n]` where a note is referenced.
        let mut got = text(&l.documents[0]).to_string();
        for n in 1..10 {
            got = got.replace(&format!("[{n}]"), "");
        }
        contains_in_order(&got, &lines).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn docx_expectations_from_the_upstream_tests() {
    let t = load("docx/mammoth-tables.docx");
    assert_eq!(
        t.documents[0].text,
        "Above\n\n| Top left | Top right |\n|---|---|\n| Bottom left | Bottom right |\n\nBelow"
    );
    let t = load("docx/mammoth-simple-list.docx");
    assert_eq!(t.documents[0].text, "- Apple\n- Banana");
    let t = load("docx/mammoth-footnotes.docx");
    assert_eq!(
        t.documents[0].text,
        "Ouch[1].[2]\n\n# Footnotes\n\n[1] A tachyon walks into a bar.\n\n[2] Fin."
    );
    let t = load("docx/mammoth-text-box.docx");
    assert_eq!(t.documents[0].text, "Datum plane");
    let t = load("docx/mammoth-utf8-bom.docx");
    assert_eq!(t.documents[0].text, "This XML has a byte order mark.");
    let t = load("docx/python-docx-par-known-paragraphs.docx");
    assert!(
        t.documents[0]
            .text
            .starts_with("# Heading Paragraph\n\nNormal paragraph"),
        "{}",
        t.documents[0].text
    );
    assert_eq!(t.format, Some(TextFormat::Markdown));
}

#[test]
fn markdown_readmes_chunk_without_splitting_code_blocks_or_tables() {
    for name in ["pdfplumber-README.md", "mammoth-README.md", "chinook-README.md"] {
        let l = load(&format!("markdown/{name}"));
        let doc = &l.documents[0];
        let chunker = Chunker::new(
            &Words,
            &ChunkingConfig {
                max_tokens: 120,
                overlap_tokens: 0,
            },
        );
        let chunks = chunker.chunk(doc, TextFormat::Markdown);
        assert!(chunks.len() > 1, "{name}");
        for c in &chunks {
            // A fence opened in a chunk is closed in it, unless the block itself is over the budget.
            let fences = c.text.lines().filter(|l| l.trim_start().starts_with("```")).count();
            let code_lines = c.text.lines().filter(|l| !l.trim_start().starts_with("```")).count();
            assert!(fences % 2 == 0 || code_lines > 0, "{name}: {:?}", c.text);
            assert!(c.tokens <= 120);
            for line in c.text.lines().filter(|l| l.starts_with('|')) {
                // Only a row that alone is over the budget may be cut (between sentences or words).
                let row_tokens = doc
                    .text
                    .lines()
                    .find(|l| l.starts_with(line))
                    .map_or(0, |l| Words.count_tokens(l));
                // Rows of a split table leave room for half of the header they carry.
                let header = c.context.as_deref().map_or(0, |h| Words.count_tokens(h));
                assert!(
                    line.trim_end().ends_with('|') || row_tokens > 120 - header / 2,
                    "{name}: a table row was cut: {line:?}"
                );
            }
        }
        assert!(
            chunks.iter().any(|c| !c.section.is_empty()),
            "{name}: headings give section paths"
        );
    }
}

#[test]
fn content_sniffing_beats_a_wrong_extension() {
    let dir = tempfile::tempdir().unwrap();
    let docx = std::fs::read(shared().join("docx/mammoth-tables.docx")).unwrap();
    let disguised = dir.path().join("tables.txt");
    std::fs::write(&disguised, &docx).unwrap();
    let loaders = Loaders::default();
    assert_eq!(loaders.detect(&disguised, &docx).unwrap().name(), "docx");
    let sql = b"-- dump\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n";
    assert_eq!(loaders.detect(Path::new("export"), sql).unwrap().name(), "sql");
    assert_eq!(
        loaders
            .detect(Path::new("data"), b"{\"a\": 1}\n{\"a\": 2}\n")
            .unwrap()
            .name(),
        "jsonl"
    );
    assert_eq!(
        loaders
            .detect(Path::new("data"), b"[{\"a\": 1},\n{\"a\": 2}]")
            .unwrap()
            .name(),
        "json"
    );
    assert!(loaders.detect(Path::new("blob.bin"), b"\x00\x01\x02").is_none());
}
