//! Scale check without the 671B download: a GGUF with DeepSeek-R1's real names, shapes
//! and metadata for two layers (one dense, one MoE with 256 experts), typed by the
//! `ud-iq1_s` preset (IQ1_S/IQ2_XXS experts, Q4_K/Q6_K elsewhere, F32 router and norms)
//! and filled with random weights, loads and runs a token on the CPU; the memory plan of
//! the full model is computed from the same layout.

mod common;
use common::noise;
use lowbit::backend::RopeScaling;
use lowbit::cpu::CpuBackend;
use lowbit::gguf::{File, SplitPolicy, TensorSpec, write};
use lowbit::model::{Deepseek2Config, Model, r1};
use lowbit::quant::{self, BlockType};
use lowbit::quantize::{Recipe, plan_specs};

#[test]
fn two_r1_layers_load_and_run_a_token_on_the_cpu() {
    let (metadata, specs) = r1::deepseek_r1(2, 1);
    let planned = plan_specs(&specs, &Recipe::preset("ud-iq1_s").unwrap().unwrap());
    let find = |n: &str| planned.iter().find(|p| p.name == n).unwrap().ty;
    assert_eq!(find("blk.1.ffn_gate_exps.weight"), BlockType::IQ1_S);
    assert_eq!(
        find("blk.1.ffn_down_exps.weight"),
        BlockType::IQ2_XXS,
        "first MoE layers' down_proj"
    );
    assert_eq!(find("blk.1.ffn_gate_inp.weight"), BlockType::F32);
    assert_eq!(find("output.weight"), BlockType::Q6_K);
    // attn_k_b rows are qk_nope = 128 long: Q6_K falls back to Q8_0.
    assert_eq!(find("blk.0.attn_k_b.weight"), BlockType::Q8_0);

    let typed: Vec<TensorSpec> = planned
        .iter()
        .map(|p| TensorSpec {
            name: p.name.clone(),
            ty: p.ty,
            dims: p.dims.clone(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1-2layers.gguf");
    write(&path, &metadata, &typed, SplitPolicy::Single, |i, w| {
        // Each tensor repeats 8 random rows quantized to its type (norms near 1).
        let p = &typed[i];
        let k = p.dims[0] as usize;
        let rows: u64 = p.dims[1..].iter().product();
        let values = if p.dims.len() == 1 {
            noise(k, i as u64, 0.1).iter().map(|v| 1.0 + v).collect()
        } else {
            noise(8 * k, i as u64, 0.02)
        };
        let n = if p.dims.len() == 1 { 1 } else { 8 };
        let pattern = quant::quantize(p.ty, &values, k, None).unwrap();
        for r in 0..rows {
            let row = (r % n) as usize;
            let rb = pattern.len() / n as usize;
            w.write_all(&pattern[row * rb..(row + 1) * rb])
                .map_err(|e| lowbit::Error::io(&path, e))?;
        }
        Ok(())
    })
    .unwrap();

    let file = File::open(&path).unwrap();
    let c = Deepseek2Config::from_gguf(&file).unwrap();
    assert_eq!(
        (c.kv_lora, c.qk_nope, c.qk_rope, c.v_head, c.n_expert),
        (512, 128, 64, 128, 256)
    );
    assert_eq!(c.cache_width(), 576, "R1 caches 576 values per token per layer");
    assert!(matches!(
        c.rope_scaling,
        RopeScaling::Yarn {
            factor: 40.0,
            original_context: 4096,
            ..
        }
    ));
    let mscale = 1.0 + 0.1 * 40f32.ln();
    assert!((c.kq_scale() - mscale * mscale / 192f32.sqrt()).abs() < 1e-6);

    let mut cpu = CpuBackend;
    let model = Model::load(&file, &mut cpu, |_, _| {}).unwrap();
    let mut session = model.session(&mut cpu, 4).unwrap();
    session.trace = Some(Vec::new());
    let logits = model.forward(&mut cpu, &mut session, &[0, 17], false).unwrap();
    assert_eq!(logits.len(), 129280);
    assert!(logits.iter().all(|v| v.is_finite()), "finite logits");
    let (min, max) = logits
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(max > min, "logits vary");
    let trace = session.trace.unwrap();
    assert_eq!(trace.len(), 2, "2 tokens x 1 MoE layer");
    assert!(
        trace
            .iter()
            .all(|r| r.experts.len() == 8 && r.experts.iter().all(|&e| e < 256))
    );
}

#[test]
fn full_r1_ud_iq1_s_plan() {
    let (_, specs) = r1::deepseek_r1(r1::N_LAYER, r1::DENSE_LEAD);
    let planned = plan_specs(&specs, &Recipe::preset("ud-iq1_s").unwrap().unwrap());
    let summary = lowbit::quantize::report::Summary::of(&planned);
    let weights: u64 = planned.iter().map(|p| p.n_elements()).sum();
    assert!((670e9..672e9).contains(&(weights as f64)), "671B weights: {weights}");
    let gib = summary.bytes_after as f64 / (1u64 << 30) as f64;
    // Unsloth's DeepSeek-R1 UD-IQ1_S is 131 GB; BF16 is about 1.25 TiB.
    assert!((120.0..140.0).contains(&gib), "{gib} GiB");
    assert!(summary.bytes_before as f64 / summary.bytes_after as f64 > 9.0);
    let plan = lowbit::inspect::memory_plan(&planned, r1::N_LAYER * r1::CACHE_WIDTH, 4096);
    assert!(plan.contains("137.2 KiB (35136 values)"), "{plan}");
}
