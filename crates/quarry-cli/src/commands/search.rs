use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Result;
use quarry_core::Embedder;
use quarry_retrieve::{Retriever, SearchRequest};

use crate::args::SearchArgs;
use crate::settings::{Query, Settings};

/// The retriever over the data directory, and the embedder it queries with.
pub fn retriever(settings: &Settings) -> Result<(Retriever, Arc<dyn Embedder>)> {
    let embedder: Arc<dyn Embedder> = settings.embedder()?;
    let index = settings.open_index(Some(embedder.as_ref()))?;
    Ok((settings.retriever(index, embedder.clone())?, embedder))
}

pub fn run(settings: &Settings, args: &SearchArgs) -> Result<ExitCode> {
    let q = Query::from_opts(&args.opts, &settings.config)?;
    let (retriever, _) = retriever(settings)?;
    let req = SearchRequest {
        query: &args.query,
        mode: q.mode,
        top_k: q.top_k,
        filter: q.filter.as_ref(),
        per_document: args.per_document,
    };
    let (hits, timings) = retriever.search_timed(&req)?;
    let passages = retriever.passages(&hits)?;
    if args.json {
        let results: Vec<_> = passages
            .iter()
            .map(|p| {
                serde_json::json!({
                    "rank": p.n, "score": p.score, "doc_id": p.chunk.chunk.doc_id, "chunk_id": p.chunk.id,
                    "source": p.chunk.source, "title": p.chunk.title, "section": p.chunk.chunk.section, "page": p.chunk.chunk.page, "context": p.chunk.chunk.context,
                    "start": p.chunk.chunk.start, "end": p.chunk.chunk.end, "text": p.chunk.chunk.text,
                })
            })
            .collect();
        let out = serde_json::json!({ "query": args.query, "mode": q.mode, "results": results, "timings": timings });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if passages.is_empty() {
            println!("no results");
        }
        for p in &passages {
            let title = p.chunk.title.as_deref().unwrap_or(&p.chunk.chunk.doc_id);
            let at = p.chunk.chunk.locator().map(|l| format!(", {l}")).unwrap_or_default();
            println!("{:>2}. [{:.4}] {} ({}{at})", p.n, p.score, title, p.chunk.source);
            println!("    {}", snippet(&p.chunk.chunk.text, 200));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn snippet(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let cut: String = flat.chars().take(max_chars).collect();
    format!("{}…", cut.trim_end())
}
