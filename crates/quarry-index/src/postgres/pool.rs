//! Connection settings and a small blocking connection pool.
//!
//! The store URL is a libpq-style `postgres://` URL with two extra query parameters that Quarry
//! consumes itself: `schema` (where Quarry's tables live, default `quarry`) and `pool_size` (most
//! connections held open, default 8). Every connection is opened with `search_path` set to that
//! schema, then `public` (where `CREATE EXTENSION vector` usually puts the `vector` type).

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::error::{Error, Result};

pub const DEFAULT_SCHEMA: &str = "quarry";
const DEFAULT_POOL_SIZE: usize = 8;

/// Validated connection settings.
#[derive(Clone)]
pub struct PgOptions {
    pub config: postgres::Config,
    pub schema: String,
    pub pool_size: usize,
    /// The URL with any password removed, for messages.
    pub display: String,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.display)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Whether `s` names a PostgreSQL store rather than a data directory.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl PgOptions {
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |m: &str| Error::InvalidStore {
            url: redact(url),
            message: m.to_string(),
        };
        if !is_postgres_url(url) {
            return Err(invalid("expected a postgres:// URL"));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut schema = DEFAULT_SCHEMA.to_string();
        let mut pool_size = DEFAULT_POOL_SIZE;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "schema" => schema = v.to_string(),
                "pool_size" => {
                    pool_size = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid("pool_size must be a positive integer"))?
                }
                _ => kept.push(pair),
            }
        }
        // The schema name is spliced into DDL and search_path as an identifier (identifiers cannot be
        // bound parameters), so only plain lowercase names are accepted.
        let plain = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(invalid(
                "schema must be a lowercase identifier (letters, digits, underscore; at most 63 characters)",
            ));
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: postgres::Config = rest.parse().map_err(|e: postgres::Error| invalid(&e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("quarry");
        }
        Ok(PgOptions {
            config,
            schema,
            pool_size,
            display: redact(url),
        })
    }

    /// `host:port/dbname`, for messages.
    pub fn target(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }

    pub fn database(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_string()
    }

    /// Opens one connection with `search_path` pointing at the schema.
    pub fn connect(&self) -> Result<Client> {
        let mut client = self.config.connect(NoTls).map_err(|e| Error::Unreachable {
            target: self.target(),
            message: describe(&e),
        })?;
        client
            .batch_execute(&format!("SET search_path TO {}, public", self.schema))
            .map_err(|e| db_error("setting search_path", &e))?;
        Ok(client)
    }
}

/// Removes the password from a URL for display.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rfind('@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// A readable message for a driver error: the server's own message (and detail/hint) when there is one,
/// else the error and its causes.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = db.message().to_string();
        if let Some(d) = db.detail() {
            m.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            m.push_str(&format!("; hint: {h}"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        m.push_str(&format!(": {s}"));
        source = s.source();
    }
    m
}

pub fn db_error(what: &str, e: &postgres::Error) -> Error {
    use postgres::error::SqlState;
    let transient = e.is_closed()
        || e.code().is_some_and(|c| {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(c)
        });
    Error::Database {
        what: what.to_string(),
        message: describe(e),
        transient,
    }
}

/// At most `size` connections, handed out one caller at a time and returned on drop. Connections that
/// broke (server restarted) are dropped instead of returned, and replaced on demand.
pub struct Pool {
    options: PgOptions,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

pub struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Pool {
    pub fn new(options: PgOptions) -> Self {
        Pool {
            options,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    pub fn get(&self) -> Result<Conn<'_>> {
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(client) = st.idle.pop() {
                if client.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(client),
                });
            }
            if st.open < self.options.pool_size {
                st.open += 1;
                drop(st);
                return match self.options.connect() {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        client: Some(client),
                    }),
                    Err(e) => {
                        if let Ok(mut st) = self.state.lock() {
                            st.open -= 1;
                        }
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            st = self.returned.wait(st).map_err(|_| poisoned())?;
        }
    }
}

fn poisoned() -> Error {
    Error::Database {
        what: "connection pool".into(),
        message: "pool lock poisoned by a panic".into(),
        transient: false,
    }
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present from creation until drop.
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if let Ok(mut st) = self.pool.state.lock() {
            if client.is_closed() {
                st.open -= 1;
            } else {
                st.idle.push(client);
            }
        }
        self.pool.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarry_parameters_are_taken_out_of_the_url() {
        let o =
            PgOptions::from_url("postgres://app:secret@db.example:6543/rag?schema=team_a&pool_size=3&sslmode=disable")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.schema, "team_a");
        assert_eq!(o.pool_size, 3);
        assert_eq!(o.target(), "db.example:6543/rag");
        assert_eq!(
            o.display,
            "postgres://app:***@db.example:6543/rag?schema=team_a&pool_size=3&sslmode=disable"
        );
        let o = PgOptions::from_url("postgresql://127.0.0.1/postgres").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.schema, DEFAULT_SCHEMA);
    }

    #[test]
    fn hostile_or_bad_settings_are_refused() {
        for bad in [
            "postgres://h/db?schema=x;DROP TABLE chunks",
            "postgres://h/db?schema=Quarry",
            "postgres://h/db?schema=",
            "postgres://h/db?pool_size=0",
            "mysql://h/db",
        ] {
            let e = PgOptions::from_url(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("invalid PostgreSQL store"), "{bad}: {e}");
        }
    }
}
