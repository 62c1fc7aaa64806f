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
use crate::stream::stats::LayerStats;
use crate::stream::{ExpertKey, ExpertLayer, MemoryPlan, SlotCache, StreamOptions, StreamStats};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A MoE layer whose experts stream.
struct StreamedLayer {
    shape: ExpertLayer,
    /// Gate, up and down 3-D tensors, read again on every miss.
    tensors: [TensorRef; 3],
    table: Tracked,
    /// Its pool, once allocated.
    pool: usize,
}

/// One byte-size class: three matrices per slot, and the slots' owner.
struct Pool {
    parts: [GpuExperts; 3],
    cache: SlotCache,
    /// The pool holds every expert of its layers: nothing is evicted, no read-back needed.
    complete: bool,
}

/// The streaming state of a [`super::GpuBackend`] loaded under a VRAM budget.
pub struct Streamer {
    plan: MemoryPlan,
    options: StreamOptions,
    layers: Vec<StreamedLayer>,
    by_layer: HashMap<u32, usize>,
    pools: Vec<Pool>,
    stats: StreamStats,
    /// Per streamed layer, the experts the previous layer's prediction prefetched for it.
    predicted: Vec<Option<BTreeSet<u32>>>,
}

/// Experts of one layer step that run together (sorted).
pub struct Wave {
    pub experts: Vec<u32>,
}

impl Streamer {
    /// A streamer for `plan` under `options.vram_budget` (checked by the caller).
    pub fn new(plan: MemoryPlan, options: StreamOptions) -> Self {
        Streamer {
            plan,
            options,
            layers: Vec::new(),
            by_layer: HashMap::new(),
            pools: Vec::new(),
            stats: StreamStats::default(),
            predicted: Vec::new(),
        }
    }

    pub fn prefetches(&self) -> bool {
        self.options.prefetch
    }

    /// Register a MoE layer's experts (no upload yet); returns its index.
    pub fn register(&mut self, ctx: &GpuContext, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<usize> {
        for (p, t) in tensors.iter().enumerate() {
            let info = t.info();
            let per_expert = info.size / shape.n_expert.max(1) as u64;
            if info.ty != shape.types[p]
                || per_expert != shape.part_bytes[p]
                || info.dims.get(2) != Some(&(shape.n_expert as u64))
            {
                return Err(Error::Tensor {
                    path: t.shard.path.clone(),
                    tensor: info.name.clone(),
                    reason: format!("{} {:?} does not match the memory plan's {shape:?}", info.ty, info.dims),
                });
            }
        }
        let idx = self.layers.len();
        let table = ctx.upload(
            "slot table",
            bytemuck::cast_slice(&vec![NOT_RESIDENT; shape.n_expert]),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        self.by_layer.insert(shape.layer as u32, idx);
        self.layers.push(StreamedLayer {
            shape: shape.clone(),
            tensors: tensors.clone(),
            table,
            pool: usize::MAX,
        });
        self.predicted.push(None);
        self.stats.layers.push(LayerStats {
            layer: shape.layer,
            ..Default::default()
        });
        Ok(idx)
    }

    /// Turn what the budget leaves (after everything allocated so far, the planned KV
    /// cache and scratch) into slot pools; pools that can hold all their experts are
    /// filled now.
    pub fn allocate(&mut self, ctx: &GpuContext, budget: u64) -> Result<()> {
        let reserved = ctx.allocated_bytes() + self.plan.kv_cache + self.plan.scratch;
        let mut left = budget.saturating_sub(reserved);
        // Classes: layers whose experts have the same types and shapes share a pool.
        let mut classes: Vec<(ExpertLayer, Vec<usize>)> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let same = |c: &ExpertLayer| {
                (c.types, c.part_bytes, c.n_embd, c.ff)
                    == (l.shape.types, l.shape.part_bytes, l.shape.n_embd, l.shape.ff)
            };
            match classes.iter_mut().find(|(c, _)| same(c)) {
                Some((_, members)) => members.push(i),
                None => classes.push((l.shape.clone(), vec![i])),
            }
        }
        // Every class first gets one token's experts, then the rest in proportion.
        let total: u64 = classes
            .iter()
            .map(|(c, m)| c.expert_bytes() * (c.n_expert * m.len()) as u64)
            .sum();
        let need: u64 = classes.iter().map(|(c, _)| c.expert_bytes() * c.n_used as u64).sum();
        if left < need {
            return Err(Error::Budget(format!(
                "after {:.1} MiB of resident weights, {:.1} MiB of KV cache and {:.1} MiB of scratch, a VRAM budget of {:.1} MiB leaves {:.1} MiB for expert slots; one token needs {:.1} MiB",
                ctx.allocated_bytes() as f64 / (1 << 20) as f64,
                self.plan.kv_cache as f64 / (1 << 20) as f64,
                self.plan.scratch as f64 / (1 << 20) as f64,
                budget as f64 / (1 << 20) as f64,
                left as f64 / (1 << 20) as f64,
                need as f64 / (1 << 20) as f64,
            )));
        }
        left -= need;
        let mut slots_total = 0;
        let mut slot_bytes = 0;
        for (c, members) in &classes {
            let all = c.n_expert * members.len();
            let share = (left as f64 * (c.expert_bytes() * all as u64) as f64 / total as f64) as u64;
            let slots = (c.n_used + (share / c.expert_bytes()) as usize).min(all);
            let name = |p: &str| format!("expert pool {p} ({:?})", c.types[0]);
            let (n, f) = (c.n_embd, c.ff);
            let parts = [
                GpuExperts::alloc(ctx, &name("gate"), c.types[0], n, f, slots)?,
                GpuExperts::alloc(ctx, &name("up"), c.types[1], n, f, slots)?,
                GpuExperts::alloc(ctx, &name("down"), c.types[2], f, n, slots)?,
            ];
            let layers: Vec<u32> = members.iter().map(|&i| self.layers[i].shape.layer as u32).collect();
            let pool = self.pools.len();
            self.pools.push(Pool {
                parts,
                cache: SlotCache::new(slots, self.options.policy, &layers),
                complete: slots == all,
            });
            for &i in members {
                self.layers[i].pool = pool;
            }
            self.stats.pools.push(crate::stream::stats::PoolStats {
                layers: members.iter().map(|&i| self.layers[i].shape.layer).collect(),
                slots,
                expert_bytes: c.expert_bytes(),
            });
            slots_total += slots;
            slot_bytes += slots as u64 * c.expert_bytes();
            if slots == all {
                for &i in members {
                    let experts: Vec<u32> = (0..c.n_expert as u32).collect();
                    self.load(ctx, i, &experts, 0)?;
                }
            }
        }
        // Filling complete pools is loading, not streaming.
        for l in &mut self.stats.layers {
            l.demand_bytes = 0;
        }
        self.stats.slots = slots_total;
        self.stats.slot_fraction = slot_bytes as f64 / total.max(1) as f64;
        self.stats.vram_budget = budget;
        Ok(())
    }

    /// Whether layer `idx`'s pool holds every expert (its table never changes).
    pub fn complete(&self, idx: usize) -> bool {
        self.pools[self.layers[idx].pool].complete
    }

    pub fn shape(&self, idx: usize) -> &ExpertLayer {
        &self.layers[idx].shape
    }

    /// The pool's gate, up and down matrices and the layer's slot table.
    pub fn bindings(&self, idx: usize) -> (&[GpuExperts; 3], &wgpu::Buffer) {
        let l = &self.layers[idx];
        (&self.pools[l.pool].parts, &l.table.buffer)
    }

    /// Split a step's distinct experts (of the pair ids `ids`) into waves that fit the
    /// pool, and count the step's tokens and prediction quality.
    pub fn waves(&mut self, idx: usize, ids: &[u32], n_tokens: usize) -> Vec<Wave> {
        let distinct: BTreeSet<u32> = ids.iter().copied().collect();
        if idx == 0 {
            self.stats.tokens += n_tokens as u64;
        }
        if let Some(p) = self.predicted[idx].take() {
            let s = &mut self.stats.layers[idx];
            s.predicted += p.len() as u64;
            s.predicted_used += p.intersection(&distinct).count() as u64;
            s.chosen_with_prediction += distinct.len() as u64;
        }
        let slots = self.pools[self.layers[idx].pool].cache.slots();
        let all: Vec<u32> = distinct.into_iter().collect();
        all.chunks(slots.max(1)).map(|c| Wave { experts: c.to_vec() }).collect()
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
        let layer = self.layers[idx].shape.layer as u32;
        let s = &mut self.stats.layers[idx];
        s.waves += 1;
        let in_wave = |e: &u32| wave.experts.binary_search(e).is_ok();
        let hit: BTreeSet<u32> = adm.hits.iter().filter(|k| k.layer == layer).map(|k| k.expert).collect();
        s.uses += ids.iter().filter(|e| in_wave(e)).count() as u64;
        s.hits += ids.iter().filter(|e| in_wave(e) && hit.contains(e)).count() as u64;
        s.prefetch_wasted += adm.wasted as u64;
        let pool = &self.pools[self.layers[idx].pool];
        let mut table: Vec<u32> = (0..self.layers[idx].shape.n_expert as u32)
            .map(|expert| pool.cache.slot_of(ExpertKey { layer, expert }).unwrap_or(NOT_RESIDENT))
            .collect();
        for &e in step {
            table[e as usize] = OTHER_WAVE;
        }
        for &e in &wave.experts {
            let key = ExpertKey { layer, expert: e };
            table[e as usize] = pool
                .cache
                .slot_of(key)
                .ok_or_else(|| Error::Gpu(format!("expert {e} of layer {layer} was admitted but has no slot")))?;
        }
        ctx.queue
            .write_buffer(&self.layers[idx].table.buffer, 0, bytemuck::cast_slice(&table));
        Ok(table)
    }

    /// Admit `experts` of layer `idx` into its pool and upload the misses (demand);
    /// `tokens` advance the layer's clock.
    fn load(&mut self, ctx: &GpuContext, idx: usize, experts: &[u32], tokens: u64) -> Result<Admission> {
        let layer = self.layers[idx].shape.layer as u32;
        let keys: Vec<ExpertKey> = experts.iter().map(|&expert| ExpertKey { layer, expert }).collect();
        let pool = self.layers[idx].pool;
        let cache = &mut self.pools[pool].cache;
        cache.start_step(layer, tokens);
        let adm = cache.admit(&keys)?;
        let bytes = self.upload(ctx, &adm.loads)?;
        self.stats.layers[idx].demand_bytes += bytes;
        if self.pools[pool].complete {
            let table: Vec<u32> = (0..self.layers[idx].shape.n_expert as u32)
                .map(|e| {
                    self.pools[pool]
                        .cache
                        .slot_of(ExpertKey { layer, expert: e })
                        .unwrap_or(NOT_RESIDENT)
                })
                .collect();
            ctx.queue
                .write_buffer(&self.layers[idx].table.buffer, 0, bytemuck::cast_slice(&table));
        }
        Ok(adm)
    }

    /// Upload predicted experts of streamed layer `next` without evicting `pinned` (the
    /// running layer `idx`'s last wave). Call it after that wave's products were
    /// submitted: its writes land after them.
    pub fn prefetch(
        &mut self,
        ctx: &GpuContext,
        idx: usize,
        pinned: &[u32],
        next: usize,
        predicted: &[u32],
    ) -> Result<()> {
        let (layer, next_layer) = (
            self.layers[idx].shape.layer as u32,
            self.layers[next].shape.layer as u32,
        );
        let distinct: BTreeSet<u32> = predicted.iter().copied().collect();
        let keys: Vec<ExpertKey> = distinct
            .iter()
            .map(|&expert| ExpertKey {
                layer: next_layer,
                expert,
            })
            .collect();
        let pin: Vec<ExpertKey> = if self.layers[next].pool == self.layers[idx].pool {
            pinned.iter().map(|&expert| ExpertKey { layer, expert }).collect()
        } else {
            Vec::new()
        };
        let loads = self.pools[self.layers[next].pool].cache.prefetch(&keys, &pin);
        let bytes = self.upload(ctx, &loads)?;
        self.stats.layers[next].prefetch_bytes += bytes;
        self.predicted[next] = Some(distinct);
        Ok(())
    }

    /// Queue each (expert, slot)'s three matrices into its pool; returns the bytes.
    fn upload(&self, ctx: &GpuContext, loads: &[(ExpertKey, u32)]) -> Result<u64> {
        let mut bytes = 0;
        for &(key, slot) in loads {
            let idx = self.by_layer[&key.layer];
            let l = &self.layers[idx];
            let pool = &self.pools[l.pool];
            for (p, t) in l.tensors.iter().enumerate() {
                let size = l.shape.part_bytes[p] as usize;
                let at = key.expert as usize * size;
                pool.parts[p].write_slot(ctx, slot as usize, &t.bytes()[at..at + size])?;
                bytes += size as u64;
            }
        }
        Ok(bytes)
    }

    /// Count a read-back of layer `idx`, the time waiting for it, and upload time.
    pub fn count_wait(&mut self, idx: usize, wait: Duration, upload: Duration) {
        let s = &mut self.stats.layers[idx];
        s.read_backs += 1;
        s.wait += wait;
        s.upload += upload;
    }

    /// Count a prefetch's host time, and whether the device was still computing the
    /// running layer when it ended (the copy overlapped compute).
    pub fn count_prefetch(&mut self, idx: usize, time: Duration, device_busy: bool) {
        let s = &mut self.stats.layers[idx];
        s.prefetch_time += time;
        s.prefetches += 1;
        s.prefetches_under_compute += device_busy as u64;
    }

    /// Count the uses of a step that needed no read-back (every expert resident).
    pub fn count_resident_step(&mut self, idx: usize, pairs: usize, n_tokens: usize) {
        if idx == 0 {
            self.stats.tokens += n_tokens as u64;
        }
        let s = &mut self.stats.layers[idx];
        s.uses += pairs as u64;
        s.hits += pairs as u64;
        s.waves += 1;
    }

    pub fn stats(&self, ctx: &GpuContext) -> StreamStats {
        StreamStats {
            vram_in_use: ctx.allocated_bytes(),
            vram_peak: ctx.peak_bytes(),
            ..self.stats.clone()
        }
    }
}
