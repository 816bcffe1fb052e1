//! `quarry-bench --formats`: per-format ingestion throughput and accuracy on `shared/documents`,
//! Quarry against the Python reference tools run by `bench/ingest_reference.py`, in the same run.
//!
//! Every engine repeats its whole file set until `--min-secs` have passed, on one thread. The Python
//! script returns the texts it extracted; they are scored here by the same code as Quarry's, so the
//! accuracy columns mean the same thing for every engine. Throughput is measured through
//! `Loaders::detect` + `Loader::load`, the path ingestion takes (CSV and SQL also parse-only).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use quarry_ingest::html::{text_similarity, visible_text};
use quarry_ingest::{csv, docx, html, pdf, sql, Loaders};
use serde_json::Value;

pub struct Opts {
    pub shared: PathBuf,
    pub python: String,
    pub min_secs: f64,
    /// Where the PDF edge cases are written (a temporary folder unless given).
    pub edge_dir: Option<PathBuf>,
    /// JSON files with more PDF engines, in the schema of ingest_reference.py's "pdf" entries.
    pub pdf_extra: Vec<PathBuf>,
    /// Write every engine's extracted PDF, DOCX and HTML text here (DIR/engine/file.txt), to read the misses.
    pub dump: Option<PathBuf>,
}

fn dump(dir: Option<&PathBuf>, engine: &str, file: &str, text: &str) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    let slug: String = engine
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let dir = dir.join(slug.chars().take(40).collect::<String>());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{file}.txt")), text)?;
    Ok(())
}

const PDFS: [&str; 7] = [
    "crazyones.pdf",
    "multilang.pdf",
    "multicolumn.pdf",
    "habibi-arabic.pdf",
    "scotus-transcript-p1.pdf",
    "nics-background-checks-2015-11.pdf",
    "federal-register-2020-17221.pdf",
];
const NICS: &str = "nics-background-checks-2015-11.pdf";
const GREETINGS: [&str; 6] = [
    "Hello World",
    "مرحبا بالعالم",
    "Привет, мир",
    "你好世界",
    "สวัสดีชาวโลก",
    "こんにちは世界",
];
/// pdfplumber's test_text_flow: page 1 of the Federal Register read in text-flow order.
const FEDERAL_FLOW: &str = "The FAA proposes to\nsupersede Airworthiness Directive (AD)\n2018–23–51, which applies to all The\nBoeing Company Model 737–8 and 737–\n9 (737 MAX) airplanes. Since AD 2018–\n";
/// Row counts of Chinook_Sqlite.sql loaded by sqlite3 (shared/documents/SOURCE.md).
const CHINOOK: [(&str, usize); 11] = [
    ("Album", 347),
    ("Artist", 275),
    ("Customer", 59),
    ("Employee", 8),
    ("Genre", 25),
    ("Invoice", 412),
    ("InvoiceLine", 2240),
    ("MediaType", 5),
    ("Playlist", 18),
    ("PlaylistTrack", 8715),
    ("Track", 3503),
];

/// Runs `f` until `min_secs` have passed (at least once); seconds per run.
fn timed(min_secs: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs == 0 || start.elapsed().as_secs_f64() < min_secs {
        f();
        runs += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(runs)
}

fn read_dir_sorted(dir: &Path, suffix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if name.ends_with(suffix) && path.is_file() {
            out.push((name, std::fs::read(&path)?));
        }
    }
    out.sort();
    Ok(out)
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Quarry's throughput over `files` through the loader registry: (seconds per pass, loader names used).
fn loader_pass(loaders: &Loaders, dir: &Path, files: &[(String, Vec<u8>)], min_secs: f64) -> Result<(f64, String)> {
    let mut names = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        let loader = loaders
            .detect(&path, bytes)
            .with_context(|| format!("no loader for {name}"))?;
        if !names.contains(&loader.name()) {
            names.push(loader.name());
        }
        loader.load(&path, name, bytes)?;
    }
    let secs = timed(min_secs, || {
        for (name, bytes) in files {
            let path = dir.join(name);
            if let Some(loader) = loaders.detect(&path, bytes) {
                let _ = black_box(loader.load(&path, name, bytes));
            }
        }
    });
    Ok((secs, names.join(", ")))
}

// ---------------------------------------------------------------------------------------------- scoring

/// What PDF scores compare: ligature characters (ﬁ, ﬀ …) expanded and words hyphenated at a line end
/// joined, on both sides, so neither keeping nor repairing them counts as an error.
fn norm_pdf(s: &str) -> String {
    let mut text = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{FB00}'..='\u{FB06}' => text.push_str(["ff", "fi", "fl", "ffi", "ffl", "st", "st"][c as usize - 0xFB00]),
            _ => text.push(c),
        }
    }
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        let next_lower = lines
            .get(i + 1)
            .and_then(|l| l.chars().next())
            .is_some_and(char::is_lowercase);
        let hyphen = line.ends_with('-') && line.chars().rev().nth(1).is_some_and(char::is_alphabetic);
        if hyphen && next_lower {
            out.push_str(&line[..line.len() - 1]);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Word bigrams (tokens as in `text_similarity`: alphanumeric runs, lowercased), F1 of the two bags.
fn bigram_f1(a: &str, b: &str) -> f64 {
    let grams = |s: &str| -> BTreeMap<(String, String), usize> {
        let toks: Vec<String> = s
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut m = BTreeMap::new();
        for w in toks.windows(2) {
            *m.entry((w[0].clone(), w[1].clone())).or_insert(0) += 1;
        }
        m
    };
    let (ga, gb) = (grams(a), grams(b));
    let (na, nb): (usize, usize) = (ga.values().sum(), gb.values().sum());
    let common: usize = ga.iter().map(|(k, n)| (*n).min(gb.get(k).copied().unwrap_or(0))).sum();
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / na as f64, common as f64 / nb as f64);
    2.0 * p * r / (p + r)
}

/// pypdf's layout-mode text of multicolumn page 1 turned into reading order: the lines that cross the
/// gutter (title block, page number) where they stand, the left column, then the right column.
fn column_order(layout: &str) -> String {
    let lines: Vec<Vec<char>> = layout.lines().map(|l| l.chars().collect()).collect();
    let width = lines.iter().map(Vec::len).max().unwrap_or(0);
    let inked = |l: &Vec<char>, i: usize| l.get(i).is_some_and(|c| !c.is_whitespace());
    // The gutter: the column in the middle third that the fewest lines put ink in.
    let gutter = (width / 3..2 * width / 3)
        .min_by_key(|&i| lines.iter().filter(|l| inked(l, i)).count())
        .unwrap_or(width / 2);
    let (mut out, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
    for l in &lines {
        let both = l[..gutter.min(l.len())].iter().any(|c| !c.is_whitespace())
            && l.get(gutter..).is_some_and(|r| r.iter().any(|c| !c.is_whitespace()));
        if inked(l, gutter) || !both && left.is_empty() && right.is_empty() {
            out.push(l.iter().collect::<String>());
            continue;
        }
        left.push(l[..gutter.min(l.len())].iter().collect::<String>());
        if l.len() > gutter {
            right.push(l[gutter..].iter().collect::<String>());
        }
    }
    out.extend(left);
    out.extend(right);
    out.join("\n")
}

/// Markdown pipe rows in a text, as cells.
fn pipe_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && l.ends_with('|') && !l.contains("---"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// NICS: rows of exactly 25 cells (state + 24 numbers), and how many of the 24 columns sum, over the
/// rows above the totals row, to that row (pdfplumber's test_nics_report check).
fn nics_score(rows: &[Vec<String>]) -> String {
    let number = |c: &str| -> Option<f64> {
        let t: String = c
            .chars()
            .filter(|ch| !matches!(ch, ',' | ' ' | '\u{a0}' | '\u{2009}'))
            .collect();
        if t.is_empty() {
            Some(0.0)
        } else {
            t.parse::<f64>().ok()
        }
    };
    let full: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r.len() == 25 && !r[0].is_empty() && r[1..].iter().all(|c| number(c).is_some()))
        .collect();
    let Some(total_at) = full.iter().position(|r| r[0].to_lowercase().contains("total")) else {
        return format!("{} rows×25, no totals row", full.len());
    };
    let total = full[total_at];
    let ok = (1..25)
        .filter(|&c| {
            let sum: f64 = full[..total_at].iter().filter_map(|r| number(&r[c])).sum();
            number(&total[c]).is_some_and(|t| (sum - t).abs() < 0.5)
        })
        .count();
    format!("{} rows×25, {ok}/24 sums", full.len())
}

struct Expected {
    crazyones: String,
    multicolumn_order: String,
    scotus: String,
}

/// One PDF engine's output: page texts per file, the NICS table rows (if it has a table method).
struct PdfRun {
    name: String,
    texts: BTreeMap<String, Vec<String>>,
    errors: BTreeMap<String, String>,
    nics_rows: Option<(Vec<Vec<String>>, String)>,
    secs: Option<f64>,
    edge: BTreeMap<String, String>,
}

fn score_pdf(run: &PdfRun, file: &str, ex: &Expected) -> String {
    let Some(pages) = run.texts.get(file) else {
        return run.errors.get(file).map_or("—".into(), |e| {
            format!("error ({})", e.chars().take(40).collect::<String>())
        });
    };
    let all = norm_pdf(&pages.join("\n"));
    let flat = collapse(&all);
    let page1 = norm_pdf(pages.first().map_or("", String::as_str));
    match file {
        "crazyones.pdf" => format!("{:.3}", text_similarity(&all, &ex.crazyones)),
        "multilang.pdf" => {
            let found = GREETINGS.iter().filter(|g| flat.contains(&collapse(g))).count();
            format!("{found}/6")
        }
        "multicolumn.pdf" => format!("{:.3}", bigram_f1(&page1, &ex.multicolumn_order)),
        "habibi-arabic.pdf" => {
            let strip = |s: &str| -> String { s.chars().filter(|c| !('\u{064B}'..='\u{065F}').contains(c)).collect() };
            let checks = [
                flat.contains("habibi"),
                strip(&flat).contains("حبيبي"),
                flat.contains("حَبيبي"),
            ];
            format!("{}/3", checks.iter().filter(|c| **c).count())
        }
        "scotus-transcript-p1.pdf" => {
            format!(
                "{:.3}",
                text_similarity(pages.first().map_or("", String::as_str), &ex.scotus)
            )
        }
        NICS => match &run.nics_rows {
            Some((rows, _)) => nics_score(rows),
            None => nics_score(&pipe_rows(&all)),
        },
        "federal-register-2020-17221.pdf" => {
            let p1 = collapse(pages.first().map_or("", String::as_str));
            if p1.contains(&collapse(FEDERAL_FLOW)) {
                "yes"
            } else {
                "no"
            }
            .into()
        }
        _ => "?".into(),
    }
}

/// A PDF engine's entry of the reference JSON.
fn pdf_run_from_json(name: &str, v: &Value) -> PdfRun {
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let texts = v["texts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, pages)| {
                    let pages = pages
                        .as_array()
                        .map(|p| p.iter().map(|t| t.as_str().unwrap_or("").to_string()).collect())
                        .unwrap_or_default();
                    (k.clone(), pages)
                })
                .collect()
        })
        .unwrap_or_default();
    let nics_rows = v["tables"][NICS].as_array().map(|rows| {
        let rows = rows
            .iter()
            .map(|r| {
                r.as_array()
                    .map(|c| c.iter().map(|x| x.as_str().unwrap_or("").trim().to_string()).collect())
                    .unwrap_or_default()
            })
            .collect();
        (rows, v["table_method"].as_str().unwrap_or("").to_string())
    });
    PdfRun {
        name: name.to_string(),
        texts,
        errors: strings(&v["errors"]),
        nics_rows,
        secs: v["seconds"].as_f64(),
        edge: strings(&v["edge"]),
    }
}

// ---------------------------------------------------------------------------------------------- reference

fn reference(o: &Opts, docs: &Path, edge: &Path) -> Option<Value> {
    let out = std::process::Command::new(&o.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ingest_reference.py"))
        .arg(docs)
        .arg(edge)
        .arg(o.min_secs.to_string())
        .output();
    match out {
        Ok(out) if out.status.success() => match serde_json::from_slice(&out.stdout) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("reference output unreadable: {e}");
                None
            }
        },
        Ok(out) => {
            eprintln!(
                "reference failed: {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
            None
        }
        Err(e) => {
            eprintln!("reference not run: {e}");
            None
        }
    }
}

fn ratio(quarry: f64, other: Option<f64>) -> String {
    match other {
        Some(r) if r > 0.0 => format!("{:.2}×", quarry / r),
        _ => "—".into(),
    }
}

fn rate(x: Option<f64>, digits: usize) -> String {
    x.map_or("not run".into(), |x| format!("{x:.digits$}"))
}

// ---------------------------------------------------------------------------------------------- run

pub fn run(o: &Opts) -> Result<String> {
    let docs = o.shared.join("documents");
    let loaders = Loaders::default();
    let tmp = tempfile::tempdir()?;
    let edge = o.edge_dir.clone().unwrap_or_else(|| tmp.path().join("pdf-edge-cases"));
    std::fs::create_dir_all(&edge)?;
    let reference = reference(o, &docs, &edge);
    let r = reference.as_ref();
    // Without the reference (which writes all edge cases), the truncated file is still made here.
    let truncated = edge.join("truncated-half.pdf");
    if !truncated.exists() {
        let crazy = std::fs::read(docs.join("pdf/crazyones.pdf"))?;
        std::fs::write(&truncated, &crazy[..crazy.len() / 2])?;
    }
    let mut report = String::new();
    let section = |report: &mut String, text: String| {
        println!("{text}");
        report.push_str(&text);
    };
    if let Some(r) = r {
        let versions = r["versions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let mut s = format!("Reference tools: {versions}.\n");
        if let Some(m) = r["not_run"].as_object().filter(|m| !m.is_empty()) {
            for (tool, why) in m {
                s.push_str(&format!("Not run: {tool} ({}).\n", why.as_str().unwrap_or("")));
            }
        }
        section(&mut report, s);
    } else {
        section(&mut report, "Reference tools: not run (see stderr).\n".into());
    }
    section(
        &mut report,
        format!(
            "Each engine repeats its file set for ≥ {} s on one thread; ratio = Quarry throughput / reference throughput (> 1: Quarry faster).\n",
            o.min_secs
        ),
    );

    // ------------------------------------------------------------------ PDF
    let pdf_dir = docs.join("pdf");
    let pdf_files: Vec<(String, Vec<u8>)> = PDFS
        .iter()
        .map(|n| Ok((n.to_string(), std::fs::read(pdf_dir.join(n))?)))
        .collect::<Result<_>>()?;
    let pdf_bytes: usize = pdf_files.iter().map(|(_, b)| b.len()).sum();
    let read = |n: &str| std::fs::read_to_string(pdf_dir.join(n));
    let ex = Expected {
        crazyones: norm_pdf(&read("crazyones.expected.txt")?),
        multicolumn_order: norm_pdf(&column_order(&read("multicolumn.expected-layout-page1.txt")?)),
        scotus: norm_pdf(&read("scotus-transcript-p1.expected-layout.txt")?),
    };
    let mut quarry_pdf = PdfRun {
        name: "Quarry (pdf-extract glyphs + own layout)".into(),
        texts: BTreeMap::new(),
        errors: BTreeMap::new(),
        nics_rows: None,
        secs: None,
        edge: BTreeMap::new(),
    };
    let mut pages = 0usize;
    let mut file_pages: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, bytes) in &pdf_files {
        match pdf::extract(bytes) {
            Ok(t) => {
                pages += t.pages.len();
                file_pages.insert(name.clone(), (t.pages.len(), bytes.len()));
                quarry_pdf.texts.insert(name.clone(), t.pages);
            }
            Err(e) => {
                quarry_pdf.errors.insert(name.clone(), e.to_string());
            }
        }
    }
    let (secs, _) = loader_pass(&loaders, &pdf_dir, &pdf_files, o.min_secs)?;
    quarry_pdf.secs = Some(secs);
    for (name, bytes) in read_dir_sorted(&edge, ".pdf")? {
        let what = match pdf::extract(&bytes) {
            Ok(t) => format!(
                "ok: {} page(s), {} chars{}",
                t.pages.len(),
                t.pages.iter().map(|p| p.trim().chars().count()).sum::<usize>(),
                if t.empty_pages.is_empty() {
                    String::new()
                } else {
                    format!(", empty pages {:?} reported", t.empty_pages)
                }
            ),
            Err(e) => format!("error: {e}"),
        };
        quarry_pdf.edge.insert(name, what);
    }
    let mut runs = vec![quarry_pdf];
    if let Some(m) = r.and_then(|r| r["pdf"].as_object()) {
        runs.extend(m.iter().map(|(k, v)| pdf_run_from_json(k, v)));
    }
    for extra in &o.pdf_extra {
        let v: Value = serde_json::from_slice(&std::fs::read(extra)?)?;
        if let Some(m) = v["pdf"].as_object() {
            runs.extend(m.iter().map(|(k, v)| pdf_run_from_json(k, v)));
        }
    }
    let quarry_pages_s = pages as f64 / secs;
    let mut s = format!(
        "\n### PDF ({} files, {pages} pages, {:.2} MB)\n\nScores: crazyones = token F1 vs crazyones.expected.txt; multilang = greetings found; multicolumn = page-1 reading order (word-bigram F1 vs the expected layout text read column by column); habibi = \"habibi\", حبيبي (letters), حَبيبي (with diacritics) found; scotus = token F1 vs the expected layout text; NICS = rows with 25 numeric cells and columns whose sum equals the Totals row; federal-register = pdfplumber's text-flow passage found on page 1.\n\n| engine | pages/s | MB/s | crazyones | multilang | multicolumn order | habibi | scotus | NICS table | federal-register flow | Quarry/this |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        PDFS.len(),
        mb(pdf_bytes)
    );
    for run in &runs {
        for (file, pages) in &run.texts {
            dump(o.dump.as_ref(), &run.name, file, &pages.join("\n\u{c}\n"))?;
        }
        let scores: Vec<String> = PDFS.iter().map(|f| score_pdf(run, f, &ex)).collect();
        // An engine that failed on a file is credited only with the pages and bytes it did read.
        let (run_pages, run_bytes) = file_pages
            .iter()
            .filter(|(f, _)| run.texts.contains_key(*f))
            .fold((0, 0), |(p, b), (_, (fp, fb))| (p + fp, b + fb));
        let p = run.secs.map(|s| run_pages as f64 / s);
        let m = run.secs.map(|s| mb(run_bytes) / s);
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            run.name,
            rate(p, 1),
            rate(m, 2),
            scores.join(" | "),
            if run.name.starts_with("Quarry") {
                "1.00×".into()
            } else {
                ratio(quarry_pages_s, p)
            }
        ));
    }
    let mut methods = vec!["Quarry: its Markdown pipe rows".to_string()];
    methods.extend(
        runs.iter()
            .filter_map(|r| r.nics_rows.as_ref().map(|(_, m)| format!("{}: {m}", r.name))),
    );
    methods.push("others: Markdown pipe rows in their text, if any".into());
    s.push_str(&format!("\nNICS table method: {}.\n", methods.join("; ")));
    let mut edge_names: Vec<&String> = runs.iter().flat_map(|r| r.edge.keys()).collect();
    edge_names.sort();
    edge_names.dedup();
    s.push_str(&format!(
        "\n#### PDF edge cases\n\n| file | {} |\n|---|{}\n",
        runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(runs.len())
    ));
    for e in edge_names {
        let cells: Vec<String> = runs
            .iter()
            .map(|r| r.edge.get(e).map_or("not run".into(), |x| x.replace('|', "\\|")))
            .collect();
        s.push_str(&format!("| {e} | {} |\n", cells.join(" | ")));
    }
    section(&mut report, s);

    // ------------------------------------------------------------------ DOCX
    let docx_dir = docs.join("docx");
    let docx_files = read_dir_sorted(&docx_dir, ".docx")?;
    let docx_bytes: usize = docx_files.iter().map(|(_, b)| b.len()).sum();
    let refs: Vec<(String, Vec<String>)> = docx_files
        .iter()
        .map(|(n, _)| {
            let t = std::fs::read_to_string(docx_dir.join(n.replace(".docx", ".reference-text.txt")))?;
            Ok((n.clone(), t.lines().map(collapse).filter(|l| !l.is_empty()).collect()))
        })
        .collect::<Result<_>>()?;
    let in_order = |texts: &BTreeMap<String, String>| -> (usize, usize, Vec<String>) {
        let (mut found, mut total, mut misses) = (0, 0, Vec::new());
        for (name, lines) in &refs {
            let text = collapse(texts.get(name).map_or("", String::as_str));
            let mut at = 0;
            let mut here = 0;
            for l in lines {
                if let Some(i) = text[at..].find(l.as_str()) {
                    at += i + l.len();
                    here += 1;
                }
            }
            if here < lines.len() {
                misses.push(format!("{} {here}/{}", name.trim_end_matches(".docx"), lines.len()));
            }
            found += here;
            total += lines.len();
        }
        (found, total, misses)
    };
    let quarry_docx: BTreeMap<String, String> = docx_files
        .iter()
        .map(|(n, b)| (n.clone(), docx::extract(b).map(|(t, _)| t).unwrap_or_default()))
        .collect();
    let (secs, _) = loader_pass(&loaders, &docx_dir, &docx_files, o.min_secs)?;
    let q_rate = docx_files.len() as f64 / secs;
    let mut s = format!(
        "\n### DOCX ({} files, {:.3} MB)\n\nScore: lines of each *.reference-text.txt found in order in the extracted text (whitespace collapsed).\n\n| engine | files/s | MB/s | lines in order | files not complete | Quarry/this |\n|---|---|---|---|---|---|\n",
        docx_files.len(),
        mb(docx_bytes)
    );
    let mut docx_rows = vec![("Quarry".to_string(), quarry_docx, Some(secs))];
    docx_rows.extend(reference_texts(r, "docx"));
    for (tool, texts, secs) in &docx_rows {
        for (file, text) in texts {
            dump(o.dump.as_ref(), tool, file, text)?;
        }
        let (found, total, misses) = in_order(texts);
        let rate_ = secs.map(|s| docx_files.len() as f64 / s);
        s.push_str(&format!(
            "| {tool} | {} | {} | {found}/{total} | {} | {} |\n",
            rate(rate_, 1),
            rate(secs.map(|s| mb(docx_bytes) / s), 2),
            if misses.is_empty() {
                "—".into()
            } else {
                misses.join(", ")
            },
            if tool == "Quarry" {
                "1.00×".into()
            } else {
                ratio(q_rate, rate_)
            }
        ));
    }
    section(&mut report, s);

    // ------------------------------------------------------------------ HTML
    let html_dir = docs.join("html");
    let mut pages_html: Vec<(String, Vec<u8>, String)> = Vec::new();
    for entry in std::fs::read_dir(&html_dir)? {
        let dir = entry?.path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let source = std::fs::read(dir.join("source.html"))?;
        let expected = visible_text(&std::fs::read_to_string(dir.join("expected.html"))?);
        pages_html.push((name, source, expected));
    }
    pages_html.sort();
    let html_bytes: usize = pages_html.iter().map(|(_, b, _)| b.len()).sum();
    let quarry_html: BTreeMap<String, String> = pages_html
        .iter()
        .map(|(n, b, _)| {
            let text = String::from_utf8_lossy(b);
            (
                n.clone(),
                html::extract(&text, None).map(|a| a.text).unwrap_or_default(),
            )
        })
        .collect();
    // Loader paths need an .html name for detection; the page folder's name is the source.
    let html_files: Vec<(String, Vec<u8>)> = pages_html
        .iter()
        .map(|(n, b, _)| (format!("{n}/source.html"), b.clone()))
        .collect();
    let (secs, _) = loader_pass(&loaders, &html_dir, &html_files, o.min_secs)?;
    let q_rate = pages_html.len() as f64 / secs;
    let mut s = format!(
        "\n### HTML ({} pages, {:.2} MB)\n\nScore per page: token F1 of the extracted text vs `visible_text(expected.html)` (Readability's article).\n\n| engine | pages/s | MB/s | {} | mean | Quarry/this |\n|---|---|---|{}---|---|\n",
        pages_html.len(),
        mb(html_bytes),
        pages_html.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(pages_html.len())
    );
    let mut html_rows = vec![(
        "Quarry (dom_smoothie + own Markdown rendering)".to_string(),
        quarry_html,
        Some(secs),
    )];
    html_rows.extend(reference_texts(r, "html"));
    for (i, (tool, texts, secs)) in html_rows.iter().enumerate() {
        for (file, text) in texts {
            dump(o.dump.as_ref(), tool, file, text)?;
        }
        let f1: Vec<f64> = pages_html
            .iter()
            .map(|(n, _, want)| text_similarity(texts.get(n).map_or("", String::as_str), want))
            .collect();
        let rate_ = secs.map(|s| pages_html.len() as f64 / s);
        s.push_str(&format!(
            "| {tool} | {} | {} | {} | {:.3} | {} |\n",
            rate(rate_, 1),
            rate(secs.map(|s| mb(html_bytes) / s), 2),
            f1.iter().map(|f| format!("{f:.3}")).collect::<Vec<_>>().join(" | "),
            f1.iter().sum::<f64>() / f1.len().max(1) as f64,
            if i == 0 { "1.00×".into() } else { ratio(q_rate, rate_) }
        ));
    }
    section(&mut report, s);

    // ------------------------------------------------------------------ CSV
    let csv_dir = docs.join("csv");
    let spectrum_dir = csv_dir.join("csv-spectrum");
    let (mut exact, mut spectrum_total, mut differs) = (0, 0, Vec::new());
    for (name, bytes) in read_dir_sorted(&spectrum_dir, ".csv")? {
        spectrum_total += 1;
        let want: Value = serde_json::from_slice(&std::fs::read(
            spectrum_dir.join(name.replace(".csv", ".expected.json")),
        )?)?;
        let text = String::from_utf8_lossy(&bytes);
        let got = csv::parse(&spectrum_dir.join(&name), text.trim_start_matches('\u{feff}'), b',');
        let same = match (&got, want.as_array()) {
            (Ok(rows), Some(want)) => {
                rows.len() == want.len()
                    && rows.iter().zip(want).all(|(row, w)| {
                        let w = w.as_object();
                        w.is_some_and(|w| {
                            w.len() == row.fields.len()
                                && row
                                    .fields
                                    .iter()
                                    .all(|(k, v)| w.get(k).and_then(Value::as_str) == Some(v.render().as_str()))
                        })
                    })
            }
            _ => false,
        };
        if same {
            exact += 1;
        } else {
            differs.push(name);
        }
    }
    let tracks_path = csv_dir.join("chinook-tracks.csv");
    let tracks = std::fs::read(&tracks_path)?;
    let tracks_text = String::from_utf8_lossy(&tracks).into_owned();
    let rows = csv::parse(&tracks_path, &tracks_text, b',')?.len();
    let parse_secs = timed(o.min_secs, || {
        let _ = black_box(csv::parse(&tracks_path, &tracks_text, b','));
    });
    let (load_secs, _) = loader_pass(
        &loaders,
        &csv_dir,
        &[("chinook-tracks.csv".into(), tracks.clone())],
        o.min_secs,
    )?;
    let q_rate = rows as f64 / parse_secs;
    let mut s = format!(
        "\n### CSV (chinook-tracks.csv: {rows} rows, {:.2} MB; csv-spectrum: {spectrum_total} edge-case files)\n\n| engine | rows/s | MB/s | csv-spectrum exact | Quarry parse/this |\n|---|---|---|---|---|\n",
        mb(tracks.len())
    );
    let quarry_spectrum = format!(
        "{exact}/{spectrum_total}{}",
        if differs.is_empty() {
            String::new()
        } else {
            format!(" (differs: {})", differs.join(", "))
        }
    );
    s.push_str(&format!(
        "| Quarry `csv::parse` | {:.0} | {:.2} | {quarry_spectrum} | 1.00× |\n| Quarry CsvLoader (rows → documents) | {:.0} | {:.2} | — | — |\n",
        q_rate,
        mb(tracks.len()) / parse_secs,
        rows as f64 / load_secs,
        mb(tracks.len()) / load_secs,
    ));
    if let Some(m) = r.and_then(|r| r["csv"].as_object()) {
        for (tool, v) in m {
            let secs = v["seconds"].as_f64();
            let n = v["rows"].as_u64().unwrap_or(0) as f64;
            let spec = v["spectrum"].as_object();
            let ok = spec.map_or(0, |m| m.values().filter(|x| x.as_str() == Some("exact")).count());
            let bad: Vec<&str> = spec
                .map(|m| {
                    m.iter()
                        .filter(|(_, x)| x.as_str() != Some("exact"))
                        .map(|(k, _)| k.as_str())
                        .collect()
                })
                .unwrap_or_default();
            s.push_str(&format!(
                "| {tool} | {} | {} | {ok}/{}{} | {} |\n",
                rate(secs.map(|s| n / s), 0),
                rate(secs.map(|s| mb(tracks.len()) / s), 2),
                spec.map_or(0, |m| m.len()),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!(" (differs: {})", bad.join(", "))
                },
                ratio(q_rate, secs.map(|s| n / s))
            ));
        }
    }
    section(&mut report, s);

    // ------------------------------------------------------------------ SQL
    let sql_dir = docs.join("sql");
    let mut s = String::from("\n### SQL dumps (Chinook)\n\nScore: per-table row counts equal to sqlite3's (SOURCE.md).\n\n| engine | file | rows/s | MB/s | tables with the right row count | Quarry parse/this |\n|---|---|---|---|---|---|\n");
    // PostgreSQL's dump names tables in snake case (invoice_line): compare names without case or `_`.
    let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let count_ok = |counts: &BTreeMap<String, usize>| {
        CHINOOK
            .iter()
            .filter(|(t, n)| counts.iter().any(|(k, v)| norm(k) == norm(t) && v == n))
            .count()
    };
    let mut q_rate = 0.0;
    for file in ["Chinook_Sqlite.sql", "Chinook_PostgreSql.sql"] {
        let bytes = std::fs::read(sql_dir.join(file))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let text = text.trim_start_matches('\u{feff}');
        let tables = sql::parse_dump(text).map_err(|(l, m)| anyhow::anyhow!("{file}:{l}: {m}"))?;
        let counts: BTreeMap<String, usize> = tables.iter().map(|t| (t.name.clone(), t.rows.len())).collect();
        let rows: usize = counts.values().sum();
        let parse_secs = timed(o.min_secs, || {
            let _ = black_box(sql::parse_dump(text));
        });
        let (load_secs, _) = loader_pass(&loaders, &sql_dir, &[(file.into(), bytes.clone())], o.min_secs)?;
        if file == "Chinook_Sqlite.sql" {
            q_rate = rows as f64 / parse_secs;
        }
        s.push_str(&format!(
            "| Quarry `sql::parse_dump` | {file} | {:.0} | {:.2} | {}/11 ({rows} rows) | {} |\n| Quarry SqlDumpLoader (rows → documents) | {file} | {:.0} | {:.2} | — | — |\n",
            rows as f64 / parse_secs,
            mb(bytes.len()) / parse_secs,
            count_ok(&counts),
            if file == "Chinook_Sqlite.sql" { "1.00×" } else { "—" },
            rows as f64 / load_secs,
            mb(bytes.len()) / load_secs,
        ));
    }
    if let Some(m) = r.and_then(|r| r["sql"].as_object()) {
        let size = std::fs::metadata(sql_dir.join("Chinook_Sqlite.sql"))?.len() as usize;
        for (tool, v) in m {
            let counts: BTreeMap<String, usize> = v["counts"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0) as usize))
                        .collect()
                })
                .unwrap_or_default();
            let rows: usize = counts.values().sum();
            let secs = v["seconds"].as_f64();
            s.push_str(&format!(
                "| {tool} | Chinook_Sqlite.sql | {} | {} | {}/11 ({rows} rows) | {} |\n",
                rate(secs.map(|s| rows as f64 / s), 0),
                rate(secs.map(|s| mb(size) / s), 2),
                count_ok(&counts),
                ratio(q_rate, secs.map(|s| rows as f64 / s))
            ));
        }
    }
    section(&mut report, s);

    // ------------------------------------------------------------------ Markdown
    let md_dir = docs.join("markdown");
    let md_files = read_dir_sorted(&md_dir, ".md")?;
    let md_bytes: usize = md_files.iter().map(|(_, b)| b.len()).sum();
    let unchanged = md_files
        .iter()
        .filter(|(n, b)| {
            loaders.detect(&md_dir.join(n), b).is_some_and(|l| {
                l.load(&md_dir.join(n), n, b)
                    .is_ok_and(|d| d.documents.len() == 1 && d.documents[0].text.as_bytes() == b.as_slice())
            })
        })
        .count();
    let (secs, used) = loader_pass(&loaders, &md_dir, &md_files, o.min_secs)?;
    section(
        &mut report,
        format!(
            "\n### Markdown ({} files, {:.3} MB; loader `{used}`, no reference tool)\n\n| engine | files/s | MB/s | text kept byte for byte |\n|---|---|---|---|\n| Quarry | {:.0} | {:.1} | {unchanged}/{} |\n",
            md_files.len(),
            mb(md_bytes),
            md_files.len() as f64 / secs,
            mb(md_bytes) / secs,
            md_files.len()
        ),
    );
    Ok(report)
}

/// The reference tools' extracted texts for one format from the Python report: (tool, file → text, seconds).
fn reference_texts<T: FromIterator<(String, String)> + Default>(
    r: Option<&serde_json::Value>,
    format: &str,
) -> Vec<(String, T, Option<f64>)> {
    let Some(m) = r.and_then(|r| r[format].as_object()) else {
        return Vec::new();
    };
    m.iter()
        .map(|(tool, v)| {
            let texts = v["texts"]
                .as_object()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (tool.clone(), texts, v["seconds"].as_f64())
        })
        .collect()
}
