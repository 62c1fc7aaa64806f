//! `lowbit synth`: a GGUF with a real architecture's names, shapes and metadata and
//! random weights, typed by a recipe, for planning hardware ("how fast would R1 run
//! here, in how much memory?") and for tests and benchmarks at scale, without the
//! download.
//!
//! No quantization search runs per tensor. For every block type the recipe picks, a
//! pool of [`POOL_BLOCKS`] blocks is quantized once from Gaussian-like noise (so every
//! block has finite scales and varied quants); a quantized tensor is then a random
//! sequence of pool blocks (ggml blocks are self-contained, so any block is valid at any
//! position). Norms are `1 + noise`, other float tensors noise, written directly.
//! Gigabytes take seconds: the cost is one random number and one copy per block.
//!
//! The file has no tokenizer (R1's 129,280-entry vocabulary is not reproduced): run it
//! with `logits --tokens` or `bench`; `generate` and `chat` say that it has none.

use crate::error::{Error, Result};
use crate::gguf::{SplitPolicy, TensorSpec, Value, write};
use crate::model::r1;
use crate::quant::{self, BlockType};
use crate::quantize::{Recipe, TensorClass, plan_specs};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Distinct blocks per block type that tensors are drawn from.
pub const POOL_BLOCKS: usize = 4096;
/// Standard deviation-like scale of matrix weights (as in `tests/r1_scale.rs`).
const WEIGHT_SCALE: f32 = 0.02;
/// Scale of the noise around 1 of norm weights.
const NORM_SCALE: f32 = 0.1;

/// What to synthesize.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// The architecture whose shapes to use: `r1` (DeepSeek-R1 / V3).
    pub like: String,
    /// Layers, the first `dense_layers` of them dense (the rest MoE).
    pub layers: usize,
    pub dense_layers: usize,
    /// A preset or recipe file (as `quantize --recipe` takes).
    pub recipe: String,
    pub seed: u64,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Synthesized {
    pub paths: Vec<PathBuf>,
    pub tensors: usize,
    /// All tensor bytes, and those of the routed experts.
    pub bytes: u64,
    pub expert_bytes: u64,
}

/// splitmix64: a fast, well-mixed stream of random words.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in [-scale, scale), the sum of two uniforms (peaked at 0, like weights).
    fn value(&mut self, scale: f32) -> f32 {
        let u = |w: u64| (w >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        (u(self.next()) + u(self.next())) * scale
    }
}

/// Metadata and tensor table.
type Layout = (Vec<(String, Value)>, Vec<TensorSpec>);

/// The metadata and tensor table of the architecture `like`, cut to the options' layers.
fn layout(o: &SynthOptions) -> Result<Layout> {
    if o.layers == 0 || o.dense_layers > o.layers {
        return Err(Error::Unsupported(format!(
            "synth: {} layers with {} dense: need at least 1 layer and at most that many dense",
            o.layers, o.dense_layers
        )));
    }
    match o.like.to_ascii_lowercase().as_str() {
        "r1" | "deepseek-r1" | "v3" | "deepseek-v3" => Ok(r1::deepseek_r1(o.layers, o.dense_layers)),
        other => Err(Error::Unsupported(format!(
            "synth: unknown architecture '{other}' (known: r1, the DeepSeek-R1/V3 shapes)"
        ))),
    }
}

/// `POOL_BLOCKS` blocks of `ty` quantized from noise.
fn block_pool(ty: BlockType, rng: &mut Rng) -> Result<Vec<u8>> {
    let per_row = ty.block_size() * 64;
    let values: Vec<f32> = (0..POOL_BLOCKS * ty.block_size())
        .map(|_| rng.value(WEIGHT_SCALE))
        .collect();
    quant::quantize(ty, &values, per_row, None)
}

/// Write the synthetic model to `path` (split by `policy`).
pub fn synth(path: &Path, o: &SynthOptions, policy: SplitPolicy) -> Result<Synthesized> {
    let (mut metadata, specs) = layout(o)?;
    for (k, v) in &mut metadata {
        if k == "general.name" {
            *v = Value::String(format!("{} (synthetic: random weights, seed {})", o.like, o.seed));
        }
    }
    let recipe = Recipe::load(&o.recipe)?;
    let planned = plan_specs(&specs, &recipe);
    let typed: Vec<TensorSpec> = planned.iter().map(TensorSpec::from).collect();
    let mut rng = Rng(o.seed);
    let mut pools: HashMap<BlockType, Vec<u8>> = HashMap::new();
    for t in &typed {
        if !is_float(t.ty) && !pools.contains_key(&t.ty) {
            pools.insert(t.ty, block_pool(t.ty, &mut rng)?);
        }
    }
    let mut buf = Vec::with_capacity(1 << 20);
    let paths = write(path, &metadata, &typed, policy, |i, w| {
        let t = &typed[i];
        let elements: u64 = t.dims.iter().product();
        let io = |e| Error::io(path, e);
        if is_float(t.ty) {
            let norm = t.dims.len() == 1;
            let values: Vec<f32> = (0..elements)
                .map(|_| match norm {
                    true => 1.0 + rng.value(NORM_SCALE),
                    false => rng.value(WEIGHT_SCALE),
                })
                .collect();
            let k = t.dims[0] as usize;
            return w.write_all(&quant::quantize(t.ty, &values, k, None)?).map_err(io);
        }
        let pool = &pools[&t.ty];
        let size = t.ty.type_size();
        let mut blocks = elements / t.ty.block_size() as u64;
        while blocks > 0 {
            let n = blocks.min(((1 << 20) / size) as u64);
            buf.clear();
            for _ in 0..n {
                let b = (rng.next() % POOL_BLOCKS as u64) as usize;
                buf.extend_from_slice(&pool[b * size..(b + 1) * size]);
            }
            w.write_all(&buf).map_err(io)?;
            blocks -= n;
        }
        Ok(())
    })?;
    let mut bytes = 0;
    let mut expert_bytes = 0;
    for (t, p) in typed.iter().zip(&planned) {
        let size = t.size()?;
        bytes += size;
        if p.class == TensorClass::RoutedExpert {
            expert_bytes += size;
        }
    }
    Ok(Synthesized {
        paths,
        tensors: typed.len(),
        bytes,
        expert_bytes,
    })
}

fn is_float(ty: BlockType) -> bool {
    matches!(ty, BlockType::F32 | BlockType::F16 | BlockType::BF16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_shapes_and_impossible_layer_counts_are_errors() {
        let o = SynthOptions {
            like: "gpt-9".into(),
            layers: 2,
            dense_layers: 1,
            recipe: "ud-iq1_s".into(),
            seed: 1,
        };
        assert!(layout(&o).unwrap_err().to_string().contains("unknown architecture"));
        let o = SynthOptions {
            like: "r1".into(),
            dense_layers: 3,
            ..o
        };
        assert!(layout(&o).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn pool_blocks_decode_to_finite_values() {
        let mut rng = Rng(7);
        for ty in [BlockType::IQ1_S, BlockType::IQ2_XXS, BlockType::Q4_K, BlockType::Q6_K] {
            let pool = block_pool(ty, &mut rng).unwrap();
            assert_eq!(pool.len(), POOL_BLOCKS * ty.type_size());
            let v = quant::dequantize(ty, &pool, ty.block_size()).unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{ty}");
            assert!(v.iter().any(|&x| x != 0.0), "{ty}");
        }
    }
}
