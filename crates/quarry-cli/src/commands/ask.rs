use anyhow::Result;
use quarry_core::Generator;
use quarry_generate::ExtractiveGenerator;
use quarry_retrieve::SearchRequest;
use std::process::ExitCode;

use crate::args::QueryOpts;
use crate::commands::search::{retriever, snippet};
use crate::settings::{Query, Settings};

pub fn run(settings: &Settings, question: &str, opts: &QueryOpts, json: bool) -> Result<ExitCode> {
    let q = Query::from_opts(opts, &settings.config)?;
    let (retriever, embedder) = retriever(settings)?;
    let hits = retriever.search(&SearchRequest {
        query: question,
        mode: q.mode,
        top_k: q.top_k,
        filter: q.filter.as_ref(),
        per_document: false,
    })?;
    let passages = retriever.passages(&hits)?;
    let generator = ExtractiveGenerator::new(embedder);
    let answer = generator.answer(question, &passages)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}\n", answer.answer);
        for c in &answer.citations {
            let name = if c.doc_id == c.source {
                c.source.clone()
            } else {
                format!("{} ({})", c.doc_id, c.source)
            };
            let at = c.page.map(|p| format!("p. {p}, ")).unwrap_or_default();
            println!("[{}] {name}, {at}characters {}..{}", c.n, c.start, c.end);
            println!("    {}", snippet(&c.text, 160));
        }
    }
    Ok(ExitCode::SUCCESS)
}
