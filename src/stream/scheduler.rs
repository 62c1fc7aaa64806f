//! What every expert store shares, whether its slots are VRAM ([`crate::gpu`]'s
//! streamer) or host memory ([`super::host::HostExperts`]): the streamed layers and their
//! tensors, one [`SlotCache`] per byte-size class, the waves of a step, the admission
//! and prefetch decisions, and the counters. The store only moves bytes into the slots
//! the scheduler names.

use super::cache::Admission;
use super::plan::pool_classes;
use super::stats::{LayerStats, PoolStats};
use super::{ExpertKey, ExpertLayer, SlotCache, StreamOptions, StreamStats};
use crate::error::{Error, Result};
use crate::gguf::TensorRef;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A MoE layer whose experts stream.
struct Layer {
    shape: ExpertLayer,
    /// Gate, up and down 3-D tensors, read again on every miss.
    tensors: [TensorRef; 3],
    /// Its pool, once allocated.
    pool: usize,
}

/// One byte-size class's slots.
struct Pool {
    cache: SlotCache,
    /// The pool holds every expert of its layers: nothing is evicted.
    complete: bool,
}

/// Experts of one layer step that run together (sorted).
pub struct Wave {
    pub experts: Vec<u32>,
}

/// The scheduling state of an expert store.
pub struct Scheduler {
    options: StreamOptions,
    layers: Vec<Layer>,
    by_layer: HashMap<u32, usize>,
    pools: Vec<Pool>,
    stats: StreamStats,
    /// Per streamed layer, the experts the previous layer's prediction prefetched for it.
    predicted: Vec<Option<BTreeSet<u32>>>,
}

impl Scheduler {
    pub fn new(options: StreamOptions) -> Self {
        Scheduler {
            options,
            layers: Vec::new(),
            by_layer: HashMap::new(),
            pools: Vec::new(),
            stats: StreamStats::default(),
            predicted: Vec::new(),
        }
    }

    pub fn options(&self) -> &StreamOptions {
        &self.options
    }

    /// Register a MoE layer's experts, checking the tensors against the shape; returns
    /// its index.
    pub fn register(&mut self, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<usize> {
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
        self.by_layer.insert(shape.layer as u32, idx);
        self.layers.push(Layer {
            shape: shape.clone(),
            tensors: tensors.clone(),
            pool: usize::MAX,
        });
        self.predicted.push(None);
        self.stats.layers.push(LayerStats {
            layer: shape.layer,
            ..Default::default()
        });
        Ok(idx)
    }

    /// The registered layers' byte-size classes (see [`pool_classes`]).
    pub fn classes(&self) -> Vec<(ExpertLayer, Vec<usize>)> {
        pool_classes(self.layers.iter().map(|l| &l.shape))
    }

    /// A pool of `slots` for the layers `members`; returns its index.
    pub fn add_pool(&mut self, slots: usize, members: &[usize]) -> usize {
        let layers: Vec<u32> = members.iter().map(|&i| self.layers[i].shape.layer as u32).collect();
        let all: usize = members.iter().map(|&i| self.layers[i].shape.n_expert).sum();
        let pool = self.pools.len();
        self.pools.push(Pool {
            cache: SlotCache::new(slots, self.options.policy, &layers),
            complete: slots == all,
        });
        for &i in members {
            self.layers[i].pool = pool;
        }
        let expert_bytes = self.layers[members[0]].shape.expert_bytes();
        self.stats.pools.push(PoolStats {
            layers: members.iter().map(|&i| self.layers[i].shape.layer).collect(),
            slots,
            expert_bytes,
        });
        pool
    }

    /// Allocation is done: filling complete pools was loading, not streaming.
    pub fn finish_allocation(&mut self, budget: u64) {
        for l in &mut self.stats.layers {
            l.demand_bytes = 0;
        }
        let total: u64 = self
            .layers
            .iter()
            .map(|l| l.shape.expert_bytes() * l.shape.n_expert as u64)
            .sum();
        let slot_bytes: u64 = self.stats.pools.iter().map(|p| p.slots as u64 * p.expert_bytes).sum();
        self.stats.slots = self.stats.pools.iter().map(|p| p.slots).sum();
        self.stats.slot_fraction = slot_bytes as f64 / total.max(1) as f64;
        self.stats.budget = budget;
    }

    pub fn shape(&self, idx: usize) -> &ExpertLayer {
        &self.layers[idx].shape
    }

    pub fn pool_of(&self, idx: usize) -> usize {
        self.layers[idx].pool
    }

    /// Whether layer `idx`'s pool holds every expert.
    pub fn complete(&self, idx: usize) -> bool {
        self.pools[self.layers[idx].pool].complete
    }

    /// The streamed layer of model layer `layer`.
    pub fn index_of(&self, layer: u32) -> usize {
        self.by_layer[&layer]
    }

    /// The slot expert `expert` of layer `idx` holds, if resident.
    pub fn slot_of(&self, idx: usize, expert: u32) -> Option<u32> {
        let key = ExpertKey {
            layer: self.layers[idx].shape.layer as u32,
            expert,
        };
        self.pools[self.layers[idx].pool].cache.slot_of(key)
    }

    /// Part `p` (gate, up, down) of `key`'s expert: its tensor and byte range in it.
    pub fn part(&self, key: ExpertKey, p: usize) -> (&TensorRef, std::ops::Range<usize>) {
        let l = &self.layers[self.by_layer[&key.layer]];
        let size = l.shape.part_bytes[p] as usize;
        let at = key.expert as usize * size;
        (&l.tensors[p], at..at + size)
    }

    /// Split a step's distinct experts (of the pair ids `ids`) into waves that fit the
    /// pool, and count the step's tokens and prediction quality.
    pub fn waves(&mut self, idx: usize, ids: &[u32], n_tokens: usize) -> Vec<Wave> {
        let distinct: BTreeSet<u32> = ids.iter().copied().collect();
        if idx == 0 {
            self.count_tokens(n_tokens);
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

    /// Count tokens run through the model.
    pub fn count_tokens(&mut self, n_tokens: usize) {
        self.stats.tokens += n_tokens as u64;
    }

    /// Admit `experts` of layer `idx` on demand (`tokens` advance the layer's clock);
    /// the caller fills `loads`' slots and [`count_demand`](Self::count_demand)s them.
    pub fn admit(&mut self, idx: usize, experts: &[u32], tokens: u64) -> Result<Admission> {
        let layer = self.layers[idx].shape.layer as u32;
        let keys: Vec<ExpertKey> = experts.iter().map(|&expert| ExpertKey { layer, expert }).collect();
        let cache = &mut self.pools[self.layers[idx].pool].cache;
        cache.start_step(layer, tokens);
        cache.admit(&keys)
    }

    pub fn count_demand(&mut self, idx: usize, bytes: u64) {
        self.stats.layers[idx].demand_bytes += bytes;
    }

    /// Count a wave's uses of `ids` and its hits after `adm`.
    pub fn count_wave(&mut self, idx: usize, wave: &Wave, adm: &Admission, ids: &[u32]) {
        let layer = self.layers[idx].shape.layer as u32;
        let s = &mut self.stats.layers[idx];
        s.waves += 1;
        let in_wave = |e: &u32| wave.experts.binary_search(e).is_ok();
        let hit: BTreeSet<u32> = adm.hits.iter().filter(|k| k.layer == layer).map(|k| k.expert).collect();
        s.uses += ids.iter().filter(|e| in_wave(e)).count() as u64;
        s.hits += ids.iter().filter(|e| in_wave(e) && hit.contains(e)).count() as u64;
        s.prefetch_wasted += adm.wasted as u64;
    }

    /// The predicted experts of streamed layer `next` to bring in now, never evicting
    /// `pinned` (layer `idx`'s last wave); the caller fills the returned slots and
    /// [`count_prefetch`](Self::count_prefetch)s them.
    pub fn prefetch(&mut self, idx: usize, pinned: &[u32], next: usize, predicted: &[u32]) -> Vec<(ExpertKey, u32)> {
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
        self.predicted[next] = Some(distinct);
        self.pools[self.layers[next].pool].cache.prefetch(&keys, &pin)
    }

    /// Drop `key`, whose read was cancelled: its slot becomes free.
    pub fn forget(&mut self, key: ExpertKey) {
        let pool = self.layers[self.by_layer[&key.layer]].pool;
        self.pools[pool].cache.forget(key);
    }

    /// Count a prefetch into layer `next` of `bytes`, run from layer `idx` in `time`, and
    /// whether the device was still computing layer `idx` when it ended.
    pub fn count_prefetch(&mut self, idx: usize, next: usize, bytes: u64, time: Duration, device_busy: bool) {
        self.stats.layers[next].prefetch_bytes += bytes;
        let s = &mut self.stats.layers[idx];
        s.prefetch_time += time;
        s.prefetches += 1;
        s.prefetches_under_compute += device_busy as u64;
    }

    /// Count a read-back of layer `idx`, the time waiting for it, and upload time.
    pub fn count_wait(&mut self, idx: usize, wait: Duration, upload: Duration) {
        let s = &mut self.stats.layers[idx];
        s.read_backs += 1;
        s.wait += wait;
        s.upload += upload;
    }

    /// Count time spent moving layer `idx`'s demand misses into their slots.
    pub fn count_transfer(&mut self, idx: usize, time: Duration) {
        self.stats.layers[idx].upload += time;
    }

    /// Count the uses of a step that needed no read-back (every expert resident).
    pub fn count_resident_step(&mut self, idx: usize, pairs: usize, n_tokens: usize) {
        if idx == 0 {
            self.count_tokens(n_tokens);
        }
        let s = &mut self.stats.layers[idx];
        s.uses += pairs as u64;
        s.hits += pairs as u64;
        s.waves += 1;
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }
}
