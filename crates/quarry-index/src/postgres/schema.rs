//! Versioned schema migrations, applied in order when a store is opened.
//!
//! `schema_migrations` records each applied version. Opening takes a transaction-scoped advisory lock
//! first, so several processes starting at once apply each migration exactly once. A migration is
//! never edited after release: changes go into a new one at the end of the list.

use postgres::Client;

use super::pool::{db_error, describe, PgOptions};
use crate::error::{Error, Result};

/// The text-search configuration used for chunks and queries (stemming and English stop words, the
/// closest PostgreSQL built-in to the embedded BM25 analyser).
pub const TS_CONFIG: &str = "english";

/// (version, name, SQL). Runs with `search_path` set to Quarry's schema.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "documents, chunks, sources, meta; metadata filter functions",
        r#"
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE documents (
    id           text PRIMARY KEY,
    source       text NOT NULL,
    title        text,
    body         text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    content_hash text NOT NULL,
    fingerprint  bigint
);
CREATE INDEX documents_source ON documents (source);

CREATE SEQUENCE chunk_ids;

-- The vector column gets its dimension (vector(D)) and its HNSW index with the first write, when
-- the embedding model's dimension is known.
CREATE TABLE chunks (
    id           bigint PRIMARY KEY DEFAULT nextval('chunk_ids'),
    doc_id       text NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ord          integer NOT NULL,
    body         text NOT NULL,
    start_char   bigint NOT NULL,
    end_char     bigint NOT NULL,
    section      text[] NOT NULL DEFAULT '{}',
    tokens       integer NOT NULL,
    page         integer,
    context      text,
    parent_start bigint,
    parent_end   bigint,
    search_text  text NOT NULL,
    tsv          tsvector NOT NULL,
    embedding    vector NOT NULL
);
CREATE INDEX chunks_doc ON chunks (doc_id, ord);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);

CREATE TABLE sources (
    source    text PRIMARY KEY,
    file_hash text NOT NULL,
    doc_ids   text[] NOT NULL
);

-- Metadata filters (see filter.rs). A key's values: the elements of a list, else the value itself.
CREATE FUNCTION quarry_meta_values(meta jsonb, k text) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT e FROM jsonb_array_elements(
        CASE WHEN NOT (meta ? k) THEN '[]'::jsonb
             WHEN jsonb_typeof(meta -> k) = 'array' THEN meta -> k
             ELSE jsonb_build_array(meta -> k) END) AS e
$$;

-- A value as a number: JSON numbers, and strings that read as one (CSV columns arrive as text).
CREATE FUNCTION quarry_num(v jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN (v #>> '{}')::double precision
        WHEN 'string' THEN CASE
            WHEN btrim(v #>> '{}') ~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$'
            THEN btrim(v #>> '{}')::double precision END
        END
$$;

-- Equality as the embedded index defines it: numbers compare numerically (also when written as
-- strings), strings and booleans exactly, and a string 'true'/'false' equals that boolean.
CREATE FUNCTION quarry_eq(v jsonb, want jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(v) = 'number' OR jsonb_typeof(want) = 'number'
            THEN coalesce(quarry_num(v) = quarry_num(want), false)
        WHEN jsonb_typeof(v) = 'string' AND jsonb_typeof(want) = 'string' THEN v = want
        WHEN jsonb_typeof(v) = 'boolean' AND jsonb_typeof(want) = 'boolean' THEN v = want
        WHEN jsonb_typeof(v) = 'string' AND jsonb_typeof(want) = 'boolean' THEN (v #>> '{}') = (want #>> '{}')
        ELSE false
    END
$$;
"#,
    ),
    (
        2,
        "BM25 statistics: chunk lengths in lexemes, collection totals kept by triggers",
        r#"
-- Occurrences of lexemes in a tsvector (BM25's document length); a lexeme without positions counts once.
CREATE FUNCTION quarry_tsv_len(t tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(coalesce(array_length(positions, 1), 1)), 0)::integer FROM unnest(t)
$$;

ALTER TABLE chunks ADD COLUMN tsv_len integer NOT NULL DEFAULT 0;
UPDATE chunks SET tsv_len = quarry_tsv_len(tsv);

-- Chunk count and total length, in 16 rows chosen by the writing backend so that concurrent ingests
-- do not all wait on one row; readers sum them.
CREATE TABLE lexical_stats (
    shard  integer PRIMARY KEY,
    chunks bigint NOT NULL,
    tokens bigint NOT NULL
);
INSERT INTO lexical_stats SELECT 0, count(*), coalesce(sum(tsv_len), 0) FROM chunks;

CREATE FUNCTION quarry_chunk_len() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tsv_len := quarry_tsv_len(NEW.tsv);
    RETURN NEW;
END $$;

CREATE FUNCTION quarry_lexical_stats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    dc bigint := 0;
    dt bigint := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN dc := dc + 1; dt := dt + NEW.tsv_len; END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN dc := dc - 1; dt := dt - OLD.tsv_len; END IF;
    INSERT INTO lexical_stats AS s (shard, chunks, tokens) VALUES (pg_backend_pid() % 16, dc, dt)
        ON CONFLICT (shard) DO UPDATE SET chunks = s.chunks + EXCLUDED.chunks, tokens = s.tokens + EXCLUDED.tokens;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_len BEFORE INSERT OR UPDATE OF tsv ON chunks
    FOR EACH ROW EXECUTE FUNCTION quarry_chunk_len();
CREATE TRIGGER chunks_lexical_stats AFTER INSERT OR DELETE OR UPDATE OF tsv ON chunks
    FOR EACH ROW EXECUTE FUNCTION quarry_lexical_stats();
"#,
    ),
];

pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Makes sure pgvector is available, creating the extension when it is not (that needs the right to
/// create extensions in the database).
pub fn ensure_extension(client: &mut Client, options: &PgOptions) -> Result<()> {
    let installed = client
        .query_opt("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[])
        .map_err(|e| db_error("checking for the vector extension", &e))?;
    if installed.is_some() {
        return Ok(());
    }
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .map_err(|e| Error::ExtensionMissing {
            database: options.database(),
            message: describe(&e),
        })
}

/// Creates the schema if needed and applies the migrations it has not seen yet.
pub fn migrate(client: &mut Client, options: &PgOptions) -> Result<()> {
    let schema = &options.schema;
    let mut tx = client.transaction().map_err(|e| db_error("starting migrations", &e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('quarry-migrations'), hashtext($1))",
        &[schema],
    )
    .map_err(|e| db_error("locking for migrations", &e))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .map_err(|e| db_error(&format!("creating schema {schema}"), &e))?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"),
            &[],
        )
        .map_err(|e| db_error("reading schema_migrations", &e))?
        .get(0);
    if current > latest() {
        return Err(Error::SchemaTooNew {
            schema: schema.clone(),
            found: current,
            known: latest(),
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql)
            .map_err(|e| db_error(&format!("migration {version} ({name})"), &e))?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[version, name],
        )
        .map_err(|e| db_error("recording a migration", &e))?;
    }
    tx.commit().map_err(|e| db_error("committing migrations", &e))
}
