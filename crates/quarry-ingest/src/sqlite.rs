//! SQLite database files: every row of every table becomes a document, as for SQL dumps.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::error::Error;
use crate::loader::{Loaded, Loader};
use crate::record::{Field, Row, RowTemplate};
use crate::sql::Table;

pub struct SqliteLoader {
    pub template: RowTemplate,
}

/// The magic string every SQLite 3 database file starts with.
pub const MAGIC: &[u8] = b"SQLite format 3\0";

/// Reads every user table of the database at `path` (read-only; the file is never modified).
pub fn read_tables(path: &Path) -> rusqlite::Result<Vec<Table>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut tables = Vec::new();
    for name in names {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))?;
        let cols: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let mut rows = Vec::new();
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let mut fields = Vec::with_capacity(cols.len());
            for (i, c) in cols.iter().enumerate() {
                let f = match r.get_ref(i)? {
                    ValueRef::Null => Field::Null,
                    ValueRef::Integer(n) => Field::Number(n as f64),
                    ValueRef::Real(x) => Field::Number(x),
                    ValueRef::Text(t) => Field::Text(String::from_utf8_lossy(t).into_owned()),
                    // Blobs have no text to index; their size says they are there.
                    ValueRef::Blob(b) => Field::Text(format!("<{} bytes>", b.len())),
                };
                fields.push((c.clone(), f));
            }
            rows.push(Row { fields });
        }
        tables.push(Table { name, rows });
    }
    Ok(tables)
}

impl Loader for SqliteLoader {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        if !bytes.starts_with(MAGIC) {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                reason: "not a SQLite database".into(),
            });
        }
        let tables = read_tables(path).map_err(|e| Error::Invalid {
            path: path.to_path_buf(),
            reason: format!("cannot read the SQLite database: {e}"),
        })?;
        Ok(self.template.tables(source, &tables, "sqlite"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_row_loads_with_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE artist (id INTEGER, name TEXT, score REAL);
             INSERT INTO artist VALUES (1, 'Accept', 4.5), (2, NULL, NULL);
             CREATE TABLE \"odd \"\"name\" (x TEXT); INSERT INTO \"odd \"\"name\" VALUES ('y');",
        )
        .unwrap();
        drop(conn);
        let bytes = std::fs::read(&path).unwrap();
        let l = SqliteLoader {
            template: RowTemplate::default(),
        }
        .load(&path, "t.db", &bytes)
        .unwrap();
        let ids: Vec<&str> = l.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["t.db#artist/row=1", "t.db#artist/row=2", "t.db#odd \"name/row=1"]);
        assert_eq!(l.documents[0].text, "id: 1\nname: Accept\nscore: 4.5");
        assert_eq!(l.documents[0].metadata["score"], quarry_core::MetaValue::Number(4.5));
    }

    #[test]
    fn a_damaged_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.db");
        let mut bytes = MAGIC.to_vec();
        bytes.extend(std::iter::repeat_n(0xAB, 2000));
        std::fs::write(&path, &bytes).unwrap();
        let e = SqliteLoader {
            template: RowTemplate::default(),
        }
        .load(&path, "bad.db", &bytes)
        .unwrap_err();
        assert!(e.to_string().contains("bad.db: cannot read the SQLite database"), "{e}");
    }
}
