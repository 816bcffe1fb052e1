use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use quarry_ingest::{Ingestor, Loaders, Summary};

use crate::args::{IngestArgs, RowOpts};
use crate::progress::Bars;
use crate::settings::Settings;

/// `ingest` and `sync`: the same incremental pass; `sync` reports in the vocabulary of a mirror.
pub fn run(settings: &Settings, args: &IngestArgs, sync: bool) -> Result<ExitCode> {
    let IngestArgs {
        paths,
        query,
        rows,
        crawl,
        json,
    } = args;
    let json = *json;
    let embedder = settings.embedder()?;
    let index = settings.open_index(Some(embedder.as_ref()))?;
    let start = Instant::now();
    let bars = Bars::new();
    let ingestor = Ingestor::new(index.as_ref(), embedder.as_ref(), settings.config.chunking.clone())
        .with_loaders(&rows.load_options())
        .with_dedup(!rows.keep_duplicates);
    let (urls, files): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| is_url(p));
    let files: Vec<PathBuf> = files.into_iter().cloned().collect();
    let mut summary = if files.is_empty() {
        Summary::default()
    } else {
        ingestor.ingest_paths(&files, &bars)
    };
    let mut crawls = Vec::new();
    for url in urls {
        let url = url.to_string_lossy();
        let (s, report) = ingestor
            .ingest_url(&url, &crawl.options(), &bars)
            .map_err(anyhow::Error::msg)?;
        summary.merge(s);
        crawls.push(serde_json::json!({ "url": url, "report": report }));
    }
    if let (Some(sql), Some(from)) = (&query.sql, &query.from) {
        let q = quarry_ingest::query::QuerySource {
            url: from.clone(),
            sql: sql.clone(),
            key: query.key.clone(),
            table: query.table.clone(),
        };
        summary.merge(ingestor.ingest_query(&q, &bars));
    }
    bars.finish();
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "summary": summary, "crawls": crawls, "seconds": secs })
            )?
        );
    } else {
        for c in &crawls {
            let r = &c["report"];
            println!(
                "crawled {}: {} pages fetched, {} disallowed by robots.txt, {} filtered out{}",
                c["url"].as_str().unwrap_or_default(),
                r["fetched"],
                r["disallowed_by_robots"],
                r["filtered"],
                if r["complete"] == true {
                    ""
                } else {
                    " (stopped at the page limit)"
                }
            );
        }
        if sync {
            println!("{} in {secs:.1}s", sync_line(&summary));
            print_problems(&summary);
        } else {
            print_summary(&summary, secs);
        }
    }
    // Partial success is still success for the files that loaded; errors make the exit code 1.
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// "3 added, 1 changed, 2 removed, 40 unchanged (documents); 2 chunks written"
pub fn sync_line(s: &Summary) -> String {
    format!(
        "{} added, {} changed, {} removed, {} unchanged; {} chunks written",
        s.documents_added, s.documents_updated, s.documents_removed, s.documents_unchanged, s.chunks_written
    )
}

fn print_summary(s: &Summary, secs: f64) {
    println!(
        "{} files ({} unchanged) in {secs:.1}s: {} documents added, {} updated, {} unchanged, {} removed; {} chunks written",
        s.files, s.files_unchanged, s.documents_added, s.documents_updated, s.documents_unchanged, s.documents_removed, s.chunks_written
    );
    print_problems(s);
}

pub fn print_problems(s: &Summary) {
    if !s.duplicates.is_empty() {
        println!("{} near-duplicate documents not indexed:", s.duplicates.len());
        for d in &s.duplicates {
            println!("  {d}");
        }
    }
    if !s.skipped.is_empty() {
        println!("skipped {} files of unsupported type:", s.skipped.len());
        for f in &s.skipped {
            println!("  {f}");
        }
    }
    if !s.errors.is_empty() {
        println!("{} errors:", s.errors.len());
        for e in &s.errors {
            println!("  {e}");
        }
    }
}

/// `extract`: what each file yields, for checking a loader on a team's own files.
pub fn extract(paths: &[PathBuf], rows: &RowOpts) -> Result<ExitCode> {
    let loaders = Loaders::new(&rows.load_options());
    let mut failed = false;
    for path in paths {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                failed = true;
                continue;
            }
        };
        let Some(loader) = loaders.detect(path, &bytes) else {
            eprintln!("{}: unsupported file type", path.display());
            failed = true;
            continue;
        };
        let source = path.display().to_string();
        match loader.load(path, &source, &bytes) {
            Ok(loaded) => {
                for e in &loaded.errors {
                    eprintln!("{e}");
                    failed = true;
                }
                for d in &loaded.documents {
                    let meta = serde_json::to_string(&d.metadata)?;
                    println!(
                        "=== {} ({}) title: {}",
                        d.id,
                        loader.name(),
                        d.title.as_deref().unwrap_or("")
                    );
                    println!("metadata: {meta}\n");
                    println!("{}\n", d.text.replace('\u{c}', "\n\n--- page break ---\n\n"));
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn is_url(p: &std::path::Path) -> bool {
    let s = p.to_string_lossy();
    s.starts_with("http://") || s.starts_with("https://")
}
