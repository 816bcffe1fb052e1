//! The lexical index: BM25 over chunk text with tantivy (k1 = 1.2, b = 0.75), English analyser
//! (lowercase, stop words, Snowball stemmer). Queries are analysed with the same analyser and run
//! as a disjunction of terms, so user text never hits a query-syntax error.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};

const ANALYZER: &str = "quarry_en";

pub struct Bm25 {
    index: Index,
    reader: IndexReader,
    writer: IndexWriter,
    chunk_id: Field,
    text: Field,
}

fn analyzer() -> TextAnalyzer {
    let stop = StopWordFilter::new(Language::English).unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new()));
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

fn tv_err(e: tantivy::TantivyError) -> Error {
    Error::Lexical {
        path: Default::default(),
        message: e.to_string(),
    }
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let chunk_id = b.add_u64_field(
        "chunk_id",
        NumericOptions::default().set_indexed().set_fast().set_stored(),
    );
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqs);
    let text = b.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
    (b.build(), chunk_id, text)
}

impl Bm25 {
    /// Opens the index in `dir`, creating it if absent; a directory that does not hold a usable
    /// index is an error (the caller then rebuilds it).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let (schema, chunk_id, text) = schema();
        let tv = |e: tantivy::TantivyError| Error::Lexical {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let mmap = tantivy::directory::MmapDirectory::open(dir).map_err(|e| Error::Lexical {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let index = Index::open_or_create(mmap, schema).map_err(tv)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index.writer_with_num_threads(1, 64_000_000).map_err(tv)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tv)?;
        Ok(Bm25 {
            index,
            reader,
            writer,
            chunk_id,
            text,
        })
    }

    /// The store generation recorded with the last commit.
    pub fn generation(&self) -> Option<u64> {
        self.index.load_metas().ok()?.payload?.parse().ok()
    }

    pub fn add(&mut self, chunk_id: u64, text: &str) -> Result<()> {
        self.writer
            .add_document(doc!(self.chunk_id => chunk_id, self.text => text))
            .map_err(tv_err)?;
        Ok(())
    }

    pub fn remove(&mut self, chunk_id: u64) {
        self.writer.delete_term(Term::from_field_u64(self.chunk_id, chunk_id));
    }

    pub fn clear(&mut self) -> Result<()> {
        self.writer.delete_all_documents().map_err(tv_err)?;
        Ok(())
    }

    /// Commits pending changes tagged with the store generation and makes them searchable.
    pub fn commit(&mut self, generation: u64) -> Result<()> {
        let mut prepared = self.writer.prepare_commit().map_err(tv_err)?;
        prepared.set_payload(&generation.to_string());
        prepared.commit().map_err(tv_err)?;
        self.reader.reload().map_err(tv_err)?;
        Ok(())
    }

    pub fn num_docs(&self) -> usize {
        self.reader.searcher().num_docs() as usize
    }

    /// Top `k` chunks for `query` among those `allow` accepts.
    pub fn search(&self, query: &str, k: usize, allow: Option<Arc<HashSet<u64>>>) -> Result<Vec<(u64, f32)>> {
        let mut analyzer = self.index.tokenizers().get(ANALYZER).unwrap_or_else(analyzer);
        let mut stream = analyzer.token_stream(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        while let Some(tok) = stream.next() {
            let term = Term::from_field_text(self.text, &tok.text);
            clauses.push((
                Occur::Should,
                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
            ));
        }
        if clauses.is_empty() || k == 0 {
            return Ok(vec![]);
        }
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = match allow {
            None => searcher
                .search(&q, &TopDocs::with_limit(k).order_by_score())
                .map_err(tv_err)?,
            Some(f) => {
                let c = FilterCollector::new(
                    "chunk_id".to_string(),
                    move |id: u64| f.contains(&id),
                    TopDocs::with_limit(k).order_by_score(),
                );
                searcher.search(&q, &c).map_err(tv_err)?
            }
        };
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr).map_err(tv_err)?;
            if let Some(id) = d.get_first(self.chunk_id).and_then(|v| v.as_u64()) {
                out.push((id, score));
            }
        }
        Ok(out)
    }
}
