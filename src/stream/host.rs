//! The host expert cache under a RAM budget: slots in memory lowbit owns, filled with
//! explicit reads (`pread`, [`crate::gguf::TensorRef::read`]) of the experts the router
//! picks. Experts are never touched through the file's map, so the page cache does not
//! count in the process's resident size and cannot thrash it; the cache is bounded by
//! its slots, which the budget sizes at load.
//!
//! The scheduling (waves, policy, prefetch, counters) is the VRAM slots' own
//! ([`Scheduler`]); a slot holds an expert's gate, up and down matrices one after
//! another.

use super::plan::class_slots;
use super::scheduler::{Scheduler, Wave};
use super::{ExpertKey, ExpertLayer, StreamOptions, StreamStats};
use crate::error::{Error, Result};
use crate::gguf::TensorRef;
use std::time::Instant;

/// Routed experts of the streamed layers, in host slots.
pub struct HostExperts {
    s: Scheduler,
    /// Per pool, per slot: gate, up and down bytes (allocated zeroed, touched when read).
    slots: Vec<Vec<Vec<u8>>>,
    /// Bytes of the RAM budget the slots may take, and the budget.
    left: u64,
    budget: u64,
}

impl HostExperts {
    /// A cache of at most `left` bytes of slots, under a RAM budget of `budget`.
    pub fn new(options: StreamOptions, left: u64, budget: u64) -> Self {
        HostExperts {
            s: Scheduler::new(options),
            slots: Vec::new(),
            left,
            budget,
        }
    }

    pub fn prefetches(&self) -> bool {
        self.s.options().prefetch
    }

    /// Register a MoE layer's experts (nothing read yet); returns its index.
    pub fn register(&mut self, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<usize> {
        self.s.register(shape, tensors)
    }

    /// Divide the budget's share into slot pools; pools that hold all their experts are
    /// read now.
    pub fn allocate(&mut self) -> Result<()> {
        let classes = self.s.classes();
        let slots_of = class_slots(&classes, self.left).map_err(|need| {
            Error::Budget(format!(
                "a RAM budget of {:.1} MiB leaves {:.1} MiB for the expert cache; one token needs {:.1} MiB",
                self.budget as f64 / (1 << 20) as f64,
                self.left as f64 / (1 << 20) as f64,
                need as f64 / (1 << 20) as f64
            ))
        })?;
        for ((c, members), &n) in classes.iter().zip(&slots_of) {
            self.slots.push(vec![vec![0u8; c.expert_bytes() as usize]; n]);
            self.s.add_pool(n, members);
            if self.s.complete(members[0]) {
                for &i in members {
                    let experts: Vec<u32> = (0..c.n_expert as u32).collect();
                    let adm = self.s.admit(i, &experts, 0)?;
                    self.read(&adm.loads)?;
                }
            }
        }
        self.s.finish_allocation(self.budget);
        Ok(())
    }

    pub fn shape(&self, idx: usize) -> &ExpertLayer {
        self.s.shape(idx)
    }

    /// Split a step's distinct experts into waves that fit the pool.
    pub fn waves(&mut self, idx: usize, ids: &[u32], n_tokens: usize) -> Vec<Wave> {
        self.s.waves(idx, ids, n_tokens)
    }

    /// Make a wave's experts resident, reading the misses, and count the uses of `ids`
    /// (`tokens`: the step's tokens on its first wave, 0 on later ones).
    pub fn load_wave(&mut self, idx: usize, wave: &Wave, ids: &[u32], tokens: u64) -> Result<()> {
        let t = Instant::now();
        let adm = self.s.admit(idx, &wave.experts, tokens)?;
        let bytes = self.read(&adm.loads)?;
        if let Some(e) = wave.experts.iter().find(|&&e| self.s.slot_of(idx, e).is_none()) {
            return Err(Error::Unsupported(format!(
                "expert {e} of layer {} was admitted but has no slot",
                self.s.shape(idx).layer
            )));
        }
        self.s.count_demand(idx, bytes);
        self.s.count_wave(idx, wave, &adm, ids);
        self.s.count_transfer(idx, t.elapsed());
        Ok(())
    }

    /// The gate, up and down bytes of `expert` of layer `idx`, when resident.
    pub fn expert(&self, idx: usize, expert: u32) -> Option<[&[u8]; 3]> {
        let slot = self.s.slot_of(idx, expert)? as usize;
        let bytes = &self.slots[self.s.pool_of(idx)][slot];
        let [g, u, _] = self.s.shape(idx).part_bytes.map(|b| b as usize);
        let (gate, rest) = bytes.split_at(g);
        let (up, down) = rest.split_at(u);
        Some([gate, up, down])
    }

    /// Count tokens run through the model (when the device slots in front schedule).
    pub fn count_tokens(&mut self, n_tokens: usize) {
        self.s.count_tokens(n_tokens);
    }

    /// The gate, up and down bytes of `key`'s expert, read into the cache first on a
    /// miss (one use: the device slots behind which this cache sits ask one expert at a
    /// time, and copy the bytes at once).
    pub fn fetch(&mut self, key: ExpertKey) -> Result<[&[u8]; 3]> {
        let idx = self.s.index_of(key.layer);
        let wave = Wave {
            experts: vec![key.expert],
        };
        self.load_wave(idx, &wave, &wave.experts, 0)?;
        self.expert(idx, key.expert)
            .ok_or_else(|| Error::Unsupported(format!("expert {} of layer {} has no host slot", key.expert, key.layer)))
    }

    /// Read predicted experts of streamed layer `next` without evicting `pinned` (layer
    /// `idx`'s last wave).
    pub fn prefetch(&mut self, idx: usize, pinned: &[u32], next: usize, predicted: &[u32]) -> Result<()> {
        let t = Instant::now();
        let loads = self.s.prefetch(idx, pinned, next, predicted);
        let bytes = self.read(&loads)?;
        self.s.count_prefetch(idx, next, bytes, t.elapsed(), false);
        Ok(())
    }

    /// Read each (expert, slot)'s three matrices into its slot; returns the bytes.
    fn read(&mut self, loads: &[(ExpertKey, u32)]) -> Result<u64> {
        let mut bytes = 0;
        for &(key, slot) in loads {
            let pool = self.s.pool_of(self.s.index_of(key.layer));
            let buf = &mut self.slots[pool][slot as usize];
            let mut at = 0;
            for p in 0..3 {
                let (t, range) = self.s.part(key, p);
                let n = range.len();
                t.read(range, &mut buf[at..at + n])?;
                at += n;
            }
            bytes += at as u64;
        }
        Ok(bytes)
    }

    /// Bytes of the slots (what the cache holds at most).
    pub fn slot_bytes(&self) -> u64 {
        self.slots.iter().flatten().map(|s| s.len() as u64).sum()
    }

    pub fn stats(&self) -> StreamStats {
        StreamStats {
            memory: super::plan::Memory::Host,
            in_use: self.slot_bytes(),
            peak: self.slot_bytes(),
            ..self.s.stats().clone()
        }
    }
}
