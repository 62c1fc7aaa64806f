//! `lowbit bench stream`: decode a text token by token (teacher-forced) on the GPU at
//! several expert budgets and policies, next to Belady's optimum over the same routes.
//!
//! Per budget (a fraction of all routed-expert bytes, on top of the resident part, KV
//! cache and scratch of [`MemoryPlan::budget_for`]) it runs `lru`, `reuse` and
//! `reuse+prefetch` for real, and `belady` offline over the router trace of a fully
//! resident run with the same slot counts. Decode speed excludes the first
//! [`WARMUP`] steps (pipeline compilation), and the resident speed is measured in the
//! same run for the ratio.

use super::belady::{Step, belady};
use super::{PolicyKind, StreamOptions};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::File;
use crate::gpu::{GpuBackend, GpuOptions};
use crate::model::{Model, memory_plan};
use crate::tokenizer::Tokenizer;
use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

/// Decode steps not timed (the first ones compile pipelines).
pub const WARMUP: usize = 8;

/// One row of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The expert budget, as a fraction of all expert bytes.
    pub budget: f64,
    /// `lru`, `reuse`, `reuse+prefetch`, `belady` or `resident`.
    pub policy: String,
    pub hit_rate: f64,
    pub bytes_per_token: f64,
    /// Decode tokens per second (None for the simulator).
    pub tok_s: Option<f64>,
}

/// Teacher-forced decode of `tokens` on a fresh backend: (tok/s after warm-up, the
/// backend, the router trace when `trace`).
fn decode(
    file: &File,
    gpu: &GpuOptions,
    options: &StreamOptions,
    tokens: &[u32],
    trace: bool,
) -> Result<(f64, GpuBackend, Vec<Step>)> {
    let mut b = GpuBackend::new(gpu.clone())?;
    let model = Model::load_with(file, &mut b, options, |_, _| {})?;
    let mut session = model.session(&mut b, tokens.len())?;
    if trace {
        session.trace = Some(Vec::new());
    }
    let mut start = Instant::now();
    for (i, &t) in tokens.iter().enumerate() {
        if i == WARMUP {
            start = Instant::now();
        }
        model.forward(&mut b, &mut session, &[t], false)?;
    }
    let timed = tokens.len().saturating_sub(WARMUP).max(1);
    let tok_s = timed as f64 / start.elapsed().as_secs_f64();
    let steps = session
        .trace
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|r| Step {
            layer: r.layer as u32,
            experts: r.experts,
        })
        .collect();
    Ok((tok_s, b, steps))
}

/// Run the sweep over the first `n_tokens` tokens of `text` (`progress(row)` after each
/// row).
pub fn sweep(
    model: &Path,
    text: &Path,
    budgets: &[f64],
    n_tokens: usize,
    gpu: &GpuOptions,
    mut progress: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    let file = File::open(model)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let body = std::fs::read_to_string(text).map_err(|e| Error::io(text, e))?;
    let mut tokens = tokenizer.encode(&body, true, false)?;
    if tokens.len() < n_tokens || n_tokens <= WARMUP {
        return Err(Error::Unsupported(format!(
            "{}: {} tokens, the sweep needs more than {WARMUP} and --tokens {n_tokens}",
            text.display(),
            tokens.len()
        )));
    }
    tokens.truncate(n_tokens);
    let plan = memory_plan(&file, tokens.len())?;
    if plan.expert_layers.is_empty() {
        return Err(Error::Unsupported(format!(
            "{}: no routed experts to stream",
            model.display()
        )));
    }
    // The trace for Belady, then the resident speed without the trace's read-backs.
    let (_, _, trace) = decode(&file, gpu, &Default::default(), &tokens, true)?;
    let (resident_tok_s, _, _) = decode(&file, gpu, &Default::default(), &tokens, false)?;
    let mut rows = vec![Row {
        budget: 1.0,
        policy: "resident".into(),
        hit_rate: 1.0,
        bytes_per_token: 0.0,
        tok_s: Some(resident_tok_s),
    }];
    progress(&rows[0]);
    for &budget in budgets {
        let runs = [
            (PolicyKind::Lru, false),
            (PolicyKind::Reuse, false),
            (PolicyKind::Reuse, true),
        ];
        let mut pools = Vec::new();
        for (policy, prefetch) in runs {
            let options = StreamOptions {
                vram_budget: Some(plan.budget_for(budget)),
                policy,
                prefetch,
                n_ctx: tokens.len(),
                ..Default::default()
            };
            let (tok_s, b, _) = decode(&file, gpu, &options, &tokens, false)?;
            let stats = b
                .stream_stats()
                .ok_or_else(|| Error::Gpu("no streaming statistics".into()))?;
            pools = stats.pools.clone();
            let name = if prefetch {
                format!("{}+prefetch", policy.name())
            } else {
                policy.name().to_string()
            };
            rows.push(Row {
                budget,
                policy: name,
                hit_rate: stats.total().hit_rate(),
                bytes_per_token: stats.bytes_per_token(),
                tok_s: Some(tok_s),
            });
            progress(rows.last().expect("pushed"));
        }
        let pool_of = |layer: u32| {
            pools
                .iter()
                .position(|p| p.layers.contains(&(layer as usize)))
                .unwrap_or(0)
        };
        let slots: Vec<usize> = pools.iter().map(|p| p.slots).collect();
        let (mut hits, uses) = belady(&trace, pool_of, &slots);
        if plan.budget_for(budget) >= plan.budget_for(1.0) {
            // Pools that hold every expert are filled at load, as in the online runs.
            hits = uses;
        }
        // Decode steps use distinct experts, so every missed use uploads one expert.
        let expert_bytes = pools.iter().map(|p| p.expert_bytes).max().unwrap_or(0) as f64;
        let misses_bytes = (uses - hits) as f64 * expert_bytes;
        rows.push(Row {
            budget,
            policy: "belady".into(),
            hit_rate: hits as f64 / uses.max(1) as f64,
            bytes_per_token: misses_bytes / tokens.len() as f64,
            tok_s: None,
        });
        progress(rows.last().expect("pushed"));
    }
    Ok(rows)
}

/// The rows as a Markdown table, with decode speed relative to the resident run.
pub fn table(rows: &[Row]) -> String {
    let resident = rows.iter().find(|r| r.policy == "resident").and_then(|r| r.tok_s);
    let mut out = String::from(
        "| expert budget | policy | hit rate | MiB uploaded / token | decode tok/s | of resident |\n|---:|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (tok_s, ratio) = match (r.tok_s, resident) {
            (Some(t), Some(res)) => (format!("{t:.1}"), format!("{:.0}%", 100.0 * t / res)),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "| {:.1}% | {} | {:.1}% | {:.3} | {tok_s} | {ratio} |",
            100.0 * r.budget,
            r.policy,
            100.0 * r.hit_rate,
            r.bytes_per_token / (1 << 20) as f64
        );
    }
    out
}

/// The rows as a JSON array of objects (`budget`, `policy`, `hit_rate`,
/// `bytes_per_token`, `tok_s`, null for the simulator).
pub fn json(rows: &[Row]) -> String {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "budget": r.budget,
                "policy": r.policy,
                "hit_rate": r.hit_rate,
                "bytes_per_token": r.bytes_per_token,
                "tok_s": r.tok_s,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

/// Hit rate against budget (log scale), one line per policy, as an SVG document.
pub fn svg(rows: &[Row]) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let budgets: Vec<f64> = rows
        .iter()
        .filter(|r| r.policy != "resident")
        .map(|r| r.budget)
        .collect();
    let lo = budgets.iter().cloned().fold(f64::INFINITY, f64::min).log2();
    let hi = budgets.iter().cloned().fold(f64::NEG_INFINITY, f64::max).log2();
    let x = |b: f64| m + (b.log2() - lo) / (hi - lo).max(1e-9) * (w - 2.0 * m);
    let y = |r: f64| h - m - r * (h - 2.0 * m);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>",
        h - m,
        w - m,
        h - m,
        h - m
    );
    for i in 0..=4 {
        let r = i as f64 / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}%</text>",
            m - 6.0,
            y(r) + 4.0,
            100.0 * r
        );
    }
    let mut ticks = budgets.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for b in &ticks {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.1}%</text>",
            x(*b),
            h - m + 18.0,
            100.0 * b
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">expert budget (share of expert bytes)</text>",
        w / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        out,
        "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">hit rate</text>",
        h / 2.0,
        h / 2.0
    );
    let colors = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd"];
    let mut policies: Vec<&str> = rows
        .iter()
        .filter(|r| r.policy != "resident")
        .map(|r| r.policy.as_str())
        .collect();
    policies.dedup();
    let mut seen = Vec::new();
    for p in policies {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let color = colors[(seen.len() - 1) % colors.len()];
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.policy == p)
            .map(|r| (r.budget, r.hit_rate))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = pts.iter().map(|&(b, r)| format!("{:.1},{:.1}", x(b), y(r))).collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        let ly = m + 16.0 * seen.len() as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{p}</text>",
            m + 10.0,
            m + 30.0,
            m + 36.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}
