//! What a model is made of: tensors grouped into classes, with bytes and bits per weight.

use crate::gguf::{File, Value};
use crate::quant::BlockType;
use std::collections::BTreeMap;

/// The role a tensor plays, from its GGUF name (llama.cpp naming: `blk.N.ffn_down_exps.weight`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TensorClass {
    Embeddings,
    Attention,
    DenseFfn,
    RoutedExperts,
    SharedExperts,
    Router,
    Output,
    Norms,
    Other,
}

impl TensorClass {
    pub fn of(name: &str) -> Self {
        let base = name.rsplit_once('.').map_or(name, |(b, _)| b);
        let part = base.rsplit('.').next().unwrap_or(base);
        if part.contains("norm") {
            TensorClass::Norms
        } else if part == "token_embd" {
            TensorClass::Embeddings
        } else if part == "output" {
            TensorClass::Output
        } else if part.ends_with("_exps") {
            TensorClass::RoutedExperts
        } else if part.ends_with("_shexp") {
            TensorClass::SharedExperts
        } else if part == "ffn_gate_inp" || part.starts_with("exp_probs") {
            TensorClass::Router
        } else if part.starts_with("attn_") {
            TensorClass::Attention
        } else if part.starts_with("ffn_") {
            TensorClass::DenseFfn
        } else {
            TensorClass::Other
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TensorClass::Embeddings => "embeddings",
            TensorClass::Attention => "attention",
            TensorClass::DenseFfn => "dense ffn",
            TensorClass::RoutedExperts => "routed experts",
            TensorClass::SharedExperts => "shared experts",
            TensorClass::Router => "router",
            TensorClass::Output => "output",
            TensorClass::Norms => "norms",
            TensorClass::Other => "other",
        }
    }
}

/// Element and byte totals of a set of tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub tensors: usize,
    pub elements: u64,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, elements: u64, bytes: u64) {
        self.tensors += 1;
        self.elements += elements;
        self.bytes += bytes;
    }

    pub fn bits_per_weight(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / self.elements as f64
        }
    }
}

/// Per-class and per-type totals of a model.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub total: Totals,
    pub by_class: BTreeMap<TensorClass, Totals>,
    pub by_type: BTreeMap<BlockType, Totals>,
}

impl Summary {
    pub fn of(file: &File) -> Self {
        let mut s = Summary::default();
        for t in file.tensors() {
            let (n, b) = (t.info.n_elements(), t.info.size);
            s.total.add(n, b);
            s.by_class.entry(TensorClass::of(&t.info.name)).or_default().add(n, b);
            s.by_type.entry(t.info.ty).or_default().add(n, b);
        }
        s
    }
}

fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(_, items) => serde_json::Value::Array(items.iter().map(value_json).collect()),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
    }
}

fn totals_json(t: &Totals) -> serde_json::Value {
    serde_json::json!({
        "tensors": t.tensors, "elements": t.elements, "bytes": t.bytes,
        "bits_per_weight": t.bits_per_weight(),
    })
}

/// The whole model as JSON: metadata, tensors, totals per class and type.
pub fn to_json(file: &File) -> serde_json::Value {
    let summary = Summary::of(file);
    let metadata: serde_json::Map<String, serde_json::Value> = file
        .metadata_entries()
        .iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect();
    let tensors: Vec<serde_json::Value> = file
        .tensors()
        .map(|t| {
            serde_json::json!({
                "name": t.info.name, "type": t.info.ty.to_string(), "shape": t.info.dims,
                "bytes": t.info.size, "class": TensorClass::of(&t.info.name).label(),
            })
        })
        .collect();
    serde_json::json!({
        "path": file.path().display().to_string(),
        "shards": file.shards().len(),
        "file_bytes": file_bytes(file),
        "metadata": metadata,
        "tensors": tensors,
        "total": totals_json(&summary.total),
        "classes": summary.by_class.iter().map(|(c, t)| (c.label().to_string(), totals_json(t))).collect::<serde_json::Map<_, _>>(),
        "types": summary.by_type.iter().map(|(ty, t)| (ty.to_string(), totals_json(t))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Bytes of all shards on disk.
pub fn file_bytes(file: &File) -> u64 {
    file.shards().iter().map(|s| s.bytes().len() as u64).sum()
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// The human-readable report of `lowbit inspect`.
pub fn report(file: &File) -> String {
    use std::fmt::Write;
    let summary = Summary::of(file);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "file: {} ({} shard{})",
        file.path().display(),
        file.shards().len(),
        if file.shards().len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "GGUF v{}, {} metadata keys, {} tensors, {} bytes on disk",
        file.shards()[0].header.version,
        file.metadata_entries().len(),
        file.tensor_count(),
        file_bytes(file)
    );
    let _ = writeln!(out, "\nmetadata:");
    for (k, v) in file.metadata_entries() {
        let _ = writeln!(out, "  {k:<40} {}", v.display_short());
    }
    let _ = writeln!(out, "\ntensors:");
    let _ = writeln!(out, "  {:<44} {:<8} {:<24} {:>12}", "name", "type", "shape", "bytes");
    for t in file.tensors() {
        let shape = format!("{:?}", t.info.dims);
        let _ = writeln!(
            out,
            "  {:<44} {:<8} {:<24} {:>12}",
            t.info.name,
            t.info.ty.to_string(),
            shape,
            t.info.size
        );
    }
    let _ = writeln!(out, "\nby class:");
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>14} {:>12} {:>7}",
        "class", "tensors", "elements", "size", "bpw"
    );
    for (c, t) in &summary.by_class {
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>14} {:>12} {:>7.3}",
            c.label(),
            t.tensors,
            t.elements,
            human_bytes(t.bytes),
            t.bits_per_weight()
        );
    }
    let _ = writeln!(out, "\nby type:");
    for (ty, t) in &summary.by_type {
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>14} {:>12} {:>7.3}",
            ty.to_string(),
            t.tensors,
            t.elements,
            human_bytes(t.bytes),
            t.bits_per_weight()
        );
    }
    let _ = writeln!(
        out,
        "\ntotal: {} tensors, {} weights, {} ({} bytes), {:.3} bpw",
        summary.total.tensors,
        summary.total.elements,
        human_bytes(summary.total.bytes),
        summary.total.bytes,
        summary.total.bits_per_weight()
    );
    out
}

/// Device memory lowbit needs for a model: weights as stored (the GPU reads the packed
/// GGUF blocks), split into what stays resident and the routed experts (which the
/// expert cache can stream), plus the cache of `cache_per_token` f32 values per token
/// (all layers) for `n_ctx` tokens.
pub fn memory_plan(plan: &[crate::quantize::Planned], cache_per_token: usize, n_ctx: usize) -> String {
    use crate::quantize::TensorClass;
    let size = |b: u64| {
        if b >= 1 << 30 {
            format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
        } else {
            format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
        }
    };
    let experts: u64 = plan
        .iter()
        .filter(|p| p.class == TensorClass::RoutedExpert)
        .map(|p| p.bytes())
        .sum();
    let all: u64 = plan.iter().map(|p| p.bytes()).sum();
    let cache_token = cache_per_token as u64 * 4;
    let cache = cache_token * n_ctx as u64;
    let largest = plan.iter().map(|p| p.bytes()).max().unwrap_or(0);
    let summary = crate::quantize::report::Summary::of(plan);
    format!(
        "memory plan (lowbit layout, f32 cache, context {n_ctx}):\n\
         \x20 weights                 {:>12} ({:.3} bpw)\n\
         \x20   resident (non-expert) {:>12}\n\
         \x20   routed experts        {:>12} (streamable)\n\
         \x20 cache per token         {:>8.1} KiB ({cache_per_token} values)\n\
         \x20 cache at {n_ctx:<6}         {:>12}\n\
         \x20 largest tensor          {:>12}\n\
         \x20 total, all resident     {:>12}\n\
         \x20 total, experts streamed {:>12} + the expert cache\n",
        size(all),
        summary.bpw(),
        size(all - experts),
        size(experts),
        cache_token as f64 / 1024.0,
        size(cache),
        size(largest),
        size(all + cache),
        size(all - experts + cache),
    )
}

/// Cache values per token over all layers: MLA's latent for deepseek2, K and V for llama.
pub fn cache_values_per_token(file: &File) -> crate::Result<usize> {
    match file.metadata("general.architecture").and_then(Value::as_str) {
        Some("deepseek2") => {
            let c = crate::model::Deepseek2Config::from_gguf(file)?;
            Ok(c.n_layer * c.cache_width())
        }
        _ => {
            let c = crate::model::LlamaConfig::from_gguf(file)?;
            Ok(c.n_layer * 2 * c.kv_dim())
        }
    }
}
