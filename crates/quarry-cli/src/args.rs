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
        /// Comma-separated: read, ingest, admin.
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
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// Documents retrieved per query.
        #[arg(long, default_value_t = 100)]
        depth: usize,
        /// Write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a TREC run file here.
        #[arg(long)]
        run: Option<PathBuf>,
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
