//! Finding a model's files: an explicit directory, Quarry's model cache, or a Hugging Face cache.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Quarry's cache root: `$QUARRY_CACHE`, else `$XDG_CACHE_HOME/quarry`, else `~/.cache/quarry`.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("QUARRY_CACHE") {
        return PathBuf::from(p);
    }
    xdg_cache().join("quarry")
}

fn xdg_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// The Hugging Face hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
fn hf_hub_cache() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    xdg_cache().join("huggingface").join("hub")
}

fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

/// Resolves `name` (a directory, a cached model name, or `org/name` from the Hugging Face hub) to a
/// directory holding the model files.
pub fn resolve_model_dir(name: &str, cache_dir: Option<&Path>) -> Result<PathBuf> {
    let mut searched = Vec::new();
    let direct = PathBuf::from(name);
    if is_model_dir(&direct) {
        return Ok(direct);
    }
    searched.push(direct);
    let base = name.rsplit('/').next().unwrap_or(name);
    let cache = cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache_root().join("models"));
    let cached = cache.join(base);
    if is_model_dir(&cached) {
        return Ok(cached);
    }
    searched.push(cached);
    let repo = if name.contains('/') {
        name.to_string()
    } else {
        format!("sentence-transformers/{name}")
    };
    let hub = hf_hub_cache().join(format!("models--{}", repo.replace('/', "--")));
    if let Some(dir) = hf_snapshot(&hub) {
        return Ok(dir);
    }
    searched.push(hub);
    Err(Error::NotFound {
        name: name.to_string(),
        searched,
    })
}

/// Resolves a GGUF model: a `.gguf` file, a directory holding one, a name in Quarry's model cache
/// (`models/<name>/*.gguf`), or `org/name` in the Hugging Face cache.
pub fn resolve_gguf(name: &str, cache_dir: Option<&Path>) -> Result<PathBuf> {
    let first_gguf = |dir: &Path| -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "gguf") && p.is_file())
            .collect();
        files.sort();
        files.into_iter().next()
    };
    let direct = PathBuf::from(name);
    if direct.is_file() {
        return Ok(direct);
    }
    let mut searched = vec![direct.clone()];
    if let Some(f) = first_gguf(&direct) {
        return Ok(f);
    }
    let base = name.rsplit('/').next().unwrap_or(name);
    let cache = cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache_root().join("models"));
    let cached = cache.join(base);
    if let Some(f) = first_gguf(&cached) {
        return Ok(f);
    }
    searched.push(cached);
    if name.contains('/') {
        let hub = hf_hub_cache().join(format!("models--{}", name.replace('/', "--")));
        let snapshots = hub.join("snapshots");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        dirs.sort();
        if let Some(f) = dirs.iter().find_map(|d| first_gguf(d)) {
            return Ok(f);
        }
        searched.push(hub);
    }
    Err(Error::NotFound {
        name: name.to_string(),
        searched,
    })
}

/// The snapshot `refs/main` points at, else any complete snapshot.
fn hf_snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if is_model_dir(&dir) {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    dirs.into_iter().find(|d| is_model_dir(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_explicit_cached_and_hub_layouts() {
        let tmp = tempfile::tempdir().unwrap();
        let explicit = tmp.path().join("my-model");
        std::fs::create_dir_all(&explicit).unwrap();
        std::fs::write(explicit.join("config.json"), "{}").unwrap();
        assert_eq!(resolve_model_dir(explicit.to_str().unwrap(), None).unwrap(), explicit);

        let cache = tmp.path().join("models");
        std::fs::create_dir_all(cache.join("mini")).unwrap();
        std::fs::write(cache.join("mini/config.json"), "{}").unwrap();
        assert_eq!(resolve_model_dir("org/mini", Some(&cache)).unwrap(), cache.join("mini"));

        let hub = tmp.path().join("models--org--other");
        std::fs::create_dir_all(hub.join("snapshots/abc")).unwrap();
        std::fs::create_dir_all(hub.join("refs")).unwrap();
        std::fs::write(hub.join("refs/main"), "abc\n").unwrap();
        std::fs::write(hub.join("snapshots/abc/config.json"), "{}").unwrap();
        assert_eq!(hf_snapshot(&hub).unwrap(), hub.join("snapshots/abc"));
    }

    #[test]
    fn finds_gguf_files_by_path_directory_and_cache_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("Tiny-Chat");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.gguf"), "x").unwrap();
        std::fs::write(dir.join("a.gguf"), "x").unwrap();
        std::fs::write(dir.join("__init__.py"), "").unwrap();
        let file = dir.join("b.gguf");
        assert_eq!(resolve_gguf(file.to_str().unwrap(), None).unwrap(), file);
        assert_eq!(resolve_gguf(dir.to_str().unwrap(), None).unwrap(), dir.join("a.gguf"));
        assert_eq!(
            resolve_gguf("org/Tiny-Chat", Some(tmp.path())).unwrap(),
            dir.join("a.gguf")
        );
        let e = resolve_gguf("Other", Some(tmp.path())).unwrap_err().to_string();
        assert!(e.contains("model `Other` not found"), "{e}");
    }

    #[test]
    fn missing_model_error_lists_places_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let e = resolve_model_dir("no-such-model", Some(tmp.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("model `no-such-model` not found"), "{e}");
        assert!(e.contains("scripts/setup.sh"), "{e}");
        assert!(
            e.contains(&tmp.path().join("no-such-model").display().to_string()),
            "{e}"
        );
    }
}
