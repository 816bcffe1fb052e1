//! The local GGUF chat model (SmolLM2-135M-Instruct from scripts/setup.sh) end to end: tokenizer
//! and template from the file, greedy and sampled generation, streaming, stop strings, limits and
//! damaged files.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use quarry_core::{FinishReason, LanguageModel, Message, Sampling, TokenCounter};
use quarry_models::{resolve_gguf, LocalModel, LocalOptions};

fn model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = resolve_gguf("SmolLM2-135M-Instruct", None)
            .unwrap_or_else(|e| panic!("the local model test needs scripts/setup.sh to have run: {e}"));
        LocalModel::load(&path, &LocalOptions::default()).unwrap()
    })
}

fn greedy(max_tokens: usize) -> Sampling {
    Sampling {
        temperature: 0.0,
        max_tokens,
        ..Sampling::default()
    }
}

#[test]
fn reads_the_window_tokenizer_and_chat_template_from_the_file() {
    let m = model();
    assert_eq!(m.context_window(), 8192);
    let msgs = [Message::system("Be brief."), Message::user("Hello")];
    let ids = m.encode_chat(&msgs).unwrap();
    // ChatML control tokens become single ids: <|im_start|> = 1, <|im_end|> = 2.
    assert_eq!(ids[0], 1);
    assert_eq!(
        ids.iter().filter(|&&t| t == 1).count(),
        3,
        "system, user and the assistant header"
    );
    assert_eq!(ids.iter().filter(|&&t| t == 2).count(), 2);
    assert_eq!(m.prompt_tokens(&msgs).unwrap(), ids.len());
    // Digits are split one by one by this vocabulary's pre-tokenizer.
    assert_eq!(m.count_tokens("2026"), 4);
    assert!(m.count_tokens("The capital of France is Paris.") < 10);
}

#[test]
fn greedy_answers_stream_in_order_and_repeat_exactly() {
    let m = model();
    let msgs = [Message::user("What is the capital of France? Answer in one word.")];
    let mut pieces = Vec::new();
    let a = m
        .chat(&msgs, &greedy(24), &mut |p| {
            pieces.push(p.to_string());
            true
        })
        .unwrap();
    assert!(a.text.contains("Paris"), "{:?}", a.text);
    assert!(pieces.len() > 1 || a.usage.completion_tokens <= 2);
    assert_eq!(pieces.concat(), a.text);
    assert_eq!(a.usage.prompt_tokens, m.prompt_tokens(&msgs).unwrap());
    assert!(a.first_token_ms.unwrap() <= a.total_ms);
    // The second run reuses the cached prompt and must produce the same tokens.
    let b = m.chat(&msgs, &greedy(24), &mut |_| true).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.usage, b.usage);
}

#[test]
fn sampling_is_reproducible_per_seed_and_limits_hold() {
    let m = model();
    let msgs = [Message::user("Write a sentence about the sea.")];
    let hot = |seed| Sampling {
        temperature: 0.9,
        top_p: 0.95,
        seed,
        max_tokens: 12,
        ..Sampling::default()
    };
    let a = m.chat(&msgs, &hot(1), &mut |_| true).unwrap();
    let b = m.chat(&msgs, &hot(1), &mut |_| true).unwrap();
    assert_eq!(a.text, b.text);
    assert!(a.usage.completion_tokens <= 12);
    if a.usage.completion_tokens == 12 {
        assert_eq!(a.finish, FinishReason::Length);
    }

    // A stop string ends the answer and is not part of it.
    let count = [Message::user("Count from 1 to 20, separated by commas.")];
    let full = m.chat(&count, &greedy(40), &mut |_| true).unwrap();
    assert!(full.text.contains('5'), "{:?}", full.text);
    let stopped = m
        .chat(
            &count,
            &Sampling {
                stop: vec!["5".into()],
                ..greedy(40)
            },
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(stopped.finish, FinishReason::Stop);
    assert!(!stopped.text.contains('5'));
    assert!(
        full.text.starts_with(&stopped.text),
        "{:?} vs {:?}",
        stopped.text,
        full.text
    );

    // The callback can stop generation.
    let mut seen = 0;
    let c = m
        .chat(&count, &greedy(40), &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!(c.finish, FinishReason::Cancelled);
    assert_eq!(seen, 3);
}

#[test]
fn a_prompt_larger_than_the_window_is_refused() {
    let path = resolve_gguf("SmolLM2-135M-Instruct", None).unwrap();
    let small = LocalModel::load(
        &path,
        &LocalOptions {
            context_window: Some(64),
            threads: Some(1),
        },
    )
    .unwrap();
    assert_eq!(small.context_window(), 64);
    let long = "word ".repeat(100);
    let e = small
        .chat(&[Message::user(long)], &greedy(8), &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the prompt is") && e.contains("64"), "{e}");
}

#[test]
fn damaged_or_missing_files_give_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = resolve_gguf("SmolLM2-135M-Instruct", None).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("cut.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = LocalModel::load(&truncated, &LocalOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all").unwrap();
    let e = LocalModel::load(&garbage, &LocalOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("garbage.gguf") && e.contains("not a GGUF"), "{e}");

    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..4096]).unwrap();
    let e = LocalModel::load(&header_only, &LocalOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("header.gguf"), "{e}");

    let e = resolve_gguf(&dir.path().join("missing.gguf").display().to_string(), Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.gguf") && e.contains("not found"), "{e}");
}
