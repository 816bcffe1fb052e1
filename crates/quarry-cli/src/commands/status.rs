use std::process::ExitCode;

use anyhow::Result;

use crate::settings::Settings;

pub fn run(settings: &Settings, json: bool) -> Result<ExitCode> {
    let index = settings.open_index(None)?;
    let stats = index.stats()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "data_dir": settings.data_dir, "store": settings.store.describe(), "stats": stats })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("store           {}", settings.store.describe());
    println!("sources         {}", stats.sources);
    println!("documents       {}", stats.documents);
    println!("chunks          {}", stats.chunks);
    println!("model           {}", stats.model_id.as_deref().unwrap_or("(none yet)"));
    println!(
        "dimension       {}",
        stats.dimension.map_or("-".to_string(), |d| d.to_string())
    );
    println!("bm25 entries    {}", stats.lexical_entries);
    println!("vector entries  {}", stats.vector_entries);
    let consistent = stats.lexical_entries == stats.chunks && stats.vector_entries == stats.chunks;
    if !consistent {
        println!("derived indexes disagree with the store: run `quarry rebuild`");
    }
    Ok(if consistent {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn rebuild(settings: &Settings) -> Result<ExitCode> {
    let index = settings.open_index(None)?;
    let start = std::time::Instant::now();
    index.rebuild()?;
    let s = index.stats()?;
    println!(
        "rebuilt BM25 ({} entries) and HNSW ({} vectors) from {} chunks in {:.1}s",
        s.lexical_entries,
        s.vector_entries,
        s.chunks,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
