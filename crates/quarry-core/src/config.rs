//! The `quarry.toml` schema. Every field has a default, so an empty file (or none) is a valid config.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hit::SearchMode;
use crate::llm::Sampling;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the index lives: a `postgres://` URL selects the PostgreSQL + pgvector backend; unset
    /// (or a directory) is the embedded backend in the data directory.
    pub store: Option<String>,
    pub model: ModelConfig,
    pub chunking: ChunkingConfig,
    pub index: IndexConfig,
    pub retrieval: RetrievalConfig,
    pub generator: GeneratorConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A model name looked up in the model cache (and the Hugging Face cache), or a directory with
    /// `config.json`, `model.safetensors` and `tokenizer.json`.
    pub embedder: String,
    /// Overrides the model cache directory (default: `$QUARRY_CACHE/models`, else `~/.cache/quarry/models`).
    pub cache_dir: Option<String>,
    pub batch_size: usize,
    /// Inputs are truncated to this many tokens (sentence-transformers' `max_seq_length`).
    pub max_seq_len: usize,
    /// A cross-encoder reranker (a directory written by `quarry tune reranker`); none by default.
    pub reranker: Option<String>,
    /// First-stage candidates the reranker rescores.
    pub rerank_top_n: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            embedder: "all-MiniLM-L6-v2".into(),
            cache_dir: None,
            batch_size: 32,
            max_seq_len: 256,
            reranker: None,
            rerank_top_n: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkingConfig {
    /// Largest chunk, in embedding-model tokens (title and headings excluded).
    pub max_tokens: usize,
    /// Tokens repeated between consecutive chunks of one section.
    pub overlap_tokens: usize,
}

impl Default for ChunkingConfig {
    /// Chosen on SciFact *train*: 128/16 gave dense nDCG@10 0.697 and hybrid 0.735, against 0.671 and
    /// 0.728 for 256/32 (bench/RESULTS.md).
    fn default() -> Self {
        ChunkingConfig {
            max_tokens: 128,
            overlap_tokens: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// HNSW: neighbours per node (layer 0 keeps 2·m).
    pub hnsw_m: usize,
    pub hnsw_ef_construction: usize,
    pub hnsw_ef_search: usize,
    /// Below this many matching chunks a filtered vector query scans them exactly instead of
    /// walking the graph (a walk through a sparse filter can miss matches).
    pub exact_search_threshold: usize,
    /// Lexical ranking in the PostgreSQL backend (the embedded index always uses tantivy's BM25).
    pub pg_lexical_ranking: PgLexicalRanking,
}

/// How the PostgreSQL backend ranks lexical matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgLexicalRanking {
    /// BM25 (k1 = 1.2, b = 0.75, as the embedded index) computed in SQL from the chunks' tsvectors,
    /// with document frequencies counted through the GIN index.
    #[default]
    Bm25,
    /// PostgreSQL's `ts_rank_cd(tsv, query, 1)`: cover density, no inverse document frequency.
    TsRankCd,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            hnsw_ef_search: 128,
            exact_search_threshold: 2000,
            pg_lexical_ranking: PgLexicalRanking::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: Σ 1/(k + rank).
    Rrf,
    /// Min-max normalised scores, weighted: w·dense + (1−w)·bm25.
    Weighted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalConfig {
    pub mode: SearchMode,
    pub top_k: usize,
    /// Candidates taken from each of BM25 and dense before fusion.
    pub candidates: usize,
    pub fusion: Fusion,
    pub rrf_k: f32,
    /// Weight of the dense scores in weighted fusion.
    pub dense_weight: f32,
    /// Small-to-big: a matching chunk is handed to the generator as its whole section (or with its
    /// neighbouring chunks when the section is long); passages that expand to the same span merge.
    pub expand_to_parent: bool,
}

impl Default for RetrievalConfig {
    /// Fusion settings chosen on SciFact *train* (809 queries; bench/RESULTS.md has the sweep): with
    /// 128-token chunks, weighted fusion at w = 0.5 gave nDCG@10 0.735 against 0.734 for the best RRF
    /// (k = 10) and 0.728 for RRF k = 60.
    fn default() -> Self {
        RetrievalConfig {
            mode: SearchMode::Hybrid,
            top_k: 10,
            candidates: 100,
            fusion: Fusion::Weighted,
            rrf_k: 60.0,
            dense_weight: 0.5,
            expand_to_parent: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    /// No model: the passages' best-matching sentences, cited.
    Extractive,
    /// A GGUF chat model run in-process.
    Local,
    /// An OpenAI-compatible `/v1/chat/completions` server (OpenAI, llama.cpp server, vLLM, Ollama).
    Openai,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    pub kind: GeneratorKind,
    /// Local: a `.gguf` file, or a name looked up in the model cache and the Hugging Face cache.
    pub model: String,
    /// Local: threads for the model (default: every core).
    pub threads: Option<usize>,
    /// Local: a LoRA adapter directory (PEFT layout, e.g. written by `quarry tune generator`) applied on top
    /// of `model`. Unset: the registry's current generator adapter, if any; "none": no adapter.
    pub adapter: Option<String>,
    /// Overrides the context window the model declares (e.g. to save memory).
    pub context_window: Option<usize>,
    pub sampling: Sampling,
    /// Most tokens of retrieved sources put in the prompt (less when the window is smaller).
    pub max_context_tokens: usize,
    /// Put the best sources first and last, the weakest in the middle ("lost in the middle").
    pub reorder_sources: bool,
    /// Support (0–1) a sentence needs from a cited source to count as supported.
    pub support_threshold: f32,
    pub prompt: PromptConfig,
    pub openai: OpenAiConfig,
    /// Abstain when the best passage's retrieval score is below this (hybrid scores are fused, so
    /// the scale depends on the fusion; 0 turns the check off).
    pub min_retrieval_score: f32,
    /// Abstain when fewer than this share of the answer's sentences are supported by their sources.
    pub min_supported: f32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            kind: GeneratorKind::Extractive,
            model: "SmolLM2-135M-Instruct".into(),
            threads: None,
            adapter: None,
            context_window: None,
            sampling: Sampling::default(),
            max_context_tokens: 2048,
            reorder_sources: true,
            support_threshold: 0.5,
            prompt: PromptConfig::default(),
            openai: OpenAiConfig::default(),
            min_retrieval_score: 0.0,
            min_supported: 0.0,
        }
    }
}

/// The instructions given to the model. `{language}` in `system` is replaced by `language`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    pub system: String,
    /// How the answer should look (appended to the system prompt).
    pub answer_format: String,
    pub language: String,
    /// What the model says when the sources do not hold the answer; also used when Quarry abstains.
    pub abstain_text: String,
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig {
            system: "You answer questions using only the numbered sources you are given. After every sentence, \
                     cite the sources that support it as [1], [2]. If the sources do not contain the answer, \
                     say so. Answer in {language}."
                .into(),
            answer_format: "Answer in two to four sentences.".into(),
            language: "English".into(),
            abstain_text: "The documents do not contain the answer.".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Up to and including `/v1`.
    pub base_url: String,
    /// Model name sent in each request.
    pub model: String,
    /// Environment variable holding the API key (none is sent when it is unset).
    pub api_key_env: String,
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Retries on 429 and 5xx, with exponential backoff (honouring `Retry-After`).
    pub retries: u32,
    /// Context window of the served model (servers do not report it).
    pub context_window: usize,
    /// A `tokenizer.json` for exact token counts; without it counts are estimated conservatively.
    pub tokenizer: Option<String>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "default".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_secs: 120,
            connect_timeout_secs: 10,
            retries: 3,
            context_window: 8192,
            tokenizer: None,
        }
    }
}

impl Config {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.chunking.max_tokens < 8 {
            return bad("chunking.max_tokens must be at least 8");
        }
        if self.chunking.overlap_tokens >= self.chunking.max_tokens / 2 {
            return bad("chunking.overlap_tokens must be less than half of chunking.max_tokens");
        }
        if self.model.batch_size == 0 {
            return bad("model.batch_size must be positive");
        }
        if self.index.hnsw_m < 2 {
            return bad("index.hnsw_m must be at least 2");
        }
        if !(0.0..=1.0).contains(&self.retrieval.dense_weight) {
            return bad("retrieval.dense_weight must be between 0 and 1");
        }
        if self.retrieval.rrf_k < 0.0 {
            return bad("retrieval.rrf_k must not be negative");
        }
        let g = &self.generator;
        if g.sampling.temperature < 0.0 {
            return bad("generator.sampling.temperature must not be negative");
        }
        if !(g.sampling.top_p > 0.0 && g.sampling.top_p <= 1.0) {
            return bad("generator.sampling.top_p must be in (0, 1]");
        }
        if g.sampling.max_tokens == 0 {
            return bad("generator.sampling.max_tokens must be positive");
        }
        if g.sampling.repeat_penalty <= 0.0 {
            return bad("generator.sampling.repeat_penalty must be positive");
        }
        if !(0.0..=1.0).contains(&g.support_threshold) {
            return bad("generator.support_threshold must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&g.min_supported) {
            return bad("generator.min_supported must be between 0 and 1");
        }
        Ok(())
    }
}
