//! Belady's optimum: over a recorded router trace, evict the expert whose next use is
//! furthest away. No policy without prefetch gets a higher demand hit rate from the same
//! slots, so it is the physical limit the online policies are compared against.

use super::cache::ExpertKey;
use std::collections::{BTreeSet, HashMap, HashSet};

/// One MoE layer step of a trace: the layer and the experts its tokens used.
#[derive(Clone, Debug)]
pub struct Step {
    pub layer: u32,
    pub experts: Vec<u32>,
}

/// Demand hit rate of Belady's policy: `(hits, uses)` where a use is one (step, expert)
/// of `trace`. `pool_of(layer)` names the pool serving a layer and `slots[pool]` its
/// size; each step's experts must fit in its pool.
pub fn belady(trace: &[Step], pool_of: impl Fn(u32) -> usize, slots: &[usize]) -> (u64, u64) {
    // Next use of each (step, expert): the index of the next step using the same key.
    let mut next = vec![Vec::new(); trace.len()];
    let mut upcoming: HashMap<ExpertKey, usize> = HashMap::new();
    for (i, s) in trace.iter().enumerate().rev() {
        next[i] = s
            .experts
            .iter()
            .map(|&e| {
                let key = ExpertKey {
                    layer: s.layer,
                    expert: e,
                };
                upcoming.insert(key, i).map_or(usize::MAX, |n| n)
            })
            .collect();
    }
    // Per pool, its resident experts ordered by next use (furthest last).
    let mut by_next: Vec<BTreeSet<(usize, ExpertKey)>> = vec![BTreeSet::new(); slots.len()];
    let mut when: HashMap<ExpertKey, usize> = HashMap::new();
    let (mut hits, mut uses) = (0u64, 0u64);
    for (i, s) in trace.iter().enumerate() {
        let pool = pool_of(s.layer);
        let set = &mut by_next[pool];
        let keys: Vec<ExpertKey> = s
            .experts
            .iter()
            .map(|&e| ExpertKey {
                layer: s.layer,
                expert: e,
            })
            .collect();
        let distinct: HashSet<ExpertKey> = keys.iter().copied().collect();
        for &key in &keys {
            uses += 1;
            if when.contains_key(&key) {
                hits += 1;
            }
        }
        // Misses take free slots, then evict the furthest next use among the others.
        for key in &distinct {
            if let Some(n) = when.remove(key) {
                set.remove(&(n, *key));
            }
        }
        while set.len() + distinct.len() > slots[pool] {
            let Some(furthest) = set.pop_last() else {
                break;
            };
            when.remove(&furthest.1);
        }
        for (j, key) in keys.iter().enumerate() {
            let n = next[i][j];
            if distinct.contains(key) && !when.contains_key(key) {
                when.insert(*key, n);
                set.insert((n, *key));
            }
        }
    }
    (hits, uses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(seq: &[u32]) -> Vec<Step> {
        seq.iter()
            .map(|&e| Step {
                layer: 0,
                experts: vec![e],
            })
            .collect()
    }

    #[test]
    fn matches_the_textbook_example() {
        // The start of the classic OPT example with 3 frames: 7 faults in 13 references.
        let t = steps(&[7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2]);
        let (hits, uses) = belady(&t, |_| 0, &[3]);
        assert_eq!((uses - hits, uses), (7, 13));
    }

    #[test]
    fn beats_or_ties_every_eviction_choice_on_small_traces() {
        // Exhaustive search over eviction choices for short traces of one-expert steps.
        fn best(t: &[u32], i: usize, cache: &mut Vec<u32>, slots: usize) -> u64 {
            if i == t.len() {
                return 0;
            }
            if cache.contains(&t[i]) {
                return 1 + best(t, i + 1, cache, slots);
            }
            if cache.len() < slots {
                cache.push(t[i]);
                let r = best(t, i + 1, cache, slots);
                cache.pop();
                return r;
            }
            (0..cache.len())
                .map(|v| {
                    let old = cache[v];
                    cache[v] = t[i];
                    let r = best(t, i + 1, cache, slots);
                    cache[v] = old;
                    r
                })
                .max()
                .unwrap_or(0)
        }
        let mut z = 12345u64;
        for _ in 0..50 {
            let t: Vec<u32> = (0..10)
                .map(|_| {
                    z = z.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((z >> 33) % 5) as u32
                })
                .collect();
            let (hits, _) = belady(&steps(&t), |_| 0, &[2]);
            assert_eq!(hits, best(&t, 0, &mut Vec::new(), 2), "{t:?}");
        }
    }
}
