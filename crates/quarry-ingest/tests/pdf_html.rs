#![allow(clippy::unwrap_used)]
//! PDF and web-page loaders against shared/documents and their known texts (SOURCE.md).

use quarry_core::{ChunkingConfig, MetaValue};
use quarry_ingest::html::text_similarity;
use quarry_ingest::{Chunker, Error, Loaders, TextFormat};

mod common;
use common::{load, shared, Words};

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Share of the expected text's word 6-grams found in `got` in the same order (each after the previous one).
fn ordered_ngrams(got: &str, expected: &str) -> f64 {
    let got = words(got).join(" ");
    let exp = words(expected);
    let grams: Vec<String> = exp.windows(6).step_by(6).map(|w| w.join(" ")).collect();
    let (mut pos, mut found) = (0, 0);
    for g in &grams {
        if let Some(i) = got[pos..].find(g.as_str()) {
            pos += i + g.len();
            found += 1;
        }
    }
    found as f64 / grams.len().max(1) as f64
}

#[test]
fn pdf_ligatures_and_scripts_come_out_as_text() {
    let crazy = load("pdf/crazyones.pdf");
    let expected = std::fs::read_to_string(shared().join("pdf/crazyones.expected.txt")).unwrap();
    let got = &crazy.documents[0].text;
    // The expected text (pypdf's) keeps the ligature glyphs; Quarry spells them out so words match queries.
    let mut spelled = expected.clone();
    for (lig, letters) in [("ﬃ", "ffi"), ("ﬄ", "ffl"), ("ﬁ", "fi"), ("ﬂ", "fl"), ("ﬀ", "ff")] {
        spelled = spelled.replace(lig, letters);
    }
    assert_ne!(spelled, expected, "the expected text has ligatures");
    assert_eq!(words(got), words(&spelled), "{got}");
    assert!(got.contains("misfits") && got.contains("differently"));
    assert_eq!(crazy.format, Some(TextFormat::Markdown));
    assert_eq!(crazy.documents[0].metadata["pages"], MetaValue::Number(1.0));

    let multi = &load("pdf/multilang.pdf").documents[0].text;
    for hello in [
        "Hello World",
        "مرحبا بالعالم",
        "Привет, мир",
        "你好世界",
        "สวัสดีชาวโลก",
        "こんにちは世界",
    ] {
        assert!(multi.contains(hello), "{hello} missing from {multi}");
    }
    let habibi = &load("pdf/habibi-arabic.pdf").documents[0].text;
    assert!(habibi.contains("حَبيبي habibi"), "{habibi}");
}

#[test]
fn two_column_pages_read_column_by_column_with_page_numbers() {
    let l = load("pdf/multicolumn.pdf");
    let doc = &l.documents[0];
    assert_eq!(doc.metadata["pages"], MetaValue::Number(3.0));
    let pages: Vec<&str> = doc.text.split('\u{c}').collect();
    assert_eq!(pages.len(), 3);
    // The expected layout puts the two columns side by side: the right one starts at character 70.
    let layout = std::fs::read_to_string(shared().join("pdf/multicolumn.expected-layout-page1.txt")).unwrap();
    let column = |right: bool| -> String {
        let mut out = String::new();
        for line in layout.lines() {
            let cut = line.char_indices().nth(70).map_or(line.len(), |(i, _)| i);
            let part = if right { &line[cut..] } else { &line[..cut] };
            // Join words hyphenated at the line end, as the extractor does.
            match part.trim_end().strip_suffix('-') {
                Some(stem) => out.push_str(stem.trim_start()),
                None => {
                    out.push_str(part.trim());
                    out.push(' ');
                }
            }
        }
        out
    };
    let reading_order = format!("{} {}", column(false), column(true));
    let score = ordered_ngrams(pages[0], &reading_order);
    assert!(score > 0.95, "page 1 reading order: {score:.3} of 6-grams in order");
    // Chunks say which page they came from.
    let chunker = Chunker::new(
        &Words,
        &ChunkingConfig {
            max_tokens: 80,
            overlap_tokens: 0,
        },
    );
    let chunks = chunker.chunk(doc, l.format.unwrap());
    let seen: std::collections::BTreeSet<u32> = chunks.iter().filter_map(|c| c.page).collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    for c in &chunks {
        let page = c.page.unwrap() as usize;
        let body = c.text.split_whitespace().take(5).collect::<Vec<_>>().join(" ");
        assert!(
            pages[page - 1]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&body),
            "chunk says p. {page} but its text is not there: {body}"
        );
        let loc = c.locator().unwrap();
        assert!(loc.starts_with(&format!("p. {page}")), "{loc}");
    }
}

#[test]
fn multi_column_government_page_follows_the_text_flow() {
    let doc = &load("pdf/federal-register-2020-17221.pdf").documents[0];
    let first = doc.text.split('\u{c}').next().unwrap();
    let flow = "The FAA proposes to\nsupersede Airworthiness Directive (AD)\n2018–23–51, which applies to all The\n\
                Boeing Company Model 737–8 and 737–\n9 (737 MAX) airplanes. Since AD 2018–\n";
    assert!(first.contains(flow), "text flow of page 1 not found");
    assert_eq!(doc.metadata["pages"], MetaValue::Number(15.0));
}

fn number(cell: &str) -> i64 {
    let digits: String = cell.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

#[test]
fn dense_table_keeps_its_rows_and_columns() {
    let doc = &load("pdf/nics-background-checks-2015-11.pdf").documents[0];
    let normalized = doc.text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(normalized.starts_with("NICS Firearm Background Checks November - 2015"));
    let rows: Vec<Vec<&str>> = doc
        .text
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| ---"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 25), "every row has 25 cells");
    let states = &rows[1..rows.len() - 1];
    let totals = rows.last().unwrap();
    assert_eq!(
        states.len(),
        55,
        "50 states, DC, Guam, Mariana Islands, Puerto Rico, Virgin Islands"
    );
    assert_eq!(states[0][0], "Alabama");
    assert_eq!(states[0][24], "71,137");
    assert_eq!(states[states.len() - 1][0], "Wyoming");
    assert_eq!(states[states.len() - 1][24], "5,017");
    assert_eq!(totals[0], "Totals");
    for col in 1..25 {
        let sum: i64 = states.iter().map(|r| number(r[col])).sum();
        assert_eq!(sum, number(totals[col]), "column {col} ({})", rows[0][col]);
    }
}

#[test]
fn transcript_lines_keep_their_order() {
    let doc = &load("pdf/scotus-transcript-p1.pdf").documents[0];
    let expected = std::fs::read_to_string(shared().join("pdf/scotus-transcript-p1.expected-layout.txt")).unwrap();
    assert_eq!(words(&doc.text), words(&expected));
    // "10811.exe" in the info dictionary is no title: the file name is used instead.
    assert_eq!(doc.title.as_deref(), Some("scotus-transcript-p1"));
}

#[test]
fn web_pages_match_readability_articles() {
    // Token F1 against Readability's expected article; floors sit a little below what was measured
    // (`cargo test -p quarry-ingest --test html_f1_report -- --nocapture`: 0.996, 0.903, 0.978, 1.000, 1.000,
    // mean 0.975), so a regression in extraction fails here. wikipedia-3's remaining gap is its formulas, which
    // Quarry reads as text and the expected article's visible text lacks.
    let floors = [
        ("wikipedia", 0.99),
        ("wikipedia-3", 0.89),
        ("mozilla-1", 0.97),
        ("keep-tabular-data", 0.99),
        ("rtl-1", 0.99),
    ];
    let mut sum = 0.0;
    for (page, floor) in floors {
        let l = load(&format!("html/{page}/source.html"));
        let doc = &l.documents[0];
        let expected_html = std::fs::read_to_string(shared().join(format!("html/{page}/expected.html"))).unwrap();
        let expected = quarry_ingest::html::visible_text(&expected_html);
        let score = text_similarity(&doc.text, &expected);
        assert!(score >= floor, "{page}: token F1 {score:.3} < {floor}");
        sum += score;
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(shared().join(format!("html/{page}/expected-metadata.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(doc.title.as_deref(), meta["title"].as_str(), "{page}");
        if let Some(lang) = meta["lang"].as_str() {
            assert_eq!(doc.metadata["lang"], MetaValue::String(lang.into()), "{page}");
        }
        assert_eq!(l.format, Some(TextFormat::Markdown));
    }
    let mean = sum / floors.len() as f64;
    assert!(mean >= 0.97, "mean token F1 {mean:.3} < 0.97");
}

#[test]
fn web_page_tables_survive_as_rows() {
    let doc = &load("html/keep-tabular-data/source.html").documents[0];
    let table_rows = doc
        .text
        .lines()
        .filter(|l| l.starts_with('|') && l.ends_with('|'))
        .count();
    assert!(table_rows >= 5, "{table_rows} table rows");
    assert!(doc.text.contains("|---"), "tables keep a header separator");
    // A marketing page is mostly navigation, promotions and footer: the article is a small part of it.
    let doc = &load("html/mozilla-1/source.html").documents[0];
    let source = std::fs::read_to_string(shared().join("html/mozilla-1/source.html")).unwrap();
    let whole = quarry_ingest::html::visible_text(&source);
    let (kept, all) = (words(&doc.text).len(), words(&whole).len());
    assert!(kept * 2 < all, "boilerplate kept: {kept} of {all} words");
}

fn load_bytes(name: &str, bytes: &[u8]) -> Result<quarry_ingest::Loaded, Error> {
    let path = std::path::Path::new(name);
    let loaders = Loaders::default();
    match loaders.detect(path, bytes) {
        Some(l) => l.load(path, name, bytes),
        None => Err(Error::Unsupported { path: path.into() }),
    }
}

#[test]
fn broken_pdfs_are_clear_errors_naming_the_file() {
    let good = std::fs::read(shared().join("pdf/crazyones.pdf")).unwrap();
    let truncated = &good[..good.len() / 2];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.pdf", truncated.to_vec()),
        ("garbage.pdf", b"%PDF-1.7\nthis is not a pdf at all".to_vec()),
        ("zeros.pdf", vec![0u8; 4096]),
    ];
    for (name, bytes) in cases {
        match load_bytes(name, &bytes) {
            Err(e) => assert!(e.to_string().starts_with(name), "{e}"),
            // A truncated file may still yield its first pages; then it must have text.
            Ok(l) => assert!(!l.documents[0].text.trim().is_empty(), "{name}: silent empty document"),
        }
    }
}

#[test]
fn pages_without_text_are_reported_not_silently_empty() {
    // A one-page PDF that draws only a rectangle: what a scanned page looks like to a text extractor.
    let content = "0 0 m 100 100 l S";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    let e = load_bytes("scan.pdf", &pdf).unwrap_err();
    assert_eq!(
        e.to_string(),
        "scan.pdf: no page has extractable text (a scanned PDF needs OCR)"
    );
}

#[test]
fn broken_web_pages_and_encodings() {
    let l = load_bytes(
        "broken.html",
        b"<html><body><p>Unclosed <b>bold <i>and <table><tr><td>cell",
    )
    .unwrap();
    assert!(l.documents[0].text.contains("cell"), "{}", l.documents[0].text);
    // A Latin-1 page that says so is decoded; invalid UTF-8 without a declaration is an error naming the file.
    let latin1 = b"<html><head><meta charset=\"iso-8859-1\"></head><body><p>Caf\xe9 cr\xe8me</p></body></html>";
    assert!(load_bytes("latin1.html", latin1).unwrap().documents[0]
        .text
        .contains("Café crème"));
    let e = load_bytes("bad.html", b"<html><body><p>Caf\xe9</p></body></html>").unwrap_err();
    assert_eq!(e.to_string(), "bad.html: invalid UTF-8 at byte 18");
    let e = load_bytes("empty.html", b"<html><body><nav>menu</nav></body></html>").unwrap_err();
    assert!(e.to_string().starts_with("empty.html: "), "{e}");
}
