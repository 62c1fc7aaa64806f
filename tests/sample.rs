//! Sampling: greedy is argmax, the same seed gives the same tokens, and each filter
//! does what its name says.

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
