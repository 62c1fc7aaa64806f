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
        if bytes.len() != n_vocab * n_pos * 2 {
            return Err(Error::Unsupported(format!(
                "{}: truncated ({} bytes for {n_pos} x {n_vocab})",
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
    let mut scores = Scores::default();
    let mut position = 0;
    for c in 0..chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        let logits = model.forward(backend, session, &chunk, true)?;
        let n_vocab = logits.len() / n_ctx;
        for j in first..n_ctx - 1 {
            let lp = log_softmax(&logits[j * n_vocab..(j + 1) * n_vocab]);
            scores.nll.push(-lp[chunk[j + 1] as usize]);
            match &mut compare {
                Compare::None => {}
                Compare::Save(w) => {
                    let bytes: Vec<u8> = lp.iter().flat_map(|&v| f16::from_f64(v).to_le_bytes()).collect();
                    w.write_all(&bytes).map_err(|e| Error::io("--save-logits", e))?;
                }
                Compare::Base(base) => {
                    if base.n_vocab != n_vocab || (position + 1) * n_vocab > base.data.len() {
                        return Err(Error::Shape(format!(
                            "the base logits ({} vocab) do not cover this run",
                            base.n_vocab
                        )));
                    }
                    let b = &base.data[position * n_vocab..(position + 1) * n_vocab];
                    let kl: f64 = b
                        .iter()
                        .zip(&lp)
                        .map(|(bl, l)| {
                            let bl = bl.to_f64();
                            bl.exp() * (bl - l)
                        })
                        .sum();
                    scores.kld.push(kl.max(0.0));
                    let arg = |v: &mut dyn Iterator<Item = f64>| {
                        v.enumerate()
                            .fold((0, f64::NEG_INFINITY), |a, (i, x)| if x > a.1 { (i, x) } else { a })
                            .0
                    };
                    scores
                        .same_top
                        .push(arg(&mut b.iter().map(|x| x.to_f64())) == arg(&mut lp.iter().copied()));
                }
            }
            position += 1;
        }
        progress(c + 1, chunks);
    }
    Ok(scores)
}
