//! The device-memory plan of a model under a VRAM budget.
//!
//! Resident: every weight except the routed experts (attention with MLA's per-head
//! `attn_k_b`/`attn_v_b`, dense FFNs, shared experts, routers, norms, embeddings, head),
//! the KV cache for the context asked for, and scratch for the activations of one
//! forward pass. The rest of the budget becomes expert slot pools, one per byte-size
//! class of a (gate, up, down) expert (layers may differ in type).

use super::cache::PolicyKind;
use crate::error::{Error, Result};
use crate::gguf::File;
use crate::quant::BlockType;

/// Streaming choices of the load API (`Model::load_with`) and the `--vram-budget`,
/// `--expert-policy` and `--prefetch` options.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Device bytes lowbit may hold in all; None: every weight resident, as without
    /// streaming.
    pub vram_budget: Option<u64>,
    /// Host bytes for owned resident weights, the KV cache and the host expert cache
    /// ([`Memory::Host`]); None: compute from the file's map, nothing owned.
    pub ram_budget: Option<u64>,
    pub policy: PolicyKind,
    /// Upload layer l+1's predicted experts while layer l runs.
    pub prefetch: bool,
    /// Positions the KV cache is planned for.
    pub n_ctx: usize,
    /// Explicit reads (resident weights under a RAM budget, the host expert cache) go
    /// through the page cache; by default they bypass it ([`crate::gguf::direct`]).
    pub page_cache: bool,
}

/// One MoE layer's routed experts as they stream: expert e of part p (gate, up, down)
/// is bytes `[e * part_bytes[p], (e + 1) * part_bytes[p])` of that part's 3-D tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpertLayer {
    pub layer: usize,
    pub n_expert: usize,
    pub n_used: usize,
    /// Gate and up are `[ff][n_embd]` per expert, down `[n_embd][ff]`.
    pub n_embd: usize,
    pub ff: usize,
    pub types: [BlockType; 3],
    pub part_bytes: [u64; 3],
}

impl ExpertLayer {
    /// Bytes of one expert (its three matrices).
    pub fn expert_bytes(&self) -> u64 {
        self.part_bytes.iter().sum()
    }
}

/// Where the device memory goes.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Resident weights by kind: (kind, bytes on the device).
    pub resident: Vec<(&'static str, u64)>,
    pub kv_cache: u64,
    /// Activations of the largest forward pass (`n_ctx` tokens).
    pub scratch: u64,
    pub expert_layers: Vec<ExpertLayer>,
}

/// Bytes a weight tensor takes on the device: rounded to 16 (`GpuContext::upload`),
/// a 1-row F32 vector to whole 4 KiB pages (norms may be bound as uniforms).
fn device_bytes(bytes: u64, ty: BlockType, rows: u64) -> u64 {
    if ty == BlockType::F32 && rows == 1 {
        bytes.div_ceil(4096).max(1) * 4096
    } else {
        bytes.max(16).div_ceil(16) * 16
    }
}

/// The kind of a resident tensor, by its llama.cpp name.
fn kind(name: &str) -> &'static str {
    let base = name.rsplit_once('.').map_or(name, |(b, _)| b);
    let leaf = base.rsplit('.').next().unwrap_or(base);
    match leaf {
        "token_embd" => "embeddings",
        "output" => "output head",
        "attn_k_b" | "attn_v_b" | "attn_kv_b" => "attention (per-head k_b/v_b)",
        "ffn_gate_inp" | "exp_probs_b" => "routers",
        l if l.ends_with("norm") => "norms",
        l if l.starts_with("attn") => "attention",
        l if l.ends_with("_shexp") => "shared experts",
        l if l.starts_with("ffn") => "dense FFN",
        _ => "other",
    }
}

/// Whether a tensor is a routed-expert stack (streamed under a budget).
pub fn is_routed(name: &str) -> bool {
    name.contains("_exps.")
}

impl MemoryPlan {
    /// The plan of `file`: its non-expert tensors resident, `tables` bytes of lowbit's
    /// own index tables (expert-to-slot, per-head), `kv_cache` and `scratch` bytes, and
    /// the routed experts of `expert_layers`.
    pub fn of(file: &File, tables: u64, kv_cache: u64, scratch: u64, expert_layers: Vec<ExpertLayer>) -> Self {
        let mut resident: Vec<(&'static str, u64)> = vec![("index tables", tables)];
        for t in file.tensors() {
            if is_routed(&t.info.name) {
                continue;
            }
            let bytes = device_bytes(t.info.size, t.info.ty, t.info.n_rows());
            let k = kind(&t.info.name);
            match resident.iter_mut().find(|(name, _)| *name == k) {
                Some((_, b)) => *b += bytes,
                None => resident.push((k, bytes)),
            }
        }
        MemoryPlan {
            resident,
            kv_cache,
            scratch,
            expert_layers,
        }
    }

    pub fn resident_bytes(&self) -> u64 {
        self.resident.iter().map(|(_, b)| b).sum()
    }

    /// Every routed expert's bytes.
    pub fn expert_bytes(&self) -> u64 {
        self.expert_layers
            .iter()
            .map(|l| l.expert_bytes() * l.n_expert as u64)
            .sum()
    }

    /// What must stay on the device whatever the budget: resident weights, cache, scratch.
    pub fn fixed_bytes(&self) -> u64 {
        self.resident_bytes() + self.kv_cache + self.scratch
    }

    /// The smallest expert pools that can run a token: `n_used` slots in every class.
    pub fn min_pool_bytes(&self) -> u64 {
        let mut classes: Vec<(u64, usize)> = Vec::new();
        for l in &self.expert_layers {
            let b = l.expert_bytes();
            match classes.iter_mut().find(|(c, _)| *c == b) {
                Some((_, n)) => *n = (*n).max(l.n_used),
                None => classes.push((b, l.n_used)),
            }
        }
        classes.iter().map(|&(b, n)| b * n as u64).sum()
    }

    /// The VRAM budget whose expert pools hold `fraction` of all expert bytes.
    pub fn budget_for(&self, fraction: f64) -> u64 {
        self.fixed_bytes() + self.experts_share(fraction)
    }

    /// The RAM budget whose host expert cache holds `fraction` of all expert bytes.
    pub fn ram_budget_for(&self, fraction: f64) -> u64 {
        self.host_fixed_bytes() + self.experts_share(fraction)
    }

    /// `fraction` of all expert bytes, rounded up.
    pub fn experts_share(&self, fraction: f64) -> u64 {
        (self.expert_bytes() as f64 * fraction).ceil() as u64
    }

    /// What must stay in host memory under a RAM budget: resident weights and cache
    /// (scratch is part of the documented overhead, see [`Memory::Host`]).
    pub fn host_fixed_bytes(&self) -> u64 {
        self.resident_bytes() + self.kv_cache
    }

    /// Bytes left for expert pools under `budget` of `memory`, or an error naming every
    /// part when the resident part and the smallest pools do not fit.
    pub fn pool_bytes(&self, budget: u64, memory: Memory) -> Result<u64> {
        let (fixed, name, scratch) = match memory {
            Memory::Device => (self.fixed_bytes(), "VRAM", "of scratch"),
            Memory::Host => (self.host_fixed_bytes(), "RAM", "of scratch outside the budget"),
        };
        let need = fixed + self.min_pool_bytes();
        if need <= budget {
            return Ok(budget - fixed);
        }
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        let parts: Vec<String> = self.resident.iter().map(|(k, b)| format!("{k} {}", mib(*b))).collect();
        Err(Error::Budget(format!(
            "a {name} budget of {} cannot hold this model: it needs {} resident ({}), {} of KV cache, {} {scratch} and at least {} of expert slots ({} experts of the largest class), {} in all; the experts total {}",
            mib(budget),
            mib(self.resident_bytes()),
            parts.join(", "),
            mib(self.kv_cache),
            mib(self.scratch),
            mib(self.min_pool_bytes()),
            self.expert_layers.iter().map(|l| l.n_used).max().unwrap_or(0),
            mib(need),
            mib(self.expert_bytes()),
        )))
    }
}

/// Which memory a budget bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Memory {
    /// Device memory (`--vram-budget`): everything lowbit allocates on the device.
    #[default]
    Device,
    /// Host memory (`--ram-budget`): owned resident weights, the KV cache and the host
    /// expert cache. Outside it (the documented overhead): code, the tokenizer,
    /// activations and parsed metadata.
    Host,
}

/// Layers whose experts have the same types and shapes share a pool: each class's
/// shape and the indices (into `layers`) of its members.
pub fn pool_classes<'a>(layers: impl IntoIterator<Item = &'a ExpertLayer>) -> Vec<(ExpertLayer, Vec<usize>)> {
    let mut classes: Vec<(ExpertLayer, Vec<usize>)> = Vec::new();
    for (i, l) in layers.into_iter().enumerate() {
        let same = |c: &ExpertLayer| (c.types, c.part_bytes, c.n_embd, c.ff) == (l.types, l.part_bytes, l.n_embd, l.ff);
        match classes.iter_mut().find(|(c, _)| same(c)) {
            Some((_, members)) => members.push(i),
            None => classes.push((l.clone(), vec![i])),
        }
    }
    classes
}

/// Slots per class for `left` bytes of pools: every class first gets one token's
/// experts (`n_used`), then the rest in proportion to its experts' bytes, at most all its
/// experts. `Err(need)`: `left` cannot hold one token's experts of every class.
pub fn class_slots(classes: &[(ExpertLayer, Vec<usize>)], left: u64) -> std::result::Result<Vec<usize>, u64> {
    let all = |c: &ExpertLayer, m: &[usize]| c.n_expert * m.len();
    let total: u64 = classes.iter().map(|(c, m)| c.expert_bytes() * all(c, m) as u64).sum();
    let need: u64 = classes.iter().map(|(c, _)| c.expert_bytes() * c.n_used as u64).sum();
    if left < need {
        return Err(need);
    }
    let spare = left - need;
    Ok(classes
        .iter()
        .map(|(c, m)| {
            let share = (spare as f64 * (c.expert_bytes() * all(c, m) as u64) as f64 / total as f64) as u64;
            (c.n_used + (share / c.expert_bytes()) as usize).min(all(c, m))
        })
        .collect())
}

/// A size like `6GiB`, `900MiB`, `512KiB`, `2GB` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(Error::Budget(format!("'{s}' is not a size (e.g. 6GiB, 900MiB, 2GB)"))),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| Error::Budget(format!("'{s}' is not a size (e.g. 6GiB, 900MiB, 2GB)")))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(Error::Budget(format!("size '{s}' must be positive")));
    }
    Ok((v * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("6GiB").unwrap(), 6 << 30);
        assert_eq!(parse_size("900MiB").unwrap(), 900 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "GiB", "6 parsecs", "-1GiB", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tensor_kinds_follow_llama_cpp_names() {
        assert_eq!(kind("blk.3.attn_q_a.weight"), "attention");
        assert_eq!(kind("blk.3.attn_q_a_norm.weight"), "norms");
        assert_eq!(kind("blk.3.ffn_up_shexp.weight"), "shared experts");
        assert_eq!(kind("blk.0.ffn_up.weight"), "dense FFN");
        assert_eq!(kind("blk.3.exp_probs_b.bias"), "routers");
        assert_eq!(kind("token_embd.weight"), "embeddings");
        assert!(is_routed("blk.3.ffn_down_exps.weight"));
    }
}
