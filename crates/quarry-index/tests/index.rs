//! The index through the real ingest pipeline, with the deterministic hashing embedder: one suite,
//! run against both backends (the embedded data directory and PostgreSQL + pgvector).
//!
//! PostgreSQL tests use `QUARRY_PG_URL` when it is set, else start a local server with scripts/pg.sh;
//! each test works in its own schema, so tests run in parallel.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use quarry_core::{ChunkingConfig, Embedder, Filter, Index, IndexConfig};
use quarry_index::{EmbeddedIndex, PostgresIndex};
use quarry_ingest::{Ingestor, Silent, Summary};
use quarry_models::HashEmbedder;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Postgres,
}

/// Where one test's index lives: a temporary directory, or a schema of its own in PostgreSQL.
struct Store {
    backend: Backend,
    dir: PathBuf,
    url: String,
    schema: String,
}

fn pg_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("QUARRY_PG_URL") {
            if !url.is_empty() {
                return url;
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/pg.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

fn with_param(url: &str, param: &str) -> String {
    format!("{url}{}{param}", if url.contains('?') { '&' } else { '?' })
}

impl Store {
    fn new(backend: Backend, dir: &Path, test: &str) -> Store {
        let (url, schema) = match backend {
            Backend::Embedded => (String::new(), String::new()),
            Backend::Postgres => {
                let schema = format!("t{}_{test}", std::process::id());
                let base = pg_url();
                let mut db = ::postgres::Client::connect(&base, ::postgres::NoTls).unwrap();
                db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .unwrap();
                (with_param(&base, &format!("schema={schema}")), schema)
            }
        };
        Store {
            backend,
            dir: dir.join("data"),
            url,
            schema,
        }
    }

    fn open_as(&self, model: Option<&str>) -> quarry_core::Result<Box<dyn Index>> {
        Ok(match self.backend {
            Backend::Embedded => Box::new(EmbeddedIndex::open(&self.dir, IndexConfig::default(), model)?),
            Backend::Postgres => Box::new(PostgresIndex::open(&self.url, IndexConfig::default(), model)?),
        })
    }

    fn open(&self) -> Box<dyn Index> {
        self.open_as(Some(embedder().model_id())).unwrap()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if matches!(self.backend, Backend::Postgres) && !std::thread::panicking() {
            if let Ok(mut db) = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls) {
                let _ = db.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        }
    }
}

/// Each test runs once per backend, in modules named after the backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[test] fn $name() { super::$name(super::Backend::Embedded) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}

both_backends!(
    reingest_change_and_delete_keep_every_index_consistent,
    bad_input_is_reported_by_file_and_the_rest_continues,
    filters_apply_inside_lexical_and_vector_search,
    a_store_built_with_another_model_is_refused,
    a_failed_batch_writes_nothing,
    reembedding_copies_every_document_continues_and_removes_what_is_gone,
    lexical_ranking_is_bm25_rare_terms_weigh_more_and_frequency_saturates,
);

fn embedder() -> HashEmbedder {
    HashEmbedder::new(64)
}

fn ingest(index: &dyn Index, paths: &[&Path]) -> Summary {
    let e = embedder();
    let cfg = ChunkingConfig {
        max_tokens: 40,
        overlap_tokens: 5,
    };
    let paths: Vec<_> = paths.iter().map(|p| p.to_path_buf()).collect();
    Ingestor::new(index, &e, cfg).ingest_paths(&paths, &Silent)
}

/// The store, the lexical and the vector index agree: same chunk count everywhere.
fn assert_consistent(index: &dyn Index) {
    let s = index.stats().unwrap();
    assert_eq!(
        s.lexical_entries, s.chunks,
        "lexical index agrees with the store: {s:?}"
    );
    assert_eq!(s.vector_entries, s.chunks, "vector index agrees with the store: {s:?}");
}

fn lexical_docs(index: &dyn Index, q: &str) -> Vec<String> {
    index
        .lexical_search(q, None, 50)
        .unwrap()
        .into_iter()
        .map(|h| h.doc_id)
        .collect()
}

fn reingest_change_and_delete_keep_every_index_consistent(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(backend, tmp.path(), "reingest_change_and_delete_kee");
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(
        corpus.join("a.md"),
        "# Apples\nApples are red fruit grown in orchards.\n\n## Storage\nKeep apples cool.\n",
    )
    .unwrap();
    std::fs::write(
        corpus.join("b.txt"),
        "Bananas are yellow and grow in tropical climates.",
    )
    .unwrap();
    std::fs::write(
        corpus.join("c.jsonl"),
        "{\"_id\":\"c1\",\"title\":\"Cherries\",\"text\":\"Cherries are small stone fruit.\"}\n{\"_id\":\"c2\",\"text\":\"Dates grow on palms.\"}\n",
    )
    .unwrap();
    let index = store.open();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.files, s.documents_added), (3, 4));
    assert_consistent(index.as_ref());
    let chunks_before = index.stats().unwrap().chunks;

    // Unchanged: nothing is written.
    let s = ingest(index.as_ref(), &[&corpus]);
    assert_eq!(
        (
            s.files_unchanged,
            s.documents_added,
            s.documents_updated,
            s.chunks_written
        ),
        (3, 0, 0, 0)
    );
    assert_eq!(index.stats().unwrap().chunks, chunks_before);

    // A changed file replaces its chunks everywhere; a record removed from a JSONL file goes.
    std::fs::write(corpus.join("b.txt"), "Blueberries are blue and grow on shrubs.").unwrap();
    std::fs::write(
        corpus.join("c.jsonl"),
        "{\"_id\":\"c1\",\"title\":\"Cherries\",\"text\":\"Cherries are small stone fruit.\"}\n",
    )
    .unwrap();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert_eq!(
        (s.documents_updated, s.documents_unchanged, s.documents_removed),
        (1, 2, 1),
        "{s:?}"
    );
    assert!(
        lexical_docs(index.as_ref(), "bananas tropical").is_empty(),
        "old chunks are gone from BM25"
    );
    assert!(lexical_docs(index.as_ref(), "dates palms").is_empty());
    assert_eq!(
        lexical_docs(index.as_ref(), "blueberries"),
        vec![corpus.join("b.txt").canonicalize().unwrap().display().to_string()]
    );
    let v = embedder()
        .embed_query("Bananas are yellow and grow in tropical climates.")
        .unwrap();
    let top = index.vector_search(&v, None, 10).unwrap();
    assert!(
        top.iter().all(|h| index.chunk(h.chunk_id).unwrap().is_some()),
        "no orphan vectors"
    );
    assert!(index.document("c2").unwrap().is_none());
    assert_consistent(index.as_ref());

    // A deleted file leaves every index.
    std::fs::remove_file(corpus.join("a.md")).unwrap();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert_eq!(s.documents_removed, 1);
    assert!(lexical_docs(index.as_ref(), "orchards").is_empty());
    assert_eq!(index.stats().unwrap().documents, 2);
    assert_consistent(index.as_ref());

    // Reopening finds the same state, with the derived indexes current.
    drop(index);
    let index = store.open();
    assert_eq!(index.stats().unwrap().documents, 2);
    assert_consistent(index.as_ref());
    assert_eq!(lexical_docs(index.as_ref(), "cherries"), vec!["c1".to_string()]);
}

fn bad_input_is_reported_by_file_and_the_rest_continues(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(backend, tmp.path(), "bad_input_is_reported_by_file_");
    let corpus = tmp.path().join("in");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("good.txt"), "Good text about zebras.").unwrap();
    std::fs::write(corpus.join("empty.txt"), "").unwrap();
    std::fs::write(corpus.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    std::fs::write(
        corpus.join("recs.jsonl"),
        "{\"_id\":\"r1\",\"text\":\"okapi\"}\n{oops}\n{\"_id\":\"r2\",\"text\":\"giraffe\"}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(tmp.path().join("missing-target"), corpus.join("dangling.txt")).unwrap();
    std::fs::write(corpus.join("image.png"), b"\x89PNG\r\n").unwrap();
    let index = store.open();
    let s = ingest(index.as_ref(), &[&corpus]);
    let errors = s.errors.join("\n");
    assert_eq!(s.errors.len(), 4, "{errors}");
    assert!(errors.contains("empty.txt: empty file"), "{errors}");
    assert!(errors.contains("latin1.txt: invalid UTF-8 at byte 3"), "{errors}");
    assert!(errors.contains("recs.jsonl:2: invalid JSON record"), "{errors}");
    assert!(errors.contains("dangling.txt: cannot read"), "{errors}");
    assert_eq!(s.skipped.len(), 1, "the PNG is skipped, not an error");
    assert_eq!(s.documents_added, 3, "good.txt, r1 and r2");
    assert_consistent(index.as_ref());

    // The JSONL with a bad line is retried next time (its record is incomplete); nothing duplicates.
    let s = ingest(index.as_ref(), &[&corpus]);
    assert_eq!(s.documents_added, 0);
    assert_eq!(s.errors.len(), 4);
    assert_eq!(index.stats().unwrap().documents, 3);

    // A file that turns bad keeps what it contributed before.
    std::fs::write(corpus.join("good.txt"), b"\xff\xfe").unwrap();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert!(s.errors.iter().any(|e| e.contains("good.txt: invalid UTF-8")));
    assert_eq!(lexical_docs(index.as_ref(), "zebras").len(), 1);
    assert_consistent(index.as_ref());
}

fn filter_corpus(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("meta.jsonl");
    let mut lines = String::new();
    for i in 0..300 {
        let lang = ["en", "de", "fr"][i % 3];
        let topic = if i % 50 == 7 { "rare" } else { "common" };
        lines.push_str(&format!(
            "{{\"_id\":\"d{i}\",\"text\":\"document {i} about rivers and mountains, item{i}\",\"metadata\":{{\"lang\":\"{lang}\",\"year\":{},\"topic\":\"{topic}\"}}}}\n",
            1990 + i % 30
        ));
    }
    std::fs::write(&path, lines).unwrap();
    path
}

fn filters_apply_inside_lexical_and_vector_search(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(backend, tmp.path(), "filters_apply_inside_lexical_a");
    let corpus = filter_corpus(tmp.path());
    let index = store.open();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let q = "rivers and mountains";
    let qv = embedder().embed_query(q).unwrap();
    let cases = [
        ("lang=de", 100),
        ("topic=rare", 6),
        ("year>=2015", 50),
        ("year=1990..1994", 50),
        ("lang=en|fr", 200),
    ];
    for (expr, matching) in cases {
        let f = Filter::parse(expr).unwrap();
        let doc_ok = |id: &str| {
            let d = index.document(id).unwrap().unwrap();
            f.matches(&d.metadata)
        };
        let k = 10;
        let lex = index.lexical_search(q, Some(&f), k).unwrap();
        let vec = index.vector_search(&qv, Some(&f), k).unwrap();
        for hits in [&lex, &vec] {
            assert_eq!(hits.len(), k.min(matching), "{expr}: top-k of the matching set");
            assert!(
                hits.iter().all(|h| doc_ok(&h.doc_id)),
                "{expr}: only matching documents"
            );
        }
        // The vector results equal exact search over the matching set.
        let mut exact: Vec<(f32, String)> = (0..300)
            .map(|i| format!("d{i}"))
            .filter(|id| doc_ok(id))
            .map(|id| {
                let d = index.document(&id).unwrap().unwrap();
                let v = embedder()
                    .embed(&[&index
                        .as_ref()
                        .chunk(d.chunk_ids[0])
                        .unwrap()
                        .unwrap()
                        .chunk
                        .contextual_text(None)])
                    .unwrap();
                (v[0].iter().zip(&qv).map(|(a, b)| a * b).sum::<f32>(), id)
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let best = exact[0].0;
        assert!(
            (vec[0].score - best).abs() < 1e-5,
            "{expr}: best filtered vector hit is the exact best"
        );
    }
    // A filter that matches nothing returns nothing, not an error.
    let none = Filter::parse("lang=xx").unwrap();
    assert!(index.lexical_search(q, Some(&none), 5).unwrap().is_empty());
    assert!(index.vector_search(&qv, Some(&none), 5).unwrap().is_empty());
}

#[test]
fn stale_or_missing_derived_indexes_are_rebuilt_from_the_store() {
    // Embedded only: PostgreSQL maintains its indexes inside the same transaction as the rows.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(Backend::Embedded, tmp.path(), "stale");
    let corpus = filter_corpus(tmp.path());
    let data = store.dir.clone();
    let before = {
        let index = store.open();
        ingest(index.as_ref(), &[&corpus]);
        index.lexical_search("item42 rivers", None, 3).unwrap()
    };
    // Lose both derived indexes, as a crash before they were written would.
    std::fs::remove_file(data.join("vectors.hnsw")).unwrap();
    std::fs::remove_dir_all(data.join("bm25")).unwrap();
    let index = store.open();
    assert_consistent(index.as_ref());
    assert_eq!(index.stats().unwrap().chunks, 300);
    let after = index.lexical_search("item42 rivers", None, 3).unwrap();
    assert_eq!(after[0].doc_id, "d42");
    let scores = |h: &[quarry_core::Hit]| h.iter().map(|h| (h.score * 1e4).round() as i64).collect::<Vec<_>>();
    assert_eq!(scores(&after), scores(&before), "same BM25 scores after the rebuild");
    // A truncated graph file is detected, not trusted.
    drop(index);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(data.join("vectors.hnsw"))
        .unwrap();
    f.set_len(100).unwrap();
    let index = store.open();
    assert_consistent(index.as_ref());
}

fn a_store_built_with_another_model_is_refused(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(backend, tmp.path(), "other_model");
    let corpus = filter_corpus(tmp.path());
    ingest(store.open().as_ref(), &[&corpus]);
    let err = store.open_as(Some("other-model@123")).err().unwrap().to_string();
    assert!(err.contains("built with model hash-64"), "{err}");
    let idx = store.open();
    let err = idx.vector_search(&[0.0; 3], None, 5).unwrap_err().to_string();
    assert!(err.contains("dimension mismatch"), "{err}");
    // A write with vectors of another dimension is refused too, and changes nothing.
    let before = idx.stats().unwrap();
    let err = idx
        .put_documents(vec![doc("odd", "odd vector", 3)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("dimension mismatch"), "{err}");
    assert_eq!(idx.stats().unwrap(), before);
}

/// A document with one chunk and a `dim`-dimensional vector.
fn doc(id: &str, text: &str, dim: usize) -> quarry_core::IndexedDocument {
    let document = quarry_core::Document {
        id: id.into(),
        source: format!("mem://{id}"),
        title: None,
        text: text.into(),
        metadata: Default::default(),
    };
    let chunk = quarry_core::Chunk {
        doc_id: id.into(),
        ord: 0,
        text: text.into(),
        start: 0,
        end: text.chars().count(),
        section: vec![],
        tokens: 3,
        page: None,
        context: None,
        parent: None,
    };
    let mut v = vec![0.0; dim];
    v[0] = 1.0;
    quarry_core::IndexedDocument {
        document,
        content_hash: format!("hash-{id}"),
        chunks: vec![chunk],
        embeddings: vec![v],
        fingerprint: None,
    }
}

fn a_failed_batch_writes_nothing(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(backend, tmp.path(), "failed_batch");
    let index = store.open();
    index.put_documents(vec![doc("a", "alpha words", 64)]).unwrap();
    // The second document of the batch is bad: the first one must not appear either.
    let mut bad = doc("c", "gamma words", 64);
    bad.embeddings.clear();
    let err = index
        .put_documents(vec![doc("b", "beta words", 64), bad])
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 chunks but 0 embeddings"), "{err}");
    assert!(index.document("b").unwrap().is_none());
    assert!(lexical_docs(index.as_ref(), "beta").is_empty());
    let s = index.stats().unwrap();
    assert_eq!((s.documents, s.chunks), (1, 1), "{s:?}");
    // Replacing a document replaces its chunks; the old chunk is gone from both searches.
    let old = index.document("a").unwrap().unwrap().chunk_ids;
    index.put_documents(vec![doc("a", "alpha renamed", 64)]).unwrap();
    let new = index.document("a").unwrap().unwrap().chunk_ids;
    assert_eq!(new.len(), 1);
    assert_ne!(old, new);
    assert!(index.chunk(old[0]).unwrap().is_none());
    let mut q = vec![0.0; 64];
    q[0] = 1.0;
    let hits = index.vector_search(&q, None, 5).unwrap();
    assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), new);
    assert!(
        (hits[0].score - 1.0).abs() < 1e-5,
        "cosine of a vector with itself: {}",
        hits[0].score
    );
    assert_eq!(lexical_docs(index.as_ref(), "renamed"), vec!["a".to_string()]);
    assert_eq!(index.delete_documents(&["a".into(), "zz".into()]).unwrap(), 1);
    assert_eq!(index.stats().unwrap().chunks, 0);
}

// PostgreSQL only: what a database server adds (hostile input reaching SQL, concurrent writers,
// server and extension failures, schema migrations).

/// `postgres://USER@HOST:PORT/DB` on the test server.
fn pg_url_as(user: &str, db: &str) -> String {
    let base = pg_url();
    let (_, rest) = base.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split(['/', '?']).next().unwrap();
    format!("postgres://{user}@{host}/{db}")
}

#[test]
fn postgres_filters_bind_hostile_values() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(Backend::Postgres, tmp.path(), "hostile");
    let hostile = "'; DROP TABLE chunks; --";
    let corpus = tmp.path().join("h.jsonl");
    let record = |id: &str, note: &str| {
        serde_json::json!({"_id": id, "text": format!("river document {id}"), "metadata": {"note": note, "n": "7"}})
            .to_string()
    };
    std::fs::write(
        &corpus,
        format!("{}\n{}\n", record("h1", hostile), record("h2", "plain")),
    )
    .unwrap();
    let index = store.open();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let qv = embedder().embed_query("river").unwrap();
    let docs = |hits: Vec<quarry_core::Hit>| hits.into_iter().map(|h| h.doc_id).collect::<Vec<_>>();
    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (Filter::parse(&format!("note={hostile}")).unwrap(), vec!["h1"]),
        (Filter::parse(&format!("note!={hostile}")).unwrap(), vec!["h2"]),
        (
            Filter::parse(&format!("note=plain|{hostile}")).unwrap(),
            vec!["h1", "h2"],
        ),
        (
            Filter::Eq {
                key: hostile.into(),
                value: "x".into(),
            },
            vec![],
        ),
        (
            Filter::Eq {
                key: "note') OR TRUE; --".into(),
                value: "plain".into(),
            },
            vec![],
        ),
        (Filter::parse("n>=7").unwrap(), vec!["h1", "h2"]),
        (Filter::parse("n=1..6").unwrap(), vec![]),
    ];
    for (f, want) in cases {
        let mut lex = docs(index.lexical_search(&format!("river {hostile}"), Some(&f), 10).unwrap());
        let mut vec = docs(index.vector_search(&qv, Some(&f), 10).unwrap());
        lex.sort();
        vec.sort();
        assert_eq!(lex, want, "{f:?}");
        assert_eq!(vec, want, "{f:?}");
        // Every document matches exactly as the in-memory filter says.
        for id in ["h1", "h2"] {
            let d = index.document(id).unwrap().unwrap();
            assert_eq!(f.matches(&d.metadata), want.contains(&id), "{f:?} on {id}");
        }
    }
    // Query text full of tsquery syntax is just words.
    for q in ["river & | ! ( ) :* '", "\\' OR 1=1", "", "the of and"] {
        index.lexical_search(q, None, 5).unwrap();
    }
    let s = index.stats().unwrap();
    assert_eq!((s.documents, s.chunks), (2, 2), "tables intact: {s:?}");
}

#[test]
fn postgres_concurrent_ingests_of_one_source_do_not_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(Backend::Postgres, tmp.path(), "concurrent");
    let corpus = filter_corpus(tmp.path());
    // Two processes' worth of writers: separate indexes (and pools) on the same schema.
    let a = store.open();
    let b = store.open();
    let summaries: Vec<Summary> = std::thread::scope(|s| {
        let ha = s.spawn(|| ingest(a.as_ref(), &[&corpus]));
        let hb = s.spawn(|| ingest(b.as_ref(), &[&corpus]));
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    for s in &summaries {
        assert!(s.errors.is_empty(), "{:?}", s.errors);
    }
    let s = a.stats().unwrap();
    assert_eq!((s.documents, s.chunks, s.sources), (300, 300, 1), "{s:?}");
    assert_consistent(a.as_ref());
    assert_eq!(
        lexical_docs(a.as_ref(), "item42").first().map(String::as_str),
        Some("d42")
    );
    // And once more, with the source unchanged: nothing written.
    let again = ingest(b.as_ref(), &[&corpus]);
    assert_eq!((again.documents_added, again.chunks_written), (0, 0));
}

#[test]
fn postgres_server_down_is_a_clear_error() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let err = PostgresIndex::open(&url, IndexConfig::default(), None).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}/postgres")),
        "{msg}"
    );
    assert!(msg.contains("is the server running?"), "{msg}");
    assert!(err.is_transient());
}

#[test]
fn postgres_missing_extension_is_a_clear_error() {
    // A role that may not create the (untrusted) extension, in a database that does not have it.
    let name = format!("quarry_noext_{}", std::process::id());
    let mut admin = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls).unwrap();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
    let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {name}"));
    admin.batch_execute(&format!("CREATE ROLE {name} LOGIN")).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name} OWNER {name}"))
        .unwrap();
    let err = PostgresIndex::open(&pg_url_as(&name, &name), IndexConfig::default(), None)
        .err()
        .map(|e| e.to_string());
    admin.batch_execute(&format!("DROP DATABASE {name}")).unwrap();
    admin.batch_execute(&format!("DROP ROLE {name}")).unwrap();
    let err = err.unwrap();
    assert!(
        err.starts_with(&format!(
            "PostgreSQL database {name}: the pgvector extension is not installed"
        )),
        "{err}"
    );
    assert!(err.contains("CREATE EXTENSION vector"), "{err}");
}

#[test]
fn postgres_migrations_are_recorded_and_applied_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(Backend::Postgres, tmp.path(), "migrations");
    // Several openers at once: each migration still runs exactly once.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| store.open())).collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let mut db = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls).unwrap();
    let versions: Vec<i32> = db
        .query(
            &format!(
                "SELECT version FROM {}.schema_migrations ORDER BY version",
                store.schema
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2]);
    // A schema written by a newer build is refused, not guessed at.
    db.batch_execute(&format!(
        "INSERT INTO {}.schema_migrations (version, name) VALUES (99, 'from the future')",
        store.schema
    ))
    .unwrap();
    let err = store.open_as(None).err().unwrap().to_string();
    assert!(
        err.contains("is at version 99, newer than this build knows (2)"),
        "{err}"
    );
}

/// The copy behind a blue/green embedder switch: everything stored in one index is copied into another with
/// another model's vectors and the same content hashes; a second run only catches up.
fn reembedding_copies_every_document_continues_and_removes_what_is_gone(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let blue_store = Store::new(backend, tmp.path(), "reembed_blue");
    let green_tmp = tempfile::tempdir().unwrap();
    let green_store = Store::new(backend, green_tmp.path(), "reembed_green");
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(
        corpus.join("a.md"),
        "# Apples\nApples are red fruit.\n\n## Storage\nKeep apples cool.\n",
    )
    .unwrap();
    std::fs::write(
        corpus.join("b.txt"),
        "Bananas are yellow and grow in tropical climates.",
    )
    .unwrap();
    std::fs::write(
        corpus.join("c.jsonl"),
        "{\"_id\":\"c1\",\"text\":\"Cherries are small stone fruit.\"}\n{\"_id\":\"c2\",\"text\":\"Dates grow on palms.\"}\n",
    )
    .unwrap();
    let blue = blue_store.open();
    assert!(ingest(blue.as_ref(), &[&corpus]).errors.is_empty());
    let other = HashEmbedder::new(32);
    let green = green_store.open_as(Some(other.model_id())).unwrap();
    let copy = |green: &dyn Index| quarry_ingest::reembed(blue.as_ref(), green, &other, 2, &|_, _| {}).unwrap();

    let done = copy(green.as_ref());
    let (b, g) = (blue.stats().unwrap(), green.stats().unwrap());
    assert_eq!((done.written, done.kept, done.removed), (b.documents, 0, 0));
    assert_eq!((g.documents, g.chunks, g.sources), (b.documents, b.chunks, b.sources));
    assert_eq!((g.dimension, g.model_id.as_deref()), (Some(32), Some(other.model_id())));
    assert_consistent(green.as_ref());
    for id in ["c1", "c2"] {
        assert_eq!(blue.document_version(id).unwrap(), green.document_version(id).unwrap());
    }
    let q = other.embed_query("Dates grow on palms.").unwrap();
    assert_eq!(green.vector_search(&q, None, 1).unwrap()[0].doc_id, "c2");

    // Already copied: nothing is embedded again (an interrupted copy continues the same way).
    let again = copy(green.as_ref());
    assert_eq!((again.written, again.kept, again.chunks), (0, b.documents, 0));

    // The blue index moves on: a changed file, a deleted file. The next copy catches up.
    std::fs::write(corpus.join("b.txt"), "Blueberries are blue and grow on shrubs.").unwrap();
    std::fs::remove_file(corpus.join("a.md")).unwrap();
    assert!(ingest(blue.as_ref(), &[&corpus]).errors.is_empty());
    let done = copy(green.as_ref());
    assert_eq!((done.written, done.removed), (1, 1), "{done:?}");
    let g = green.stats().unwrap();
    assert_eq!((g.documents, g.chunks), (3, blue.stats().unwrap().chunks));
    assert_consistent(green.as_ref());
    assert!(lexical_docs(green.as_ref(), "apples").is_empty());

    // Content hashes do not depend on the model: ingesting into the copy with its own model finds the
    // unchanged record unchanged.
    std::fs::write(
        corpus.join("c.jsonl"),
        "{\"_id\":\"c1\",\"text\":\"Cherries are small stone fruit.\"}\n{\"_id\":\"c2\",\"text\":\"Figs grow on trees.\"}\n",
    )
    .unwrap();
    let cfg = ChunkingConfig {
        max_tokens: 40,
        overlap_tokens: 5,
    };
    let s = Ingestor::new(green.as_ref(), &other, cfg).ingest_paths(std::slice::from_ref(&corpus), &Silent);
    assert_eq!((s.documents_updated, s.documents_unchanged), (1, 2), "{s:?}");
}

/// Both backends rank lexical matches by BM25: a rare query word outweighs a common one, however often
/// the common one repeats, and a chunk with both beats either. In PostgreSQL the collection statistics
/// that BM25 needs (chunk count, total length) follow inserts, updates and deletes.
fn lexical_ranking_is_bm25_rare_terms_weigh_more_and_frequency_saturates(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(backend, tmp.path(), "lexical_ranking_is_bm25");
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for i in 0..12 {
        std::fs::write(
            corpus.join(format!("common{i:02}.txt")),
            format!("Protein folding study number {i}. The protein binds another protein in cells."),
        )
        .unwrap();
    }
    std::fs::write(corpus.join("rare.txt"), "Zinc deficiency in soil changes crop yields.").unwrap();
    std::fs::write(corpus.join("both.txt"), "Zinc finger protein motifs bind DNA.").unwrap();
    let index = store.open();
    let s = ingest(index.as_ref(), &[&corpus]);
    assert_eq!(s.documents_added, 14, "{s:?}");
    let ranked = lexical_docs(index.as_ref(), "zinc protein");
    assert_eq!(ranked.len(), 14, "every chunk with either word matches: {ranked:?}");
    assert!(ranked[0].ends_with("both.txt"), "{ranked:?}");
    assert!(
        ranked[1].ends_with("rare.txt"),
        "the rare word outranks the repeated common one: {ranked:?}"
    );

    if let Backend::Postgres = backend {
        let mut db = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls).unwrap();
        let check = |db: &mut ::postgres::Client| {
            let r = db
                .query_one(
                    &format!(
                        "SELECT (SELECT sum(chunks) FROM {s}.lexical_stats)::bigint,
                                (SELECT count(*) FROM {s}.chunks)::bigint,
                                (SELECT sum(tokens) FROM {s}.lexical_stats)::bigint,
                                (SELECT coalesce(sum({s}.quarry_tsv_len(tsv)), 0) FROM {s}.chunks)::bigint",
                        s = store.schema
                    ),
                    &[],
                )
                .unwrap();
            let (a, b, c, d): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
            assert_eq!((a, c), (b, d), "lexical_stats (chunks, tokens) follow the chunks table");
            assert!(b > 0 || a == 0);
        };
        check(&mut db);
        // A changed file and a deleted one: the statistics follow.
        std::fs::write(corpus.join("rare.txt"), "Zinc and selenium deficiency in soils.").unwrap();
        std::fs::remove_file(corpus.join("common00.txt")).unwrap();
        let s = ingest(index.as_ref(), &[&corpus]);
        assert_eq!((s.documents_updated, s.documents_removed), (1, 1), "{s:?}");
        check(&mut db);
        index.rebuild().unwrap();
        check(&mut db);
        // A store from before migration 2 gets the lengths and totals backfilled when opened.
        drop(index);
        db.batch_execute(&format!(
            "SET search_path = {};
             DROP TRIGGER chunks_len ON chunks; DROP TRIGGER chunks_lexical_stats ON chunks;
             DROP FUNCTION quarry_chunk_len(); DROP FUNCTION quarry_lexical_stats();
             DROP TABLE lexical_stats; ALTER TABLE chunks DROP COLUMN tsv_len; DROP FUNCTION quarry_tsv_len(tsvector);
             DELETE FROM schema_migrations WHERE version = 2; SET search_path = public;",
            store.schema
        ))
        .unwrap();
        let index = store.open();
        check(&mut db);
        let again = lexical_docs(index.as_ref(), "zinc protein");
        assert!(
            again[0].ends_with("both.txt") && again[1].ends_with("rare.txt"),
            "{again:?}"
        );
    }
}
