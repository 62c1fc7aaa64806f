//! SmolLM2 end to end: the GPU backend (lavapipe in CI) against the CPU reference on a
//! 64-token prompt, and greedy generation on both.

use lowbit::backend::Backend;
use lowbit::cpu::CpuBackend;
use lowbit::gguf::File;
use lowbit::gpu::{GpuBackend, GpuOptions};
use lowbit::model::Llama;
use lowbit::tokenizer::Tokenizer;
use std::path::PathBuf;

fn smollm2() -> File {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    File::open(&p).unwrap_or_else(|e| panic!("{e}: run scripts/fetch_smollm2.sh"))
}

fn prompt_tokens(tok: &Tokenizer) -> Vec<u32> {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/austen.txt"))
        .unwrap();
    let ids = tok.encode(&text[..4000], true, false).unwrap();
    ids[..64].to_vec()
}

fn all_logits<B: Backend>(mut backend: B, file: &File, tokens: &[u32]) -> Vec<f32> {
    let model = Llama::load(file, &mut backend, |_, _| {}).unwrap();
    let mut session = model.session(&mut backend, tokens.len()).unwrap();
    model.forward(&mut backend, &mut session, tokens, true).unwrap()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |a, (i, &x)| if x > a.1 { (i, x) } else { a })
        .0
}

#[test]
fn gpu_logits_match_cpu_on_a_64_token_prompt() {
    let file = smollm2();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let tokens = prompt_tokens(&tok);
    let cpu = all_logits(CpuBackend, &file, &tokens);
    let gpu = all_logits(GpuBackend::new(GpuOptions::from_env()).unwrap(), &file, &tokens);
    assert_eq!(cpu.len(), gpu.len());
    let n_vocab = cpu.len() / tokens.len();
    let max_logit = cpu.iter().fold(0f32, |a, v| a.max(v.abs()));
    let max_diff = cpu.iter().zip(&gpu).fold(0f32, |a, (c, g)| a.max((c - g).abs()));
    eprintln!(
        "max |logit| {max_logit}, max |gpu - cpu| {max_diff} ({:.2e} relative)",
        max_diff / max_logit
    );
    assert!(max_diff <= 1e-3 * max_logit, "max |Δ| {max_diff} > 1e-3 x {max_logit}");
    for p in 0..tokens.len() {
        let (c, g) = (
            &cpu[p * n_vocab..(p + 1) * n_vocab],
            &gpu[p * n_vocab..(p + 1) * n_vocab],
        );
        assert_eq!(argmax(c), argmax(g), "argmax differs at position {p}");
    }
}

fn greedy<B: Backend>(mut backend: B, file: &File, tok: &Tokenizer, prompt: &str, n: usize) -> String {
    let model = Llama::load(file, &mut backend, |_, _| {}).unwrap();
    let ids = tok.encode(prompt, true, true).unwrap();
    let mut session = model.session(&mut backend, ids.len() + n).unwrap();
    let mut logits = model.forward(&mut backend, &mut session, &ids, false).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let next = argmax(&logits) as u32;
        out.push(next);
        logits = model.forward(&mut backend, &mut session, &[next], false).unwrap();
    }
    tok.decode(&out).unwrap()
}

#[test]
fn greedy_generation_is_coherent_on_both_backends() {
    let file = smollm2();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let cpu = greedy(CpuBackend, &file, &tok, "The capital of France is", 8);
    let gpu = greedy(
        GpuBackend::new(GpuOptions::from_env()).unwrap(),
        &file,
        &tok,
        "The capital of France is",
        8,
    );
    eprintln!("cpu: {cpu:?}\ngpu: {gpu:?}");
    assert!(cpu.contains("Paris"), "{cpu:?}");
    assert_eq!(cpu, gpu);
}

#[test]
fn bad_models_are_errors() {
    let f16 =
        File::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/tiny-moe-f16.gguf")).unwrap();
    let err = Llama::load(&f16, &mut CpuBackend, |_, _| {}).err().unwrap().to_string();
    assert!(err.contains("deepseek2"), "{err}");
    let file = smollm2();
    let model = Llama::load(&file, &mut CpuBackend, |_, _| {}).unwrap();
    let mut session = model.session(&mut CpuBackend, 4).unwrap();
    assert!(
        model
            .forward(&mut CpuBackend, &mut session, &[1, 2, 3, 4, 5], false)
            .is_err(),
        "context overflow"
    );
    assert!(
        model
            .forward(&mut CpuBackend, &mut session, &[99_999_999], false)
            .is_err(),
        "token outside the vocabulary"
    );
}
