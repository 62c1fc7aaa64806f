//! Expert streaming on the device: slot pools in VRAM, uploads of the experts the router
//! picks, and the expert-to-slot tables the MoE kernels read.
//!
//! At load ([`Streamer::allocate`]) the budget left after the resident weights, the KV
//! cache and scratch becomes one pool per byte-size class of expert (gate, up and down
//! matrices of the same types and shapes): three [`GpuExperts`] of `slots` matrices each,
//! slot s of all three holding the same expert. Every streamed layer has its own table
//! `slot_of[n_expert]` (`COPY_DST`).
//!
//! A layer's step ([`super::GpuBackend`]'s `routed_ffn`): the routes are read back (one
//! small read-back, skipped when the pool holds every expert of its layers and the step
//! needs no host grouping), the distinct experts are split into waves of at most the
//! pool's slots, and per wave the misses are admitted by the policy
//! ([`crate::stream::SlotCache`]), written into their slots with `Queue::write_buffer`
//! and the table rewritten, then the wave's products are recorded. Writes land before the
//! next submission, and every earlier command was submitted before them (the read-back
//! flushes, and so does each later wave), so a slot is never overwritten under a kernel
//! that still reads its old expert.
//!
//! Prefetch (the next layer's predicted experts) runs after the layer's products were
//! submitted, so its host copies (reading the file, filling wgpu's staging memory)
//! overlap the device computing them. The device copies cannot overlap kernels on
//! wgpu's one queue: wgpu-hal's Vulkan barriers OR the stage masks of every buffer they
//! move (`wgpu-hal/src/vulkan/command.rs`, `transition_buffers`), so a copy into a pool
//! buffer that kernels read waits for every earlier dispatch, and the first dispatch
//! after a copy waits for every earlier copy.

use super::buffers::Tracked;
use super::context::GpuContext;
use super::moe::{GpuExperts, NOT_RESIDENT, OTHER_WAVE};
use crate::error::{Error, Result};
use crate::gguf::TensorRef;
use crate::stream::cache::Admission;
use crate::stream::host::HostExperts;
use crate::stream::plan::class_slots;
use crate::stream::scheduler::{Scheduler, Wave};
use crate::stream::{ExpertKey, ExpertLayer, MemoryPlan, StreamOptions, StreamStats};
use std::time::Duration;

/// The streaming state of a [`super::GpuBackend`] loaded under a VRAM budget: the
/// scheduler, and per pool three matrices per slot, per layer its slot table.
pub struct Streamer {
    plan: MemoryPlan,
    s: Scheduler,
    tables: Vec<Tracked>,
    pools: Vec<[GpuExperts; 3]>,
    /// Under a RAM budget too: the host cache misses are read through (else the map).
    host: Option<HostExperts>,
}

impl Streamer {
    /// A streamer for `plan` under `options.vram_budget` (checked by the caller).
    pub fn new(plan: MemoryPlan, options: StreamOptions, host: Option<HostExperts>) -> Self {
        Streamer {
            plan,
            s: Scheduler::new(options),
            tables: Vec::new(),
            pools: Vec::new(),
            host,
        }
    }

    pub fn prefetches(&self) -> bool {
        self.s.options().prefetch
    }

    /// Register a MoE layer's experts (no upload yet); returns its index.
    pub fn register(&mut self, ctx: &GpuContext, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<usize> {
        let idx = self.s.register(shape, tensors)?;
        if let Some(h) = &mut self.host {
            h.register(shape, tensors)?;
        }
        self.tables.push(ctx.upload(
            "slot table",
            bytemuck::cast_slice(&vec![NOT_RESIDENT; shape.n_expert]),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?);
        Ok(idx)
    }

    /// Turn what the budget leaves (after everything allocated so far, the planned KV
    /// cache and scratch) into slot pools; pools that can hold all their experts are
    /// filled now.
    pub fn allocate(&mut self, ctx: &GpuContext, budget: u64) -> Result<()> {
        if let Some(h) = &mut self.host {
            h.allocate()?;
        }
        let reserved = ctx.allocated_bytes() + self.plan.kv_cache + self.plan.scratch;
        let left = budget.saturating_sub(reserved);
        let classes = self.s.classes();
        let slots_of = class_slots(&classes, left).map_err(|need| {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            Error::Budget(format!(
                "after {:.1} MiB of resident weights, {:.1} MiB of KV cache and {:.1} MiB of scratch, a VRAM budget of {:.1} MiB leaves {:.1} MiB for expert slots; one token needs {:.1} MiB",
                mib(ctx.allocated_bytes()),
                mib(self.plan.kv_cache),
                mib(self.plan.scratch),
                mib(budget),
                mib(left),
                mib(need),
            ))
        })?;
        for ((c, members), &slots) in classes.iter().zip(&slots_of) {
            let name = |p: &str| format!("expert pool {p} ({:?})", c.types[0]);
            let (n, f) = (c.n_embd, c.ff);
            self.pools.push([
                GpuExperts::alloc(ctx, &name("gate"), c.types[0], n, f, slots)?,
                GpuExperts::alloc(ctx, &name("up"), c.types[1], n, f, slots)?,
                GpuExperts::alloc(ctx, &name("down"), c.types[2], f, n, slots)?,
            ]);
            self.s.add_pool(slots, members);
            if self.s.complete(members[0]) {
                for &i in members {
                    let experts: Vec<u32> = (0..c.n_expert as u32).collect();
                    self.load(ctx, i, &experts, 0)?;
                }
            }
        }
        self.s.finish_allocation(budget);
        Ok(())
    }

    /// Whether layer `idx`'s pool holds every expert (its table never changes).
    pub fn complete(&self, idx: usize) -> bool {
        self.s.complete(idx)
    }

    pub fn shape(&self, idx: usize) -> &ExpertLayer {
        self.s.shape(idx)
    }

    /// The pool's gate, up and down matrices and the layer's slot table.
    pub fn bindings(&self, idx: usize) -> (&[GpuExperts; 3], &wgpu::Buffer) {
        (&self.pools[self.s.pool_of(idx)], &self.tables[idx].buffer)
    }

    /// Split a step's distinct experts into waves that fit the pool (see
    /// [`Scheduler::waves`]).
    pub fn waves(&mut self, idx: usize, ids: &[u32], n_tokens: usize) -> Vec<Wave> {
        if let (0, Some(h)) = (idx, &mut self.host) {
            h.count_tokens(n_tokens);
        }
        self.s.waves(idx, ids, n_tokens)
    }

    /// The layer's table: every resident expert's slot, [`NOT_RESIDENT`] for the rest.
    fn table(&self, idx: usize) -> Vec<u32> {
        (0..self.s.shape(idx).n_expert as u32)
            .map(|e| self.s.slot_of(idx, e).unwrap_or(NOT_RESIDENT))
            .collect()
    }

    /// Make a wave's experts resident, upload the misses, and write the layer's table:
    /// the wave's slots, [`OTHER_WAVE`] for the step's other experts (`step`), the slots
    /// of the other resident experts, and [`NOT_RESIDENT`] for the rest. Returns the table and counts the uses of `ids`.
    /// `tokens`: the step's tokens on its first wave, 0 on later ones.
    pub fn load_wave(
        &mut self,
        ctx: &GpuContext,
        idx: usize,
        wave: &Wave,
        step: &[u32],
        ids: &[u32],
        tokens: u64,
    ) -> Result<Vec<u32>> {
        let adm = self.load(ctx, idx, &wave.experts, tokens)?;
        self.s.count_wave(idx, wave, &adm, ids);
        let mut table = self.table(idx);
        for &e in step {
            table[e as usize] = OTHER_WAVE;
        }
        for &e in &wave.experts {
            table[e as usize] = self.s.slot_of(idx, e).ok_or_else(|| {
                Error::Gpu(format!(
                    "expert {e} of layer {} was admitted but has no slot",
                    self.s.shape(idx).layer
                ))
            })?;
        }
        ctx.queue
            .write_buffer(&self.tables[idx].buffer, 0, bytemuck::cast_slice(&table));
        Ok(table)
    }

    /// Admit `experts` of layer `idx` into its pool and upload the misses (demand);
    /// `tokens` advance the layer's clock.
    fn load(&mut self, ctx: &GpuContext, idx: usize, experts: &[u32], tokens: u64) -> Result<Admission> {
        let adm = self.s.admit(idx, experts, tokens)?;
        let bytes = self.upload(ctx, &adm.loads)?;
        self.s.count_demand(idx, bytes);
        if self.s.complete(idx) {
            ctx.queue
                .write_buffer(&self.tables[idx].buffer, 0, bytemuck::cast_slice(&self.table(idx)));
        }
        Ok(adm)
    }

    /// Upload predicted experts of streamed layer `next` without evicting `pinned` (the
    /// running layer `idx`'s last wave). Call it after that wave's products were
    /// submitted: its writes land after them. `busy` tells whether the device is still
    /// computing when the copies are queued (they overlapped it).
    pub fn prefetch(
        &mut self,
        ctx: &GpuContext,
        idx: usize,
        pinned: &[u32],
        next: usize,
        predicted: &[u32],
    ) -> Result<()> {
        let t = std::time::Instant::now();
        let loads = self.s.prefetch(idx, pinned, next, predicted);
        let bytes = self.upload(ctx, &loads)?;
        let busy = !ctx.device_idle()?;
        self.s.count_prefetch(idx, next, bytes, t.elapsed(), busy);
        Ok(())
    }

    /// Queue each (expert, slot)'s three matrices into its pool, from the host cache
    /// when there is one, else from the file's map; returns the bytes.
    fn upload(&mut self, ctx: &GpuContext, loads: &[(ExpertKey, u32)]) -> Result<u64> {
        let mut bytes = 0;
        for &(key, slot) in loads {
            let pool = &self.pools[self.s.pool_of(self.s.index_of(key.layer))];
            let parts: [&[u8]; 3] = match &mut self.host {
                Some(h) => h.fetch(key)?,
                None => [0, 1, 2].map(|p| {
                    let (t, range) = self.s.part(key, p);
                    &t.bytes()[range]
                }),
            };
            for (part, b) in pool.iter().zip(parts) {
                bytes += b.len() as u64;
                part.write_slot(ctx, slot as usize, b)?;
            }
        }
        Ok(bytes)
    }

    /// What the host cache behind the slots did, when there is one.
    pub fn host_stats(&self) -> Option<StreamStats> {
        self.host.as_ref().map(|h| h.stats())
    }

    /// Count a read-back of layer `idx`, the time waiting for it, and upload time.
    pub fn count_wait(&mut self, idx: usize, wait: Duration, upload: Duration) {
        self.s.count_wait(idx, wait, upload);
    }

    /// Count the uses of a step that needed no read-back (every expert resident).
    pub fn count_resident_step(&mut self, idx: usize, pairs: usize, n_tokens: usize) {
        if let (0, Some(h)) = (idx, &mut self.host) {
            h.count_tokens(n_tokens);
        }
        self.s.count_resident_step(idx, pairs, n_tokens);
    }

    pub fn stats(&self, ctx: &GpuContext) -> StreamStats {
        StreamStats {
            in_use: ctx.allocated_bytes(),
            peak: ctx.peak_bytes(),
            ..self.s.stats().clone()
        }
    }
}
