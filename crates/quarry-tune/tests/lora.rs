//! LoRA on the local GGUF model (SmolLM2-135M-Instruct from scripts/setup.sh): the trainer's forward pass
//! and the inference engine agree with an adapter, and the adapter survives the PEFT round trip.

#![allow(clippy::unwrap_used)]

use candle_core::Tensor;
use quarry_models::llm::gguf::Gguf;
use quarry_models::llm::llama::Llama;
use quarry_models::llm::lora::{LoraAdapter, Module};
use quarry_models::resolve_gguf;
use quarry_tune::causal::{CausalLm, LoraSpec};

fn gguf() -> std::path::PathBuf {
    resolve_gguf("SmolLM2-135M-Instruct", None)
        .unwrap_or_else(|e| panic!("this test needs scripts/setup.sh to have run: {e}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap()
}

#[test]
fn trainer_and_engine_agree_on_an_adapter_after_the_peft_round_trip() {
    let path = gguf();
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        modules: Module::ALL.to_vec(),
    };
    let lm = CausalLm::load(&path, spec, 7).unwrap();
    // B starts at zero; give every B (queries and keys too, whose rows GGUF permutes) a large random value
    // so that a wrong row order or a missing module shows in the logits.
    for (i, (name, var)) in lm.named_vars().iter().enumerate() {
        if name.contains("lora_B") {
            let (r, c) = var.as_tensor().dims2().unwrap();
            let v = quarry_tune::encoder::small_normal(r * c, 100 + i as u64, 0.4);
            var.set(&Tensor::from_vec(v, (r, c), &candle_core::Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let tokens: Vec<u32> = vec![
        1, 9690, 198, 2683, 322, 253, 5356, 30, 2, 198, 1, 4093, 198, 57, 1848, 314,
    ];
    let last = tokens.len() - 1;
    let trained = lm
        .logits(&tokens, &[last])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    lm.save_adapter(dir.path()).unwrap();
    let g = Gguf::open(&path).unwrap();
    let mut llama = Llama::from_gguf(&g).unwrap();
    let mut plain = Vec::new();
    llama.forward(&tokens, &mut llama.new_cache(), &mut plain);
    llama.set_adapter(Some(LoraAdapter::load(dir.path(), &llama.cfg).unwrap()));
    let mut adapted = Vec::new();
    llama.forward(&tokens, &mut llama.new_cache(), &mut adapted);

    let agree = cosine(&trained, &adapted);
    eprintln!("agree {agree} moved {}", cosine(&plain, &adapted));
    let moved = cosine(&plain, &adapted);
    assert!(agree > 0.98, "trainer vs engine cosine {agree}");
    assert!(moved < 0.9, "the adapter barely changed the logits: {moved} vs {agree}");
    assert_eq!(argmax(&trained), argmax(&adapted));
}

#[test]
fn an_adapter_trained_on_a_few_conversations_changes_what_the_model_says() {
    use quarry_core::{LanguageModel, Message, Sampling};
    use quarry_models::{LocalModel, LocalOptions};
    use quarry_tune::chat::{tokenize_all, ChatSet, LmObjective};
    use quarry_tune::{train, Silent, TrainOptions};

    let path = gguf();
    let topics = [
        "the moon", "bread", "rivers", "copper", "owls", "glass", "tea", "snow", "maps", "bees",
    ];
    let jsonl: String = topics
        .iter()
        .map(|t| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Tell me about {t}.")},
                {"role": "assistant", "content": format!("VERDICT-7: {t} noted.")}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chat.jsonl");
    std::fs::write(&data, jsonl).unwrap();
    let set = ChatSet::load(&data).unwrap();
    set.validate(5).unwrap();
    let (train_set, val_set) = set.split(0.2, 1);
    let base = LocalModel::load(&path, &LocalOptions::default()).unwrap();
    let (train_t, long) = tokenize_all(&base, &train_set, 256).unwrap();
    assert_eq!(long, 0);
    let (val_t, _) = tokenize_all(&base, &val_set, 256).unwrap();
    // The loss covers the reply and its end-of-turn token only.
    let t = &train_t[0];
    let learned: Vec<u32> = t
        .ids
        .iter()
        .zip(&t.target)
        .filter(|(_, &m)| m)
        .map(|(&i, _)| i)
        .collect();
    assert_eq!(learned.last(), Some(&base.tokenizer().eos));
    assert!(base.tokenizer().decode(&learned).starts_with("VERDICT-7:"));

    let objective = LmObjective {
        train: train_t,
        validation: val_t,
        source: data.clone(),
    };
    let lm = CausalLm::load(&path, LoraSpec::default(), 3).unwrap();
    let opts = TrainOptions {
        epochs: 6,
        batch_size: 2,
        learning_rate: 2e-3,
        warmup: 0.1,
        weight_decay: 0.0,
        patience: 0,
        checkpoint_every: 0,
        ..TrainOptions::default()
    };
    let out = dir.path().join("adapter");
    let summary = train(&lm, &objective, &opts, &out, false, &Silent).unwrap();
    assert!(
        summary.best.mean > summary.baseline.mean + 1.0,
        "validation log-likelihood {} -> {}",
        summary.baseline.mean,
        summary.best.mean
    );

    let question = [Message::user("Tell me about ladders.")];
    let greedy = Sampling {
        temperature: 0.0,
        max_tokens: 12,
        ..Sampling::default()
    };
    let before = base.chat(&question, &greedy, &mut |_| true).unwrap().text;
    let tuned = LocalModel::load(
        &path,
        &LocalOptions {
            adapter: Some(out.clone()),
            ..LocalOptions::default()
        },
    )
    .unwrap();
    assert_ne!(tuned.model_id(), base.model_id());
    let after = tuned.chat(&question, &greedy, &mut |_| true).unwrap().text;
    assert!(!before.contains("VERDICT-7"), "{before}");
    assert!(after.starts_with("VERDICT-7: ladders"), "{after}");
}
