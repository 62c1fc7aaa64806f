//! SmolLM2 end to end against the float64 reference of ../shared/oracles/llama_ref.py
//! (tests/data/smollm2_llama_ref.bin, written by scripts/gen_llama_reference.py): the
//! exact CPU path, and the GPU backend (lavapipe in CI) in every kernel setting through
//! a prefill (matmul), a 3-token step (matvec of 3 columns) and single-token decode
//! (matvec with the fused RMSNorm and SwiGLU products when activations are uniform).
//! Then greedy generation on both backends.

mod common;

use common::gpu::SETTINGS;
use common::{mixed_steps, stepped_logits};
use lowbit::backend::Backend;
use lowbit::cpu::CpuBackend;
use lowbit::gguf::File;
use lowbit::model::{Llama, Model};
use lowbit::tokenizer::Tokenizer;
use std::path::PathBuf;

fn smollm2() -> File {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    File::open(&p).unwrap_or_else(|e| panic!("{e}: run scripts/fetch_smollm2.sh"))
}

/// One position of the reference: the argmax and max |logit| of the full row, every
/// `stride`-th logit, and the 16 largest as (index, value).
struct RefRow {
    argmax: u32,
    max_abs: f32,
    strided: Vec<f32>,
    top: Vec<(u32, f32)>,
}

/// The reference's prompt, stride and rows (layout in scripts/gen_llama_reference.py).
fn reference() -> (Vec<u32>, usize, Vec<RefRow>) {
    let bytes =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_llama_ref.bin")).unwrap();
    assert_eq!(&bytes[..4], b"LREF");
    let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let float = |i: usize| f32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let (n, n_vocab, stride) = (word(4) as usize, word(8) as usize, word(12) as usize);
    let tokens: Vec<u32> = (0..n).map(|i| word(16 + 4 * i)).collect();
    let record = 8 + 4 * (n_vocab / stride) + 8 * 16;
    let rows = (0..n)
        .map(|p| {
            let o = 16 + 4 * n + p * record;
            RefRow {
                argmax: word(o),
                max_abs: float(o + 4),
                strided: (0..n_vocab / stride).map(|j| float(o + 8 + 4 * j)).collect(),
                top: (0..16)
                    .map(|j| {
                        let t = o + 8 + 4 * (n_vocab / stride) + 8 * j;
                        (word(t), float(t + 4))
                    })
                    .collect(),
            }
        })
        .collect();
    assert_eq!(bytes.len(), 16 + 4 * n + n * record);
    (tokens, stride, rows)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |a, (i, &x)| if x > a.1 { (i, x) } else { a })
        .0
}

/// The largest |Δ| against the reference, relative to each row's max |logit|, over
/// the strided logits and the top 16; the same argmax and max |logit| at every position.
fn relative_error(logits: &[f32], rows: &[RefRow], stride: usize, what: &str) -> f32 {
    let n_vocab = logits.len() / rows.len();
    let mut worst = 0f32;
    for (p, (row, r)) in logits.chunks(n_vocab).zip(rows).enumerate() {
        let strided = r.strided.iter().enumerate().map(|(j, &v)| (j * stride, v));
        let top = r.top.iter().map(|&(i, v)| (i as usize, v));
        for (i, v) in strided.chain(top) {
            worst = worst.max((row[i] - v).abs() / r.max_abs);
        }
        let max_abs = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            (max_abs - r.max_abs).abs() <= 1e-3 * r.max_abs,
            "{what}: max |logit| at {p}"
        );
        assert_eq!(argmax(row) as u32, r.argmax, "{what}: argmax at position {p}");
    }
    eprintln!("{what}: max |Δ| / max |logit| = {worst:.2e}");
    worst
}

#[test]
fn cpu_logits_match_the_float64_reference() {
    let (tokens, stride, rows) = reference();
    let logits = stepped_logits(&mut CpuBackend::default(), &smollm2(), &tokens, &[tokens.len()]);
    // Measured: 3.9e-6 (f32 against float64 arithmetic).
    assert!(relative_error(&logits, &rows, stride, "cpu") <= 1e-5);
}

#[test]
fn gpu_logits_match_the_float64_reference_in_every_setting() {
    let (tokens, stride, rows) = reference();
    let (tokens, rows) = (&tokens[..24], &rows[..24]);
    let file = smollm2();
    let steps = mixed_steps(tokens.len());
    for setting in SETTINGS {
        let logits = stepped_logits(&mut common::gpu::backend(setting, None), &file, tokens, &steps);
        // Measured: 3.05e-6 in every setting.
        assert!(relative_error(&logits, rows, stride, &format!("gpu {setting:?}")) <= 1e-5);
    }
}

fn greedy<B: Backend>(mut backend: B, file: &File, tok: &Tokenizer, prompt: &str, n: usize) -> String {
    let model = Model::Llama(Box::new(Llama::load(file, &mut backend, |_, _| {}).unwrap()));
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
    let cpu = greedy(CpuBackend::default(), &file, &tok, "The capital of France is", 8);
    let gpu = greedy(
        common::gpu::backend(SETTINGS[0], None),
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
    let err = Llama::load(&f16, &mut CpuBackend::default(), |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("deepseek2"), "{err}");
    let file = smollm2();
    let model = Model::Llama(Box::new(
        Llama::load(&file, &mut CpuBackend::default(), |_, _| {}).unwrap(),
    ));
    let mut session = model.session(&mut CpuBackend::default(), 4).unwrap();
    assert!(
        model
            .forward(&mut CpuBackend::default(), &mut session, &[1, 2, 3, 4, 5], false)
            .is_err(),
        "context overflow"
    );
    assert!(
        model
            .forward(&mut CpuBackend::default(), &mut session, &[99_999_999], false)
            .is_err(),
        "token outside the vocabulary"
    );
}
