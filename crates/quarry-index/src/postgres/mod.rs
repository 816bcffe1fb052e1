//! The PostgreSQL backend: documents, chunks, vectors and source records in one schema of a
//! PostgreSQL database with pgvector, searched in the database.
//!
//! ```text
//! SCHEMA.schema_migrations  applied migrations (schema.rs)
//! SCHEMA.meta               model id, vector dimension, HNSW parameters
//! SCHEMA.documents          text, title, metadata (jsonb), content hash, SimHash
//! SCHEMA.chunks             text, offsets, section, tsvector (GIN), embedding vector(D) (HNSW, cosine)
//! SCHEMA.sources            what each source contributed at its last complete ingest
//! ```
//! Unlike the embedded backend nothing is derived outside the store: the GIN and HNSW indexes are
//! maintained by PostgreSQL inside the same transaction as the rows, so `flush` has nothing to do and
//! `rebuild` only reindexes.
//!
//! Lexical ranking is BM25 by default (`index.pg_lexical_ranking`), computed in SQL over the chunks
//! that match an OR of the query's lexemes: term frequencies come from the tsvector's positions,
//! chunk lengths from `tsv_len`, N and the average length from `lexical_stats` (both kept by
//! triggers), and document frequencies are counted over the same matching chunks (every chunk that
//! holds a query lexeme matches), so one GIN lookup serves both. It differs
//! from the embedded index's tantivy BM25 only in analysis (PostgreSQL's `english` configuration vs
//! tantivy's stemmer and stop list) and in that tsvectors keep at most 256 positions per lexeme. The
//! alternative `ts_rank_cd` (cover density) has no inverse document frequency, so a frequent word
//! weighs as much as the rare one that identifies a document.

mod filter;
pub mod pool;
mod schema;
mod vector;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Transaction};
use quarry_core::{
    Chunk, DocumentVersion, Filter, Hit, Index, IndexConfig, IndexStats, IndexedDocument, PgLexicalRanking,
    SourceRecord, StoredChunk, StoredDocument,
};

use crate::error::{Error, Result};
use filter::Params;
use pool::{db_error, Pool};
pub use pool::{is_postgres_url, PgOptions};
pub use schema::TS_CONFIG;
use vector::Vector;

/// BM25 parameters, the embedded index's (tantivy's) defaults.
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;

/// pgvector refuses `hnsw.ef_search` above this.
const MAX_EF_SEARCH: usize = 1000;

pub struct PostgresIndex {
    pool: Pool,
    cfg: IndexConfig,
    model_id: Option<String>,
    /// The vector dimension once the store has one (it never changes after the first write).
    dimension: std::sync::OnceLock<usize>,
}

impl PostgresIndex {
    /// Connects to `url` (see [`PgOptions`]), applies pending migrations, and with `model_id` refuses a
    /// store written by another model.
    pub fn open(url: &str, cfg: IndexConfig, model_id: Option<&str>) -> Result<Self> {
        Self::with_options(PgOptions::from_url(url)?, cfg, model_id)
    }

    pub fn with_options(options: PgOptions, cfg: IndexConfig, model_id: Option<&str>) -> Result<Self> {
        let pool = Pool::new(options);
        {
            let mut conn = pool.get()?;
            schema::ensure_extension(&mut conn, pool.options())?;
            schema::migrate(&mut conn, pool.options())?;
            if let (Some(current), Some(stored)) = (model_id, meta(&mut *conn, "model_id")?) {
                if current != stored {
                    return Err(Error::ModelMismatch {
                        stored,
                        current: current.to_string(),
                    });
                }
            }
        }
        Ok(PostgresIndex {
            pool,
            cfg,
            model_id: model_id.map(str::to_string),
            dimension: std::sync::OnceLock::new(),
        })
    }

    pub fn options(&self) -> &PgOptions {
        self.pool.options()
    }

    /// Drops the schema and everything in it (for tests and `quarry` users starting over).
    pub fn drop_schema(self) -> Result<()> {
        let schema = self.options().schema.clone();
        let mut conn = self.pool.get()?;
        conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .map_err(|e| db_error(&format!("dropping schema {schema}"), &e))
    }

    fn ef_search(&self, k: usize) -> String {
        self.cfg.hnsw_ef_search.max(k).clamp(1, MAX_EF_SEARCH).to_string()
    }

    /// Fixes the vector dimension with the first write: types the column and builds the HNSW index.
    fn fix_dimension(&self, tx: &mut Transaction<'_>, dim: usize) -> Result<()> {
        let q = |e: postgres::Error| db_error("setting the vector dimension", &e);
        // Serialises first writers; the loser finds the dimension set when it gets the lock.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('quarry-dimension'), 0)", &[])
            .map_err(q)?;
        if let Some(expected) = meta(tx, "dimension")?.and_then(|d| d.parse::<usize>().ok()) {
            return check_dim(expected, dim);
        }
        // Integers from validated configuration, not user text: DDL takes no bound parameters.
        let (m, efc) = (self.cfg.hnsw_m, self.cfg.hnsw_ef_construction.max(2 * self.cfg.hnsw_m));
        tx.batch_execute(&format!(
            "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim});
             CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)
                 WITH (m = {m}, ef_construction = {efc});"
        ))
        .map_err(q)?;
        for (k, v) in [
            ("dimension", dim.to_string()),
            ("hnsw_m", m.to_string()),
            ("hnsw_ef_construction", efc.to_string()),
        ] {
            set_meta(tx, k, &v)?;
        }
        Ok(())
    }

    fn put_in(&self, tx: &mut Transaction<'_>, docs: &[IndexedDocument]) -> Result<()> {
        if let Some(current) = &self.model_id {
            match meta(tx, "model_id")? {
                Some(stored) if &stored != current => {
                    return Err(Error::ModelMismatch {
                        stored,
                        current: current.clone(),
                    })
                }
                Some(_) => {}
                None => set_meta(tx, "model_id", current)?,
            }
        }
        for d in docs {
            if d.chunks.len() != d.embeddings.len() {
                return Err(Error::EmbeddingCount {
                    doc_id: d.document.id.clone(),
                    chunks: d.chunks.len(),
                    embeddings: d.embeddings.len(),
                });
            }
        }
        if let Some(first) = docs.iter().flat_map(|d| d.embeddings.first()).next() {
            match meta(tx, "dimension")?.and_then(|d| d.parse::<usize>().ok()) {
                Some(expected) => check_dim(expected, first.len())?,
                None => self.fix_dimension(tx, first.len())?,
            }
            let dim = first.len();
            for v in docs.iter().flat_map(|d| &d.embeddings) {
                check_dim(dim, v.len())?;
            }
        }
        let q = |what: &'static str| move |e: postgres::Error| db_error(what, &e);
        let upsert_doc = tx
            .prepare(
                "INSERT INTO documents (id, source, title, body, metadata, content_hash, fingerprint)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, title = EXCLUDED.title,
                     body = EXCLUDED.body, metadata = EXCLUDED.metadata,
                     content_hash = EXCLUDED.content_hash, fingerprint = EXCLUDED.fingerprint",
            )
            .map_err(q("preparing the document upsert"))?;
        let drop_chunks = tx
            .prepare("DELETE FROM chunks WHERE doc_id = $1")
            .map_err(q("preparing the chunk delete"))?;
        let insert_chunk = tx
            .prepare(&format!(
                "INSERT INTO chunks (doc_id, ord, body, start_char, end_char, section, tokens, page, context,
                     parent_start, parent_end, search_text, tsv, embedding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, to_tsvector('{TS_CONFIG}', $12), $13)"
            ))
            .map_err(q("preparing the chunk insert"))?;
        // Rows are locked in id order, so concurrent writers of overlapping batches cannot deadlock.
        let mut order: Vec<&IndexedDocument> = docs.iter().collect();
        order.sort_by(|a, b| a.document.id.cmp(&b.document.id));
        for d in order {
            let doc = &d.document;
            let metadata = serde_json::to_string(&doc.metadata).map_err(|e| Error::Database {
                what: format!("document {}", doc.id),
                message: e.to_string(),
                transient: false,
            })?;
            let fingerprint = d.fingerprint.map(|f| f as i64);
            tx.execute(
                &upsert_doc,
                &[
                    &doc.id,
                    &doc.source,
                    &doc.title,
                    &doc.text,
                    &metadata,
                    &d.content_hash,
                    &fingerprint,
                ],
            )
            .map_err(q("writing a document"))?;
            tx.execute(&drop_chunks, &[&doc.id])
                .map_err(q("replacing a document's chunks"))?;
            for (c, v) in d.chunks.iter().zip(&d.embeddings) {
                let search_text = c.contextual_text(doc.title.as_deref());
                let ord = c.ord as i32;
                let (start, end) = (c.start as i64, c.end as i64);
                let tokens = c.tokens as i32;
                let page = c.page.map(|p| p as i32);
                let (ps, pe) = (c.parent.map(|p| p.0 as i64), c.parent.map(|p| p.1 as i64));
                tx.execute(
                    &insert_chunk,
                    &[
                        &doc.id,
                        &ord,
                        &c.text,
                        &start,
                        &end,
                        &c.section,
                        &tokens,
                        &page,
                        &c.context,
                        &ps,
                        &pe,
                        &search_text,
                        &Vector(v),
                    ],
                )
                .map_err(q("writing a chunk"))?;
            }
        }
        Ok(())
    }

    fn delete_in(tx: &mut Transaction<'_>, ids: &[String]) -> Result<usize> {
        let mut sorted: Vec<&String> = ids.iter().collect();
        sorted.sort();
        sorted.dedup();
        let sorted: Vec<String> = sorted.into_iter().cloned().collect();
        let n = tx
            .execute("DELETE FROM documents WHERE id = ANY($1)", &[&sorted])
            .map_err(|e| db_error("deleting documents", &e))?;
        Ok(n as usize)
    }

    fn search(&self, sql: &str, params: &Params, settings: &[(&str, String)]) -> Result<Vec<Hit>> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().map_err(|e| db_error("starting a search", &e))?;
        for (name, value) in settings {
            // set_config(..., true) is SET LOCAL with bound values: it ends with the transaction.
            tx.execute("SELECT set_config($1, $2, true)", &[name, value])
                .map_err(|e| db_error(&format!("setting {name}"), &e))?;
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let rows = tx.query(sql, &refs).map_err(|e| db_error("searching", &e))?;
        tx.commit().map_err(|e| db_error("ending a search", &e))?;
        Ok(rows
            .iter()
            .map(|r| Hit {
                chunk_id: r.get::<_, i64>(0) as u64,
                doc_id: r.get(1),
                score: r.get::<_, f64>(2) as f32,
            })
            .collect())
    }

    /// `(join, condition)`: documents are joined only when a filter needs their metadata.
    fn filter_sql(filter: Option<&Filter>, params: &mut Params) -> (&'static str, String) {
        match filter {
            Some(f) => (
                "JOIN documents d ON d.id = c.doc_id",
                format!("AND ({})", filter::compile(f, "d", params)),
            ),
            None => ("", String::new()),
        }
    }
}

fn check_dim(expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::DimensionMismatch { expected, got })
    }
}

fn meta(client: &mut impl GenericClient, key: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
        .map_err(|e| db_error("reading meta", &e))?
        .map(|r| r.get(0)))
}

fn set_meta(client: &mut impl GenericClient, key: &str, value: &str) -> Result<()> {
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )
        .map_err(|e| db_error("writing meta", &e))?;
    Ok(())
}

fn to_chunk(r: &Row) -> StoredChunk {
    let parent = match (
        r.get::<_, Option<i64>>("parent_start"),
        r.get::<_, Option<i64>>("parent_end"),
    ) {
        (Some(a), Some(b)) => Some((a as usize, b as usize)),
        _ => None,
    };
    StoredChunk {
        id: r.get::<_, i64>("id") as u64,
        chunk: Chunk {
            doc_id: r.get("doc_id"),
            ord: r.get::<_, i32>("ord") as u32,
            text: r.get("body"),
            start: r.get::<_, i64>("start_char") as usize,
            end: r.get::<_, i64>("end_char") as usize,
            section: r.get("section"),
            tokens: r.get::<_, i32>("tokens") as usize,
            page: r.get::<_, Option<i32>>("page").map(|p| p as u32),
            context: r.get("context"),
            parent,
        },
        source: r.get("source"),
        title: r.get("title"),
    }
}

fn to_source(r: &Row) -> SourceRecord {
    SourceRecord {
        source: r.get(0),
        file_hash: r.get(1),
        doc_ids: r.get(2),
    }
}

impl Index for PostgresIndex {
    fn put_documents(&self, docs: Vec<IndexedDocument>) -> quarry_core::Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().map_err(|e| db_error("starting a write", &e))?;
        // An error drops the transaction unfinished, which rolls it back: all documents or none.
        self.put_in(&mut tx, &docs)?;
        tx.commit().map_err(|e| db_error("committing documents", &e))?;
        Ok(())
    }

    fn delete_documents(&self, ids: &[String]) -> quarry_core::Result<usize> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().map_err(|e| db_error("starting a delete", &e))?;
        let n = Self::delete_in(&mut tx, ids)?;
        tx.commit().map_err(|e| db_error("committing a delete", &e))?;
        Ok(n)
    }

    fn document_version(&self, doc_id: &str) -> quarry_core::Result<Option<DocumentVersion>> {
        let mut conn = self.pool.get()?;
        let row = conn
            .query_opt("SELECT content_hash, source FROM documents WHERE id = $1", &[&doc_id])
            .map_err(|e| db_error("reading a document version", &e))?;
        Ok(row.map(|r| DocumentVersion {
            content_hash: r.get(0),
            source: r.get(1),
        }))
    }

    fn document(&self, doc_id: &str) -> quarry_core::Result<Option<StoredDocument>> {
        let mut conn = self.pool.get()?;
        let row = conn
            .query_opt(
                "SELECT id, source, title, body, metadata::text, content_hash,
                        ARRAY(SELECT c.id FROM chunks c WHERE c.doc_id = d.id ORDER BY c.ord, c.id)
                 FROM documents d WHERE id = $1",
                &[&doc_id],
            )
            .map_err(|e| db_error("reading a document", &e))?;
        let Some(r) = row else { return Ok(None) };
        let metadata: String = r.get(4);
        let metadata = serde_json::from_str(&metadata).map_err(|e| Error::Database {
            what: format!("document {doc_id}"),
            message: format!("unreadable metadata: {e}"),
            transient: false,
        })?;
        Ok(Some(StoredDocument {
            id: r.get(0),
            source: r.get(1),
            title: r.get(2),
            text: r.get(3),
            metadata,
            content_hash: r.get(5),
            chunk_ids: r.get::<_, Vec<i64>>(6).into_iter().map(|i| i as u64).collect(),
        }))
    }

    fn chunk(&self, chunk_id: u64) -> quarry_core::Result<Option<StoredChunk>> {
        let mut conn = self.pool.get()?;
        let row = conn
            .query_opt(
                "SELECT c.id, c.doc_id, c.ord, c.body, c.start_char, c.end_char, c.section, c.tokens, c.page,
                        c.context, c.parent_start, c.parent_end, d.source, d.title
                 FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = $1",
                &[&(chunk_id as i64)],
            )
            .map_err(|e| db_error("reading a chunk", &e))?;
        Ok(row.as_ref().map(to_chunk))
    }

    fn source(&self, source: &str) -> quarry_core::Result<Option<SourceRecord>> {
        let mut conn = self.pool.get()?;
        let row = conn
            .query_opt(
                "SELECT source, file_hash, doc_ids FROM sources WHERE source = $1",
                &[&source],
            )
            .map_err(|e| db_error("reading a source", &e))?;
        Ok(row.as_ref().map(to_source))
    }

    fn put_source(&self, record: SourceRecord) -> quarry_core::Result<()> {
        let mut conn = self.pool.get()?;
        conn.execute(
            "INSERT INTO sources (source, file_hash, doc_ids) VALUES ($1, $2, $3)
             ON CONFLICT (source) DO UPDATE SET file_hash = EXCLUDED.file_hash, doc_ids = EXCLUDED.doc_ids",
            &[&record.source, &record.file_hash, &record.doc_ids],
        )
        .map_err(|e| db_error("writing a source", &e))?;
        Ok(())
    }

    fn list_sources(&self) -> quarry_core::Result<Vec<SourceRecord>> {
        let mut conn = self.pool.get()?;
        let rows = conn
            .query("SELECT source, file_hash, doc_ids FROM sources ORDER BY source", &[])
            .map_err(|e| db_error("listing sources", &e))?;
        Ok(rows.iter().map(to_source).collect())
    }

    fn delete_source(&self, source: &str) -> quarry_core::Result<usize> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().map_err(|e| db_error("starting a delete", &e))?;
        let ids: Vec<String> = tx
            .query_opt("DELETE FROM sources WHERE source = $1 RETURNING doc_ids", &[&source])
            .map_err(|e| db_error("deleting a source", &e))?
            .map(|r| r.get(0))
            .unwrap_or_default();
        let n = Self::delete_in(&mut tx, &ids)?;
        tx.commit().map_err(|e| db_error("committing a delete", &e))?;
        Ok(n)
    }

    fn fingerprints(&self) -> quarry_core::Result<Vec<(String, u64)>> {
        let mut conn = self.pool.get()?;
        let rows = conn
            .query(
                "SELECT id, fingerprint FROM documents WHERE fingerprint IS NOT NULL ORDER BY id",
                &[],
            )
            .map_err(|e| db_error("reading fingerprints", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    fn lexical_search(&self, query: &str, filter: Option<&Filter>, k: usize) -> quarry_core::Result<Vec<Hit>> {
        // The query's lexemes (stemmed, stop words dropped) ORed together, like BM25's bag of words;
        // each lexeme is quoted so that no character in the query is read as tsquery syntax.
        let mut params: Params = vec![Box::new(query.to_string()), Box::new(k as i64)];
        let (join, filter_sql) = Self::filter_sql(filter, &mut params);
        let terms = format!(
            "terms AS (
                 SELECT DISTINCT replace(l, E'\\\\', '') AS lexeme
                 FROM unnest(tsvector_to_array(to_tsvector('{TS_CONFIG}', $1))) AS l
                 WHERE replace(l, E'\\\\', '') <> ''),
             q AS (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS query,
                          array_agg(lexeme) AS lexemes FROM terms)"
        );
        let sql = match self.cfg.pg_lexical_ranking {
            PgLexicalRanking::TsRankCd => format!(
                "WITH {terms}
                 SELECT c.id, c.doc_id, ts_rank_cd(c.tsv, q.query, 1)::float8 AS score
                 FROM q, chunks c {join}
                 WHERE c.tsv @@ q.query {filter_sql}
                 ORDER BY score DESC, c.id
                 LIMIT $2"
            ),
            // BM25 in one pass over the chunks that match any query lexeme (found through the GIN
            // index, before any metadata filter): each chunk's tsvector is cut down to the query's
            // lexemes (setweight marks them, ts_filter keeps the marked ones; stored tsvectors carry
            // only the default weight), which gives the term frequencies from the positions. A
            // lexeme's document frequency over the whole collection is the number of matching chunks
            // that hold it, so it is counted from the same rows. Lengths come from tsv_len, N and the
            // average length from lexical_stats (kept by triggers); the filter applies to the scoring.
            PgLexicalRanking::Bm25 => format!(
                "WITH {terms},
                 stats AS (
                     SELECT greatest(sum(chunks), 1)::float8 AS n,
                            greatest(sum(tokens)::float8 / greatest(sum(chunks), 1), 1) AS avgdl
                     FROM lexical_stats),
                 m AS MATERIALIZED (
                     SELECT c.id, c.doc_id, c.tsv_len, x.lexeme,
                            coalesce(array_length(x.positions, 1), 1)::float8 AS tf
                     FROM q, chunks c
                     CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, 'A', q.lexemes), '{{a}}'))
                         AS x(lexeme, positions, weights)
                     WHERE c.tsv @@ q.query),
                 idf AS (
                     SELECT m.lexeme, ln(1 + (stats.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf_weight
                     FROM m CROSS JOIN stats GROUP BY m.lexeme, stats.n)
                 SELECT c.id, c.doc_id,
                        sum(idf.idf_weight * c.tf * {k1p1} / (c.tf + {k1} * (1 - {b} + {b} * c.tsv_len / stats.avgdl)))::float8
                            AS score
                 FROM m c JOIN idf ON idf.lexeme = c.lexeme CROSS JOIN stats {join}
                 WHERE TRUE {filter_sql}
                 GROUP BY c.id, c.doc_id
                 ORDER BY score DESC, c.id
                 LIMIT $2",
                k1 = BM25_K1,
                k1p1 = BM25_K1 + 1.0,
                b = BM25_B,
            ),
        };
        Ok(self.search(&sql, &params, &[])?)
    }

    fn vector_search(&self, query: &[f32], filter: Option<&Filter>, k: usize) -> quarry_core::Result<Vec<Hit>> {
        let dim = match self.dimension.get() {
            Some(d) => *d,
            None => {
                let mut conn = self.pool.get()?;
                match meta(&mut *conn, "dimension")?.and_then(|d| d.parse::<usize>().ok()) {
                    Some(d) => *self.dimension.get_or_init(|| d),
                    None => return Ok(vec![]),
                }
            }
        };
        check_dim(dim, query.len())?;
        let mut params: Params = vec![Box::new(query.to_vec()), Box::new(k as i64)];
        let (join, filter_sql) = Self::filter_sql(filter, &mut params);
        // The Vec<f32> parameter travels as real[] and is cast: Vector borrows, Params own.
        let qv = "$1::real[]::vector";
        let exact = match filter {
            None => false,
            Some(_) => {
                // Few matches: scan them exactly (a graph walk through a sparse filter may strand).
                let mut count_params = Params::new();
                let (join, cond) = Self::filter_sql(filter, &mut count_params);
                let count_sql = format!(
                    "SELECT count(*) FROM (SELECT 1 FROM chunks c {join} WHERE TRUE {cond} LIMIT {}) AS m",
                    self.cfg.exact_search_threshold + 1
                );
                let refs: Vec<&(dyn ToSql + Sync)> = count_params.iter().map(|p| p.as_ref()).collect();
                let mut conn = self.pool.get()?;
                let n: i64 = conn
                    .query_one(&count_sql, &refs)
                    .map_err(|e| db_error("counting filter matches", &e))?
                    .get(0);
                n as usize <= self.cfg.exact_search_threshold
            }
        };
        let sql = if exact {
            format!(
                "WITH m AS MATERIALIZED (
                     SELECT c.id, c.doc_id, c.embedding FROM chunks c {join}
                     WHERE TRUE {filter_sql})
                 SELECT id, doc_id, 1 - (embedding <=> {qv}) AS score FROM m
                 ORDER BY embedding <=> {qv}, id LIMIT $2"
            )
        } else {
            format!(
                "SELECT c.id, c.doc_id, 1 - (c.embedding <=> {qv}) AS score
                 FROM chunks c {join}
                 WHERE TRUE {filter_sql}
                 ORDER BY c.embedding <=> {qv} LIMIT $2"
            )
        };
        let mut settings = vec![("hnsw.ef_search", self.ef_search(k))];
        if filter.is_some() {
            // pgvector 0.8: keep walking the graph until k rows pass the filter.
            settings.push(("hnsw.iterative_scan", "strict_order".to_string()));
        }
        Ok(self.search(&sql, &params, &settings)?)
    }

    fn flush(&self) -> quarry_core::Result<()> {
        Ok(())
    }

    fn rebuild(&self) -> quarry_core::Result<()> {
        let mut conn = self.pool.get()?;
        conn.batch_execute(&format!(
            "UPDATE chunks SET tsv = to_tsvector('{TS_CONFIG}', search_text); REINDEX TABLE chunks;"
        ))
        .map_err(|e| db_error("rebuilding the indexes", &e))?;
        Ok(())
    }

    fn stats(&self) -> quarry_core::Result<IndexStats> {
        let mut conn = self.pool.get()?;
        let r = conn
            .query_one(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks),
                        (SELECT count(*) FROM sources),
                        (SELECT count(*) FROM chunks WHERE tsv IS NOT NULL),
                        (SELECT count(*) FROM chunks WHERE embedding IS NOT NULL)",
                &[],
            )
            .map_err(|e| db_error("reading statistics", &e))?;
        let n = |i: usize| r.get::<_, i64>(i) as usize;
        Ok(IndexStats {
            documents: n(0),
            chunks: n(1),
            sources: n(2),
            dimension: meta(&mut *conn, "dimension")?.and_then(|d| d.parse().ok()),
            model_id: meta(&mut *conn, "model_id")?,
            lexical_entries: n(3),
            vector_entries: n(4),
        })
    }
}
