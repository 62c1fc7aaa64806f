//! The library's generation loop ([`lowbit::generate::Generator`]): greedy tokens are
//! the argmax of the logits that the model gives for the history so far (checked by
//! running the whole history again in one pass), the streamed text is the tokenizer's
//! text of all tokens, the context bound and end-of-text stop it, and misuse is an error.

mod common;
use common::fixture_path;
use lowbit::cpu::CpuBackend;
use lowbit::generate::Generator;
use lowbit::gguf::File;
use lowbit::model::Model;
use lowbit::sample::{SamplerConfig, argmax};
use lowbit::tokenizer::Tokenizer;
use std::sync::Arc;

/// The IQ1_S fixture on the fast CPU backend with `threads` threads, and its tokenizer.
fn load(threads: usize) -> (CpuBackend, Arc<Model<CpuBackend>>, Arc<Tokenizer>) {
    let file = File::open(fixture_path("tiny-moe-IQ1_S.gguf")).unwrap();
    let mut backend = CpuBackend::fast(threads).unwrap();
    let model = Model::load(&file, &mut backend, |_, _| {}).unwrap();
    (backend, Arc::new(model), Arc::new(Tokenizer::from_gguf(&file).unwrap()))
}

fn greedy() -> SamplerConfig {
    SamplerConfig {
        temp: 0.0,
        repeat_penalty: 1.0,
        ..SamplerConfig::default()
    }
}

#[test]
fn greedy_tokens_are_the_argmax_of_a_fresh_pass_over_the_history() {
    let (mut backend, model, tokenizer) = load(2);
    let prompt = tokenizer
        .encode("It was a truth universally acknowledged", true, true)
        .unwrap();
    let mut g = Generator::new(model.clone(), tokenizer.clone(), &mut backend, 64, greedy()).unwrap();
    g.ignore_eos = true;
    g.prompt(&mut backend, &prompt).unwrap();
    let mut text = String::new();
    let mut ids = Vec::new();
    for _ in 0..12 {
        let t = g.next_token(&mut backend).unwrap().expect("room in the context");
        text.push_str(&t.text);
        ids.push(t.id);
    }
    assert_eq!(g.history(), [&prompt[..], &ids[..]].concat());
    assert_eq!(text, tokenizer.decode(&ids).unwrap());
    // Each token is the argmax after the tokens before it, run again from an empty cache.
    for (i, &id) in ids.iter().enumerate().step_by(4) {
        let mut session = model.session(&mut backend, 64).unwrap();
        let history = &g.history()[..prompt.len() + i];
        let logits = model.forward(&mut backend, &mut session, history, false).unwrap();
        assert_eq!(argmax(&logits), id, "token {i}");
    }
}

#[test]
fn a_full_context_stops_and_misuse_is_an_error() {
    let (mut backend, model, tokenizer) = load(1);
    let mut g = Generator::new(model.clone(), tokenizer.clone(), &mut backend, 8, greedy()).unwrap();
    assert!(g.next_token(&mut backend).is_err(), "a token before any prompt");
    g.ignore_eos = true;
    g.prompt(&mut backend, &tokenizer.encode("It was", true, true).unwrap())
        .unwrap();
    let mut n = 0;
    while g.next_token(&mut backend).unwrap().is_some() {
        n += 1;
        assert!(n <= 8, "past the context");
    }
    assert_eq!(g.history().len(), 8);
    g.reset();
    assert!(g.history().is_empty());
    assert!(
        g.next_token(&mut backend).is_err(),
        "a token after a reset, before a prompt"
    );
}
