//! Perplexity and KL divergence against numbers computed outside lowbit:
//! `scripts/gen_eval_reference.py` takes llama.cpp's logits of tiny-moe-f16 as a base, makes
//! two more sets from them (seeded gaussian noise, a temperature change), and computes in
//! numpy float64 every position's NLL, the perplexity, KL(base || set) and the same-top
//! share. lowbit's scorer must reproduce them, through the f16 `--save-logits` file the CLI
//! compares against. Also: a base of another vocabulary is an error, before any work.

use lowbit::cpu::CpuBackend;
use lowbit::eval::{BaseLogprobs, Compare, Scores, perplexity};
use lowbit::gguf::File;
use lowbit::model::Model;
use std::path::{Path, PathBuf};

const N_VOCAB: usize = 4096;
const SETS: [&str; 3] = ["base", "noise", "temp"];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

struct Reference {
    /// `[set][position][vocab]`.
    logits: Vec<Vec<Vec<f32>>>,
    next: Vec<u32>,
    json: serde_json::Value,
}

fn reference() -> Reference {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("eval_reference.json")).unwrap()).unwrap();
    let next: Vec<u32> = json["next_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let raw = std::fs::read(data("eval_logits.f32")).unwrap();
    let all: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(all.len(), SETS.len() * next.len() * N_VOCAB);
    let logits = all
        .chunks_exact(next.len() * N_VOCAB)
        .map(|set| set.chunks_exact(N_VOCAB).map(<[f32]>::to_vec).collect())
        .collect();
    Reference { logits, next, json }
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn score(rows: &[Vec<f32>], next: &[u32], compare: &mut Compare) -> Scores {
    let mut s = Scores::default();
    for (row, &t) in rows.iter().zip(next) {
        s.push(row, t, compare).unwrap();
    }
    s
}

/// The base's log-probabilities saved as the CLI saves them (header `LBKL`, n_vocab,
/// positions, then f16 rows) and read back.
fn saved_base(dir: &Path, rows: &[Vec<f32>], next: &[u32]) -> BaseLogprobs {
    let mut saved = Vec::new();
    let s = score(rows, next, &mut Compare::Save(&mut saved));
    let mut file = b"LBKL".to_vec();
    file.extend_from_slice(&(N_VOCAB as u32).to_le_bytes());
    file.extend_from_slice(&(s.nll.len() as u32).to_le_bytes());
    file.extend_from_slice(&saved);
    let path = dir.join("base.kl");
    std::fs::write(&path, file).unwrap();
    BaseLogprobs::read(&path).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn perplexity_and_kld_agree_with_numpy_through_the_saved_f16_base() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let base = saved_base(dir.path(), &r.logits[0], &r.next);
    assert_eq!((base.n_vocab, base.positions()), (N_VOCAB, r.next.len()));
    for (set, rows) in SETS.iter().zip(&r.logits) {
        let want = &r.json["sets"][set];
        let s = score(rows, &r.next, &mut Compare::Base(&base));

        // NLL and perplexity: the same f64 log-softmax of the same f32 logits, so only
        // summation order differs. Measured: max |Δ NLL| ~1e-14, |Δ ppl| / ppl ~1e-15.
        let d_nll = max_diff(&s.nll, &floats(&want["nll"]));
        let (ppl, _) = s.perplexity();
        let d_ppl = (ppl / want["ppl"].as_f64().unwrap() - 1.0).abs();
        eprintln!("{set}: max |Δ NLL| {d_nll:.2e}, |Δ ppl|/ppl {d_ppl:.2e} (ppl {ppl:.6})");
        assert!(d_nll < 1e-11, "{set}: {d_nll}");
        assert!(d_ppl < 1e-12, "{set}: {d_ppl}");

        // KL against the base as saved: f16 log-probabilities, whose rounding (relative
        // 2^-12 at most, so up to ~4e-3 nats on a log-prob of -16) moves each position's
        // KL by about Σ p·δ·(b - l). Measured: max |Δ KL| per position 1.35e-4 (noise),
        // 1.09e-4 (temp), 9.2e-7 (base); |Δ mean KL| 9.5e-7, 6.6e-6, 4.8e-7.
        let want_kld = floats(&want["kld"]);
        let d_kld = max_diff(&s.kld, &want_kld);
        let mean = s.mean_kld().unwrap();
        let d_mean = (mean - want["mean_kld"].as_f64().unwrap()).abs();
        let top = s.same_top_fraction().unwrap();
        eprintln!(
            "{set}: mean KLD {mean:.6} (numpy {:.6}), max |Δ KL| {d_kld:.2e}, |Δ mean| {d_mean:.2e}, same top {top}",
            want["mean_kld"].as_f64().unwrap()
        );
        assert!(s.kld.iter().all(|&k| k >= 0.0), "{set}: negative KL {:?}", s.kld);
        assert!(d_kld < 5e-4, "{set}: {d_kld}"); // ~4x the 1.35e-4 measured
        assert!(d_mean < 3e-5, "{set}: {d_mean}"); // ~4x the 6.6e-6 measured
        assert_eq!(top, want["same_top"].as_f64().unwrap(), "{set}");
    }
}

#[test]
fn a_model_against_its_own_saved_base_has_kld_near_zero_never_negative() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let base = saved_base(dir.path(), &r.logits[0], &r.next);
    let s = score(&r.logits[0], &r.next, &mut Compare::Base(&base));
    let (min, max) = s
        .kld
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &k| (a.min(k), b.max(k)));
    eprintln!(
        "self KLD through f16: min {min:.3e}, max {max:.3e}, mean {:.3e}",
        s.mean_kld().unwrap()
    );
    // Renormalized f16 rows leave only the second-order remainder of the rounding.
    // Measured: min 6.7e-8, max 9.2e-7, mean 4.8e-7 nats.
    assert!(min >= 0.0, "{min}");
    assert!(max < 4e-6, "{max}"); // ~4x the 9.2e-7 measured
    assert_eq!(s.same_top_fraction(), Some(1.0));
}

#[test]
fn a_kld_base_of_another_vocabulary_or_too_few_positions_is_an_error() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let base = saved_base(dir.path(), &r.logits[0], &r.next);
    // Another vocabulary: the same rows cut to 4000 logits.
    let mut s = Scores::default();
    let e = s
        .push(&r.logits[1][0][..4000], r.next[0], &mut Compare::Base(&base))
        .unwrap_err()
        .to_string();
    assert!(e.contains("vocabulary of 4096") && e.contains("4000"), "{e}");
    // Past the positions saved.
    let mut s = score(&r.logits[1], &r.next, &mut Compare::Base(&base));
    let e = s
        .push(&r.logits[1][0], r.next[0], &mut Compare::Base(&base))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 16 positions"), "{e}");

    // The perplexity loop refuses a base of another vocabulary before running the model.
    let file =
        File::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/tiny-moe-f16.gguf")).unwrap();
    let mut backend = CpuBackend::default();
    let model = Model::load(&file, &mut backend, |_, _| {}).unwrap();
    let mut session = model.session(&mut backend, 8).unwrap();
    let other = BaseLogprobs {
        n_vocab: 49152,
        data: vec![half::f16::ZERO; 49152 * 3],
    };
    let tokens: Vec<u32> = (0..8).collect();
    let mut ran = 0;
    let result = perplexity(
        &model,
        &mut backend,
        &mut session,
        &tokens,
        8,
        1,
        Some(0),
        Compare::Base(&other),
        |_, _| ran += 1,
    );
    let e = result.expect_err("a base of 49152 against a model of 4096").to_string();
    assert!(e.contains("vocabulary of 49152") && e.contains("4096"), "{e}");
    assert_eq!(ran, 0, "refused before the first chunk");
}
