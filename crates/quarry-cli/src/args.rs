//! Raw command-line arguments, as typed. Validation and defaults from the config file happen in
//! `settings.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use quarry_core::SearchMode;

#[derive(Debug, Parser)]
#[command(
    name = "quarry",
    version,
    about = "Question answering over your documents, with citations"
)]
pub struct Cli {
    /// Data directory holding the index (env QUARRY_DATA_DIR).
    #[arg(long, global = true, env = "QUARRY_DATA_DIR", default_value = ".quarry")]
    pub data_dir: PathBuf,
    /// Configuration file (default: ./quarry.toml, else DATA_DIR/quarry.toml, else built-in defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Where the index lives, overriding `store` in the config: a postgres:// URL for PostgreSQL +
    /// pgvector (`?schema=NAME` picks the schema, default quarry), else the data directory (env QUARRY_STORE).
    #[arg(long, global = true, env = "QUARRY_STORE")]
    pub store: Option<String>,
    /// Embedding model, overriding `model.embedder` in the config: a model directory (e.g. one written by
    /// `quarry tune embedder`), a cached model name, or a Hugging Face name (env QUARRY_EMBEDDER).
    #[arg(long, global = true, env = "QUARRY_EMBEDDER")]
    pub embedder: Option<String>,
    /// Cross-encoder reranker for search, ask and eval, overriding `model.reranker` in the config: a directory
    /// written by `quarry tune reranker`, or "none" (env QUARRY_RERANKER).
    #[arg(long, global = true, env = "QUARRY_RERANKER")]
    pub reranker: Option<String>,
    /// First-stage candidates the reranker rescores (overrides `model.rerank_top_n`).
    #[arg(long, global = true)]
    pub rerank_top_n: Option<usize>,
    /// LoRA adapter for the local generator, overriding `generator.adapter` in the config: a directory written
    /// by `quarry tune generator` (or by PEFT), or "none" (env QUARRY_ADAPTER).
    #[arg(long, global = true, env = "QUARRY_ADAPTER")]
    pub adapter: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add or update files and folders (PDF, DOCX, HTML, Markdown, text, CSV/TSV, JSON/JSONL, SQL dumps,
    /// SQLite databases); folders are mirrored.
    Ingest(IngestArgs),
    /// Make the index follow a folder: ingest what is new or changed, remove what was deleted, and report
    /// added/changed/removed/unchanged counts.
    Sync(IngestArgs),
    /// Sync a folder, then follow it: changes are applied within seconds until interrupted.
    Watch {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        rows: RowOpts,
        /// Wait this long after the last change before applying a batch (milliseconds).
        #[arg(long, default_value_t = 500)]
        debounce_ms: u64,
    },
    /// Print the text Quarry reads from files (which loader, title, metadata, text), without indexing.
    Extract {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        rows: RowOpts,
    },
    /// Search the index.
    Search(SearchArgs),
    /// Answer a question from the index, citing the sources.
    Ask(AskArgs),
    /// Show what the index holds.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the derived indexes (BM25, HNSW) from the store.
    Rebuild,
    /// Evaluate retrieval on a dataset.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Serve the HTTP API (search, ask, documents, ingest, OpenAI-compatible /v1) over the data directory.
    Serve(ServeArgs),
    /// Create, list and revoke the API keys `serve` accepts.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Fine-tune models on labelled (or synthetic) data.
    #[command(subcommand)]
    Tune(TuneCommand),
}

#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// Contrastive training of the embedding model from (query, relevant document) pairs, with in-batch
    /// and mined hard negatives; writes a model directory that `--embedder DIR` uses.
    Embedder(TuneEmbedderArgs),
    /// Train a cross-encoder reranker (initialised from a BERT model such as the embedder) on the same
    /// kinds of data, with mined hard negatives; use it with `--reranker DIR`.
    Reranker(TuneRerankerArgs),
    /// Train a LoRA adapter for the local GGUF generator from chat examples (JSONL of {"messages": [...]}),
    /// to teach an answer format, tone or vocabulary; use it with `--adapter DIR`.
    Generator(TuneGeneratorArgs),
    /// Write chat training examples for `tune generator` from an eval set: each question's prompt is built
    /// by the real RAG pipeline (retrieval, context assembly, the configured prompt) and the reply from its
    /// gold answer.
    GeneratorData(GeneratorDataArgs),
    /// The model registry: every trained version, its data, settings and validation, and which is current.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make a registered version current (e.g. roll back).
    Promote { id: String },
}

/// Where a trained model goes and whether it may replace the current one.
#[derive(Debug, Args)]
pub struct OutputFlags {
    /// Model folder (default: the next version in DATA_DIR/models).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Make the new version current only if it beats the current one (or the base model) on the held-out
    /// queries, by a paired randomization test at this level.
    #[arg(long)]
    pub promote_if_better: bool,
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
}

/// Hard-negative mining from the corpus index.
#[derive(Debug, Args)]
pub struct MiningFlags {
    /// How to mine hard negatives: bm25, dense (the base model) or none.
    #[arg(long, default_value = "bm25")]
    pub mine: String,
    /// Mine from this many results per query...
    #[arg(long, default_value_t = 30)]
    pub mine_depth: usize,
    /// ...passing over the first ones (often unlabelled positives).
    #[arg(long, default_value_t = 3)]
    pub mine_skip: usize,
    /// Mined distractors per validation query (they make the validation pool harder).
    #[arg(long, default_value_t = 10)]
    pub val_negatives: usize,
}

#[derive(Debug, Args)]
pub struct TuneRerankerArgs {
    #[command(flatten)]
    pub data: TrainingData,
    #[command(flatten)]
    pub train: TrainingFlags,
    #[command(flatten)]
    pub mining: MiningFlags,
    /// The BERT model to start from (default: the configured embedder).
    #[arg(long)]
    pub base: Option<String>,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Hard negatives scored against each positive.
    #[arg(long, default_value_t = 3)]
    pub negatives: usize,
    /// Longest (query, passage) input in tokens.
    #[arg(long, default_value_t = 192)]
    pub max_len: usize,
    /// Learning-rate multiplier of the new scoring head (pooler and classifier) over the encoder's.
    #[arg(long, default_value_t = 20.0)]
    pub head_lr_scale: f64,
}

/// Where training examples come from: one of a BEIR split, an eval set with its corpus, or a pairs file.
#[derive(Debug, Args)]
pub struct TrainingData {
    /// A BEIR-layout folder: its `--split` qrels are the labels.
    #[arg(long, conflicts_with_all = ["evalset", "pairs", "from_log"])]
    pub dataset: Option<PathBuf>,
    /// The server's query log (DATA_DIR/query-log.jsonl): questions whose answers got a thumbs-up, with the
    /// passages they cited as positives (read from this data directory's index) — the data flywheel.
    #[arg(long, conflicts_with_all = ["evalset", "pairs"])]
    pub from_log: Option<PathBuf>,
    #[arg(long, default_value = "train")]
    pub split: String,
    /// An eval set JSONL (questions with gold_doc_ids, e.g. from `quarry eval synth`); needs --corpus.
    #[arg(long, requires = "corpus", conflicts_with = "pairs")]
    pub evalset: Option<PathBuf>,
    /// The corpus.jsonl the eval set's documents are in.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// A JSONL of {"query", "positive", "negatives"?} with inline texts.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Merge examples whose queries are the same text instead of refusing them.
    #[arg(long)]
    pub dedup: bool,
    /// Refuse to train on fewer examples than this.
    #[arg(long, default_value_t = 20)]
    pub min_examples: usize,
    /// Share of the examples held out for validation and early stopping.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
}

#[derive(Debug, Args)]
pub struct TrainingFlags {
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Examples per micro-batch (default: 32 for the embedder and reranker, 4 conversations for adapters).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub accumulate: usize,
    /// Peak learning rate (default: 2e-5 for the embedder and reranker, 2e-4 for adapters).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Share of the steps spent warming up.
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Validate every N steps (0: after each epoch).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Stop after this many validations without improvement.
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    #[arg(long, default_value_t = 25)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after this many steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct TuneGeneratorArgs {
    /// Chat examples: JSONL, one {"messages": [{"role": "system|user|assistant", "content": ...}]} per line.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation conversations (default: --val-fraction of --data held out).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Refuse to train on fewer conversations than this.
    #[arg(long, default_value_t = 20)]
    pub min_examples: usize,
    #[command(flatten)]
    pub train: TrainingFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// The GGUF model to adapt (default: generator.model in the config).
    #[arg(long)]
    pub base: Option<String>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Projections to adapt, comma-separated: q, k, v, o, gate, up, down (or their *_proj names).
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    pub modules: String,
    /// Conversations longer than this many tokens are left out (and counted).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
}

#[derive(Debug, Args)]
pub struct GeneratorDataArgs {
    /// The eval set (JSONL; `quarry eval convert` writes one from PubMedQA or BEIR).
    pub evalset: PathBuf,
    /// The corpus its documents are in (indexed once, cached), else the data directory's index.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Only items whose metadata `split` is this (e.g. PubMedQA's dev_or_train; never train on test).
    #[arg(long)]
    pub split: Option<String>,
    /// What the reply is: "decision" (a JSON object with the item's yes/no/maybe decision, a one-sentence
    /// rationale from the gold answer and the numbers of the gold sources) or "answer" (the gold answer
    /// with the gold sources cited).
    #[arg(long, default_value = "decision")]
    pub target: String,
    /// Passages retrieved per question.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct TuneEmbedderArgs {
    #[command(flatten)]
    pub data: TrainingData,
    #[command(flatten)]
    pub train: TrainingFlags,
    /// The model to start from (default: the configured embedder).
    #[arg(long)]
    pub base: Option<String>,
    #[command(flatten)]
    pub output: OutputFlags,
    #[command(flatten)]
    pub mining: MiningFlags,
    /// Hard negatives per training pair (mined from the corpus index; 0: in-batch negatives only).
    #[arg(long, default_value_t = 1)]
    pub hard_negatives: usize,
    #[arg(long, default_value_t = 48)]
    pub max_query_len: usize,
    #[arg(long, default_value_t = 256)]
    pub max_passage_len: usize,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Accept every request as an unrestricted admin, without API keys (a loopback demo only).
    #[arg(long)]
    pub no_auth: bool,
    /// Largest request body, uploads included (MiB).
    #[arg(long, default_value_t = 32)]
    pub max_body_mb: usize,
    /// Searches, answers and embeddings running or waiting at once; more get 503.
    #[arg(long, default_value_t = 64)]
    pub max_inflight: usize,
    /// Ingest jobs waiting behind the running one; more get 503.
    #[arg(long, default_value_t = 16)]
    pub ingest_queue: usize,
    /// Longest a search, answer or embedding may take (seconds); then 504.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Requests per minute per API key (0: unlimited); more get 429.
    #[arg(long, default_value_t = 0)]
    pub rate_per_minute: u32,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its salted hash is stored.
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Comma-separated: read, ingest, eval, admin.
        #[arg(long, value_delimiter = ',', default_value = "read")]
        scopes: Vec<String>,
        /// The tenant whose documents the key reads and writes (required unless the key is admin).
        #[arg(long)]
        tenant: Option<String>,
        /// Comma-separated groups: the key also reads the tenant's documents restricted to these.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; a running server refuses it from its next request on.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    pub query: String,
    #[command(flatten)]
    pub opts: QueryOpts,
    /// Return one hit per document.
    #[arg(long)]
    pub per_document: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    pub question: String,
    #[command(flatten)]
    pub opts: QueryOpts,
    /// extractive (no model), local (GGUF, in-process) or openai (any OpenAI-compatible server);
    /// default from config: generator.kind.
    #[arg(long, value_parser = ["extractive", "local", "openai"])]
    pub generator: Option<String>,
    /// Local: a .gguf file or a cached model name. OpenAI: the model name sent to the server.
    #[arg(long)]
    pub model: Option<String>,
    /// OpenAI-compatible server, up to and including /v1.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Most answer tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Print the answer as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// Answer, citations, per-sentence verification, token usage and per-stage timings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueryOpts {
    /// bm25, dense or hybrid (default from config: hybrid).
    #[arg(long)]
    pub mode: Option<SearchMode>,
    #[arg(long)]
    pub top_k: Option<usize>,
    /// KEY=VALUE, KEY!=VALUE, KEY=A|B, KEY>=N, KEY<N, KEY=A..B; repeat to AND them.
    #[arg(long = "filter", value_name = "EXPR")]
    pub filters: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Retrieval quality on a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).
    Retrieval {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "test")]
        split: String,
        /// Take the queries and gold documents from this eval set (e.g. a synthetic one) instead of the split.
        #[arg(long)]
        evalset: Option<PathBuf>,
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// Documents retrieved per query.
        #[arg(long, default_value_t = 100)]
        depth: usize,
        /// Measures to report, e.g. "ndcg@10,recall@100,mrr@10,map,hit@5,judged@10" (default: a standard set).
        #[arg(long)]
        measures: Option<String>,
        /// Write the report (means, per-query values, timings) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a TREC run file here.
        #[arg(long)]
        run: Option<PathBuf>,
        /// Write a self-contained HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Score a TREC run file against qrels (TREC or BEIR format), per query and on average.
    Run {
        run: PathBuf,
        #[arg(long)]
        qrels: PathBuf,
        #[arg(long)]
        measures: Option<String>,
        /// A corpus (BEIR corpus.jsonl) whose ids the qrels and run should name: unknown ids are counted.
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Print every query's values too.
        #[arg(long)]
        per_query: bool,
        /// Write a self-contained HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Compare two systems on the same queries: paired bootstrap confidence intervals, a randomization test,
    /// wins/losses and the queries that changed most. Inputs are TREC run files (scored with --qrels) or the
    /// JSON reports of `quarry eval retrieval` / `quarry eval answers`.
    Compare {
        /// The baseline.
        a: PathBuf,
        /// The candidate.
        b: PathBuf,
        /// Qrels for run files.
        #[arg(long)]
        qrels: Option<PathBuf>,
        #[arg(long)]
        measures: Option<String>,
        /// Fail (exit code 1) when a gate on B − A holds, e.g. "ndcg@10<-0.01"; repeatable.
        #[arg(long = "fail-if", value_name = "GATE")]
        fail_if: Vec<String>,
        /// Queries listed as changing most.
        #[arg(long, default_value_t = 10)]
        top_changed: usize,
        #[arg(long, default_value_t = 10_000)]
        bootstrap: usize,
        #[arg(long, default_value_t = 10_000)]
        permutations: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a Markdown summary here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write a self-contained HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Answer quality on an eval set: retrieve, answer, then score with exact match / token F1 / ROUGE-L /
    /// embedding similarity against gold answers, gold-document recall, Quarry's citation verifier, and (with
    /// --judge) the RAGAS metrics: faithfulness, answer relevance, context precision, context recall and answer
    /// correctness. Judge outputs are cached in DATA_DIR/judge-cache.jsonl, so a re-run costs nothing.
    Answers {
        /// An eval set (JSONL: id, question, gold_answer, gold_doc_ids, metadata).
        evalset: PathBuf,
        /// Index this corpus (BEIR corpus.jsonl or any file Quarry ingests) into DATA_DIR/eval-cache and answer
        /// from it, instead of from the data directory's index.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Items to evaluate (default: all).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// Passages retrieved and given to the generator.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// extractive, local or openai (default from config: generator.kind).
        #[arg(long, value_parser = ["extractive", "local", "openai"])]
        generator: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        base_url: Option<String>,
        /// Most answer tokens.
        #[arg(long)]
        max_tokens: Option<usize>,
        /// The judge for the RAGAS metrics: local or openai (default: none, only the cheap metrics).
        #[arg(long, value_parser = ["local", "openai"])]
        judge: Option<String>,
        #[arg(long)]
        judge_model: Option<String>,
        #[arg(long)]
        judge_base_url: Option<String>,
        /// Where the answer's statements come from: the judge (as ragas does) or the answer's sentences.
        #[arg(long, value_parser = ["judge", "sentences"], default_value = "judge")]
        statements: String,
        /// Judged metrics to compute (default: all five), e.g. "faithfulness,context_recall".
        #[arg(long)]
        metrics: Option<String>,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        markdown: Option<PathBuf>,
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Write a synthetic eval set from a corpus: a language model writes one question per sampled chunk, the
    /// questions are filtered (length, standalone, grounded, not copied, not duplicated; with --judge, answerable),
    /// and the chunk's document is the gold.
    Synth {
        /// Sample from this corpus file's cached index (as `eval answers --corpus`) instead of the data directory.
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        questions: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Chunks shorter than this many tokens are not sampled.
        #[arg(long, default_value_t = 40)]
        min_tokens: usize,
        /// The question writer: local or openai (default from config: generator.kind, which must not be extractive).
        #[arg(long, value_parser = ["local", "openai"])]
        generator: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        base_url: Option<String>,
        /// Also ask a judge whether the chunk answers each question: local or openai.
        #[arg(long, value_parser = ["local", "openai"])]
        judge: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a grid of settings on a BEIR split in one command: chunk size × overlap (one index each, reusing
    /// the embeddings of chunks that did not change) × mode × fusion (RRF k, dense weight) × candidates. Prints
    /// every setting with a bootstrap confidence interval, and the best one against the runner-up.
    /// Choose settings on a training split, then report the test split once.
    Sweep {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
        /// Chunk sizes in tokens (default: the configured one).
        #[arg(long, value_delimiter = ',')]
        chunk_tokens: Vec<usize>,
        /// Chunk overlaps in tokens (default: the configured one).
        #[arg(long, value_delimiter = ',')]
        overlap: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "bm25,dense,hybrid")]
        mode: Vec<SearchMode>,
        /// Hybrid with reciprocal rank fusion at these k.
        #[arg(long, value_delimiter = ',')]
        rrf_k: Vec<f32>,
        /// Hybrid with weighted fusion at these dense weights.
        #[arg(long, value_delimiter = ',')]
        dense_weight: Vec<f32>,
        /// Candidates taken from each of BM25 and dense before fusion (default: the configured number).
        #[arg(long, value_delimiter = ',')]
        candidates: Vec<usize>,
        #[arg(long, default_value_t = 100)]
        depth: usize,
        /// The measure that picks the best setting.
        #[arg(long, default_value = "ndcg@10")]
        measure: String,
        /// Use only the first N judged queries.
        #[arg(long)]
        limit: Option<usize>,
        /// Take the queries and gold documents from this eval set (e.g. a synthetic one) instead of the split.
        #[arg(long)]
        evalset: Option<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Do two sweeps (e.g. on real judgements and on a synthetic set) rank the same settings in the same order?
    /// Prints Kendall's tau-b over the settings both contain.
    RankAgreement { a: PathBuf, b: PathBuf },
    /// Agreement of faithfulness verdicts with hand labels: Quarry's verifier (recorded in the labels file) and,
    /// with --judge, an LLM judge (cached): accuracy, Cohen's kappa and the confusion counts.
    Agreement {
        /// JSONL of {id, question, statement, contexts, label, verifier, judge}.
        labels: PathBuf,
        #[arg(long, value_parser = ["local", "openai"])]
        judge: Option<String>,
        #[arg(long)]
        judge_model: Option<String>,
        #[arg(long)]
        judge_base_url: Option<String>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Convert a dataset into an eval set (JSONL).
    Convert {
        /// pubmedqa (shared/datasets/pubmedqa-pqal/qa.jsonl) or beir (a BEIR folder; needs --split).
        #[arg(value_parser = ["pubmedqa", "beir"])]
        from: String,
        input: PathBuf,
        /// pubmedqa: test or dev_or_train (default: all); beir: the qrels split (default: test).
        #[arg(long)]
        split: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

/// How files become documents: row templates for tables (CSV/TSV, JSON records, SQL dumps, SQLite), and
/// near-duplicate handling.
#[derive(Debug, Args, Clone, Default)]
pub struct RowOpts {
    /// Document text for each row, with `{column}` placeholders (default: a `column: value` line per column).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Document title for each row, with `{column}` placeholders (default: table and row number).
    #[arg(long, value_name = "TEMPLATE")]
    pub title_template: Option<String>,
    /// Index near-duplicate documents too (by default a document whose text nearly equals an indexed
    /// one is reported and skipped).
    #[arg(long)]
    pub keep_duplicates: bool,
}

impl RowOpts {
    pub fn load_options(&self) -> quarry_ingest::LoadOptions {
        quarry_ingest::LoadOptions {
            rows: quarry_ingest::RowTemplate {
                text: self.template.clone(),
                title: self.title_template.clone(),
            },
        }
    }
}

/// How `ingest`/`sync` crawl a URL.
#[derive(Debug, Args, Clone)]
pub struct CrawlOpts {
    /// Link hops followed from the start page.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    /// Pages fetched at most.
    #[arg(long, default_value_t = 100)]
    pub max_pages: usize,
    /// Follow links to other sites too (default: the start URL's site only).
    #[arg(long)]
    pub all_sites: bool,
    /// Only fetch URLs matching this pattern (`*` matches anything); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Never fetch URLs matching this pattern; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Least milliseconds between requests to one site (robots.txt Crawl-delay can raise it).
    #[arg(long, default_value_t = 500)]
    pub delay_ms: u64,
}

impl CrawlOpts {
    pub fn options(&self) -> quarry_ingest::crawl::CrawlOptions {
        quarry_ingest::crawl::CrawlOptions {
            max_depth: self.depth,
            max_pages: self.max_pages,
            same_site: !self.all_sites,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            delay: std::time::Duration::from_millis(self.delay_ms),
            ..Default::default()
        }
    }
}

/// A live database query as a source.
#[derive(Debug, Args, Clone)]
pub struct QueryArgs {
    /// Ingest the rows of this SQL query (one document per row); needs --from.
    #[arg(long, requires = "from", value_name = "SELECT ...")]
    pub sql: Option<String>,
    /// The database to query: postgres://user[:password]@host:port/db (env QUARRY_SQL_FROM).
    #[arg(long, env = "QUARRY_SQL_FROM", value_name = "URL")]
    pub from: Option<String>,
    /// Column that identifies a row (its primary key), so ids survive reordering.
    #[arg(long, requires = "sql", value_name = "COLUMN")]
    pub key: Option<String>,
    /// Table name for metadata and ids (default: the first table after FROM).
    #[arg(long, requires = "sql", value_name = "NAME")]
    pub table: Option<String>,
}

/// What `ingest` and `sync` read, and how.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, folders, or http(s) URLs to crawl.
    #[arg(required_unless_present = "sql")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub query: QueryArgs,
    #[command(flatten)]
    pub rows: RowOpts,
    #[command(flatten)]
    pub crawl: CrawlOpts,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}
