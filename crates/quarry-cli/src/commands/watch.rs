//! `quarry watch`: sync the folders, then apply file-system changes as they come.
//!
//! The index is opened only while a batch is applied, so `quarry search` and `quarry ask` can use the
//! same data directory in between (the embedded store admits one process at a time).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use quarry_ingest::{Ingestor, Silent, Summary};

use crate::args::RowOpts;
use crate::commands::ingest::{print_problems, sync_line};
use crate::settings::Settings;

/// The longest a busy folder can postpone a batch: changes are applied at least this often.
const MAX_BATCH_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for another process (a search) to release the data directory.
const OPEN_RETRY: Duration = Duration::from_secs(30);

pub fn run(settings: &Settings, paths: &[PathBuf], rows: &RowOpts, debounce: Duration) -> Result<ExitCode> {
    for p in paths {
        anyhow::ensure!(p.exists(), "{}: no such file or folder", p.display());
    }
    let embedder = settings.embedder()?;
    let load = rows.load_options();
    let started = Instant::now();
    let apply = |changed: Option<&[PathBuf]>| -> Result<Summary> {
        let index = open_when_free(settings, embedder.as_ref())?;
        let ingestor = Ingestor::new(index.as_ref(), embedder.as_ref(), settings.config.chunking.clone())
            .with_loaders(&load)
            .with_dedup(!rows.keep_duplicates);
        Ok(match changed {
            None => ingestor.ingest_paths(paths, &Silent),
            Some(changed) => ingestor.apply_changes(changed, &Silent),
        })
    };

    // Events name paths as the watcher saw them: absolute, under the canonical roots.
    let roots: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx).context("starting the file watcher")?;
    for p in &roots {
        let mode = if p.is_dir() {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher
            .watch(p, mode)
            .with_context(|| format!("watching {}", p.display()))?;
    }
    // Watch first, then sync: a change made during the first sync is not missed.
    let first = apply(None)?;
    report(started, "synced", &first);
    println!("watching {} (Ctrl-C to stop)", names(paths));

    loop {
        let mut changed = BTreeSet::new();
        // Block for the first event, then gather until the folder is quiet for `debounce`.
        match rx.recv() {
            Ok(ev) => collect(ev, &roots, &mut changed),
            Err(_) => break,
        }
        let batch_start = Instant::now();
        loop {
            let left = MAX_BATCH_WAIT.saturating_sub(batch_start.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(debounce.min(left)) {
                Ok(ev) => collect(ev, &roots, &mut changed),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(ExitCode::SUCCESS),
            }
        }
        if changed.is_empty() {
            continue;
        }
        let changed: Vec<PathBuf> = changed.into_iter().collect();
        match apply(Some(&changed)) {
            Ok(summary) if summary.is_noop() && summary.errors.is_empty() => {}
            Ok(summary) => report(started, "applied", &summary),
            // The data directory could not be opened: say so and keep watching; the next change retries.
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn collect(event: notify::Result<notify::Event>, roots: &[PathBuf], into: &mut BTreeSet<PathBuf>) {
    match event {
        Ok(ev) if !matches!(ev.kind, EventKind::Access(_)) => {
            let keep = |p: &PathBuf| {
                let root = roots.iter().find(|r| p.starts_with(r));
                root.is_some_and(|r| !quarry_ingest::pipeline::ignored(r, p))
            };
            into.extend(ev.paths.into_iter().filter(keep));
        }
        Ok(_) => {}
        Err(e) => eprintln!("watch error: {e}"),
    }
}

fn report(started: Instant, what: &str, s: &Summary) {
    println!("[{:>7.1}s] {what}: {}", started.elapsed().as_secs_f64(), sync_line(s));
    print_problems(s);
}

fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens the data directory, waiting while another quarry process holds it.
fn open_when_free(
    settings: &Settings,
    embedder: &dyn quarry_core::Embedder,
) -> Result<std::sync::Arc<dyn quarry_core::Index>> {
    let deadline = Instant::now() + OPEN_RETRY;
    loop {
        match settings.open_index(Some(embedder)) {
            Ok(index) => return Ok(index),
            Err(e) if Instant::now() < deadline && is_busy(&e) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_busy(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}").to_ascii_lowercase();
    text.contains("already open") || text.contains("lock") || text.contains("busy")
}
