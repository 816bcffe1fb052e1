//! Both backends on one BEIR dataset with identical chunks and vectors: the corpus is embedded once
//! and every write goes to the embedded index and to PostgreSQL, then each backend answers the test
//! queries (top-100 chunks, a document scores by its best chunk) and nDCG@10 is computed per backend.
//! A measurement, not a test: `quarry eval retrieval --store postgres://...` is the user-facing path.
//!
//! ```sh
//! cargo run --example backends_scifact -p quarry-index -- ../shared/datasets/scifact postgres://...
//! ```

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use quarry_core::{
    ChunkingConfig, DocumentVersion, Embedder, Filter, Hit, Index, IndexConfig, IndexStats, IndexedDocument,
    ModelConfig, SourceRecord, StoredChunk, StoredDocument,
};
use quarry_index::{EmbeddedIndex, PostgresIndex};
use quarry_ingest::{Ingestor, Silent};
use quarry_models::SentenceEmbedder;

/// Writes go to both indexes; reads come from the first.
struct Tee<'a>(&'a dyn Index, &'a dyn Index);

impl Index for Tee<'_> {
    fn put_documents(&self, docs: Vec<IndexedDocument>) -> quarry_core::Result<()> {
        self.1.put_documents(docs.clone())?;
        self.0.put_documents(docs)
    }
    fn delete_documents(&self, ids: &[String]) -> quarry_core::Result<usize> {
        self.1.delete_documents(ids)?;
        self.0.delete_documents(ids)
    }
    fn document_version(&self, id: &str) -> quarry_core::Result<Option<DocumentVersion>> {
        self.0.document_version(id)
    }
    fn document(&self, id: &str) -> quarry_core::Result<Option<StoredDocument>> {
        self.0.document(id)
    }
    fn chunk(&self, id: u64) -> quarry_core::Result<Option<StoredChunk>> {
        self.0.chunk(id)
    }
    fn source(&self, s: &str) -> quarry_core::Result<Option<SourceRecord>> {
        self.0.source(s)
    }
    fn put_source(&self, r: SourceRecord) -> quarry_core::Result<()> {
        self.1.put_source(r.clone())?;
        self.0.put_source(r)
    }
    fn list_sources(&self) -> quarry_core::Result<Vec<SourceRecord>> {
        self.0.list_sources()
    }
    fn delete_source(&self, s: &str) -> quarry_core::Result<usize> {
        self.1.delete_source(s)?;
        self.0.delete_source(s)
    }
    fn fingerprints(&self) -> quarry_core::Result<Vec<(String, u64)>> {
        self.0.fingerprints()
    }
    fn lexical_search(&self, q: &str, f: Option<&Filter>, k: usize) -> quarry_core::Result<Vec<Hit>> {
        self.0.lexical_search(q, f, k)
    }
    fn vector_search(&self, q: &[f32], f: Option<&Filter>, k: usize) -> quarry_core::Result<Vec<Hit>> {
        self.0.vector_search(q, f, k)
    }
    fn flush(&self) -> quarry_core::Result<()> {
        self.1.flush()?;
        self.0.flush()
    }
    fn rebuild(&self) -> quarry_core::Result<()> {
        self.0.rebuild()
    }
    fn stats(&self) -> quarry_core::Result<IndexStats> {
        self.0.stats()
    }
}

/// nDCG@10 of a ranked document list against binary/graded relevance.
fn ndcg10(ranked: &[String], rel: &HashMap<String, f64>) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| rel.get(d).copied().unwrap_or(0.0) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<f64> = rel.values().copied().collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, r)| r / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Chunk hits to distinct documents, best chunk first.
fn docs(hits: Vec<Hit>) -> Vec<String> {
    let mut seen = HashSet::new();
    hits.into_iter()
        .map(|h| h.doc_id)
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: backends_scifact DATASET_DIR POSTGRES_URL");
    let ds = Path::new(&args[1]);
    let embedder = SentenceEmbedder::from_config(&ModelConfig::default())?;
    let tmp = tempfile::tempdir()?;
    let cfg = IndexConfig::default();
    let embedded = EmbeddedIndex::open(&tmp.path().join("data"), cfg.clone(), Some(embedder.model_id()))?;
    let pg = PostgresIndex::open(&args[2], cfg, Some(embedder.model_id()))?;
    anyhow::ensure!(pg.stats()?.documents == 0, "use an empty schema (?schema=NAME)");
    let start = Instant::now();
    let tee = Tee(&embedded, &pg);
    let s = Ingestor::new(&tee, &embedder, ChunkingConfig::default())
        .with_dedup(false)
        .ingest_paths(&[ds.join("corpus.jsonl")], &Silent);
    anyhow::ensure!(s.errors.is_empty(), "{:?}", s.errors);
    println!(
        "indexed {} documents, {} chunks into both backends in {:.0} s",
        s.documents_added,
        embedded.stats()?.chunks,
        start.elapsed().as_secs_f64()
    );
    let mut qrels: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for line in std::fs::read_to_string(ds.join("qrels/test.tsv"))?.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 3 {
            qrels
                .entry(f[0].to_string())
                .or_default()
                .insert(f[1].to_string(), f[2].parse()?);
        }
    }
    let mut queries = Vec::new();
    for line in std::fs::read_to_string(ds.join("queries.jsonl"))?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let id = v["_id"].as_str().unwrap_or_default().to_string();
        if qrels.contains_key(&id) {
            queries.push((id, v["text"].as_str().unwrap_or_default().to_string()));
        }
    }
    let backends: [(&str, &dyn Index); 2] = [("embedded", &embedded), ("postgres", &pg)];
    let vectors: Vec<Vec<f32>> = queries
        .iter()
        .map(|(_, q)| embedder.embed_query(q))
        .collect::<Result<_, _>>()?;
    for (name, index) in backends {
        for mode in ["dense", "lexical"] {
            let t = Instant::now();
            let mut total = 0.0;
            for ((id, q), v) in queries.iter().zip(&vectors) {
                let hits = match mode {
                    "dense" => index.vector_search(v, None, 100)?,
                    _ => index.lexical_search(q, None, 100)?,
                };
                total += ndcg10(&docs(hits), &qrels[id]);
            }
            println!(
                "{name:9} {mode:8} nDCG@10 {:.4}  ({} queries, {:.1} ms/query)",
                total / queries.len() as f64,
                queries.len(),
                t.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64
            );
        }
    }
    Ok(())
}
