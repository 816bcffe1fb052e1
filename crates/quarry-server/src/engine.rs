//! The synchronous core behind every route: retrieval under the caller's access filter, answers, and
//! embeddings. Handlers run it on blocking threads; nothing here knows about HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use quarry_core::{Answer, Config, Embedder, Filter, Generator, Index, Passage, SearchMode};
use quarry_retrieve::{Retriever, SearchRequest, SearchTimings};

use crate::access::Caller;
use crate::error::{Error, Result};

/// A retrieval as asked for by a request, before the caller's access filter is added.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub mode: SearchMode,
    pub top_k: usize,
    /// Filters the request asked for (ANDed with the caller's access filter).
    pub filters: Vec<Filter>,
    pub per_document: bool,
}

/// Which generator answers: the configured one, or the extractive one (no model) on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Configured,
    Extractive,
}

#[derive(Debug, Clone)]
pub struct Found {
    pub passages: Vec<Passage>,
    pub timings: SearchTimings,
    /// Served from the result cache.
    pub cached: bool,
}

/// Cached retrievals of one index generation, by request key.
type Cache = (u64, HashMap<String, (Vec<Passage>, SearchTimings)>);

/// Most cached retrievals; past it the cache starts again empty (cheap and bounded).
const CACHE_ENTRIES: usize = 512;

pub struct Engine {
    index: Arc<dyn Index>,
    embedder: Arc<dyn Embedder>,
    retriever: Retriever,
    generator: Arc<dyn Generator>,
    extractive: Arc<dyn Generator>,
    config: Config,
    /// Bumped by every write to the index; cached results of older generations are never served.
    generation: AtomicU64,
    /// Keyed by everything that decides a result, the caller's access filter included, so one caller's
    /// results are never served to a caller with other labels.
    cache: Mutex<Cache>,
}

impl Engine {
    pub fn new(
        index: Arc<dyn Index>,
        embedder: Arc<dyn Embedder>,
        generator: Arc<dyn Generator>,
        config: Config,
    ) -> Engine {
        let retriever = Retriever::new(index.clone(), embedder.clone(), config.retrieval.clone());
        let extractive: Arc<dyn Generator> = Arc::new(quarry_generate::ExtractiveGenerator::new(embedder.clone()));
        Engine {
            index,
            embedder,
            retriever,
            generator,
            extractive,
            config,
            generation: AtomicU64::new(0),
            cache: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn index(&self) -> &Arc<dyn Index> {
        &self.index
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn generator(&self, which: Which) -> &Arc<dyn Generator> {
        match which {
            Which::Configured => &self.generator,
            Which::Extractive => &self.extractive,
        }
    }

    /// Drops every cached result: call after any write to the index.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Retrieves passages the caller may read.
    pub fn search(&self, caller: &Caller, q: &Query) -> Result<Found> {
        if q.text.trim().is_empty() {
            return Err(Error::BadRequest("empty query".into()));
        }
        if q.top_k == 0 || q.top_k > 1000 {
            return Err(Error::BadRequest("top_k must be between 1 and 1000".into()));
        }
        let filter = caller.restrict(q.filters.clone());
        let key = serde_json::to_string(&(&filter, &q.text, q.mode, q.top_k, q.per_document))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((passages, timings)) = self.cached(generation, &key)? {
            return Ok(Found {
                passages,
                timings,
                cached: true,
            });
        }
        let (hits, timings) = self.ranked(filter.as_ref(), q)?;
        let passages = self.retriever.passages(&hits)?;
        let mut cache = self.cache.lock().map_err(|_| Error::Poisoned)?;
        if cache.0 != generation || cache.1.len() >= CACHE_ENTRIES {
            *cache = (generation, HashMap::new());
        }
        cache.1.insert(key, (passages.clone(), timings.clone()));
        Ok(Found {
            passages,
            timings,
            cached: false,
        })
    }

    /// Ranked hits the caller may read, without the result cache (evaluation runs would only churn it).
    pub fn retrieve(&self, caller: &Caller, q: &Query) -> Result<Vec<quarry_core::Hit>> {
        Ok(self.ranked(caller.restrict(q.filters.clone()).as_ref(), q)?.0)
    }

    fn ranked(&self, filter: Option<&Filter>, q: &Query) -> Result<(Vec<quarry_core::Hit>, SearchTimings)> {
        Ok(self.retriever.search_timed(&SearchRequest {
            query: &q.text,
            mode: q.mode,
            top_k: q.top_k,
            filter,
            per_document: q.per_document,
        })?)
    }

    fn cached(&self, generation: u64, key: &str) -> Result<Option<(Vec<Passage>, SearchTimings)>> {
        let cache = self.cache.lock().map_err(|_| Error::Poisoned)?;
        Ok(if cache.0 == generation {
            cache.1.get(key).cloned()
        } else {
            None
        })
    }

    /// Retrieves for `question` and answers from what was found, passing text to `on_text` as it is
    /// generated (return false to stop). Timings cover retrieval through the whole answer.
    pub fn answer(
        &self,
        caller: &Caller,
        q: &Query,
        which: Which,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(Answer, Found)> {
        let started = Instant::now();
        let found = self.search(caller, q)?;
        let generator = self.generator(which);
        let mut answer = generator.answer_streaming(&q.text, &found.passages, on_text)?;
        answer.timings.retrieve_ms = Some(found.timings.total_ms);
        answer.timings.total_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        Ok((answer, found))
    }

    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embedder.embed(texts)?)
    }
}
