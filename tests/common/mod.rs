//! Helpers shared by the integration tests.
// Each test crate uses the part it needs.
#![allow(dead_code)]

/// A reproducible pseudo-random sequence in [-scale, scale) (a 64-bit LCG).
pub fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A file of the shared fixtures (`../shared/fixtures`).
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

/// The (expert fraction, policy, prefetch) runs a budget test compares with the
/// unbudgeted run: everything, then halves down to an eighth, each policy once.
pub const BUDGET_RUNS: [(f64, lowbit::stream::PolicyKind, bool); 4] = [
    (1.0, lowbit::stream::PolicyKind::Reuse, false),
    (0.5, lowbit::stream::PolicyKind::Lru, false),
    (0.25, lowbit::stream::PolicyKind::Reuse, true),
    (0.125, lowbit::stream::PolicyKind::Reuse, false),
];

/// The first `n` tokens of llama.cpp's reference prompt for the MoE fixture.
pub fn prompt_tokens(n: usize) -> Vec<u32> {
    let text = std::fs::read_to_string(fixture_path("ref-prompt-tokens.json")).unwrap();
    let all: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    all[..n].to_vec()
}

/// Logits of every position of `tokens` from `file` on `backend`, the tokens fed in
/// steps of `steps[i]` tokens (prefills, multi-token steps and single-token decode).
pub fn stepped_logits<B: lowbit::backend::Backend>(
    backend: &mut B,
    file: &lowbit::gguf::File,
    tokens: &[u32],
    steps: &[usize],
) -> Vec<f32> {
    stepped_logits_with(backend, file, &Default::default(), tokens, steps)
}

/// [`stepped_logits`] of the model loaded under `options` (a VRAM budget).
pub fn stepped_logits_with<B: lowbit::backend::Backend>(
    backend: &mut B,
    file: &lowbit::gguf::File,
    options: &lowbit::stream::StreamOptions,
    tokens: &[u32],
    steps: &[usize],
) -> Vec<f32> {
    assert_eq!(steps.iter().sum::<usize>(), tokens.len());
    let model = lowbit::model::Model::load_with(file, backend, options, |_, _| {}).unwrap();
    let mut session = model.session(backend, tokens.len()).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    for &n in steps {
        out.extend(model.forward(backend, &mut session, &tokens[at..at + n], true).unwrap());
        at += n;
    }
    out
}

/// Steps that take each product path: a prefill of 13 tokens (matmul, matmul_id), one
/// of 3 (matvec and matvec_id of 3 columns), then single-token decode.
pub fn mixed_steps(n: usize) -> Vec<usize> {
    let mut steps = vec![13, 3];
    steps.resize(steps.len() + n - 16, 1);
    steps
}

pub mod gpu;
