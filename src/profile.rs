//! Wall time per operation (`generate --profile`), the table both backends report.
//!
//! The GPU backend records every operation into its own command buffer, submitted and
//! waited for, so its time is its host-side encoding, its submission and its execution;
//! the cost of submitting and waiting for an empty command buffer is measured too, as the
//! part of each operation's time that profiling itself adds. The fast CPU backend times
//! each of its kernels' pool runs (`crate::cpu::CpuBackend::fast`). The time between the
//! timed operations (the model's host code, sampling, detokenizing) is its own row.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

#[derive(Default)]
struct OpTime {
    calls: u64,
    time: Duration,
}

pub struct OpProfile {
    ops: BTreeMap<Cow<'static, str>, OpTime>,
    /// Submitting and waiting for an empty command buffer (zero on the CPU).
    pub empty_submit: Duration,
    started: Instant,
}

impl OpProfile {
    pub fn new(empty_submit: Duration) -> Self {
        OpProfile {
            ops: BTreeMap::new(),
            empty_submit,
            started: Instant::now(),
        }
    }

    pub fn add(&mut self, op: Cow<'static, str>, time: Duration) {
        let t = self.ops.entry(op).or_default();
        t.calls += 1;
        t.time += time;
    }

    /// A Markdown table of the operations, most time first, per forward pass over
    /// `steps` passes: calls, µs per call, ms per pass, and µs per call net of the empty
    /// submission; then the wall time since profiling started that no operation took.
    pub fn report(&self, steps: usize) -> String {
        let steps = steps.max(1) as f64;
        let empty_us = self.empty_submit.as_secs_f64() * 1e6;
        let mut rows: Vec<_> = self.ops.iter().collect();
        rows.sort_by_key(|(_, t)| std::cmp::Reverse(t.time));
        let total: Duration = rows.iter().map(|(_, t)| t.time).sum();
        let calls: u64 = rows.iter().map(|(_, t)| t.calls).sum();
        let wall = self.started.elapsed().max(total);
        let mut out = String::new();
        if !self.empty_submit.is_zero() {
            let _ = writeln!(
                out,
                "empty submit + wait: {empty_us:.1} µs (included in every call below)\n"
            );
        }
        let _ = writeln!(
            out,
            "| op | calls/pass | µs/call | net µs/call | ms/pass | share |\n|---|---:|---:|---:|---:|---:|"
        );
        for (op, t) in rows {
            let us = t.time.as_secs_f64() * 1e6 / t.calls as f64;
            let _ = writeln!(
                out,
                "| {op} | {:.1} | {us:.1} | {:.1} | {:.2} | {:.0}% |",
                t.calls as f64 / steps,
                (us - empty_us).max(0.0),
                t.time.as_secs_f64() * 1e3 / steps,
                100.0 * t.time.as_secs_f64() / wall.as_secs_f64().max(1e-12),
            );
        }
        let outside = wall - total;
        let _ = writeln!(
            out,
            "| between operations | | | | {:.2} | {:.0}% |\n| all | {:.1} | | | {:.2} | 100% |",
            outside.as_secs_f64() * 1e3 / steps,
            100.0 * outside.as_secs_f64() / wall.as_secs_f64().max(1e-12),
            calls as f64 / steps,
            wall.as_secs_f64() * 1e3 / steps
        );
        out
    }
}
