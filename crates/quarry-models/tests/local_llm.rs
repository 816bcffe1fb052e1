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
            adapter: None,
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

/// A prompt run in one batch, in uneven batches and token by token gives the same logits, bit for
/// bit: every kernel computes a token's values with the same operations whatever batch it is in.
#[test]
fn prompt_logits_equal_token_by_token_logits() {
    use quarry_models::llm::{gguf::Gguf, llama::Llama};
    let path = resolve_gguf("SmolLM2-135M-Instruct", None).unwrap();
    let llama = Llama::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let msgs = [
        Message::system("Answer using only the numbered sources."),
        Message::user("[1] Scurvy is caused by a lack of vitamin C.\n\nQuestion: What causes scurvy?"),
    ];
    let ids = model().encode_chat(&msgs).unwrap();
    assert!(ids.len() > 30);
    let run = |splits: &[usize]| {
        let mut cache = llama.new_cache();
        let mut logits = Vec::new();
        let mut from = 0;
        for &to in splits.iter().chain([ids.len()].iter()) {
            llama.forward(&ids[from..to], &mut cache, &mut logits);
            from = to;
        }
        logits
    };
    let whole = run(&[]);
    assert_eq!(whole.len(), 49152);
    assert!(whole.iter().all(|l| l.is_finite()));
    assert_eq!(whole, run(&[1, 6, 7, 19]), "uneven batches");
    let single: Vec<usize> = (1..ids.len()).collect();
    assert_eq!(whole, run(&single), "token by token");
}

/// The second of two prompts sharing a long prefix reuses the cached prefix and answers exactly as
/// it does from a fresh cache, also while other threads use the same model.
#[test]
fn a_reused_prompt_prefix_gives_the_same_answers_as_a_fresh_cache() {
    let m = model();
    let context = "[1] The lighthouse at Skerry Point was built in 1851 and automated in 1987. ".repeat(8);
    let ask = |q: &str| {
        [
            Message::system("Answer using only the numbered sources."),
            Message::user(format!("{context}\n\nQuestion: {q}")),
        ]
    };
    let (a, b) = (ask("When was it built?"), ask("When was it automated?"));
    let fresh = |msgs: &[Message]| {
        let path = resolve_gguf("SmolLM2-135M-Instruct", None).unwrap();
        let own = LocalModel::load(&path, &LocalOptions::default()).unwrap();
        own.chat(msgs, &greedy(20), &mut |_| true).unwrap()
    };
    let (fa, fb) = (fresh(&a), fresh(&b));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for msgs in [&a, &b, &a, &b] {
                    let got = m.chat(msgs, &greedy(20), &mut |_| true).unwrap();
                    let want = if std::ptr::eq(msgs, &a) { &fa } else { &fb };
                    assert_eq!(got.text, want.text);
                    assert_eq!(got.usage, want.usage);
                }
            });
        }
    });
}

/// Greedy answers without a repeat penalty against llama.cpp on the same GGUF (llama-cpp-python 0.3.36,
/// `create_chat_completion(temperature=0, top_k=1, repeat_penalty=1.0, max_tokens=24)`, run here on
/// 2026-12-03). The first answer is identical; in the second, llama.cpp continues "…fundamental and
/// fundamental color, …": after ten tokens the two pick different near-tied tokens (llama.cpp keeps
/// its KV cache in f16 and sums in another order). The full Quarry text is pinned as a regression
/// check of the kernels.
#[test]
fn greedy_answers_match_llama_cpp() {
    let m = model();
    let plain = Sampling {
        repeat_penalty: 1.0,
        ..greedy(24)
    };
    let ask = |q: &str| m.chat(&[Message::user(q)], &plain, &mut |_| true).unwrap().text;
    assert_eq!(
        ask("What is the capital of France? Answer in one word."),
        "The capital of France is Paris."
    );
    let colours = ask("Name three primary colours.");
    assert!(
        colours.starts_with("The primary colours are:\n\nRed is the most fundamental"),
        "{colours:?}"
    );
    assert_eq!(
        colours,
        "The primary colours are:\n\nRed is the most fundamental colour and is often associated with fire and \
         blood.\nBlue"
    );
}
