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
    /// Add or update files and folders (.txt, .md, BEIR-style .jsonl); folders are mirrored.
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search the index.
    Search(SearchArgs),
    /// Answer a question from the index, citing the sources.
    Ask {
        question: String,
        #[command(flatten)]
        opts: QueryOpts,
        #[arg(long)]
        json: bool,
    },
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
