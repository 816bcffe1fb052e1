//! Streams a local GGUF model's reply: `cargo run --release -p quarry-models --example chat -- [MODEL] "question"`.

use std::io::Write;

use quarry_core::{LanguageModel, Message, Sampling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let question = args.pop().unwrap_or_else(|| "What is the capital of France?".into());
    let name = args.pop().unwrap_or_else(|| "SmolLM2-135M-Instruct".into());
    let model = quarry_models::LocalModel::load(&quarry_models::resolve_gguf(&name, None)?, &Default::default())?;
    let mut out = std::io::stderr();
    let reply = model.chat(&[Message::user(question)], &Sampling::default(), &mut |piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
        true
    })?;
    let gen_ms = reply.total_ms - reply.first_token_ms.unwrap_or(0.0);
    eprintln!(
        "\n[{} prompt + {} generated tokens; first token {:.0} ms ({:.0} prompt tokens/s); {:.1} tokens/s after it; {:?}]",
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
        reply.first_token_ms.unwrap_or(0.0),
        reply.usage.prompt_tokens as f64 / (reply.first_token_ms.unwrap_or(f64::NAN) / 1e3),
        (reply.usage.completion_tokens.saturating_sub(1)) as f64 / (gen_ms / 1e3),
        reply.finish
    );
    Ok(())
}
