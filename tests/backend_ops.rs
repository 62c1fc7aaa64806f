//! The operations behind stacked projections (one product for a layer's query, key and
//! value, or its gate and up): the GPU backend against the CPU backend, on lavapipe in CI.

mod common;

use common::gpu::SETTINGS;
use common::noise;
use lowbit::backend::{Backend, Rope, RopeScaling};
use lowbit::cpu::CpuBackend;
use lowbit::gguf::{TensorInfo, TensorView};
use lowbit::gpu::{GpuBackend, GpuOptions};
use lowbit::quant::BlockType;
use std::path::Path;

fn gpu() -> GpuBackend {
    gpu_with(GpuOptions::default())
}

fn gpu_with(options: GpuOptions) -> GpuBackend {
    GpuBackend::new(options).expect("a Vulkan adapter (lavapipe in CI)")
}

/// max |gpu − cpu| ≤ 1e-5 · max(1, max |cpu|); measured at most 2.0e-6 (a 2048-long
/// product of 9 rows, matmul against the CPU's sum order).
fn assert_close(cpu: &[f32], gpu: &[f32], what: &str) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths");
    let max = cpu.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = cpu.iter().zip(gpu).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-5 * max, "{what}: max |Δ| {diff} (max {max})");
    eprintln!("{what}: max |Δ| / max {:.2e}", diff / max);
}

fn info(name: &str, ty: BlockType, k: usize, rows: usize) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        ty,
        dims: vec![k as u64, rows as u64],
        file_offset: 0,
        size: 0,
    }
}

/// A 1-D tensor of `k` F32 values (an RMSNorm weight).
fn vector_info(name: &str, k: usize) -> TensorInfo {
    TensorInfo {
        dims: vec![k as u64],
        ..info(name, BlockType::F32, k, 1)
    }
}

/// A view of F32 `data` under `info`.
fn f32_view<'a>(info: &'a TensorInfo, data: &'a [f32]) -> TensorView<'a> {
    TensorView {
        info,
        bytes: bytemuck::cast_slice(data),
        path: Path::new("backend_ops"),
        shard: None,
    }
}

/// The parts of `x`'s columns, read back.
fn split<B: Backend>(b: &mut B, x: &B::Tensor, widths: &[usize]) -> Vec<Vec<f32>> {
    let parts = b.split_columns(x, widths).unwrap();
    parts.iter().map(|p| b.to_host(p).unwrap()).collect()
}

#[test]
fn split_columns_matches_the_cpu_for_one_row_and_several() {
    let mut g = gpu();
    for n in [1, 3] {
        let data = noise(n * 20, n as u64, 1.0);
        let widths = [8, 4, 8];
        let x = CpuBackend::default().upload(&data, n, 20).unwrap();
        let cpu = split(&mut CpuBackend::default(), &x, &widths);
        // Independent of both backends: the columns cut out by hand.
        let mut offset = 0;
        for (part, w) in cpu.iter().zip(widths) {
            let expected: Vec<f32> = data.chunks(20).flat_map(|r| r[offset..offset + w].to_vec()).collect();
            assert_eq!(part, &expected);
            offset += w;
        }
        let xg = g.upload(&data, n, 20).unwrap();
        assert_eq!(split(&mut g, &xg, &widths), cpu, "{n} rows");
        assert!(g.split_columns(&xg, &[8, 8]).is_err());
        assert!(CpuBackend::default().split_columns(&x, &[8, 16]).is_err());
    }
}

#[test]
fn stacked_swiglu_is_swiglu_of_the_halves() {
    let mut g = gpu();
    let (n, f) = (3, 40);
    let data = noise(n * 2 * f, 5, 3.0);
    fn run<B: Backend>(b: &mut B, data: &[f32], n: usize, f: usize) -> (Vec<f32>, Vec<f32>) {
        let x = b.upload(data, n, 2 * f).unwrap();
        let stacked = b.swiglu_stacked(&x).unwrap();
        let [gate, up]: [B::Tensor; 2] = b.split_columns(&x, &[f, f]).unwrap().try_into().ok().unwrap();
        let plain = b.swiglu(&gate, &up).unwrap();
        (b.to_host(&stacked).unwrap(), b.to_host(&plain).unwrap())
    }
    let (cpu_stacked, cpu_plain) = run(&mut CpuBackend::default(), &data, n, f);
    assert_eq!(cpu_stacked, cpu_plain);
    let silu = |v: f32| v / (1.0 + (-v).exp());
    assert!((cpu_stacked[f + 1] - silu(data[2 * f + 1]) * data[3 * f + 1]).abs() < 1e-6);
    let (gpu_stacked, gpu_plain) = run(&mut g, &data, n, f);
    assert_close(&cpu_stacked, &gpu_stacked, "stacked");
    assert_close(&cpu_plain, &gpu_plain, "plain");
    let odd = g.upload(&data[..n * 5], n, 5).unwrap();
    assert!(g.swiglu_stacked(&odd).is_err());
}

/// Rotating the leading heads of wider rows leaves the rest alone and equals rotating
/// those heads on their own.
#[test]
fn rope_rotates_the_leading_heads_of_wider_rows() {
    let mut g = gpu();
    let (n, heads, head_dim, extra) = (2, 3, 8, 5);
    let width = heads * head_dim + extra;
    let rope = Rope::new(heads, head_dim, 0, head_dim, 10000.0, RopeScaling::None).unwrap();
    let data = noise(n * width, 9, 1.0);
    fn run<B: Backend>(b: &mut B, rope: &Rope, data: &[f32], n: usize, width: usize) -> (Vec<f32>, Vec<f32>) {
        let lead = rope.heads * rope.head_dim;
        let mut wide = b.upload(data, n, width).unwrap();
        b.rope(&mut wide, rope, 4).unwrap();
        let again = b.upload(data, n, width).unwrap();
        let mut alone = b.split_columns(&again, &[lead, width - lead]).unwrap().remove(0);
        b.rope(&mut alone, rope, 4).unwrap();
        (b.to_host(&wide).unwrap(), b.to_host(&alone).unwrap())
    }
    let (cpu_wide, cpu_alone) = run(&mut CpuBackend::default(), &rope, &data, n, width);
    let lead = heads * head_dim;
    for (r, row) in cpu_wide.chunks(width).enumerate() {
        assert_eq!(&row[..lead], &cpu_alone[r * lead..(r + 1) * lead]);
        assert_eq!(&row[lead..], &data[r * width + lead..(r + 1) * width]);
    }
    let (gpu_wide, gpu_alone) = run(&mut g, &rope, &data, n, width);
    assert_close(&cpu_wide, &gpu_wide, "wide rows");
    assert_close(&cpu_alone, &gpu_alone, "heads alone");
    let mut narrow = g.upload(&data[..n * 10], n, 10).unwrap();
    assert!(g.rope(&mut narrow, &rope, 0).is_err());
}

/// A stacked matrix's product is the parts' products side by side; parts that differ in
/// format or row length are not stacked.
#[test]
fn stacked_matrix_product_is_the_parts_side_by_side() {
    let mut g = gpu();
    let k = 64;
    let rows = [16, 8, 8];
    let weights: Vec<Vec<f32>> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| noise(r * k, 20 + i as u64, 1.0))
        .collect();
    let infos: Vec<TensorInfo> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| info(&format!("w{i}"), BlockType::F32, k, r))
        .collect();
    let views: Vec<TensorView> = infos.iter().zip(&weights).map(|(info, w)| f32_view(info, w)).collect();
    let x = noise(2 * k, 30, 1.0);
    let stacked = g
        .stacked_matrix(&views)
        .unwrap()
        .expect("same format and row length stack");
    let xg = g.upload(&x, 2, k).unwrap();
    let y = g.matmul(&stacked, &xg).unwrap();
    let got = split(&mut g, &y, &rows);
    let xc = CpuBackend::default().upload(&x, 2, k).unwrap();
    for (view, got) in views.iter().zip(&got) {
        let m = CpuBackend::default().matrix(view).unwrap();
        let y = CpuBackend::default().matmul(&m, &xc).unwrap();
        assert_close(&CpuBackend::default().to_host(&y).unwrap(), got, &view.info.name);
    }
    assert!(
        CpuBackend::default().stacked_matrix(&views).unwrap().is_none(),
        "the CPU gains nothing from stacking"
    );
    let other_k = info("short", BlockType::F32, 32, 32);
    let q8 = info("w0", BlockType::Q8_0, k, rows[0]);
    let vector = vector_info("v", k);
    for odd in [&other_k, &q8, &vector] {
        let pair = [f32_view(&infos[0], &weights[0]), f32_view(odd, &weights[0])];
        assert!(g.stacked_matrix(&pair).unwrap().is_none(), "{}", odd.name);
    }
}

/// An RMSNorm fused into the product (one to eight rows of a short row length, with the
/// uniform activation binding) and the unfused path (otherwise) both equal the CPU's norm
/// then product; the profile shows which path ran.
#[test]
fn norm_matmul_matches_the_cpu_fused_or_not() {
    for setting in SETTINGS {
        let uniform_activations = setting.uniform_activations;
        let mut g = common::gpu::backend(setting, None);
        for (k, rows) in [(64, 40), (2048, 6)] {
            let weights = noise(rows * k, 50, 1.0);
            let norm_weights = noise(k, 51, 2.0);
            let (w_info, n_info) = (info("w", BlockType::F32, k, rows), vector_info("norm", k));
            let (w_view, n_view) = (f32_view(&w_info, &weights), f32_view(&n_info, &norm_weights));
            fn run<B: Backend>(b: &mut B, w: &TensorView, norm: &TensorView, n: usize, k: usize) -> Vec<f32> {
                let (w, norm) = (b.matrix(w).unwrap(), b.matrix(norm).unwrap());
                let x = b.upload(&noise(n * k, 52 + n as u64, 3.0), n, k).unwrap();
                let y = b.norm_matmul(&w, &x, &norm, 1e-5).unwrap();
                b.to_host(&y).unwrap()
            }
            for n in [1, 3, 9] {
                let cpu = run(&mut CpuBackend::default(), &w_view, &n_view, n, k);
                assert!(g.start_profile().unwrap());
                let got = run(&mut g, &w_view, &n_view, n, k);
                let fused = g.profile_report(1).unwrap().contains("matvec+norm");
                assert_eq!(fused, uniform_activations && k < 2048 && n <= 8, "k {k}, {n} rows");
                assert_close(&cpu, &got, &format!("k {k}, {n} rows, fused {fused}, {setting:?}"));
            }
        }
    }
}

/// Attention over the parts of a stacked Q/K/V product (the GPU backend appends one
/// token's keys and values straight from the stacked row) equals the CPU's attention
/// over the split parts, through a prefill of three tokens and a decode step.
#[test]
fn attention_over_a_stacked_product_matches_the_cpu() {
    use lowbit::backend::Heads;
    fn run<B: Backend>(b: &mut B) -> Vec<f32> {
        let h = Heads {
            heads: 4,
            kv_heads: 2,
            k_dim: 8,
            v_dim: 8,
            scale: 0.3,
        };
        let widths = [32, 16, 16];
        let mut cache = b.cache(8, 16, 16).unwrap();
        let mut out = Vec::new();
        for (pos0, n) in [(0usize, 3usize), (3, 1), (4, 1)] {
            let qkv = b.upload(&noise(n * 64, 60 + pos0 as u64, 1.0), n, 64).unwrap();
            let a = b.attention_stacked(&qkv, widths, &mut cache, &h, pos0).unwrap();
            out.extend(b.to_host(&a).unwrap());
        }
        let short = b.upload(&[0.0; 60], 1, 60).unwrap();
        assert!(b.attention_stacked(&short, widths, &mut cache, &h, 5).is_err());
        out
    }
    let cpu = run(&mut CpuBackend::default());
    let got = run(&mut gpu());
    assert_close(&cpu, &got, "stacked attention");
}

/// SwiGLU in the epilogue of a stacked [gate; up] product (short rows, up to 8 rows of
/// x), with and without a fused norm, and the unfused path otherwise, all equal the
/// CPU's product then SwiGLU; the profile shows which path ran.
#[test]
fn swiglu_product_matches_the_cpu_fused_or_not() {
    for setting in SETTINGS {
        let mut g = common::gpu::backend(setting, None);
        // 600 outputs take two rows per invocation for one row of x.
        for (k, f) in [(64, 70), (64, 600), (2048, 3)] {
            let weights = noise(2 * f * k, 70, 1.0);
            let norm_weights = noise(k, 71, 2.0);
            let (w_info, n_info) = (info("gate_up", BlockType::F32, k, 2 * f), vector_info("norm", k));
            let (w_view, n_view) = (f32_view(&w_info, &weights), f32_view(&n_info, &norm_weights));
            fn run<B: Backend>(
                b: &mut B,
                w: &TensorView,
                norm: &TensorView,
                normed: bool,
                n: usize,
                k: usize,
            ) -> Vec<f32> {
                let (w, norm) = (b.matrix(w).unwrap(), b.matrix(norm).unwrap());
                let x = b.upload(&noise(n * k, 72 + n as u64, 3.0), n, k).unwrap();
                let y = b.swiglu_product(&w, &x, normed.then_some((&norm, 1e-5))).unwrap();
                b.to_host(&y).unwrap()
            }
            for normed in [false, true] {
                for n in [1, 3, 9] {
                    let what = format!("k {k}, {n} rows, norm {normed}, {setting:?}");
                    let cpu = run(&mut CpuBackend::default(), &w_view, &n_view, normed, n, k);
                    assert_eq!(cpu.len(), n * f);
                    assert!(g.start_profile().unwrap());
                    let got = run(&mut g, &w_view, &n_view, normed, n, k);
                    let report = g.profile_report(1).unwrap();
                    assert_eq!(
                        report.contains("+swiglu"),
                        k < 2048 && n <= 8,
                        "{what}: epilogue\n{report}"
                    );
                    assert_close(&cpu, &got, &what);
                }
            }
        }
    }
}

/// `n` rows of `k` random bytes of `ty` whose every odd byte is 0x1c..=0x1f, so that each
/// f16 scale, wherever a format puts it, is finite (about 0.004..0.008), and every other
/// bit pattern (quants, grid indices, signs) occurs.
fn random_blocks(ty: BlockType, rows: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..ty.row_bytes(k).unwrap() * rows)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if i % 2 == 1 { 0x1c | (s as u8 & 3) } else { s as u8 }
        })
        .collect()
}

/// The embedding lookup (`get_rows.wgsl`) of every GPU format, as a quantized file's
/// `token_embd` takes it: short rows (stored as interleaved groups of 8) and long rows,
/// in one binding and split across several, against the codecs' dequantization (which
/// tests/codecs.rs checks bit for bit against gguf-py).
#[test]
fn get_rows_matches_the_codecs_for_every_format() {
    use lowbit::gpu::GPU_FORMATS;
    let tokens = [5u32, 0, 36, 5, 17, 8, 30];
    let (n_rows, mut checked, mut worst) = (37, 0, 0f32);
    for binding in [None, Some(4096)] {
        let mut g = gpu_with(GpuOptions {
            max_binding_bytes: binding,
            ..GpuOptions::default()
        });
        for &ty in GPU_FORMATS {
            for k in [256, 2048] {
                if binding.is_some() && ty.row_bytes(k).unwrap() * 8 > 4096 {
                    continue;
                }
                let bytes = random_blocks(ty, n_rows, k, ty.id() as u64 + k as u64);
                let rows = lowbit::quant::dequantize(ty, &bytes, k).unwrap();
                let expected: Vec<f32> = tokens
                    .iter()
                    .flat_map(|&t| rows[t as usize * k..][..k].to_vec())
                    .collect();
                let ti = info("token_embd", ty, k, n_rows);
                let view = TensorView {
                    info: &ti,
                    bytes: &bytes,
                    path: Path::new("get_rows"),
                    shard: None,
                };
                let table = g.matrix(&view).unwrap();
                let got = g.embed(&table, &tokens).unwrap();
                let got = g.to_host(&got).unwrap();
                let what = format!("{ty} k {k} binding {binding:?}");
                let diff = expected.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                let max = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Measured: 0 for every format on lavapipe (each value is one or two f32
                // operations on the same operands as ggml's dequantize_row_*); the bound
                // leaves room for a fused multiply-add's rounding on other devices.
                assert!(diff <= 1e-6 * max, "{what}: max |Δ| {diff} (max {max})");
                worst = worst.max(diff / max);
                assert!(
                    g.embed(&table, &[n_rows as u32]).is_err(),
                    "{what}: token outside the table"
                );
                checked += 1;
            }
        }
    }
    eprintln!("get_rows: {checked} (format, row length, binding) cases, max |Δ| / max {worst:e}");
}
