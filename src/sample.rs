//! Token sampling: repetition penalty, top-k, top-p, min-p, temperature, seeded draw,
//! in llama.cpp's default order. Temperature 0 is greedy. The same seed gives the same text.

/// Sampling settings (llama.cpp spellings and defaults).
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    pub temp: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5eed,
        }
    }
}

pub struct Sampler {
    pub config: SamplerConfig,
    state: u64,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let state = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        Sampler { config, state }
    }

    /// A uniform draw in [0, 1) (splitmix64).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Choose the next token from `logits`, given the tokens so far (`history`).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = self.config.clone();
        let mut l = logits.to_vec();
        if c.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(c.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[start..] {
                if seen.insert(t)
                    && let Some(v) = l.get_mut(t as usize)
                {
                    *v = if *v > 0.0 {
                        *v / c.repeat_penalty
                    } else {
                        *v * c.repeat_penalty
                    };
                }
            }
        }
        if c.temp <= 0.0 {
            return argmax(&l);
        }
        let mut cand: Vec<(u32, f32)> = l.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        if c.top_k > 0 {
            cand.truncate(c.top_k);
        }
        let softmax = |cand: &[(u32, f32)], temp: f32| -> Vec<f64> {
            let max = cand[0].1 as f64;
            let e: Vec<f64> = cand
                .iter()
                .map(|&(_, v)| ((v as f64 - max) / temp as f64).exp())
                .collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        };
        if c.top_p < 1.0 {
            let p = softmax(&cand, 1.0);
            let mut cum = 0.0;
            let keep = p.iter().position(|&pi| {
                cum += pi;
                cum >= c.top_p as f64
            });
            cand.truncate(keep.map_or(cand.len(), |i| i + 1).max(1));
        }
        if c.min_p > 0.0 {
            let p = softmax(&cand, 1.0);
            let keep = p.iter().filter(|&&pi| pi >= c.min_p as f64 * p[0]).count();
            cand.truncate(keep.max(1));
        }
        let p = softmax(&cand, c.temp);
        let r = self.uniform();
        let mut cum = 0.0;
        for (i, pi) in p.iter().enumerate() {
            cum += pi;
            if r < cum {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// The index of the largest logit (the first of equals; 0 for an empty or all-NaN
/// slice): greedy decoding.
pub fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
        .0 as u32
}
