//! What every request shares: the engine over the data directory, keys, the query log, ingest jobs,
//! and the limits that keep the server standing under load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quarry_core::{Config, Embedder, Generator};
use quarry_index::EmbeddedIndex;
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::evals::EvalRuns;
use crate::jobs::Jobs;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::querylog::QueryLog;

/// Limits and switches of a running server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Require API keys (the default). Off: every request is an unrestricted admin — for a loopback
    /// demo only.
    pub auth: bool,
    /// Largest request body (uploads included).
    pub max_body_bytes: usize,
    /// Searches, answers and embeddings running or waiting for a thread at once; more get 503.
    pub max_inflight: usize,
    /// Ingest jobs waiting behind the running one; more get 503.
    pub ingest_queue: usize,
    /// Longest a search, answer or embedding request may take before it gets 504.
    pub request_timeout: Duration,
    /// Requests per minute per API key (0: unlimited); more get 429 with Retry-After.
    pub rate_per_minute: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            auth: true,
            max_body_bytes: 32 << 20,
            max_inflight: 64,
            ingest_queue: 16,
            request_timeout: Duration::from_secs(120),
            rate_per_minute: 0,
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub engine: Arc<Engine>,
    pub keys: KeyStore,
    pub log: QueryLog,
    pub jobs: Jobs,
    pub evals: EvalRuns,
    pub opts: ServerOptions,
    pub data_dir: PathBuf,
    pub metrics: Metrics,
    gate: Arc<Semaphore>,
    limiter: RateLimiter,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Opens the index in `data_dir` and loads the configured generator.
    pub fn open(data_dir: &Path, config: Config, embedder: Arc<dyn Embedder>, opts: ServerOptions) -> Result<Self> {
        let cache = config.model.cache_dir.as_deref().map(Path::new);
        let generator: Arc<dyn Generator> = Arc::from(quarry_generate::from_config(
            &config.generator,
            cache,
            embedder.clone(),
        )?);
        AppState::with_generator(data_dir, config, embedder, generator, opts)
    }

    /// Like [`AppState::open`] with a generator built by the caller (tests use scripted models).
    pub fn with_generator(
        data_dir: &Path,
        config: Config,
        embedder: Arc<dyn Embedder>,
        generator: Arc<dyn Generator>,
        opts: ServerOptions,
    ) -> Result<Self> {
        let index = EmbeddedIndex::open(data_dir, config.index.clone(), Some(embedder.model_id()))
            .map_err(|e| Error::Internal(format!("opening the index in {}: {e}", data_dir.display())))?;
        let keys = KeyStore::in_dir(data_dir)?;
        if opts.auth && keys.is_empty()? {
            return Err(Error::BadRequest(format!(
                "no API keys in {}: create one with `quarry keys create`, or serve without keys (--no-auth)",
                data_dir.join("keys.json").display()
            )));
        }
        let engine = Arc::new(Engine::new(Arc::new(index), embedder, generator, config));
        let log = QueryLog::open(&data_dir.join("query-log.jsonl"))?;
        let jobs = Jobs::start(engine.clone(), opts.ingest_queue)?;
        let evals = EvalRuns::start(engine.clone(), &data_dir.join("eval-runs"))?;
        Ok(AppState(Arc::new(Inner {
            engine,
            keys,
            log,
            jobs,
            evals,
            gate: Arc::new(Semaphore::new(opts.max_inflight.max(1))),
            limiter: RateLimiter::new(opts.rate_per_minute),
            opts,
            data_dir: data_dir.to_path_buf(),
            metrics: Metrics::default(),
        })))
    }

    /// Runs `f` on a blocking thread (model and index work never blocks the async runtime), holding one
    /// of `max_inflight` permits: 503 when none is free, 504 past the request timeout.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
    {
        let permit = self.permit()?;
        let engine = self.engine.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&engine)
        });
        match tokio::time::timeout(self.opts.request_timeout, task).await {
            Ok(joined) => joined?,
            Err(_) => Err(Error::Timeout("request")),
        }
    }

    /// One of the `max_inflight` permits, or 503.
    pub fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.gate
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy("all workers busy"))
    }

    /// Counts a request against a key's rate; 429 past it.
    pub fn check_rate(&self, key_id: &str) -> Result<()> {
        self.limiter.check(key_id)
    }

    /// Stops the ingest worker after its current job (see [`Jobs::shutdown`]) and cancels evaluation runs.
    pub fn shutdown(&self) {
        self.evals.shutdown();
        self.jobs.shutdown();
    }
}

/// A token bucket per key: `per_minute` tokens, refilled continuously.
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: &str) -> Result<()> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().map_err(|_| Error::Poisoned)?;
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_sec).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Error::RateLimited {
                retry_after_secs: ((1.0 - *tokens) / per_sec).ceil().max(1.0) as u64,
            })
        }
    }
}
