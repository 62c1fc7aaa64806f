//! Sampling: greedy is argmax, the same seed gives the same tokens, each filter does what its
//! name says, and the drawn frequencies match llama.cpp's chain computed independently.

use lowbit::sample::{Sampler, SamplerConfig};

fn logits(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 6.0
        })
        .collect()
}

fn draw(config: SamplerConfig, steps: usize) -> Vec<u32> {
    let mut sampler = Sampler::new(config);
    let mut history = Vec::new();
    for i in 0..steps {
        let t = sampler.sample(&logits(500, i as u64 + 1), &history);
        history.push(t);
    }
    history
}

#[test]
fn greedy_is_argmax() {
    let l = logits(500, 3);
    let best = l
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a })
        .0 as u32;
    let mut s = Sampler::new(SamplerConfig {
        temp: 0.0,
        ..Default::default()
    });
    assert_eq!(s.sample(&l, &[]), best);
    let mut k1 = Sampler::new(SamplerConfig {
        top_k: 1,
        ..Default::default()
    });
    assert_eq!(k1.sample(&l, &[]), best, "top-k 1 is greedy");
}

#[test]
fn same_seed_same_tokens_other_seed_other_tokens() {
    let c = SamplerConfig {
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    };
    let a = draw(c.clone(), 50);
    assert_eq!(a, draw(c.clone(), 50));
    assert_ne!(a, draw(SamplerConfig { seed: 42, ..c }, 50));
}

#[test]
fn filters_restrict_the_candidates() {
    let l = logits(500, 9);
    let mut order: Vec<u32> = (0..500).collect();
    order.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
    let top5: Vec<u32> = order[..5].to_vec();
    let mut s = Sampler::new(SamplerConfig {
        temp: 2.0,
        top_k: 5,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    });
    for _ in 0..200 {
        assert!(top5.contains(&s.sample(&l, &[])));
    }
    // min-p 0.9: only tokens within 10% of the best probability survive.
    let mut m = Sampler::new(SamplerConfig {
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.9,
        ..Default::default()
    });
    let best = l[order[0] as usize];
    for _ in 0..200 {
        let t = m.sample(&l, &[]);
        assert!((best - l[t as usize]).exp() <= 1.0 / 0.9 + 1e-6);
    }
    // A strong repetition penalty moves greedy off a token already in the history.
    let mut r = Sampler::new(SamplerConfig {
        temp: 0.0,
        repeat_penalty: 100.0,
        ..Default::default()
    });
    assert_ne!(r.sample(&l, &[order[0]]), order[0]);
}

// ---- Sampling distributions against an independent statement of llama.cpp's chain ----
//
// llama.cpp's default chain (common/common.h): penalties, top-k, top-p, min-p, temperature,
// then a draw from the softmax of what is left. Top-p (`llama_sampler_top_p`) and min-p see
// the softmax of the logits at temperature 1 over the candidates that reached them; top-p
// keeps the smallest prefix of the sorted candidates whose cumulative probability is >= p
// (at least one); min-p keeps the tokens with logit >= max logit + ln(min_p) (p_i >= min_p *
// p_max). `expected` below states that per token (by rank, not by truncating a sorted list
// as src/sample.rs does), and the hand-worked cases pin `expected` itself.

/// Eight logits, deliberately not sorted. Sorted: ids 1 5 3 7 0 2 6 4 (3.0 down to -1.0).
/// Softmax at T=1: .4028 .2442 .1481 .0899 .0545 .0331 .0200 .0074 (cumulative .4028
/// .6470 .7951 .8850 .9395 .9726 .9926 1).
const L: [f32; 8] = [1.0, 3.0, 0.5, 2.0, -1.0, 2.5, 0.0, 1.5];

fn config(temp: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplerConfig {
    SamplerConfig {
        temp,
        top_k,
        top_p,
        min_p,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 1234,
    }
}

/// The probability of each token under the chain, from the definitions above.
fn expected(l: &[f32], c: &SamplerConfig, history: &[u32]) -> Vec<f64> {
    let mut l: Vec<f64> = l.iter().map(|&v| v as f64).collect();
    let window = &history[history.len().saturating_sub(c.repeat_last_n)..];
    for (t, v) in l.iter_mut().enumerate() {
        if c.repeat_penalty != 1.0 && window.contains(&(t as u32)) {
            let p = c.repeat_penalty as f64;
            *v = if *v > 0.0 { *v / p } else { *v * p };
        }
    }
    let n = l.len();
    // rank: how many tokens come before t (higher logit, or equal logit and lower id).
    let rank = |t: usize| (0..n).filter(|&j| l[j] > l[t] || (l[j] == l[t] && j < t)).count();
    let mut alive: Vec<bool> = (0..n).map(|t| c.top_k == 0 || rank(t) < c.top_k).collect();
    if c.top_p < 1.0 {
        let z: f64 = (0..n).filter(|&j| alive[j]).map(|j| l[j].exp()).sum();
        let before = |t: usize| -> f64 {
            (0..n)
                .filter(|&j| alive[j] && rank(j) < rank(t))
                .map(|j| l[j].exp() / z)
                .sum()
        };
        // t is in the nucleus iff the mass ranked before it has not yet reached p.
        let keep: Vec<bool> = (0..n)
            .map(|t| alive[t] && (before(t) < c.top_p as f64 || rank(t) == 0))
            .collect();
        alive = keep;
    }
    if c.min_p > 0.0 {
        let max = (0..n).filter(|&j| alive[j]).map(|j| l[j]).fold(f64::MIN, f64::max);
        let floor = max + (c.min_p as f64).ln();
        for t in 0..n {
            alive[t] = alive[t] && l[t] >= floor;
        }
    }
    let w: Vec<f64> = (0..n)
        .map(|t| if alive[t] { (l[t] / c.temp as f64).exp() } else { 0.0 })
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|x| x / s).collect()
}

fn support(p: &[f64]) -> Vec<u32> {
    (0..p.len() as u32).filter(|&t| p[t as usize] > 0.0).collect()
}

/// Counts of `n` draws from one sampler (the state advances between draws).
fn counts(l: &[f32], c: &SamplerConfig, history: &[u32], n: usize) -> Vec<u64> {
    let mut s = Sampler::new(c.clone());
    let mut k = vec![0u64; l.len()];
    for _ in 0..n {
        k[s.sample(l, history) as usize] += 1;
    }
    k
}

/// Draws `n` samples and checks them against `p`: no draw outside the support, Pearson's
/// chi-square under df + 8 sqrt(2 df) (a tail probability of about 1e-5 for df <= 8; the
/// draws are seeded, so the statistic is fixed and this cannot flake), and every frequency
/// within 5 standard errors. Returns the chi-square.
fn check_distribution(what: &str, l: &[f32], c: &SamplerConfig, history: &[u32], p: &[f64], n: usize) -> f64 {
    let k = counts(l, c, history, n);
    let mut chi2 = 0.0;
    for t in 0..l.len() {
        let e = p[t] * n as f64;
        if p[t] == 0.0 {
            assert_eq!(
                k[t], 0,
                "{what}: token {t} is outside the kept set but was drawn {} times",
                k[t]
            );
            continue;
        }
        chi2 += (k[t] as f64 - e).powi(2) / e;
        let se = (p[t] * (1.0 - p[t]) / n as f64).sqrt();
        let f = k[t] as f64 / n as f64;
        assert!(
            (f - p[t]).abs() <= 5.0 * se + 1e-12,
            "{what}: token {t} frequency {f:.5}, expected {:.5}",
            p[t]
        );
    }
    let df = (p.iter().filter(|&&x| x > 0.0).count() - 1) as f64;
    let bound = df + 8.0 * (2.0 * df).sqrt();
    eprintln!(
        "{what}: support {:?}, chi-square {chi2:.2} (df {df}, bound {bound:.1}), n {n}",
        support(p)
    );
    assert!(chi2 <= bound, "{what}: chi-square {chi2:.1} > {bound:.1} (df {df})");
    chi2
}

const N: usize = 200_000;

/// The hand-worked cases: `expected` keeps what the definitions say, on L.
#[test]
fn expected_matches_hand_worked_cases() {
    let sup = |c: SamplerConfig| support(&expected(&L, &c, &[]));
    // top-p 0.8: cumulative .7951 after three, .8850 after four: the crossing token (7) is kept.
    assert_eq!(sup(config(2.0, 0, 0.8, 0.0)), vec![1, 3, 5, 7]);
    // (At T=2 the tempered cumulative is .2584 .4597 .6164 .7384 .8335: a top-p applied after
    // temperature would keep five.)
    // top-k 3 then top-p 0.7: renormalized over 3, cumulative .5066 .8137: two. (top-p over all
    // eight first would keep three.)
    assert_eq!(sup(config(1.0, 3, 0.7, 0.0)), vec![1, 5]);
    // top-p 0.7 then min-p 0.3: top-p keeps three, min-p's floor 3 + ln .3 = 1.80 keeps them.
    // (min-p first keeps three, renormalized .5066 .8137: top-p would then keep two.)
    assert_eq!(sup(config(1.0, 0, 0.7, 0.3)), vec![1, 3, 5]);
    // min-p 0.15 at T=2: floor 3 + ln .15 = 1.10, on the untempered logits: four. (On logits / 2
    // the floor would be -0.79: seven.)
    assert_eq!(sup(config(2.0, 0, 1.0, 0.15)), vec![1, 3, 5, 7]);
    // The full chain: top-k 6 drops 6 and 4; top-p .95 over six (cumulative .9101, .9661) drops 2;
    // min-p .15 drops 0 (logit 1.0 < 1.10).
    assert_eq!(sup(config(0.7, 6, 0.95, 0.15)), vec![1, 3, 5, 7]);
    // Temperature only: softmax(L / 2) over all eight; the top probability e^1.5 / 17.345.
    let p = expected(&L, &config(2.0, 0, 1.0, 0.0), &[]);
    assert!((p[1] - 0.2584).abs() < 1e-4, "{}", p[1]);
    // The nucleus at T=2: softmax of (3, 2.5, 2, 1.5) / 2: .3499 .2725 .2122 .1653.
    let p = expected(&L, &config(2.0, 0, 0.8, 0.0), &[]);
    for (t, want) in [(1, 0.3499), (5, 0.2725), (3, 0.2122), (7, 0.1653)] {
        assert!((p[t] - want).abs() < 1e-4, "token {t}: {}", p[t]);
    }
}

#[test]
fn temperature_gives_the_softmax_of_logits_over_t() {
    for t in [0.5, 1.0, 2.0] {
        let c = config(t, 0, 1.0, 0.0);
        check_distribution(&format!("T={t}"), &L, &c, &[], &expected(&L, &c, &[]), N);
    }
}

#[test]
fn top_p_keeps_the_nucleus_of_untempered_probabilities() {
    for (what, c) in [
        ("top-p .8 at T=2", config(2.0, 0, 0.8, 0.0)),
        ("top-p .5 at T=1", config(1.0, 0, 0.5, 0.0)),
        ("top-p .3 at T=1 (one token)", config(1.0, 0, 0.3, 0.0)),
        ("top-p .97 at T=1.5", config(1.5, 0, 0.97, 0.0)),
    ] {
        check_distribution(what, &L, &c, &[], &expected(&L, &c, &[]), N);
    }
}

#[test]
fn filters_apply_in_llama_cpp_order() {
    for (what, c) in [
        ("top-k 3, top-p .7", config(1.0, 3, 0.7, 0.0)),
        ("top-p .7, min-p .3", config(1.0, 0, 0.7, 0.3)),
        ("min-p .15 at T=2", config(2.0, 0, 1.0, 0.15)),
        ("top-k 6, top-p .95, min-p .15, T .7", config(0.7, 6, 0.95, 0.15)),
        ("llama.cpp defaults", SamplerConfig::default()),
    ] {
        check_distribution(what, &L, &c, &[], &expected(&L, &c, &[]), N);
    }
    // The defaults on a 500-token vocabulary built so that each of the three filters removes
    // tokens the one before kept: one token at 10, the ~58 tokens of the noise above 5.3 lifted
    // into 6.4..7.1 around min-p's floor 10 + ln .05 = 7.0, the rest in 0..5.3.
    let mut l = logits(500, 9);
    for v in l.iter_mut() {
        if *v > 5.3 {
            *v += 1.1;
        }
    }
    l[7] = 10.0;
    let c = SamplerConfig::default();
    let p = expected(&l, &c, &[]);
    let kept = support(&p).len();
    let after_k = support(&expected(&l, &config(0.8, 40, 1.0, 0.0), &[])).len();
    let after_p = support(&expected(&l, &config(0.8, 40, 0.95, 0.0), &[])).len();
    eprintln!("500 tokens, defaults: top-k keeps {after_k}, top-p {after_p}, min-p {kept}");
    assert!(after_k == 40 && after_p < after_k && kept < after_p && kept > 1);
    check_distribution("defaults, 500 tokens", &l, &c, &[], &p, N);
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
    // Token 1 (3.0 -> 1.5) and token 4 (-1.0 -> -2.0) penalized, each once although 1 repeats;
    // with repeat_last_n 3 the 5 at the start of the history is outside the window.
    let c = SamplerConfig {
        repeat_penalty: 2.0,
        repeat_last_n: 3,
        ..config(1.0, 0, 1.0, 0.0)
    };
    let history = [5, 1, 4, 1];
    let p = expected(&L, &c, &history);
    let mut l = L;
    l[1] = 1.5;
    l[4] = -2.0;
    let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
    for t in 0..8 {
        assert!((p[t] - (l[t] as f64).exp() / z).abs() < 1e-12);
    }
    check_distribution("repeat penalty 2, last 3", &L, &c, &history, &p, N);
}

#[test]
fn temperature_zero_is_greedy_whatever_the_seed() {
    for seed in 0..50u64 {
        let l = logits(300, seed + 100);
        let best = (0..l.len())
            .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        let mut s = Sampler::new(SamplerConfig {
            temp: 0.0,
            seed,
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&l, &[]), best, "seed {seed}");
        }
    }
    // A margin of one ulp is still the argmax; an exact tie goes to the lower id (llama.cpp's
    // greedy sampler keeps the first maximum).
    let mut s = Sampler::new(config(0.0, 0, 1.0, 0.0));
    let up = f32::from_bits(2.0f32.to_bits() + 1);
    assert_eq!(s.sample(&[0.0, 2.0, up, 1.0], &[]), 2);
    assert_eq!(s.sample(&[0.0, 2.0, 2.0, 1.0], &[]), 1);
    // A small positive temperature is near-greedy but still a draw: T=0.05 on logits 0.1 apart
    // gives the runner-up e^-2 / (1 + e^-2 + e^-4) = 0.1173.
    let l = [1.0, 1.1, 0.9];
    let c = config(0.05, 0, 1.0, 0.0);
    let p = expected(&l, &c, &[]);
    assert!((p[0] - 0.1173).abs() < 1e-3, "{}", p[0]);
    check_distribution("T=0.05", &l, &c, &[], &p, N);
}

#[test]
fn higher_temperature_flattens_the_distribution() {
    let entropy = |k: &[u64]| {
        let n: u64 = k.iter().sum();
        -k.iter()
            .filter(|&&x| x > 0)
            .map(|&x| {
                let f = x as f64 / n as f64;
                f * f.ln()
            })
            .sum::<f64>()
    };
    let mut last = (-1.0, 2.0);
    for t in [0.25, 0.5, 1.0, 2.0, 4.0, 16.0] {
        let c = config(t, 0, 1.0, 0.0);
        let k = counts(&L, &c, &[], N);
        let h = entropy(&k);
        let p = expected(&L, &c, &[]);
        let h_exp = -p.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>();
        let top = k[1] as f64 / N as f64;
        eprintln!(
            "T={t}: entropy {h:.4} (expected {h_exp:.4}, uniform {:.4}), top token {top:.4}",
            8f64.ln()
        );
        assert!((h - h_exp).abs() < 0.01, "T={t}: entropy {h} vs {h_exp}");
        // Measured steps: entropy +0.04 or more, top probability -0.048 or more.
        assert!(
            h > last.0 + 0.02 && top < last.1 - 0.02,
            "T={t} is not flatter than the last"
        );
        last = (h, top);
    }
    // At T=16 the distribution is within 0.02 nats of uniform over eight.
    assert!(8f64.ln() - last.0 < 0.02);
}
