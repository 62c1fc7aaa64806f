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
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What a read-ahead did: experts read whole, their bytes, its time, and whether it
/// read them all before it was stopped.
struct ReadAhead {
    done: usize,
    bytes: u64,
    time: std::time::Duration,
    finished: bool,
}

/// Read `targets` in order until `stop`.
fn read_ahead_into(
    s: &Scheduler,
    targets: Vec<(ExpertKey, &mut Vec<u8>)>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<ReadAhead> {
    let start = Instant::now();
    let mut bytes = 0;
    let n = targets.len();
    for (done, (key, buf)) in targets.into_iter().enumerate() {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            let time = start.elapsed();
            return Ok(ReadAhead {
                done,
                bytes,
                time,
                finished: false,
            });
        }
        bytes += read_expert(s, key, buf)?;
    }
    Ok(ReadAhead {
        done: n,
        bytes,
        time: start.elapsed(),
        finished: true,
    })
}

/// Read `key`'s gate, up and down matrices one after another into `buf`; returns the
/// bytes.
fn read_expert(s: &Scheduler, key: ExpertKey, buf: &mut [u8]) -> Result<u64> {
    let mut at = 0;
    for p in 0..3 {
        let (t, range) = s.part(key, p);
        let n = range.len();
        t.read(range, &mut buf[at..at + n])?;
        at += n;
    }
    Ok(at as u64)
}

/// A slot's gate, up and down matrices.
fn split_parts(bytes: &[u8], part_bytes: [usize; 3]) -> [&[u8]; 3] {
    let (gate, rest) = bytes.split_at(part_bytes[0]);
    let (up, down) = rest.split_at(part_bytes[1]);
    [gate, up, down]
}

/// A wave's experts as [`HostExperts::compute_with_read_ahead`] lends them to the
/// compute.
pub struct ExpertView<'a> {
    part_bytes: [usize; 3],
    /// The wave's experts and their slots' bytes.
    experts: HashMap<u32, &'a [u8]>,
}

impl ExpertView<'_> {
    /// The gate, up and down bytes of `expert`, when it is one of the wave's.
    pub fn expert(&self, expert: u32) -> Option<[&[u8]; 3]> {
        Some(split_parts(self.experts.get(&expert)?, self.part_bytes))
    }
}

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
        Some(split_parts(bytes, self.s.shape(idx).part_bytes.map(|b| b as usize)))
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

    /// Run `compute` over layer `idx`'s resident experts (the view gives an expert's
    /// gate, up and down bytes) while, with `read_ahead = (next, predicted)`, one
    /// background thread reads the predicted experts of streamed layer `next` into slots
    /// that `wave` (pinned) does not use. When `compute` ends the reader stops after the
    /// expert it is reading, and the predictions it did not reach are cancelled, so a
    /// demand read of the next layer waits for at most one expert.
    ///
    /// One thread: an expert is three reads of megabytes, which one thread already
    /// issues at the disk's sequential rate, and the compute it overlaps wants the cores.
    pub fn compute_with_read_ahead<T: Send>(
        &mut self,
        idx: usize,
        wave: &Wave,
        read_ahead: Option<(usize, &[u32])>,
        compute: impl FnOnce(&ExpertView) -> Result<T> + Send,
    ) -> Result<T> {
        // The wave's slots (pinned: the read-ahead never takes them).
        let mut in_wave: HashMap<u32, u32> = HashMap::new();
        for &e in &wave.experts {
            let slot = self.s.slot_of(idx, e).ok_or_else(|| {
                Error::Unsupported(format!(
                    "expert {e} of layer {} is not resident",
                    self.s.shape(idx).layer
                ))
            })?;
            in_wave.insert(slot, e);
        }
        let loads = match read_ahead {
            Some((next, predicted)) => self.s.prefetch(idx, &wave.experts, next, predicted),
            None => Vec::new(),
        };
        let HostExperts { s, slots, .. } = self;
        let pool = s.pool_of(idx);
        // Split the slots: the read-ahead's targets (written by the reader) and the
        // wave's (read by the compute), never the same (the wave is pinned).
        let mut view = ExpertView {
            part_bytes: s.shape(idx).part_bytes.map(|b| b as usize),
            experts: HashMap::new(),
        };
        let place = |key: ExpertKey, slot: u32| (s.pool_of(s.index_of(key.layer)), slot);
        let wanted: HashSet<(usize, u32)> = loads.iter().map(|&(key, slot)| place(key, slot)).collect();
        let mut free: HashMap<(usize, u32), &mut Vec<u8>> = HashMap::new();
        for (p, pool_slots) in slots.iter_mut().enumerate() {
            for (slot, buf) in pool_slots.iter_mut().enumerate() {
                if wanted.contains(&(p, slot as u32)) {
                    free.insert((p, slot as u32), buf);
                } else if let (true, Some(&e)) = (p == pool, in_wave.get(&(slot as u32))) {
                    view.experts.insert(e, buf.as_slice());
                }
            }
        }
        // In the order of the loads, the most likely first.
        let targets: Vec<(ExpertKey, &mut Vec<u8>)> = loads
            .iter()
            .filter_map(|&(key, slot)| Some((key, free.remove(&place(key, slot))?)))
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let shared: &Scheduler = s;
        let (out, read) = std::thread::scope(|scope| {
            let reader = scope.spawn(|| read_ahead_into(shared, targets, &stop));
            let out = compute(&view);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (out, reader.join())
        });
        let r = read.map_err(|_| Error::Unsupported("the read-ahead thread panicked".into()))??;
        for &(key, _) in &loads[r.done..] {
            s.forget(key);
        }
        if let Some((next, _)) = read_ahead {
            s.count_prefetch(idx, next, r.bytes, r.time, r.finished);
        }
        out
    }

    /// Read each (expert, slot)'s three matrices into its slot; returns the bytes.
    fn read(&mut self, loads: &[(ExpertKey, u32)]) -> Result<u64> {
        let mut bytes = 0;
        for &(key, slot) in loads {
            let pool = self.s.pool_of(self.s.index_of(key.layer));
            bytes += read_expert(&self.s, key, &mut self.slots[pool][slot as usize])?;
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
