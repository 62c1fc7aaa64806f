//! Bit-budget allocation (`--target-bpw`, `--target-size`): measure how much each tensor
//! suffers under each candidate type, then choose one type per tensor to minimize the
//! summed damage within the byte budget.
//!
//! Damage of tensor t at type q is the importance-weighted relative error of its
//! products, `Σ_m u_m Σ_r Σ_j a_mj (w - q(w))² / Σ_m u_m Σ_r Σ_j a_mj w²`, where `a_mj` is
//! the imatrix's mean x² of input j of matrix m (1 without an imatrix) and `u_m` the
//! share of tokens matrix m sees (experts: their routing counts). It estimates the
//! relative error of the tensor's output on the calibration data. Rows are sampled.
//!
//! The solver is the greedy of the Lagrangian relaxation: each tensor starts at its
//! cheapest candidate, and the upgrade with the largest damage reduction per added byte
//! is taken while it fits (upgrades follow each tensor's lower convex hull, so no
//! dominated type is ever chosen).

use super::{Imatrix, Planned};
use crate::error::{Error, Result};
use crate::gguf::File;
use crate::quant::{self, BlockType};
use rayon::prelude::*;

/// The types the solver may choose, cheapest first.
pub const CANDIDATES: &[BlockType] = &[
    BlockType::IQ1_S,
    BlockType::IQ1_M,
    BlockType::IQ2_XXS,
    BlockType::Q2_K,
    BlockType::Q3_K,
    BlockType::Q4_K,
    BlockType::Q5_K,
    BlockType::Q6_K,
    BlockType::Q8_0,
];

/// One tensor's measured options.
#[derive(Clone, Debug)]
pub struct Sensitivity {
    /// Index into the plan.
    pub index: usize,
    /// (type after fallback, bytes, damage), by increasing bytes, dominated ones removed.
    pub options: Vec<(BlockType, u64, f64)>,
}

/// Importance-weighted relative error of `ty` on the sampled rows of every matrix.
fn damage(
    values: &[f32],
    p: &Planned,
    ty: BlockType,
    imatrix: Option<&Imatrix>,
    rows_per_matrix: usize,
) -> Result<f64> {
    let k = p.k();
    let rows = p.dims.get(1).copied().unwrap_or(1) as usize;
    let n_mat = (p.dims[2..].iter().product::<u64>() as usize).max(1);
    let step = rows.div_ceil(rows_per_matrix.max(1)).max(1);
    let usage = |m: usize| -> f64 {
        imatrix
            .and_then(|im| im.entries.get(&p.name))
            .map_or(1.0, |e| if e.counts.len() > 1 { e.counts[m] as f64 } else { 1.0 })
    };
    let per_mat = (0..n_mat)
        .into_par_iter()
        .map(|m| -> Result<(f64, f64)> {
            let a = match imatrix {
                Some(im) => im.weights(&p.name, m, k, n_mat)?,
                None => None,
            };
            let row_bytes = ty.row_bytes(k)?;
            let (mut err, mut sig) = (0f64, 0f64);
            let mut q = vec![0u8; row_bytes];
            let mut back = vec![0f32; k];
            for r in (0..rows).step_by(step) {
                let w = &values[(m * rows + r) * k..][..k];
                quant::quantize_row(ty, w, a.as_deref(), &mut q)?;
                quant::dequantize_row(ty, &q, &mut back)?;
                for j in 0..k {
                    let aj = a.as_ref().map_or(1.0, |a| a[j] as f64);
                    err += aj * ((w[j] - back[j]) as f64).powi(2);
                    sig += aj * (w[j] as f64).powi(2);
                }
            }
            Ok((usage(m) * err, usage(m) * sig))
        })
        .collect::<Result<Vec<_>>>()?;
    let (err, sig) = per_mat.iter().fold((0.0, 0.0), |(e, s), (a, b)| (e + a, s + b));
    Ok(if sig > 0.0 { err / sig } else { 0.0 })
}

impl Sensitivity {
    /// The options worth taking among `options` (type, bytes, damage): the lower convex
    /// hull of (bytes, damage), by increasing bytes.
    pub fn new(index: usize, options: Vec<(BlockType, u64, f64)>) -> Self {
        Sensitivity {
            index,
            options: hull(options),
        }
    }
}

/// Lower convex hull of (bytes, damage) points sorted by bytes: the options worth taking.
fn hull(mut pts: Vec<(BlockType, u64, f64)>) -> Vec<(BlockType, u64, f64)> {
    pts.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)));
    let mut h: Vec<(BlockType, u64, f64)> = Vec::new();
    for p in pts {
        if h.last().is_some_and(|l| p.2 >= l.2) {
            continue;
        }
        while h.len() >= 2 {
            let (a, b) = (h[h.len() - 2], h[h.len() - 1]);
            // b on or above the segment a-p: drop it.
            let cross = (b.1 - a.1) as f64 * (p.2 - a.2) - (p.1 - a.1) as f64 * (b.2 - a.2);
            if cross <= 0.0 {
                h.pop();
            } else {
                break;
            }
        }
        h.push(p);
    }
    h
}

/// Measure every quantizable tensor of `plan` (except indices in `fixed`) under each
/// candidate. `progress(done, total)` per tensor.
pub fn measure(
    file: &File,
    plan: &[Planned],
    fixed: &[usize],
    imatrix: Option<&Imatrix>,
    rows_per_matrix: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Sensitivity>> {
    let todo: Vec<usize> = (0..plan.len())
        .filter(|i| plan[*i].quantizable() && !fixed.contains(i))
        .collect();
    let mut out = Vec::with_capacity(todo.len());
    for (done, &i) in todo.iter().enumerate() {
        let p = &plan[i];
        let values = file.tensor(&p.name)?.dequantize()?;
        let mut options = Vec::new();
        for &c in CANDIDATES {
            let mut q = p.clone();
            q.assign(c);
            if options.iter().any(|(t, _, _)| *t == q.ty) {
                continue;
            }
            let d = damage(&values, &q, q.ty, imatrix, rows_per_matrix)?;
            options.push((q.ty, q.bytes(), d));
        }
        out.push(Sensitivity::new(i, options));
        progress(done + 1, todo.len());
    }
    Ok(out)
}

/// Choose an option per tensor so that `Σ bytes ≤ budget - other_bytes`, greedily by
/// damage reduction per byte. Returns the chosen type per sensitivity, in order.
pub fn allocate(sens: &[Sensitivity], budget: u64, other_bytes: u64) -> Result<Vec<BlockType>> {
    let mut at = vec![0usize; sens.len()];
    let mut used: u64 = other_bytes + sens.iter().map(|s| s.options[0].1).sum::<u64>();
    if used > budget {
        return Err(Error::Unsupported(format!(
            "the budget of {budget} bytes is below the smallest plan ({used} bytes)"
        )));
    }
    loop {
        let best = sens
            .iter()
            .enumerate()
            .filter_map(|(t, s)| {
                let (cur, next) = (s.options[at[t]], *s.options.get(at[t] + 1)?);
                let extra = next.1 - cur.1;
                (used + extra <= budget).then(|| (t, (cur.2 - next.2) / extra.max(1) as f64, extra))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((t, _, extra)) => {
                at[t] += 1;
                used += extra;
            }
            None => break,
        }
    }
    Ok(sens.iter().zip(&at).map(|(s, &i)| s.options[i].0).collect())
}

/// Parse a size: `1.2GiB`, `800MB`, `123456` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| Error::Unsupported(format!("'{s}' is not a size like 1.2GiB")))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        other => return Err(Error::Unsupported(format!("unknown size unit '{other}'"))),
    };
    Ok((n * mult) as u64)
}

/// Calibration text for [`calibrate`]: chunks of tokens (BOS first, as the model wants).
pub struct Calibration {
    pub chunks: Vec<Vec<u32>>,
}

fn log_probs<B: crate::backend::Backend>(file: &File, backend: &mut B, chunks: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let model = crate::model::Model::load(file, backend, |_, _| {})?;
    let n = chunks.iter().map(Vec::len).max().unwrap_or(1);
    let mut session = model.session(backend, n)?;
    let mut out = Vec::new();
    for c in chunks {
        session.reset();
        let logits = model.forward(backend, &mut session, c, true)?;
        let vocab = logits.len() / c.len();
        out.extend(
            logits
                .chunks(vocab)
                .map(|l| crate::eval::log_softmax(l).iter().map(|&v| v as f32).collect()),
        );
    }
    Ok(out)
}

fn mean_kld(base: &[Vec<f32>], other: &[Vec<f32>]) -> f64 {
    let total: f64 = base
        .iter()
        .zip(other)
        .map(|(b, o)| {
            b.iter()
                .zip(o)
                .map(|(&p, &q)| (p as f64).exp() * (p - q) as f64)
                .sum::<f64>()
                .max(0.0)
        })
        .sum();
    total / base.len().max(1) as f64
}

/// Turn each tensor kind's relative errors into expected KL divergence. A kind is a
/// tensor name without its layer (`ffn_down_exps`, `attn_q_b`, `token_embd`): quantize
/// only that kind (each tensor at its option nearest 2.6 bpw, Q2_K's size), measure the
/// mean KL divergence of the model's outputs against the source on the calibration text
/// (CPU), and scale the kind's damages by KLD / (its summed damage there). Writes
/// temporary models under `dir`. Returns (kind, KLD, factor) per kind.
pub fn calibrate(
    file: &File,
    plan: &[Planned],
    sens: &mut [Sensitivity],
    imatrix: Option<&Imatrix>,
    text: &Calibration,
    dir: &std::path::Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<(String, f64, f64)>> {
    let mut cpu = crate::cpu::CpuBackend::default();
    let base = log_probs(file, &mut cpu, &text.chunks)?;
    let kind = |i: usize| super::recipe::kind_of(&plan[i].name).to_string();
    let mut kinds: Vec<String> = sens.iter().map(|s| kind(s.index)).collect();
    kinds.sort();
    kinds.dedup();
    let pick = |s: &Sensitivity| {
        s.options
            .iter()
            .min_by(|a, b| {
                let bpw = |o: &(BlockType, u64, f64)| (o.0.bits_per_weight() - 2.6).abs();
                bpw(a).total_cmp(&bpw(b))
            })
            .copied()
            .expect("every tensor has options")
    };
    let mut out = Vec::new();
    for (done, k) in kinds.iter().enumerate() {
        let mut trial = plan.to_vec();
        let mut damage = 0.0;
        for s in sens.iter().filter(|s| kind(s.index) == *k) {
            let (ty, _, d) = pick(s);
            trial[s.index].ty = ty;
            damage += d;
        }
        let path = dir.join(format!("calibrate-{}.gguf", done));
        super::quantize_file(file, &trial, &path, imatrix, |_, _| {})?;
        let kld = mean_kld(&base, &log_probs(&File::open(&path)?, &mut cpu, &text.chunks)?);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        let factor = if damage > 0.0 { kld / damage } else { 0.0 };
        for s in sens.iter_mut().filter(|s| kind(s.index) == *k) {
            s.options.iter_mut().for_each(|o| o.2 *= factor);
        }
        out.push((k.clone(), kld, factor));
        progress(done + 1, kinds.len());
    }
    Ok(out)
}
