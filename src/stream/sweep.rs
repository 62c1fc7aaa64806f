//! `lowbit bench stream`: decode a token sequence one token at a time at several expert
//! budgets and policies, next to Belady's optimum over the same routes, on any backend.
//!
//! The budgets limit either device memory ([`Budgets::Vram`], fractions of all routed
//! expert bytes on top of the resident part, KV cache and scratch of
//! [`MemoryPlan::budget_for`]) or host memory ([`Budgets::Ram`], sizes, as
//! `--ram-budget` takes them). Per budget it runs `lru`, `reuse` and `reuse+prefetch`
//! for real, and `belady` offline over the router trace of a run without a budget, with
//! the same slot counts. Under a RAM budget it also measures the disk's cold sequential
//! read rate ([`super::disk`]) and starts every run with the file's pages dropped from
//! the page cache. Decode speed excludes the first `warmup` steps (pipeline
//! compilation, first reads), and the unbudgeted speed is measured in the same run for
//! the ratio.
//!
//! [`MemoryPlan::budget_for`]: super::MemoryPlan::budget_for

use super::belady::{Step, belady};
use super::disk::{self, DiskRate};
use super::plan::Memory;
use super::{PolicyKind, StreamOptions, StreamStats};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::File;
use crate::model::{Model, memory_plan};
use crate::tokenizer::Tokenizer;
use std::path::Path;
use std::time::Instant;

/// Bytes of the file the disk-rate measurement reads (at most).
pub const DISK_PROBE_BYTES: u64 = 1 << 30;

/// What the sweep decodes.
pub enum Input<'a> {
    /// The first tokens of a text, teacher-forced (the model's tokenizer encodes it).
    Text(&'a Path),
    /// The model's own greedy continuation of its BOS token (token 0 without one),
    /// decoded once without a budget and replayed: for files without a tokenizer, such
    /// as `lowbit synth`'s.
    Greedy,
}

/// The budgets of the sweep.
#[derive(Clone, Debug)]
pub enum Budgets {
    /// Device memory: fractions of all routed-expert bytes in VRAM slots.
    Vram(Vec<f64>),
    /// Host memory: RAM budgets in bytes.
    Ram(Vec<u64>),
}

/// What the sweep runs.
pub struct SweepOptions<'a> {
    pub input: Input<'a>,
    pub budgets: Budgets,
    /// Positions decoded per run.
    pub n_tokens: usize,
    /// Steps not timed at the start of each run.
    pub warmup: usize,
    /// Explicit reads through the page cache (see [`StreamOptions::page_cache`]).
    pub page_cache: bool,
}

/// One row of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Share of all expert bytes the slots hold (for VRAM rows, the fraction asked for).
    pub budget: f64,
    /// The budget in bytes (0 for the unbudgeted run).
    pub budget_bytes: u64,
    /// `lru`, `reuse`, `reuse+prefetch`, `belady` or `resident`.
    pub policy: String,
    pub hit_rate: f64,
    /// Expert bytes moved per token, demand and prefetch, and demand alone.
    pub bytes_per_token: f64,
    pub demand_bytes_per_token: f64,
    /// Seconds per token the decode waited on demand uploads or reads (None for the
    /// simulator).
    pub stall_per_token: Option<f64>,
    /// Decode tokens per second (None for the simulator).
    pub tok_s: Option<f64>,
}

impl Row {
    /// Demand bytes per second of stall: the rate reads ran at while the decode waited.
    pub fn read_rate(&self) -> Option<f64> {
        let stall = self.stall_per_token?;
        (stall > 0.0).then(|| self.demand_bytes_per_token / stall)
    }
}

/// The rows, and under a RAM budget the disk's rate measured in the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub rows: Vec<Row>,
    pub disk: Option<DiskRate>,
}

/// One decode run: tok/s after warm-up, the backend, the router trace when `trace`,
/// and the tokens decoded (those of `forced`, or the greedy choices when it is empty).
struct Run<B> {
    tok_s: f64,
    backend: B,
    trace: Vec<Step>,
    tokens: Vec<u32>,
}

fn decode<B: Backend>(
    file: &File,
    mut backend: B,
    options: &StreamOptions,
    (forced, first): (&[u32], u32),
    sweep: &SweepOptions,
    trace: bool,
) -> Result<Run<B>> {
    let (n_tokens, warmup) = (sweep.n_tokens, sweep.warmup);
    let model = Model::load_with(file, &mut backend, options, |_, _| {})?;
    let mut session = model.session(&mut backend, n_tokens)?;
    if trace {
        session.trace = Some(Vec::new());
    }
    let mut tokens = Vec::with_capacity(n_tokens);
    let mut next = forced.first().copied().unwrap_or(first);
    let mut start = Instant::now();
    for i in 0..n_tokens {
        if i == warmup {
            start = Instant::now();
        }
        tokens.push(next);
        let logits = model.forward(&mut backend, &mut session, &[next], false)?;
        next = match forced.get(i + 1) {
            Some(&t) => t,
            None => crate::sample::argmax(&logits),
        };
    }
    let timed = n_tokens.saturating_sub(warmup).max(1);
    let tok_s = timed as f64 / start.elapsed().as_secs_f64();
    let trace = session
        .trace
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|r| Step {
            layer: r.layer as u32,
            experts: r.experts,
        })
        .collect();
    Ok(Run {
        tok_s,
        backend,
        trace,
        tokens,
    })
}

/// The tokens to teacher-force (empty for [`Input::Greedy`]) and the first token.
fn input_tokens(file: &File, options: &SweepOptions) -> Result<(Vec<u32>, u32)> {
    let Input::Text(text) = options.input else {
        let bos = file
            .metadata("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        return Ok((Vec::new(), bos as u32));
    };
    let tokenizer = Tokenizer::from_gguf(file)?;
    let body = std::fs::read_to_string(text).map_err(|e| Error::io(text, e))?;
    let mut tokens = tokenizer.encode(&body, true, false)?;
    if tokens.len() < options.n_tokens {
        return Err(Error::Unsupported(format!(
            "{}: {} tokens, the sweep asks for {}",
            text.display(),
            tokens.len(),
            options.n_tokens
        )));
    }
    tokens.truncate(options.n_tokens);
    Ok((tokens, 0))
}

/// Run the sweep on backends made by `new_backend` (one per run; `progress(row)` after
/// each row).
pub fn sweep<B: Backend>(
    model: &Path,
    options: &SweepOptions,
    mut new_backend: impl FnMut() -> Result<B>,
    mut progress: impl FnMut(&Row),
) -> Result<Sweep> {
    if options.n_tokens <= options.warmup {
        return Err(Error::Unsupported(format!(
            "--tokens {} leaves nothing to time after --warmup {}",
            options.n_tokens, options.warmup
        )));
    }
    let file = File::open(model)?;
    let plan = memory_plan(&file, options.n_tokens)?;
    if plan.expert_layers.is_empty() {
        return Err(Error::Unsupported(format!(
            "{}: no routed experts to stream",
            model.display()
        )));
    }
    let ram = matches!(options.budgets, Budgets::Ram(_));
    let disk = if ram {
        Some(disk::measure(&file, DISK_PROBE_BYTES)?)
    } else {
        None
    };
    let cold = || {
        if ram {
            crate::gguf::direct::evict_page_cache(model);
        }
    };
    let (forced, first) = input_tokens(&file, options)?;
    let unbudgeted = StreamOptions {
        n_ctx: options.n_tokens,
        ..Default::default()
    };
    let run = |b: B, s: &StreamOptions, forced: &[u32], trace: bool| {
        cold();
        decode(&file, b, s, (forced, first), options, trace)
    };
    // The trace for Belady (and the greedy tokens), then the speed without the trace's
    // read-backs.
    let traced = run(new_backend()?, &unbudgeted, &forced, true)?;
    let tokens = traced.tokens;
    let resident = run(new_backend()?, &unbudgeted, &tokens, false)?;
    let mut rows = vec![Row {
        budget: 1.0,
        budget_bytes: 0,
        policy: "resident".into(),
        hit_rate: 1.0,
        bytes_per_token: 0.0,
        demand_bytes_per_token: 0.0,
        stall_per_token: Some(0.0),
        tok_s: Some(resident.tok_s),
    }];
    progress(&rows[0]);
    // Per budget: the expert fraction asked for (VRAM; under a RAM budget the share the
    // slots get is only known after load) and the options.
    let budgets: Vec<(Option<f64>, StreamOptions)> = match &options.budgets {
        Budgets::Vram(fractions) => fractions
            .iter()
            .map(|&f| {
                let s = StreamOptions {
                    vram_budget: Some(plan.budget_for(f)),
                    ..unbudgeted.clone()
                };
                (Some(f), s)
            })
            .collect(),
        Budgets::Ram(sizes) => sizes
            .iter()
            .map(|&b| {
                let s = StreamOptions {
                    ram_budget: Some(b),
                    page_cache: options.page_cache,
                    ..unbudgeted.clone()
                };
                (None, s)
            })
            .collect(),
    };
    for (fraction, budget) in budgets {
        let mut last: Option<StreamStats> = None;
        for (policy, prefetch) in [
            (PolicyKind::Lru, false),
            (PolicyKind::Reuse, false),
            (PolicyKind::Reuse, true),
        ] {
            let s = StreamOptions {
                policy,
                prefetch,
                ..budget.clone()
            };
            let done = run(new_backend()?, &s, &tokens, false)?;
            let memory = if ram { Memory::Host } else { Memory::Device };
            let b = &done.backend;
            let stats = [b.stream_stats(), b.host_stats()]
                .into_iter()
                .flatten()
                .find(|s| s.memory == memory)
                .ok_or_else(|| Error::Unsupported(format!("{}: no streaming statistics", done.backend.name())))?;
            let total = stats.total();
            let per_token = |v: f64| v / stats.tokens.max(1) as f64;
            let name = if prefetch {
                format!("{}+prefetch", policy.name())
            } else {
                policy.name().to_string()
            };
            rows.push(Row {
                budget: fraction.unwrap_or(stats.slot_fraction),
                budget_bytes: stats.budget,
                policy: name,
                hit_rate: total.hit_rate(),
                bytes_per_token: stats.bytes_per_token(),
                demand_bytes_per_token: per_token(total.demand_bytes as f64),
                stall_per_token: Some(per_token(total.upload.as_secs_f64())),
                tok_s: Some(done.tok_s),
            });
            progress(rows.last().expect("pushed"));
            last = Some(stats);
        }
        let stats = last.expect("three runs");
        rows.push(belady_row(&traced.trace, &stats, ram, &rows[rows.len() - 1]));
        progress(rows.last().expect("pushed"));
    }
    Ok(Sweep { rows, disk })
}

/// Belady's hit rate over `trace` with the slot counts of `stats`' pools, as a row
/// beside the online run `like`.
fn belady_row(trace: &[Step], stats: &StreamStats, ram: bool, like: &Row) -> Row {
    let pools = &stats.pools;
    let pool_of = |layer: u32| {
        pools
            .iter()
            .position(|p| p.layers.contains(&(layer as usize)))
            .unwrap_or(0)
    };
    let slots: Vec<usize> = pools.iter().map(|p| p.slots).collect();
    let (mut hits, uses) = belady(trace, pool_of, &slots);
    if !ram && stats.slot_fraction >= 1.0 {
        // VRAM pools that hold every expert are filled at load, as in the online runs.
        hits = uses;
    }
    // Decode steps use distinct experts, so every missed use moves one expert.
    let expert_bytes = pools.iter().map(|p| p.expert_bytes).max().unwrap_or(0) as f64;
    let missed = (uses - hits) as f64 * expert_bytes / stats.tokens.max(1) as f64;
    Row {
        policy: "belady".into(),
        hit_rate: hits as f64 / uses.max(1) as f64,
        bytes_per_token: missed,
        demand_bytes_per_token: missed,
        stall_per_token: None,
        tok_s: None,
        ..like.clone()
    }
}
