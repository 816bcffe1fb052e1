//! Shared by the CLI tests: running the binary, reading its JSON, finding shared/documents.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `quarry --data-dir DATA ARGS...` from DATA's parent folder.
pub fn quarry(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .current_dir(data.parent().unwrap())
        .output()
        .expect("run quarry")
}

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// shared/documents (from QUARRY_SHARED, or ../shared beside the repository).
pub fn documents() -> PathBuf {
    std::env::var_os("QUARRY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("documents")
}
