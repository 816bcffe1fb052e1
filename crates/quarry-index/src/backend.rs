//! Choosing a backend: the one place that turns "where the index lives" into an `Index`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quarry_core::{Index, IndexConfig};

use crate::error::Result;
use crate::postgres::is_postgres_url;
use crate::{EmbeddedIndex, PostgresIndex};

/// Where an index lives.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreLocation {
    /// The embedded backend in a data directory.
    Dir(PathBuf),
    /// PostgreSQL + pgvector at a `postgres://` URL (see [`crate::PgOptions`] for its parameters).
    Postgres(String),
}

impl StoreLocation {
    /// `store` when given (a `postgres://` URL, or a directory), else the data directory.
    pub fn resolve(store: Option<&str>, data_dir: &Path) -> StoreLocation {
        match store.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) if is_postgres_url(s) => StoreLocation::Postgres(s.to_string()),
            Some(s) => StoreLocation::Dir(PathBuf::from(s)),
            None => StoreLocation::Dir(data_dir.to_path_buf()),
        }
    }

    /// The same kind of store, for a separate index named `name` (a subdirectory, or a schema).
    pub fn scoped(&self, name: &str) -> StoreLocation {
        match self {
            StoreLocation::Dir(d) => StoreLocation::Dir(d.join(name)),
            StoreLocation::Postgres(url) => {
                let schema: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .take(63)
                    .collect();
                let sep = if url.contains('?') { '&' } else { '?' };
                StoreLocation::Postgres(format!("{url}{sep}schema={schema}"))
            }
        }
    }

    /// For messages: the directory, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Dir(d) => d.display().to_string(),
            StoreLocation::Postgres(url) => crate::PgOptions::from_url(url)
                .map(|o| o.display)
                .unwrap_or_else(|_| "(invalid postgres URL)".into()),
        }
    }

    /// Opens (or creates) the index. With `model_id`, refuses one built by another model.
    pub fn open(&self, cfg: IndexConfig, model_id: Option<&str>) -> Result<Arc<dyn Index>> {
        Ok(match self {
            StoreLocation::Dir(d) => Arc::new(EmbeddedIndex::open(d, cfg, model_id)?),
            StoreLocation::Postgres(url) => Arc::new(PostgresIndex::open(url, cfg, model_id)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_postgres_and_anything_else_a_directory() {
        let dd = Path::new(".quarry");
        assert_eq!(StoreLocation::resolve(None, dd), StoreLocation::Dir(dd.into()));
        assert_eq!(StoreLocation::resolve(Some(""), dd), StoreLocation::Dir(dd.into()));
        assert_eq!(
            StoreLocation::resolve(Some("/srv/q"), dd),
            StoreLocation::Dir("/srv/q".into())
        );
        let pg = StoreLocation::resolve(Some("postgres://u:pw@h/db"), dd);
        assert_eq!(pg, StoreLocation::Postgres("postgres://u:pw@h/db".into()));
        assert_eq!(pg.describe(), "postgres://u:***@h/db");
        assert_eq!(
            pg.scoped("scifact-1A2b"),
            StoreLocation::Postgres("postgres://u:pw@h/db?schema=scifact_1a2b".into())
        );
        assert_eq!(
            StoreLocation::Dir(dd.into()).scoped("x"),
            StoreLocation::Dir(dd.join("x"))
        );
    }
}
