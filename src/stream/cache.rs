//! The slots of one expert pool and the policy that picks which expert to evict.
//!
//! A pool holds `slots` experts of one byte-size class, from any of the MoE layers of
//! that class. A layer's step asks for a set of experts at once ([`SlotCache::admit`]):
//! they are all resident afterwards, and none of them is evicted to make room for
//! another. Policies ([`PolicyKind`]):
//!
//! - `lru`: evict the expert used longest ago.
//! - `reuse` (the default): layer-aware reuse distance. Layers run in a fixed cycle, so
//!   an expert's next use can come no sooner than its layer's next turn; after that, the
//!   layer's own history of reuse gaps (in tokens, learned online) gives the expected
//!   wait for an expert of that age. Evict the expert whose expected next use is
//!   furthest away: the online estimate of what Belady's optimum
//!   ([`super::belady`]) knows exactly. LRU instead evicts the experts of the layer that
//!   ran longest ago, which in a cycle is the layer about to run next.
//!
//! Prefetched experts ([`SlotCache::prefetch`]) are marked until a demand use; they are
//! evicted before any expert with a demand history (a wrong guess costs only bytes).

use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};

/// An expert of a MoE layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpertKey {
    pub layer: u32,
    pub expert: u32,
}

/// `--expert-policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyKind {
    Lru,
    #[default]
    Reuse,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 2] = [PolicyKind::Lru, PolicyKind::Reuse];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Reuse => "reuse",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::Unsupported(format!("expert policy '{s}' (lru, reuse)")))
    }
}

/// Reuse gaps are counted up to this many tokens; longer ones share the last bin.
const MAX_GAP: usize = 64;

/// One layer's reuse-gap histogram: `gaps[g]` counts uses that came `g` tokens after the
/// expert's previous use (1..=MAX_GAP; the last bin also holds longer gaps).
#[derive(Clone)]
struct Gaps {
    gaps: Vec<f64>,
    /// Tokens this layer has run.
    tokens: u64,
}

impl Gaps {
    fn new() -> Self {
        // A flat prior, so that a cold layer's estimate is defined.
        Gaps {
            gaps: vec![1.0; MAX_GAP + 1],
            tokens: 0,
        }
    }

    /// Expected tokens until the next use of an expert last used `age` tokens ago.
    fn expected_wait(&self, age: u64) -> f64 {
        let a = (age as usize).min(MAX_GAP - 1);
        let (mut num, mut den) = (0.0, 0.0);
        for g in a + 1..=MAX_GAP {
            // The last bin stands for gaps of at least MAX_GAP: count it twice as far.
            let gap = if g == MAX_GAP { 2 * MAX_GAP } else { g };
            num += (gap - a) as f64 * self.gaps[g];
            den += self.gaps[g];
        }
        num / den.max(f64::MIN_POSITIVE)
    }
}

#[derive(Clone, Copy)]
struct Resident {
    slot: u32,
    /// Global use counter at the last use (LRU).
    last_use: u64,
    /// The layer's token count at the last use.
    last_token: u64,
    /// Uploaded by a prediction and not demanded since.
    prefetched: bool,
}

/// The slots of one pool.
pub struct SlotCache {
    policy: PolicyKind,
    owner: Vec<Option<ExpertKey>>,
    resident: HashMap<ExpertKey, Resident>,
    free: Vec<u32>,
    clock: u64,
    /// The layers of this pool in the order they run, and the one running now.
    order: Vec<u32>,
    current: u32,
    gaps: HashMap<u32, Gaps>,
    /// The last demand use of each expert ever seen (for reuse gaps after eviction).
    last_seen: HashMap<ExpertKey, u64>,
}

/// What [`SlotCache::admit`] did: the slots to upload into, and which uses hit.
#[derive(Debug, Default)]
pub struct Admission {
    /// (expert, slot) pairs that must be uploaded before the layer runs.
    pub loads: Vec<(ExpertKey, u32)>,
    /// Experts that were resident already.
    pub hits: Vec<ExpertKey>,
    /// Of the hits, those that a prefetch brought in.
    pub prefetch_hits: usize,
    /// Prefetched experts evicted unused.
    pub wasted: usize,
}

impl SlotCache {
    /// `slots` empty slots serving the MoE layers `layers` (in the order they run).
    pub fn new(slots: usize, policy: PolicyKind, layers: &[u32]) -> Self {
        SlotCache {
            policy,
            owner: vec![None; slots],
            resident: HashMap::new(),
            free: (0..slots as u32).rev().collect(),
            clock: 0,
            order: layers.to_vec(),
            current: layers.first().copied().unwrap_or(0),
            gaps: layers.iter().map(|&l| (l, Gaps::new())).collect(),
            last_seen: HashMap::new(),
        }
    }

    pub fn slots(&self) -> usize {
        self.owner.len()
    }

    pub fn slot_of(&self, key: ExpertKey) -> Option<u32> {
        self.resident.get(&key).map(|r| r.slot)
    }

    /// Layer `layer` runs a new token (call once per step of the layer, before admits).
    pub fn start_step(&mut self, layer: u32, tokens: u64) {
        self.current = layer;
        if let Some(g) = self.gaps.get_mut(&layer) {
            g.tokens += tokens;
        }
    }

    /// Layer steps until `layer` runs again, counted in the cycle of this pool's layers
    /// (the current layer: a whole cycle).
    fn turns_until(&self, layer: u32) -> usize {
        let n = self.order.len().max(1);
        let pos = |l: u32| self.order.iter().position(|&o| o == l).unwrap_or(0);
        let d = (pos(layer) + n - pos(self.current)) % n;
        if d == 0 { n } else { d }
    }

    /// How far away (in layer steps) the next use of a resident expert is expected.
    fn expected_next_use(&self, key: ExpertKey, r: &Resident) -> f64 {
        let n = self.order.len().max(1) as f64;
        let g = &self.gaps[&key.layer];
        let age = g.tokens.saturating_sub(r.last_token);
        self.turns_until(key.layer) as f64 + n * (g.expected_wait(age) - 1.0).max(0.0)
    }

    /// The resident expert to evict, never one of `pinned`.
    fn victim(&self, pinned: &HashSet<ExpertKey>) -> Option<ExpertKey> {
        let candidates = self.resident.iter().filter(|(k, _)| !pinned.contains(k));
        // Unused prefetches go first, the oldest of them.
        if let Some((k, _)) = candidates
            .clone()
            .filter(|(_, r)| r.prefetched)
            .min_by_key(|(k, r)| (r.last_use, **k))
        {
            return Some(*k);
        }
        match self.policy {
            PolicyKind::Lru => candidates.min_by_key(|(k, r)| (r.last_use, **k)).map(|(k, _)| *k),
            PolicyKind::Reuse => candidates
                .map(|(k, r)| (self.expected_next_use(*k, r), *k))
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, k)| k),
        }
    }

    /// A slot for `key`: a free one, or one freed by evicting a victim.
    fn take_slot(&mut self, pinned: &HashSet<ExpertKey>, adm: &mut Admission) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        let v = self.victim(pinned)?;
        let r = self.resident.remove(&v).expect("victim is resident");
        if r.prefetched {
            adm.wasted += 1;
        }
        self.owner[r.slot as usize] = None;
        Some(r.slot)
    }

    /// Drop `key` (a cancelled read): its slot becomes free.
    pub fn forget(&mut self, key: ExpertKey) {
        if let Some(r) = self.resident.remove(&key) {
            self.owner[r.slot as usize] = None;
            self.free.push(r.slot);
        }
    }

    /// Make every expert of `uses` resident for the running layer step (a demand use of
    /// each), evicting by policy but never one of them. `uses` must fit in the pool.
    pub fn admit(&mut self, uses: &[ExpertKey]) -> Result<Admission> {
        let pinned: HashSet<ExpertKey> = uses.iter().copied().collect();
        if pinned.len() > self.slots() {
            return Err(Error::Budget(format!(
                "{} experts at once in a pool of {} slots",
                pinned.len(),
                self.slots()
            )));
        }
        let mut adm = Admission::default();
        self.clock += 1;
        for &key in uses {
            let tokens = self.gaps.get(&key.layer).map_or(0, |g| g.tokens);
            if let Some(&prev) = self.last_seen.get(&key)
                && let Some(g) = self.gaps.get_mut(&key.layer)
            {
                let gap = tokens.saturating_sub(prev) as usize;
                if gap > 0 {
                    g.gaps[gap.min(MAX_GAP)] += 1.0;
                }
            }
            self.last_seen.insert(key, tokens);
            let r = match self.resident.get_mut(&key) {
                Some(r) => {
                    if r.last_use != self.clock {
                        adm.hits.push(key);
                        adm.prefetch_hits += r.prefetched as usize;
                    }
                    r
                }
                None => {
                    let slot = self
                        .take_slot(&pinned, &mut adm)
                        .ok_or_else(|| Error::Budget("no slot left to evict".into()))?;
                    self.owner[slot as usize] = Some(key);
                    adm.loads.push((key, slot));
                    self.resident.entry(key).or_insert(Resident {
                        slot,
                        last_use: 0,
                        last_token: 0,
                        prefetched: false,
                    })
                }
            };
            r.last_use = self.clock;
            r.last_token = tokens;
            r.prefetched = false;
        }
        Ok(adm)
    }

    /// Bring predicted experts in, evicting by policy but never one of `pinned` (the
    /// running step's experts) or of the prediction. Returns the (expert, slot) pairs to
    /// upload; prefetched experts stay marked until a demand use.
    pub fn prefetch(&mut self, predicted: &[ExpertKey], pinned: &[ExpertKey]) -> Vec<(ExpertKey, u32)> {
        let mut keep: HashSet<ExpertKey> = pinned.iter().copied().collect();
        keep.extend(predicted.iter().copied());
        let mut loads = Vec::new();
        let mut ignored = Admission::default();
        for &key in predicted {
            if self.resident.contains_key(&key) {
                continue;
            }
            let Some(slot) = self.take_slot(&keep, &mut ignored) else {
                break;
            };
            self.owner[slot as usize] = Some(key);
            self.resident.insert(
                key,
                Resident {
                    slot,
                    last_use: self.clock,
                    last_token: 0,
                    prefetched: true,
                },
            );
            loads.push((key, slot));
        }
        loads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(layer: u32, expert: u32) -> ExpertKey {
        ExpertKey { layer, expert }
    }

    #[test]
    fn a_forgotten_expert_frees_its_slot_for_the_next_miss() {
        let mut c = SlotCache::new(2, PolicyKind::Lru, &[1]);
        c.start_step(1, 1);
        c.admit(&[k(1, 0), k(1, 1)]).unwrap();
        let slot = c.slot_of(k(1, 1)).unwrap();
        c.forget(k(1, 1));
        assert!(c.slot_of(k(1, 1)).is_none());
        c.start_step(1, 1);
        // The freed slot is taken without evicting expert 0.
        let a = c.admit(&[k(1, 2)]).unwrap();
        assert_eq!(a.loads, vec![(k(1, 2), slot)]);
        assert!(c.slot_of(k(1, 0)).is_some());
    }

    #[test]
    fn lru_evicts_the_least_recently_used_and_never_a_pinned_expert() {
        let mut c = SlotCache::new(3, PolicyKind::Lru, &[1]);
        c.start_step(1, 1);
        assert_eq!(c.admit(&[k(1, 0), k(1, 1)]).unwrap().loads.len(), 2);
        c.start_step(1, 1);
        let a = c.admit(&[k(1, 2), k(1, 0)]).unwrap();
        assert_eq!(a.hits, vec![k(1, 0)]);
        c.start_step(1, 1);
        // Expert 1 is the oldest; 0 and 2 stay.
        let a = c.admit(&[k(1, 3)]).unwrap();
        assert_eq!(a.loads, vec![(k(1, 3), c.slot_of(k(1, 3)).unwrap())]);
        assert!(c.slot_of(k(1, 1)).is_none());
        assert!(c.slot_of(k(1, 0)).is_some() && c.slot_of(k(1, 2)).is_some());
        // More experts than slots at once is an error, not a silent drop.
        assert!(c.admit(&[k(1, 4), k(1, 5), k(1, 6), k(1, 7)]).is_err());
        // Admitting a set never evicts one of its own members.
        c.start_step(1, 1);
        let a = c.admit(&[k(1, 5), k(1, 6), k(1, 7)]).unwrap();
        assert_eq!(a.loads.len(), 3);
        let mut slots: Vec<u32> = a.loads.iter().map(|l| l.1).collect();
        slots.sort();
        assert_eq!(slots, vec![0, 1, 2]);
    }

    #[test]
    fn reuse_distance_keeps_the_layer_that_runs_next() {
        // Two layers in a pool of 2: after layer 1 runs expert 0 and layer 2 runs expert
        // 0, layer 1's next step needs a slot. LRU would evict layer 1's expert (used
        // longest ago), the one about to be needed; reuse distance evicts layer 2's.
        let mut c = SlotCache::new(2, PolicyKind::Reuse, &[1, 2]);
        for _ in 0..3 {
            c.start_step(1, 1);
            c.admit(&[k(1, 0)]).unwrap();
            c.start_step(2, 1);
            c.admit(&[k(2, 0)]).unwrap();
        }
        c.start_step(1, 1);
        c.admit(&[k(1, 0)]).unwrap();
        // Layer 2 (current) now needs a new expert: the victim must not be layer 2's
        // pinned expert... and layer 1 is next: evict nothing of layer 1 when layer 2's
        // old expert can go.
        c.start_step(2, 1);
        let a = c.admit(&[k(2, 1)]).unwrap();
        assert_eq!(a.loads.len(), 1);
        assert!(c.slot_of(k(1, 0)).is_some(), "layer 1 runs next and keeps its expert");
        assert!(c.slot_of(k(2, 0)).is_none());
    }

    #[test]
    fn prefetches_are_marked_and_evicted_first() {
        let mut c = SlotCache::new(3, PolicyKind::Lru, &[1, 2]);
        c.start_step(1, 1);
        c.admit(&[k(1, 0), k(1, 1)]).unwrap();
        assert_eq!(c.prefetch(&[k(2, 5)], &[k(1, 0), k(1, 1)]).len(), 1);
        // A larger prediction finds no other slot it may take.
        assert!(c.prefetch(&[k(2, 5), k(2, 6)], &[k(1, 0), k(1, 1)]).is_empty());
        c.start_step(2, 1);
        let a = c.admit(&[k(2, 5)]).unwrap();
        assert_eq!((a.hits.len(), a.prefetch_hits, a.wasted), (1, 1, 0));
        c.prefetch(&[k(1, 7)], &[k(2, 5)]);
        c.start_step(1, 1);
        let a = c.admit(&[k(1, 0), k(1, 1), k(1, 2)]).unwrap();
        assert_eq!(a.wasted, 1, "the unused prefetch of expert 7 was evicted");
    }
}
