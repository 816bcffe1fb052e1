//! Validated settings: the config file merged with command-line overrides.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use quarry_core::{Config, Embedder, Filter, Index};
use quarry_index::StoreLocation;
use quarry_models::{resolve_model_dir, CrossEncoder, SentenceEmbedder};
use quarry_retrieve::Retriever;

use crate::args::{Cli, QueryOpts};

pub struct Settings {
    pub data_dir: PathBuf,
    pub config: Config,
    /// Where the index in use lives: the active generation of `base_store` (see `generation`).
    pub store: StoreLocation,
    /// The backend and where it lives: `--store`, else `store` in the config, else the data directory.
    pub base_store: StoreLocation,
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Result<Self> {
        let path = match &cli.config {
            Some(p) => Some(p.clone()),
            None => [PathBuf::from("quarry.toml"), cli.data_dir.join("quarry.toml")]
                .into_iter()
                .find(|p| p.is_file()),
        };
        let config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
                toml::from_str::<Config>(&text).with_context(|| format!("{}: invalid configuration", p.display()))?
            }
            None => Config::default(),
        };
        let mut config = config;
        let base_store = StoreLocation::resolve(cli.store.as_deref().or(config.store.as_deref()), &cli.data_dir);
        // After an embedder promotion, the active generation's index and the embedder that built it.
        let generation = crate::generation::active(&cli.data_dir, &base_store)?;
        if let Some(g) = &generation {
            config.model.embedder = crate::generation::embedder_path(&cli.data_dir, g).display().to_string();
        }
        if let Some(e) = &cli.embedder {
            config.model.embedder = e.clone();
        }
        if let Some(r) = &cli.reranker {
            config.model.reranker = Some(if r.is_empty() { "none".to_string() } else { r.clone() });
        }
        if let Some(n) = cli.rerank_top_n {
            config.model.rerank_top_n = n;
        }
        if let Some(a) = &cli.adapter {
            config.generator.adapter = Some(if a.is_empty() { "none".to_string() } else { a.clone() });
        }
        config.validate()?;
        let store = match &generation {
            Some(g) => base_store.scoped(&g.scope),
            None => base_store.clone(),
        };
        Ok(Settings {
            data_dir: cli.data_dir.clone(),
            config,
            store,
            base_store,
        })
    }

    pub fn embedder(&self) -> Result<Arc<SentenceEmbedder>> {
        Ok(Arc::new(SentenceEmbedder::from_config(&self.config.model)?))
    }

    /// The configured cross-encoder reranker, else the registry's current one (DATA_DIR/models), if any.
    pub fn reranker(&self) -> Result<Option<Arc<CrossEncoder>>> {
        let promoted = || self.promoted("reranker").map(|v| v.dir.display().to_string());
        let name = match &self.config.model.reranker {
            Some(n) if n == "none" => return Ok(None),
            Some(n) => n.clone(),
            None => match promoted() {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        let cache = self.config.model.cache_dir.as_deref().map(std::path::Path::new);
        let dir = resolve_model_dir(&name, cache)?;
        let model = CrossEncoder::load(&dir, self.config.model.max_seq_len, self.config.model.batch_size)
            .with_context(|| format!("loading the reranker {name}"))?;
        Ok(Some(Arc::new(model)))
    }

    /// The current version of `kind` in the registry (DATA_DIR/models), if there is one.
    pub fn promoted(&self, kind: &str) -> Option<quarry_tune::registry::ModelVersion> {
        if !self.data_dir.join("models").join("registry.json").is_file() {
            return None;
        }
        let reg = quarry_tune::registry::Registry::open(&self.data_dir.join("models")).ok()?;
        reg.current(kind).ok()?
    }

    /// A retriever over `index`, with the configured reranking stage.
    pub fn retriever(&self, index: Arc<dyn Index>, embedder: Arc<dyn Embedder>) -> Result<Retriever> {
        let retriever = Retriever::new(index, embedder, self.config.retrieval.clone());
        Ok(match self.reranker()? {
            Some(r) => retriever.with_reranker(r, self.config.model.rerank_top_n),
            None => retriever,
        })
    }

    /// Opens the configured index (embedded or PostgreSQL).
    pub fn open_index(&self, embedder: Option<&dyn Embedder>) -> Result<Arc<dyn Index>> {
        self.open_at(&self.store, embedder)
    }

    pub fn open_at(&self, store: &StoreLocation, embedder: Option<&dyn Embedder>) -> Result<Arc<dyn Index>> {
        store
            .open(self.config.index.clone(), embedder.map(|e| e.model_id()))
            .with_context(|| format!("opening the index in {}", store.describe()))
    }
}

pub struct Query {
    pub mode: quarry_core::SearchMode,
    pub top_k: usize,
    pub filter: Option<Filter>,
}

impl Query {
    pub fn from_opts(opts: &QueryOpts, config: &Config) -> Result<Self> {
        let filters = opts
            .filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        let top_k = opts.top_k.unwrap_or(config.retrieval.top_k);
        anyhow::ensure!(top_k > 0, "--top-k must be positive");
        Ok(Query {
            mode: opts.mode.unwrap_or(config.retrieval.mode),
            top_k,
            filter: Filter::all(filters),
        })
    }
}
