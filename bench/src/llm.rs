//! Answers from the local model: generation speed against llama.cpp on the same GGUF and prompts
//! (`--llm`), and the PubMedQA RAG baselines (`--rag N`): retrieval recall@5 of gold passages,
//! supported answer sentences, citation precision, abstention and per-stage latency.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use quarry_core::{Config, Embedder, Generator, GeneratorConfig, LanguageModel, Message, Sampling, SearchMode};
use quarry_eval::retrieval::percentile;
use quarry_generate::LlmGenerator;
use quarry_index::EmbeddedIndex;
use quarry_ingest::{Ingestor, Silent};
use quarry_models::{LocalModel, SentenceEmbedder};
use quarry_retrieve::{Retriever, SearchRequest};

pub struct Opts {
    pub shared: PathBuf,
    pub python: String,
    pub questions: usize,
    pub max_tokens: usize,
}

struct Question {
    id: String,
    question: String,
}

fn test_questions(shared: &Path, n: usize) -> Result<Vec<Question>> {
    let path = shared.join("datasets/pubmedqa-pqal/qa.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v["split"] == "test" {
            out.push(Question {
                id: v["id"].as_str().unwrap_or_default().to_string(),
                question: v["question"].as_str().unwrap_or_default().to_string(),
            });
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

fn local_model() -> Result<LocalModel> {
    let path = quarry_models::resolve_gguf(&GeneratorConfig::default().model, None)?;
    Ok(LocalModel::load(&path, &Default::default())?)
}

/// (prompt tokens/s, generation tokens/s after the first token, prompt tokens, generated tokens).
fn rates(prompt: usize, generated: usize, first_s: f64, total_s: f64) -> (f64, f64) {
    (
        prompt as f64 / first_s,
        generated.saturating_sub(1) as f64 / (total_s - first_s).max(1e-9),
    )
}

/// Local generation speed, Quarry vs llama.cpp, on the same chat prompts (greedy, fresh cache).
pub fn speed(o: &Opts) -> Result<String> {
    let model = local_model()?;
    let rag = {
        let corpus = std::fs::read_to_string(o.shared.join("datasets/pubmedqa-pqal/corpus.jsonl"))?;
        let sources: Vec<String> = corpus
            .lines()
            .take(5)
            .enumerate()
            .map(|(i, l)| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                format!(
                    "[{}] PubMed {}\n{}",
                    i + 1,
                    v["_id"],
                    v["text"].as_str().unwrap_or_default()
                )
            })
            .collect();
        format!(
            "Sources:\n\n{}\n\nQuestion: Do mitochondria play a role in remodelling lace plant leaves?",
            sources.join("\n\n")
        )
    };
    let prompts = [
        (
            "short prompt, long answer",
            vec![Message::user(
                "Write a long story about a lighthouse keeper and a storm.",
            )],
        ),
        (
            "RAG prompt (5 PubMedQA passages)",
            vec![
                Message::system("Answer using only the numbered sources and cite them as [n]."),
                Message::user(rag.clone()),
            ],
        ),
    ];
    let sampling = Sampling {
        max_tokens: 128,
        ..Sampling::default()
    };
    let tmp = tempfile::tempdir()?;
    let spec: Vec<serde_json::Value> = prompts
        .iter()
        .map(|(_, m)| serde_json::json!({"messages": m, "max_tokens": sampling.max_tokens}))
        .collect();
    let spec_file = tmp.path().join("prompts.json");
    std::fs::write(&spec_file, serde_json::to_string(&spec)?)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let reference = std::process::Command::new(&o.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("llm_reference.py"))
        .arg(model.path())
        .arg(&spec_file)
        .arg(threads.to_string())
        .output();
    let reference: Option<serde_json::Value> = match reference {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout)?),
        Ok(out) => {
            eprintln!("llama.cpp reference failed: {}", String::from_utf8_lossy(&out.stderr));
            None
        }
        Err(e) => {
            eprintln!("llama.cpp reference not run: {e}");
            None
        }
    };
    let mut table = format!(
        "### Local generation speed: SmolLM2-135M-Instruct Q4_1, {threads} threads, greedy, fresh KV cache\n\n\
         llama.cpp = llama-cpp-python {} (built from source here) on the same GGUF and chat messages. \
         Prompt tokens/s = prompt tokens / time to first token; generation tokens/s = tokens after the first / \
         the time after it. Best of 2 runs each.\n\n\
         | prompt | prompt tokens | Quarry prompt tok/s | llama.cpp prompt tok/s | ratio | Quarry gen tok/s | llama.cpp gen tok/s | ratio |\n|---|---|---|---|---|---|---|---|\n",
        reference.as_ref().and_then(|r| r["llama_cpp"].as_str()).unwrap_or("(not run)")
    );
    for (i, (label, messages)) in prompts.iter().enumerate() {
        let mut best = (0f64, 0f64, 0usize);
        for _ in 0..2 {
            model.clear_cache();
            let c = model.chat(messages, &sampling, &mut |_| true)?;
            let first = c.first_token_ms.unwrap_or(c.total_ms) / 1e3;
            let (pp, tg) = rates(
                c.usage.prompt_tokens,
                c.usage.completion_tokens,
                first,
                c.total_ms / 1e3,
            );
            best = (best.0.max(pp), best.1.max(tg), c.usage.prompt_tokens);
        }
        let r = reference.as_ref().map(|r| &r["results"][i]);
        let (rpp, rtg) = match r {
            Some(r) => {
                let first = r["first_token_s"].as_f64().unwrap_or(f64::NAN);
                rates(
                    r["prompt_tokens"].as_u64().unwrap_or(0) as usize,
                    r["generated_tokens"].as_u64().unwrap_or(0) as usize,
                    first,
                    r["total_s"].as_f64().unwrap_or(f64::NAN),
                )
            }
            None => (f64::NAN, f64::NAN),
        };
        table.push_str(&format!(
            "| {label} | {} | {:.0} | {:.0} | {:.2}× | {:.1} | {:.1} | {:.2}× |\n",
            best.2,
            best.0,
            rpp,
            best.0 / rpp,
            best.1,
            rtg,
            best.1 / rtg
        ));
    }
    table.push_str(&prefix_reuse(&model, &rag)?);
    println!("{table}");
    Ok(table)
}

/// Time to the first token of a second RAG prompt that shares the sources (everything but the
/// question) with the previous one: from a fresh cache vs reusing the cached prefix.
fn prefix_reuse(model: &LocalModel, rag: &str) -> Result<String> {
    let ask = |q: &str| {
        let (sources, _) = rag.rsplit_once("Question:").unwrap_or((rag, ""));
        vec![
            Message::system("Answer using only the numbered sources and cite them as [n]."),
            Message::user(format!("{sources}Question: {q}")),
        ]
    };
    let first = ask("Do mitochondria play a role in remodelling lace plant leaves?");
    let second = ask("Which cells of the lace plant leaf die first?");
    let one = Sampling {
        max_tokens: 1,
        ..Sampling::default()
    };
    let (a, b) = (model.encode_chat(&first)?, model.encode_chat(&second)?);
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (mut fresh, mut reused) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..2 {
        model.clear_cache();
        fresh = fresh.min(model.chat(&second, &one, &mut |_| true)?.total_ms);
        model.clear_cache();
        model.chat(&first, &one, &mut |_| true)?;
        reused = reused.min(model.chat(&second, &one, &mut |_| true)?.total_ms);
    }
    Ok(format!(
        "\nPrompt-prefix reuse (Quarry): a second RAG prompt of {} tokens sharing its first {shared} tokens with \
         the previous call; time to the first token from a fresh cache {fresh:.0} ms, reusing the cached prefix \
         {reused:.0} ms ({:.1}× faster). Best of 2.\n",
        b.len(),
        fresh / reused
    ))
}

/// PubMedQA PQA-L: the corpus indexed by Quarry, the first `questions` test questions answered by
/// the local model with hybrid retrieval (top 5).
pub fn pubmedqa(o: &Opts) -> Result<String> {
    let cfg = Config::default();
    let dir = o.shared.join("datasets/pubmedqa-pqal");
    let embedder = Arc::new(SentenceEmbedder::from_config(&cfg.model)?);
    let tmp = tempfile::tempdir()?;
    let index = Arc::new(EmbeddedIndex::open(
        tmp.path(),
        cfg.index.clone(),
        Some(embedder.model_id()),
    )?);
    let summary = Ingestor::new(index.as_ref(), embedder.as_ref(), cfg.chunking.clone())
        .with_dedup(false)
        .ingest_paths(&[dir.join("corpus.jsonl")], &Silent);
    anyhow::ensure!(summary.errors.is_empty(), "indexing errors: {:?}", summary.errors);
    let retriever = Retriever::new(index, embedder.clone() as Arc<dyn Embedder>, cfg.retrieval.clone());
    let gen_cfg = GeneratorConfig {
        sampling: Sampling {
            max_tokens: o.max_tokens,
            ..Sampling::default()
        },
        ..GeneratorConfig::default()
    };
    let model: Arc<dyn LanguageModel> = Arc::new(local_model()?);
    let generator = LlmGenerator::new(model, Some(embedder.clone() as Arc<dyn Embedder>), gen_cfg.clone());
    let questions = test_questions(&o.shared, o.questions)?;
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out_dir)?;
    let mut log = String::new();
    let (mut recall, mut sentences, mut supported, mut cited, mut cited_gold, mut abstained) =
        (0f64, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut with_citation = 0usize;
    let mut stage: [Vec<f64>; 6] = Default::default();
    for (qi, q) in questions.iter().enumerate() {
        let (hits, t) = retriever.search_timed(&SearchRequest {
            query: &q.question,
            mode: SearchMode::Hybrid,
            top_k: 5,
            filter: None,
            per_document: true,
        })?;
        let prefix = format!("{}-", q.id);
        let is_gold = |doc: &str| doc.starts_with(&prefix);
        let gold_total = corpus_gold(&dir, &q.id)?;
        let found: HashSet<&str> = hits.iter().map(|h| h.doc_id.as_str()).filter(|d| is_gold(d)).collect();
        recall += found.len() as f64 / gold_total.max(1) as f64;
        let passages = retriever.passages(&hits)?;
        let a = generator.answer(&q.question, &passages)?;
        sentences += a.sentences.len();
        supported += a.sentences.iter().filter(|s| s.supported).count();
        with_citation += a.sentences.iter().filter(|s| !s.cites.is_empty()).count();
        if a.abstained {
            abstained += 1;
        } else {
            cited += a.citations.len();
            cited_gold += a.citations.iter().filter(|c| is_gold(&c.doc_id)).count();
        }
        let tm = &a.timings;
        for (v, x) in stage.iter_mut().zip([
            Some(t.total_ms),
            tm.assemble_ms,
            tm.first_token_ms,
            tm.generate_ms,
            tm.verify_ms,
            tm.total_ms.map(|x| x + t.total_ms),
        ]) {
            if let Some(x) = x {
                v.push(x);
            }
        }
        log.push_str(&serde_json::to_string(
            &serde_json::json!({"id": q.id, "question": q.question, "answer": a}),
        )?);
        log.push('\n');
        eprintln!(
            "{}/{}: {:.0} ms",
            qi + 1,
            questions.len(),
            stage[5].last().copied().unwrap_or(0.0)
        );
    }
    std::fs::write(out_dir.join("pubmedqa-answers.jsonl"), log)?;
    let n = questions.len().max(1) as f64;
    let pct = |a: usize, b: usize| if b == 0 { f64::NAN } else { 100.0 * a as f64 / b as f64 };
    let mut table = format!(
        "### PubMedQA PQA-L test, first {} of 500 questions: local model (SmolLM2-135M-Instruct Q4_1), hybrid top 5\n\n\
         Corpus: the 3,358 passages of corpus.jsonl indexed by Quarry; answers capped at {} tokens; verifier \
         threshold {}; gold passages = the question's own abstract sections. Answers: bench/out/pubmedqa-answers.jsonl.\n\n\
         | metric | value |\n|---|---|\n\
         | retrieval recall@5 of gold passages | {:.3} |\n\
         | answer sentences marked supported (by a cited source, or by any source when uncited) | {:.1}% ({supported}/{sentences}) |\n\
         | answer sentences carrying a citation | {:.1}% ({with_citation}/{sentences}) |\n\
         | citation precision (cited passage is gold) | {:.1}% ({cited_gold}/{cited}) |\n\
         | abstention rate | {:.1}% ({abstained}/{}) |\n\n\
         | stage | p50 ms | p95 ms |\n|---|---|---|\n",
        questions.len(),
        o.max_tokens,
        gen_cfg.support_threshold,
        recall / n,
        pct(supported, sentences),
        pct(with_citation, sentences),
        pct(cited_gold, cited),
        pct(abstained, questions.len()),
        questions.len()
    );
    for (name, v) in [
        "retrieve",
        "assemble",
        "first token (from assembly start)",
        "generate",
        "verify",
        "total",
    ]
    .iter()
    .zip(&stage)
    {
        table.push_str(&format!(
            "| {name} | {:.0} | {:.0} |\n",
            percentile(v, 0.5),
            percentile(v, 0.95)
        ));
    }
    println!("{table}");
    Ok(table)
}

/// Number of gold passages (corpus ids `<pmid>-<i>`) for a question.
fn corpus_gold(dir: &Path, id: &str) -> Result<usize> {
    use std::sync::OnceLock;
    static COUNTS: OnceLock<std::collections::HashMap<String, usize>> = OnceLock::new();
    if COUNTS.get().is_none() {
        let text = std::fs::read_to_string(dir.join("corpus.jsonl"))?;
        let mut m = std::collections::HashMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if let Some(pmid) = v["_id"]
                .as_str()
                .and_then(|s| s.rsplit_once('-'))
                .map(|(p, _)| p.to_string())
            {
                *m.entry(pmid).or_insert(0) += 1;
            }
        }
        let _ = COUNTS.set(m);
    }
    Ok(COUNTS.get().and_then(|m| m.get(id)).copied().unwrap_or(0))
}
