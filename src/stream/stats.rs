//! What streaming did, per MoE layer and overall (`--stats`).

use super::plan::Memory;
use std::fmt::Write;
use std::time::Duration;

/// Counters of one MoE layer.
#[derive(Clone, Debug, Default)]
pub struct LayerStats {
    pub layer: usize,
    /// (token, expert) uses, and those whose expert was resident when the layer ran.
    pub uses: u64,
    pub hits: u64,
    /// Bytes uploaded on demand and by prefetch.
    pub demand_bytes: u64,
    pub prefetch_bytes: u64,
    /// Experts predicted for this layer, the predictions the router then chose, and the
    /// distinct experts it chose while predictions were made.
    pub predicted: u64,
    pub predicted_used: u64,
    pub chosen_with_prediction: u64,
    /// Prefetched experts evicted before any use.
    pub prefetch_wasted: u64,
    /// Time the host waited for the routes to come back (the read-back also waits for
    /// the work recorded before the router), and time it spent queueing demand uploads
    /// (on the host: reading demand misses, the stall of that regime).
    pub wait: Duration,
    pub upload: Duration,
    /// Host time of the prefetches run from this layer, their number, and how many ended
    /// while the device was still computing the layer (their copies overlapped it).
    pub prefetch_time: Duration,
    pub prefetches: u64,
    pub prefetches_under_compute: u64,
    pub read_backs: u64,
    /// Waves the layer's steps took (a step whose experts exceed the pool takes several).
    pub waves: u64,
}

impl LayerStats {
    pub fn hit_rate(&self) -> f64 {
        self.hits as f64 / self.uses.max(1) as f64
    }
}

/// Counters of a streamed model since load (or the last reset).
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    pub layers: Vec<LayerStats>,
    /// Tokens run through the model.
    pub tokens: u64,
    /// Which memory the slots are in: device (uploads) or host (reads).
    pub memory: Memory,
    /// Bytes lowbit holds in that memory now (on the host: the slots), its peak, and
    /// the budget.
    pub in_use: u64,
    pub peak: u64,
    pub budget: u64,
    /// Expert slots over all pools and the share of all expert bytes they hold.
    pub slots: usize,
    pub slot_fraction: f64,
    pub pools: Vec<PoolStats>,
}

/// One slot pool: the model layers it serves, its slots, and one expert's bytes.
#[derive(Clone, Debug, Default)]
pub struct PoolStats {
    pub layers: Vec<usize>,
    pub slots: usize,
    pub expert_bytes: u64,
}

impl StreamStats {
    /// All layers' counters summed.
    pub fn total(&self) -> LayerStats {
        let mut t = LayerStats::default();
        for l in &self.layers {
            t.uses += l.uses;
            t.hits += l.hits;
            t.demand_bytes += l.demand_bytes;
            t.prefetch_bytes += l.prefetch_bytes;
            t.predicted += l.predicted;
            t.predicted_used += l.predicted_used;
            t.chosen_with_prediction += l.chosen_with_prediction;
            t.prefetch_wasted += l.prefetch_wasted;
            t.wait += l.wait;
            t.upload += l.upload;
            t.prefetch_time += l.prefetch_time;
            t.prefetches += l.prefetches;
            t.prefetches_under_compute += l.prefetches_under_compute;
            t.read_backs += l.read_backs;
            t.waves += l.waves;
        }
        t
    }

    /// Bytes uploaded per token, demand and prefetch together.
    pub fn bytes_per_token(&self) -> f64 {
        let t = self.total();
        (t.demand_bytes + t.prefetch_bytes) as f64 / self.tokens.max(1) as f64
    }

    /// The `--stats` table: one row per MoE layer, then the total.
    pub fn report(&self) -> String {
        let per_token = |v: f64| v / self.tokens.max(1) as f64;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut out = String::new();
        let (moved, moving) = match self.memory {
            Memory::Device => ("uploaded", "upload"),
            Memory::Host => ("read", "read"),
        };
        let _ = writeln!(
            out,
            "expert streaming ({}): {} slots ({:.1}% of expert bytes), {:.1} MiB in use, peak {:.1} MiB of a {:.1} MiB budget, {} tokens",
            match self.memory {
                Memory::Device => "VRAM slots",
                Memory::Host => "host cache",
            },
            self.slots,
            100.0 * self.slot_fraction,
            mib(self.in_use),
            mib(self.peak),
            mib(self.budget),
            self.tokens
        );
        let _ = writeln!(
            out,
            "| layer | hit rate | MiB {moved} / token | prefetch precision | prefetch recall | read-back wait ms / token | demand {moving} ms / token | prefetch ms / token | prefetches under compute | read-backs / token |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let total = self.total();
        let rows = self.layers.iter().map(|l| (l.layer.to_string(), l));
        for (name, l) in rows.chain(std::iter::once(("all".to_string(), &total))) {
            let ratio = |a: u64, b: u64| {
                if b == 0 {
                    "-".to_string()
                } else {
                    format!("{:.1}%", 100.0 * a as f64 / b as f64)
                }
            };
            let _ = writeln!(
                out,
                "| {name} | {:.1}% | {:.3} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
                100.0 * l.hit_rate(),
                per_token(mib(l.demand_bytes + l.prefetch_bytes)),
                ratio(l.predicted_used, l.predicted),
                ratio(l.predicted_used, l.chosen_with_prediction),
                per_token(l.wait.as_secs_f64() * 1e3),
                per_token(l.upload.as_secs_f64() * 1e3),
                per_token(l.prefetch_time.as_secs_f64() * 1e3),
                ratio(l.prefetches_under_compute, l.prefetches),
                per_token(l.read_backs as f64),
            );
        }
        out
    }
}
