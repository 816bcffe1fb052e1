//! API keys: who may call the server, with which scopes, over which documents.
//!
//! A key is shown once, when it is created (`qk_<id>_<secret>`); the store keeps its id, a random salt
//! and SHA-256(salt ‖ key), so a copy of the key file does not let anyone in. The file is rewritten
//! atomically and re-read when it changes on disk, so `quarry keys revoke` takes effect on a running
//! server at its next request.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What a key may do. `Admin` implies the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Search, ask, chat completions, embeddings, feedback.
    Read,
    /// Upload files and URLs, delete documents.
    Ingest,
    /// Run retrieval evaluations over the documents the key reads, and read their results.
    Eval,
    /// Everything, and (without a tenant) every tenant's documents.
    Admin,
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Scope::Read),
            "ingest" => Ok(Scope::Ingest),
            "eval" => Ok(Scope::Eval),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::BadRequest(format!(
                "unknown scope `{other}` (read, ingest, eval or admin)"
            ))),
        }
    }
}

/// A stored key: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The tenant whose documents the key reads and writes; `None` only for admin keys, which see all.
    pub tenant: Option<String>,
    /// Groups the key belongs to: it reads a tenant's documents labelled public or with one of these.
    pub groups: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    #[serde(default)]
    pub revoked: bool,
    salt: String,
    hash: String,
}

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub tenant: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyRecord>,
}

/// What tells that the key file changed: modification time and length (the time alone can stay equal
/// across two writes within the file system's timestamp granularity; every change alters the length).
type Stamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

pub struct KeyStore {
    path: PathBuf,
    state: RwLock<(Option<Stamp>, Vec<KeyRecord>)>,
}

impl KeyStore {
    /// The key file in a data directory.
    pub fn in_dir(data_dir: &Path) -> Result<KeyStore> {
        KeyStore::open(&data_dir.join("keys.json"))
    }

    /// Opens a key file; a missing file is an empty store.
    pub fn open(path: &Path) -> Result<KeyStore> {
        let (mtime, keys) = read(path)?;
        Ok(KeyStore {
            path: path.to_path_buf(),
            state: RwLock::new((mtime, keys)),
        })
    }

    /// Creates a key and returns it, the only time it is seen, with its record.
    pub fn create(&self, new: NewKey) -> Result<(String, KeyRecord)> {
        if new.scopes.is_empty() {
            return Err(Error::BadRequest("a key needs at least one scope".into()));
        }
        match &new.tenant {
            Some(t) => check_label("tenant", t)?,
            None if !new.scopes.contains(&Scope::Admin) => {
                return Err(Error::BadRequest(
                    "a key without a tenant sees every tenant's documents, so it must have the admin scope".into(),
                ))
            }
            None => {}
        }
        for g in &new.groups {
            check_label("group", g)?;
        }
        let mut rng = rand::rng();
        let id = hex(&rng.random::<[u8; 6]>());
        let secret = hex(&rng.random::<[u8; 24]>());
        let key = format!("qk_{id}_{secret}");
        let salt = hex(&rng.random::<[u8; 16]>());
        let record = KeyRecord {
            hash: digest(&salt, &key),
            id,
            name: new.name,
            scopes: new.scopes,
            tenant: new.tenant,
            groups: new.groups,
            created: now_secs(),
            revoked: false,
            salt,
        };
        self.update(|keys| {
            keys.push(record.clone());
            true
        })?;
        Ok((key, record))
    }

    /// Every key, revoked ones included.
    pub fn list(&self) -> Result<Vec<KeyRecord>> {
        self.refresh()?;
        Ok(self.state.read().map_err(|_| Error::Poisoned)?.1.clone())
    }

    /// Revokes a key by id; false when there is no such key.
    pub fn revoke(&self, id: &str) -> Result<bool> {
        self.update(|keys| match keys.iter_mut().find(|k| k.id == id) {
            Some(k) => {
                k.revoked = true;
                true
            }
            None => false,
        })
    }

    /// True when no key could ever be accepted.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.list()?.iter().all(|k| k.revoked))
    }

    /// The record of a presented key, if it is a live key of this store.
    pub fn verify(&self, presented: &str) -> Result<Option<KeyRecord>> {
        let Some(id) = presented
            .strip_prefix("qk_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
        else {
            return Ok(None);
        };
        self.refresh()?;
        let state = self.state.read().map_err(|_| Error::Poisoned)?;
        Ok(state
            .1
            .iter()
            .find(|k| k.id == id && !k.revoked)
            .filter(|k| constant_time_eq(digest(&k.salt, presented).as_bytes(), k.hash.as_bytes()))
            .cloned())
    }

    /// Re-reads the file when it changed on disk (another process created or revoked a key).
    fn refresh(&self) -> Result<()> {
        let mtime = stamp(&self.path);
        if self.state.read().map_err(|_| Error::Poisoned)?.0 == mtime {
            return Ok(());
        }
        let fresh = read(&self.path)?;
        *self.state.write().map_err(|_| Error::Poisoned)? = fresh;
        Ok(())
    }

    /// Applies `change` to the keys on disk and writes them back (atomically) when it returns true.
    fn update(&self, change: impl FnOnce(&mut Vec<KeyRecord>) -> bool) -> Result<bool> {
        let mut state = self.state.write().map_err(|_| Error::Poisoned)?;
        let (_, mut keys) = read(&self.path)?;
        if !change(&mut keys) {
            return Ok(false);
        }
        let text = serde_json::to_vec_pretty(&KeyFile { keys: keys.clone() })
            .map_err(|e| Error::Internal(format!("serialising keys: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        write_private(&tmp, &text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))?;
        *state = (stamp(&self.path), keys);
        Ok(true)
    }
}

fn read(path: &Path) -> Result<(Option<Stamp>, Vec<KeyRecord>)> {
    let mtime = stamp(path);
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(io(path, e)),
    };
    let file: KeyFile = serde_json::from_slice(&text)
        .map_err(|e| Error::Internal(format!("{}: invalid key file: {e}", path.display())))?;
    Ok((mtime, file.keys))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("{}: {e}", path.display()))
}

/// Tenants and groups become metadata values and upload folder names: letters, digits, `.`, `_`, `-`.
pub fn check_label(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid {what} `{value}`: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`"
        )))
    }
}

fn digest(salt: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(key.as_bytes());
    hex(&h.finalize())
}

/// Compares without stopping at the first difference, so timing does not reveal how much of a hash matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reader(tenant: &str) -> NewKey {
        NewKey {
            name: "t".into(),
            scopes: vec![Scope::Read],
            tenant: Some(tenant.into()),
            groups: vec!["eng".into()],
        }
    }

    #[test]
    fn keys_verify_and_are_not_stored_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::in_dir(dir.path()).unwrap();
        assert!(store.is_empty().unwrap());
        let (key, rec) = store.create(reader("acme")).unwrap();
        let file = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!file.contains(&key), "the key itself must not be stored");
        assert!(!file.contains(key.rsplit('_').next().unwrap()));
        assert_eq!(store.verify(&key).unwrap().unwrap().id, rec.id);
        // A wrong secret for a real id, a malformed key, and a key for a missing id are all refused.
        let mut wrong = key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(store.verify(&wrong).unwrap().is_none());
        assert!(store.verify("not-a-key").unwrap().is_none());
        assert!(store.verify("qk_ffffffffffff_00").unwrap().is_none());
        // Another process's view (a second store on the same file) sees revocation.
        let other = KeyStore::in_dir(dir.path()).unwrap();
        assert!(other.revoke(&rec.id).unwrap());
        assert!(store.verify(&key).unwrap().is_none());
        assert!(store.is_empty().unwrap());
    }

    #[test]
    fn salts_differ_so_equal_hashes_cannot_be_spotted() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::in_dir(dir.path()).unwrap();
        let (_, a) = store.create(reader("acme")).unwrap();
        let (_, b) = store.create(reader("acme")).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn creation_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::in_dir(dir.path()).unwrap();
        let mut global_reader = reader("acme");
        global_reader.tenant = None;
        assert!(store.create(global_reader).is_err(), "only admin keys may span tenants");
        for bad in ["", "../x", ".hidden", "a b", "a=b", "a|b", "x*"] {
            assert!(store.create(reader(bad)).is_err(), "tenant {bad:?}");
        }
        let mut no_scope = reader("acme");
        no_scope.scopes.clear();
        assert!(store.create(no_scope).is_err());
    }
}
