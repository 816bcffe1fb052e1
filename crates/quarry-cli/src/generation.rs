//! Blue/green index generations: promoting an embedder re-embeds the index into a new generation while every
//! command keeps using the current one, then switches both the index and the query embedder in one atomic
//! write of `DATA_DIR/active-index.json`.
//!
//! The first generation is the store itself (the data directory, or the configured PostgreSQL schema); later
//! ones are scoped stores beside it (`DATA_DIR/generation-embedder-v2`, or a schema of that name). The
//! generation before the active one is kept for a rollback (`quarry tune promote` of the older embedder
//! re-uses it, copying only what changed since); older ones are removed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quarry_core::Embedder;
use quarry_index::StoreLocation;
use quarry_models::SentenceEmbedder;
use quarry_tune::registry::ModelVersion;
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

const POINTER: &str = "active-index.json";

/// The generation in use: which scoped store, built with which embedder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    /// The base store this generation belongs to (`StoreLocation::describe`); a pointer written for another
    /// store is not applied.
    pub base: String,
    /// The scope of the generation's store ([`StoreLocation::scoped`]).
    pub scope: String,
    /// The embedder's model directory, relative to the data directory when inside it.
    pub embedder: String,
    /// The registry version of the embedder.
    pub version: String,
    /// The embedder's model id (name@digest), as the index records it.
    pub model_id: String,
    /// The generation this one replaced (kept for a rollback), if it was a scoped one.
    pub previous: Option<String>,
    /// Seconds since the Unix epoch.
    pub switched: u64,
}

/// The active generation of `base`, if a promotion has switched one in.
pub fn active(data_dir: &Path, base: &StoreLocation) -> Result<Option<Active>> {
    let path = data_dir.join(POINTER);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let a: Active = serde_json::from_str(&text).with_context(|| format!("{}: not an index pointer", path.display()))?;
    Ok((a.base == base.describe()).then_some(a))
}

/// Where the embedder of a generation is, for loading.
pub fn embedder_path(data_dir: &Path, a: &Active) -> PathBuf {
    let p = Path::new(&a.embedder);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_dir.join(p)
    }
}

/// The scope of `version`'s generation of `base`: a subdirectory, or on PostgreSQL a schema named after the
/// base schema too (two data directories on one database must not share a generation).
fn scope_of(base: &StoreLocation, version: &str) -> String {
    match base {
        StoreLocation::Dir(_) => format!("generation-{version}"),
        StoreLocation::Postgres(url) => {
            let schema = quarry_index::PgOptions::from_url(url).map_or_else(|_| "quarry".to_string(), |o| o.schema);
            format!("{schema}-generation-{version}")
        }
    }
}

/// Re-embeds the active index with the promoted embedder `version` into its own generation, then switches
/// to it. Until the switch every command (and a server started before it) uses the current generation; an
/// interrupted re-index leaves the current generation active and the next promotion continues the copy.
pub fn switch(settings: &Settings, version: &ModelVersion) -> Result<()> {
    let base = &settings.base_store;
    let started = Instant::now();
    let current = active(&settings.data_dir, base)?;
    let blue = match &current {
        Some(a) => base.scoped(&a.scope),
        None => base.clone(),
    };
    let model = settings.config.model.clone();
    let embedder = SentenceEmbedder::load(&version.dir, model.max_seq_len, model.batch_size)
        .with_context(|| format!("loading the promoted embedder {}", version.dir.display()))?;
    let scope = scope_of(base, &version.id);
    let green = base.scoped(&scope);
    if let StoreLocation::Dir(d) = &blue {
        if !d.join("store.redb").is_file() {
            // Nothing indexed yet: the new generation starts empty and is created by the first ingest.
            write_pointer(
                &settings.data_dir,
                &pointer(&settings.data_dir, base, &scope, &embedder, version, current.as_ref()),
            )?;
            eprintln!("the index (empty so far) will use {} from now on", version.id);
            return Ok(());
        }
    }
    // Declared before the index it holds, so that the index is closed before the snapshot is removed.
    let snapshot = Snapshot::take(settings, &blue)?;
    let from = settings.open_at(snapshot.location().unwrap_or(&blue), None)?;
    let stats = from.stats()?;
    if green == blue || stats.model_id.as_deref() == Some(embedder.model_id()) {
        eprintln!(
            "the index in {} already uses {} ({})",
            blue.describe(),
            version.id,
            embedder.model_id()
        );
        return Ok(());
    }
    let to = settings
        .open_at(&green, Some(&embedder))
        .with_context(|| format!("the new generation for {}", version.id))?;
    eprintln!(
        "re-indexing {} documents ({} chunks) with {} into {}; queries use {} until it is complete",
        stats.documents,
        stats.chunks,
        version.id,
        green.describe(),
        blue.describe()
    );
    let last = std::cell::Cell::new(Instant::now());
    let done = quarry_ingest::reembed(from.as_ref(), to.as_ref(), &embedder, 64, &|n, total| {
        if last.get().elapsed().as_secs() >= 5 || n == total {
            last.set(Instant::now());
            eprintln!("  {n}/{total} documents");
        }
    })?;
    let check = to.stats()?;
    if (check.documents, check.chunks) != (stats.documents, stats.chunks)
        || check.vector_entries != check.chunks
        || check.lexical_entries != check.chunks
    {
        bail!(
            "the new generation in {} does not match the current one ({} documents / {} chunks / {} vectors \
             against {} / {}); still using {}",
            green.describe(),
            check.documents,
            check.chunks,
            check.vector_entries,
            stats.documents,
            stats.chunks,
            blue.describe()
        );
    }
    drop((from, to, snapshot));
    let next = pointer(&settings.data_dir, base, &scope, &embedder, version, current.as_ref());
    write_pointer(&settings.data_dir, &next)?;
    eprintln!(
        "switched to {} in {:.1}s: {} documents embedded, {} already current, {} removed ({} chunks)",
        green.describe(),
        started.elapsed().as_secs_f64(),
        done.written,
        done.kept,
        done.removed,
        done.chunks
    );
    prune(base, &next);
    Ok(())
}

/// What a re-index reads from an embedded store. The store admits one process at a time, so it is not held
/// for the whole copy: its file is copied (under its lock, so no writer is mid-commit) to a snapshot beside it,
/// leaving the current generation free for queries and ingests meanwhile; documents ingested during the copy
/// are caught by the next promotion. The snapshot is removed when this is dropped, however the re-index ends.
/// PostgreSQL is read in place (no snapshot).
struct Snapshot(Option<StoreLocation>);

impl Snapshot {
    fn take(settings: &Settings, blue: &StoreLocation) -> Result<Snapshot> {
        let StoreLocation::Dir(dir) = blue else {
            return Ok(Snapshot(None));
        };
        let snapshot = dir.join(".reindex-snapshot");
        let _ = std::fs::remove_dir_all(&snapshot);
        std::fs::create_dir_all(&snapshot).with_context(|| format!("{}: cannot create", snapshot.display()))?;
        let locked = settings.open_at(blue, None)?;
        std::fs::copy(dir.join("store.redb"), snapshot.join("store.redb"))
            .with_context(|| format!("{}: cannot snapshot the store", dir.display()))?;
        drop(locked);
        Ok(Snapshot(Some(StoreLocation::Dir(snapshot))))
    }

    fn location(&self) -> Option<&StoreLocation> {
        self.0.as_ref()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(StoreLocation::Dir(dir)) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn pointer(
    data_dir: &Path,
    base: &StoreLocation,
    scope: &str,
    embedder: &SentenceEmbedder,
    version: &ModelVersion,
    current: Option<&Active>,
) -> Active {
    Active {
        base: base.describe(),
        scope: scope.to_string(),
        // Relative to the data directory when inside it (the data directory can move), else absolute.
        embedder: match version.dir.strip_prefix(data_dir) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => std::fs::canonicalize(&version.dir)
                .unwrap_or_else(|_| version.dir.clone())
                .display()
                .to_string(),
        },
        version: version.id.clone(),
        model_id: embedder.model_id().to_string(),
        previous: current.map(|a| a.scope.clone()),
        switched: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// Writes the pointer atomically: a reader sees the old generation or the new one, never a mix.
fn write_pointer(data_dir: &Path, a: &Active) -> Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("{}: cannot create", data_dir.display()))?;
    let path = data_dir.join(POINTER);
    let tmp = data_dir.join(format!("{POINTER}.tmp"));
    let text = serde_json::to_string_pretty(a)?;
    (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })()
    .with_context(|| format!("{}: cannot write", path.display()))
}

/// Removes embedded generations other than the active one and the one it replaced (PostgreSQL schemas are
/// left for the administrator to drop).
fn prune(base: &StoreLocation, active: &Active) {
    let StoreLocation::Dir(root) = base else { return };
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let keep = name == active.scope || active.previous.as_deref() == Some(name.as_str());
        if name.starts_with("generation-") && !keep && e.path().join("store.redb").is_file() {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => eprintln!("removed the old generation {}", e.path().display()),
                Err(err) => eprintln!("could not remove the old generation {}: {err}", e.path().display()),
            }
        }
    }
}
