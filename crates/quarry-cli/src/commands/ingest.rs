use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use quarry_ingest::{Ingestor, Summary};

use crate::progress::Bars;
use crate::settings::Settings;

pub fn run(settings: &Settings, paths: &[PathBuf], json: bool) -> Result<ExitCode> {
    let embedder = settings.embedder()?;
    let index = settings.open_index(&settings.data_dir, Some(embedder.as_ref()))?;
    let start = Instant::now();
    let bars = Bars::new();
    let summary =
        Ingestor::new(index.as_ref(), embedder.as_ref(), settings.config.chunking.clone()).ingest_paths(paths, &bars);
    bars.finish();
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "summary": summary, "seconds": secs }))?
        );
    } else {
        print_summary(&summary, secs);
    }
    // Partial success is still success for the files that loaded; errors make the exit code 1.
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(s: &Summary, secs: f64) {
    println!(
        "{} files ({} unchanged) in {secs:.1}s: {} documents added, {} updated, {} unchanged, {} removed; {} chunks written",
        s.files, s.files_unchanged, s.documents_added, s.documents_updated, s.documents_unchanged, s.documents_removed, s.chunks_written
    );
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
