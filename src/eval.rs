//! Evaluation: perplexity under llama.cpp's `llama-perplexity` protocol, and KL divergence
//! and top-1 agreement against the saved log-probabilities of a base model.
//!
//! Protocol (`perplexity()` in llama.cpp's `tools/perplexity/perplexity.cpp`): tokenize the
//! whole text (BOS first when the model adds one), cut it into chunks of `n_ctx` tokens,
//! set each chunk's first token to BOS when the model adds one, run each chunk from an
//! empty cache, and score only the second half: the logits at positions
//! `n_ctx/2 .. n_ctx-1` predict the next token.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Model, Session};
use half::f16;
use std::io::{Read, Write};
use std::path::Path;

/// Scores of one run.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    /// Negative log-likelihood of every scored token.
    pub nll: Vec<f64>,
    /// Against a base: KL(base || model) per scored position, and whether the argmaxes agree.
    pub kld: Vec<f64>,
    pub same_top: Vec<bool>,
}

impl Scores {
    pub fn perplexity(&self) -> (f64, f64) {
        let n = self.nll.len() as f64;
        let mean = self.nll.iter().sum::<f64>() / n;
        let var = self.nll.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let ppl = mean.exp();
        (ppl, ppl * (var / n).sqrt())
    }

    pub fn mean_kld(&self) -> Option<f64> {
        (!self.kld.is_empty()).then(|| self.kld.iter().sum::<f64>() / self.kld.len() as f64)
    }

    /// Standard error of [`mean_kld`](Self::mean_kld).
    pub fn kld_stderr(&self) -> Option<f64> {
        let mean = self.mean_kld()?;
        let n = self.kld.len() as f64;
        let var = self.kld.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Some((var / n).sqrt())
    }

    pub fn same_top_fraction(&self) -> Option<f64> {
        (!self.same_top.is_empty())
            .then(|| self.same_top.iter().filter(|&&b| b).count() as f64 / self.same_top.len() as f64)
    }

    /// Score one position whose `logits` predict `next`, saving or comparing its
    /// log-probabilities as `compare` says. A base's row is the one of this position: the
    /// number of positions scored before it.
    pub fn push(&mut self, logits: &[f32], next: u32, compare: &mut Compare) -> Result<()> {
        let n_vocab = logits.len();
        let lp = log_softmax(logits);
        let nll = -*lp
            .get(next as usize)
            .ok_or_else(|| Error::Shape(format!("next token {next} is outside the vocabulary of {n_vocab}")))?;
        let position = self.nll.len();
        match compare {
            Compare::None => {}
            Compare::Save(w) => {
                let bytes: Vec<u8> = lp.iter().flat_map(|&v| f16::from_f64(v).to_le_bytes()).collect();
                w.write_all(&bytes).map_err(|e| Error::io("--save-logits", e))?;
            }
            Compare::Base(base) => {
                let b = base.row(position, n_vocab)?;
                let (kl, same) = compare_with_base(b, &lp);
                self.kld.push(kl);
                self.same_top.push(same);
            }
        }
        self.nll.push(nll);
        Ok(())
    }
}

/// KL(base || model) and whether the argmaxes agree, for one position: `base` the saved
/// f16 log-probabilities, `lp` the model's (f64, normalized).
///
/// f16 rounding leaves `exp(base)` summing to 1 only within about 2^-11 · max|log p|, and
/// the plain sum `Σ exp(b)(b - l)` of a model against its own saved row then comes out
/// positive or negative at that size. So the base row is renormalized first (in f64):
/// KL of two normalized distributions is never negative (Gibbs), so the sum needs no
/// clamp, and a model against itself gives the second-order remainder of the rounding
/// (measured on llama.cpp's tiny-moe logits: at most 9e-7 nats a position), not noise
/// of either sign.
pub fn compare_with_base(base: &[f16], lp: &[f64]) -> (f64, bool) {
    let b: Vec<f64> = base.iter().map(|x| x.to_f64()).collect();
    let max = b.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
    let lse = b.iter().map(|&x| (x - max).exp()).sum::<f64>().ln() + max;
    let kl = b
        .iter()
        .zip(lp)
        .map(|(&bl, &l)| (bl - lse).exp() * ((bl - lse) - l))
        .sum();
    let arg = |v: &mut dyn Iterator<Item = f64>| {
        v.enumerate()
            .fold((0, f64::NEG_INFINITY), |a, (i, x)| if x > a.1 { (i, x) } else { a })
            .0
    };
    (kl, arg(&mut b.iter().copied()) == arg(&mut lp.iter().copied()))
}

/// `log_softmax(logits)` in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&v| v as f64 - lse).collect()
}

/// Saved log-probabilities of a base model (f16), scored positions in order.
/// File: b"LBKL", n_vocab u32, n_positions u32, then n_positions * n_vocab f16 (LE).
pub struct BaseLogprobs {
    pub n_vocab: usize,
    pub data: Vec<f16>,
}

impl BaseLogprobs {
    pub fn read(path: &Path) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = [0u8; 12];
        f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
        if &head[..4] != b"LBKL" {
            return Err(Error::Unsupported(format!(
                "{}: not a lowbit --save-logits file",
                path.display()
            )));
        }
        let n_vocab = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default()) as usize;
        let n_pos = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default()) as usize;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        if n_vocab == 0 || bytes.len() as u64 != n_vocab as u64 * n_pos as u64 * 2 {
            return Err(Error::Unsupported(format!(
                "{}: {} bytes of log-probabilities, the header says {n_pos} x {n_vocab} f16",
                path.display(),
                bytes.len()
            )));
        }
        Ok(BaseLogprobs {
            n_vocab,
            data: bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect(),
        })
    }

    /// Positions saved.
    pub fn positions(&self) -> usize {
        self.data.len() / self.n_vocab.max(1)
    }

    /// That this base can be compared with `positions` positions of a model of `n_vocab`.
    pub fn check(&self, n_vocab: usize, positions: usize) -> Result<()> {
        if self.n_vocab != n_vocab {
            return Err(Error::Shape(format!(
                "the KLD base was saved from a vocabulary of {}, this model's has {n_vocab}",
                self.n_vocab
            )));
        }
        if self.positions() < positions {
            return Err(Error::Shape(format!(
                "the KLD base holds {} positions, this run scores {positions}",
                self.positions()
            )));
        }
        Ok(())
    }

    /// The saved log-probabilities of `position`.
    pub fn row(&self, position: usize, n_vocab: usize) -> Result<&[f16]> {
        self.check(n_vocab, position + 1)?;
        Ok(&self.data[position * n_vocab..(position + 1) * n_vocab])
    }
}

/// What to do with each scored position's logits besides perplexity.
pub enum Compare<'a> {
    None,
    /// Append log-probs to this writer (the `--save-logits` file, header written by the caller).
    Save(&'a mut dyn Write),
    Base(&'a BaseLogprobs),
}

/// Run the perplexity protocol over `tokens` (already tokenized with BOS as the model
/// wants), `chunks` chunks of `n_ctx`. `progress(done, total)` after each chunk.
#[allow(clippy::too_many_arguments)]
pub fn perplexity<B: Backend>(
    model: &Model<B>,
    backend: &mut B,
    session: &mut Session<B>,
    tokens: &[u32],
    n_ctx: usize,
    chunks: usize,
    bos: Option<u32>,
    mut compare: Compare,
    mut progress: impl FnMut(usize, usize),
) -> Result<Scores> {
    let available = tokens.len() / n_ctx;
    if available == 0 || n_ctx < 4 {
        return Err(Error::Shape(format!(
            "{} tokens do not fill one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let chunks = chunks.min(available);
    let first = n_ctx / 2;
    if let Compare::Base(base) = &compare {
        base.check(model.n_vocab(), chunks * (n_ctx - 1 - first))?;
    }
    let mut scores = Scores::default();
    for c in 0..chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        let logits = model.forward(backend, session, &chunk, true)?;
        let n_vocab = logits.len() / n_ctx;
        for j in first..n_ctx - 1 {
            scores.push(&logits[j * n_vocab..(j + 1) * n_vocab], chunk[j + 1], &mut compare)?;
        }
        progress(c + 1, chunks);
    }
    Ok(scores)
}
