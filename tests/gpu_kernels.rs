//! The packed-weight kernels (`matvec`, `matmul`, `matvec_id`, `matmul_id`) on a real
//! Vulkan device (Mesa lavapipe in CI) against the CPU reference, for every format and
//! both settings of each feature gate, on awkward shapes: rows not a multiple of the rows
//! per workgroup or tile, 1, 3, 8 and 33 columns, and tensors split across bindings.
//!
//! Tolerance: |gpu − cpu| ≤ 1e-6 · Σ|w·x| per output element: only the order of f32
//! accumulation differs (measured: at most 2.4e-7, matmul_id Q2_K, k = 512).

use half::f16;
use lowbit::gpu::{
    Activations, GPU_FORMATS, GpuContext, GpuExperts, GpuOptions, GpuWeights, Grouped, Kernel, MatmulTiles,
    NOT_RESIDENT, OTHER_WAVE, Output, Routing, RowLayout, Tuning, group_by_expert,
};
use lowbit::quant::{self, BlockType};
use std::sync::OnceLock;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

/// A context with the given reduction and binding limit, and uniform activations.
fn context(subgroups: bool, max_binding_bytes: Option<u64>) -> GpuContext {
    context_with(GpuOptions {
        subgroups,
        max_binding_bytes,
        uniform_activations: true,
        ..Default::default()
    })
}

fn context_with(options: GpuOptions) -> GpuContext {
    GpuContext::new(options).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)")
}

/// Whether the test device offers subgroups.
fn device_has_subgroups() -> bool {
    static F: OnceLock<bool> = OnceLock::new();
    *F.get_or_init(|| {
        let ctx = context(true, None);
        eprintln!("adapter: {}, subgroups: {}", ctx.adapter_name, ctx.features.subgroups);
        ctx.features.subgroups
    })
}

/// Quantized weights of `rows` x `k` for `ty` (IQ formats with an importance vector).
/// lowbit has no IQ4_NL quantizer, so its blocks are random indices under a sane scale.
fn weights(ty: BlockType, rows: usize, k: usize, seed: u64) -> Vec<u8> {
    let w = random(rows * k, seed);
    if ty == BlockType::IQ4_NL {
        return w
            .chunks(32)
            .flat_map(|b| {
                let d = f16::from_f32(0.01 + b[0].abs() * 0.02).to_le_bytes();
                let qs = b[..16].iter().map(|v| (v.to_bits() >> 7) as u8);
                d.into_iter().chain(qs).collect::<Vec<u8>>()
            })
            .collect();
    }
    let imp: Vec<f32> = random(k, seed + 1).iter().map(|v| v.abs() + 0.1).collect();
    quant::quantize(ty, &w, k, Some(&imp)).unwrap()
}

/// Activations as uploaded, in a buffer the decode matvec may also bind as a uniform
/// (whole pages, `UNIFORM` usage), as the GPU backend allocates them; whether it does is
/// the context's choice (`GpuOptions::uniform_activations`).
fn activations(ctx: &GpuContext, n: usize, seed: u64) -> (Vec<f32>, lowbit::gpu::Tracked) {
    let x = random(n, seed);
    let mut bytes: Vec<u8> = bytemuck::cast_slice(&x).to_vec();
    bytes.resize(bytes.len().div_ceil(4096) * 4096, 0);
    let buffer = ctx
        .upload("x", &bytes, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM)
        .unwrap();
    (x, buffer)
}

fn output(ctx: &GpuContext, n: usize) -> lowbit::gpu::Tracked {
    ctx.alloc(
        "y",
        (n * 4) as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )
    .unwrap()
}

fn read(ctx: &GpuContext, y: &lowbit::gpu::Tracked, n: usize) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&ctx.read_back(&y.buffer, (n * 4) as u64).unwrap())
}

/// The tolerance of a product relative to Σ|w·x|: 1e-6 for f32 products; with matmul's
/// f16 tiles, where each weight and activation is rounded to f16 (11-bit mantissa, so
/// each product is off by at most 2^-10 of itself) before the f32 sums, 2^-10 more.
fn tolerance(ctx: &GpuContext, tiled: bool) -> f32 {
    let f16 = tiled && ctx.features.f16 && ctx.tuning.matmul == MatmulTiles::Swizzled;
    if f16 { 1e-6 + 1.0 / 1024.0 } else { 1e-6 }
}

fn assert_close(got: &[f32], expected: &[f32], bound: &[f32], rel: f32, what: &str) {
    // The largest |gpu − cpu| / Σ|w·x| seen so far in this process, printed when it grows.
    static WORST: std::sync::Mutex<f32> = std::sync::Mutex::new(0.0);
    let mut worst = 0f32;
    for i in 0..expected.len() {
        let diff = (got[i] - expected[i]).abs();
        let tol = rel * bound[i] + 1e-30;
        assert!(
            diff <= tol,
            "{what}: y[{i}] = {} vs cpu {} (tolerance {tol})",
            got[i],
            expected[i]
        );
        worst = worst.max(diff / (bound[i] + 1e-30));
    }
    let mut w = WORST.lock().unwrap();
    if worst > *w {
        *w = worst;
        eprintln!("largest |gpu - cpu| / sum |w x| so far: {worst:.2e} ({what})");
    }
}

/// The decode matvec takes its activations through the uniform binding exactly when the
/// context allows it and rows are short (one invocation per row), so the tests below
/// exercise the binding they mean to.
fn assert_binding_choice(ctx: &GpuContext, act: &Activations, k: usize) {
    let lanes = ctx.tuning.layout == RowLayout::Lanes;
    let expected = ctx.max_uniform_x_bytes > 0 && k < 2048 && lanes;
    assert_eq!(act.uniform_pages(ctx, k) > 0, expected, "k {k}, {} columns", act.cols);
}

/// Run matvec (cols <= 8 and `tiled` false) or matmul on the GPU and compare with the CPU reference.
fn check_dense(ctx: &GpuContext, tiled: bool, ty: BlockType, rows: usize, k: usize, cols: usize) {
    let packed = weights(ty, rows, k, 7 + rows as u64 + ty.id() as u64);
    let (x, xb) = activations(ctx, cols * k, 99 + cols as u64);
    let (expected, bound) = lowbit::cpu::matvec(ty, &packed, k, &x, cols).unwrap();
    let gw = GpuWeights::upload(ctx, "w", ty, k, &packed).unwrap();
    let y = output(ctx, cols * rows);
    let mut rec = ctx.recorder();
    let act = Activations {
        buffer: &xb.buffer,
        cols,
        stride: k,
        norm: None,
    };
    if !tiled {
        assert_binding_choice(ctx, &act, k);
    }
    if tiled {
        gw.matmul(ctx, &mut rec, &act, &Output::store(&y.buffer, rows)).unwrap();
    } else {
        gw.matvec(ctx, &mut rec, &act, &Output::store(&y.buffer, rows)).unwrap();
    }
    ctx.queue.submit([rec.finish()]);
    let what = format!(
        "{} {ty} rows {rows} k {k} cols {cols} subgroups {} uniform x {} chunks {}",
        if tiled { "matmul" } else { "matvec" },
        ctx.features.subgroups,
        ctx.max_uniform_x_bytes > 0,
        gw.chunks.len()
    );
    assert_close(
        &read(ctx, &y, cols * rows),
        &expected,
        &bound,
        tolerance(ctx, tiled),
        &what,
    );
}

/// Run matvec_id or matmul_id over `n_expert` experts stored in permuted slots, for
/// `tokens` tokens with `n_used` experts each, and compare with the CPU reference.
fn check_experts(ctx: &GpuContext, grouped: bool, ty: BlockType, rows: usize, k: usize, tokens: usize) {
    let (n_expert, n_used) = (5usize, 2usize);
    let experts: Vec<Vec<u8>> = (0..n_expert).map(|e| weights(ty, rows, k, 1000 + e as u64)).collect();
    // Slot s holds expert perm[s]; slot_of is the inverse table.
    let perm = [3usize, 0, 4, 1, 2];
    let mut pool = Vec::new();
    let mut slot_of = vec![0u32; n_expert];
    for (s, &e) in perm.iter().enumerate() {
        pool.extend_from_slice(&experts[e]);
        slot_of[e] = s as u32;
    }
    let pairs = tokens * n_used;
    let ids: Vec<u32> = (0..pairs).map(|p| ((p * 3 + p / n_used) % n_expert) as u32).collect();
    let route_w: Vec<f32> = (0..pairs).map(|p| 0.25 + p as f32 * 0.1).collect();
    let (x, xb) = activations(ctx, tokens * k, 5 + tokens as u64);
    let mut expected = vec![0f32; pairs * rows];
    let mut bound = vec![0f32; pairs * rows];
    for p in 0..pairs {
        let (yv, bv) = lowbit::cpu::matvec(ty, &experts[ids[p] as usize], k, &x[(p / n_used) * k..][..k], 1).unwrap();
        for r in 0..rows {
            expected[p * rows + r] = route_w[p] * yv[r];
            bound[p * rows + r] = route_w[p] * bv[r];
        }
    }
    let gx = GpuExperts::upload(ctx, "experts", ty, k, rows, &pool).unwrap();
    let y = output(ctx, pairs * rows);
    let wbuf = ctx
        .upload(
            "route weights",
            bytemuck::cast_slice(&route_w),
            wgpu::BufferUsages::STORAGE,
        )
        .unwrap();
    let act = Activations {
        buffer: &xb.buffer,
        cols: tokens,
        stride: k,
        norm: None,
    };
    if !grouped {
        assert_binding_choice(ctx, &act, k);
    }
    let mut rec = ctx.recorder();
    if grouped {
        let (order, segments) = group_by_expert(&ids, &slot_of).unwrap();
        let max_count = segments.chunks(3).map(|s| s[2] as usize).max().unwrap();
        let ob = ctx
            .upload("order", bytemuck::cast_slice(&order), wgpu::BufferUsages::STORAGE)
            .unwrap();
        let sb = ctx
            .upload("segments", bytemuck::cast_slice(&segments), wgpu::BufferUsages::STORAGE)
            .unwrap();
        let g = Grouped {
            order: &ob.buffer,
            segments: &sb.buffer,
            weights: &wbuf.buffer,
            n_segments: segments.len() / 3,
            max_count,
            n_tokens: tokens,
            n_used,
            weighted: true,
        };
        gx.matmul_id(ctx, &mut rec, &act, &g, &y.buffer, rows).unwrap();
    } else {
        let ib = ctx
            .upload("ids", bytemuck::cast_slice(&ids), wgpu::BufferUsages::STORAGE)
            .unwrap();
        let tb = ctx
            .upload(
                "slot table",
                bytemuck::cast_slice(&slot_of),
                wgpu::BufferUsages::STORAGE,
            )
            .unwrap();
        let r = Routing {
            ids: &ib.buffer,
            slot_of: &tb.buffer,
            weights: &wbuf.buffer,
            fault: &ctx.fault_buffer().unwrap().buffer,
            n_tokens: tokens,
            n_used,
            weighted: true,
        };
        gx.matvec_id(ctx, &mut rec, &act, &r, &y.buffer, rows).unwrap();
    }
    ctx.queue.submit([rec.finish()]);
    let what = format!(
        "{} {ty} rows {rows} k {k} tokens {tokens} subgroups {} uniform x {} chunks {}",
        if grouped { "matmul_id" } else { "matvec_id" },
        ctx.features.subgroups,
        ctx.max_uniform_x_bytes > 0,
        gx.chunks.len()
    );
    assert_close(
        &read(ctx, &y, pairs * rows),
        &expected,
        &bound,
        tolerance(ctx, grouped),
        &what,
    );
}

/// A pair whose expert is not resident is not computed and sets the fault word, which
/// the host turns into an error; a pair of another wave is skipped without a fault.
#[test]
fn non_resident_experts_fault_and_other_waves_are_skipped() {
    let ctx = context(true, None);
    let (ty, rows, k) = (BlockType::Q8_0, 8, 64);
    let expert = weights(ty, rows, k, 77);
    let gx = GpuExperts::upload(&ctx, "experts", ty, k, rows, &expert).unwrap();
    let (x, xb) = activations(&ctx, k, 3);
    let run = |table: &[u32]| {
        let ids = [0u32, 1, 2];
        let up = |name, bytes: &[u8]| ctx.upload(name, bytes, wgpu::BufferUsages::STORAGE).unwrap();
        let ib = up("ids", bytemuck::cast_slice(&ids));
        let tb = up("slot table", bytemuck::cast_slice(table));
        let wb = up("weights", bytemuck::cast_slice(&[1f32; 3]));
        let y = ctx
            .upload(
                "y",
                bytemuck::cast_slice(&vec![7f32; 3 * rows]),
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            )
            .unwrap();
        let act = Activations {
            buffer: &xb.buffer,
            cols: 1,
            stride: k,
            norm: None,
        };
        let fault = ctx.fault_buffer().unwrap();
        let r = Routing {
            ids: &ib.buffer,
            slot_of: &tb.buffer,
            weights: &wb.buffer,
            fault: &fault.buffer,
            n_tokens: 1,
            n_used: 3,
            weighted: false,
        };
        let mut rec = ctx.recorder();
        gx.matvec_id(&ctx, &mut rec, &act, &r, &y.buffer, rows).unwrap();
        ctx.queue.submit([rec.finish()]);
        let words = ctx.read_back(&fault.buffer, 8).unwrap();
        (read(&ctx, &y, 3 * rows), words)
    };
    let (want, _) = lowbit::cpu::matvec(ty, &expert, k, &x, 1).unwrap();
    let (y, words) = run(&[0, OTHER_WAVE, NOT_RESIDENT]);
    for r in 0..rows {
        assert!((y[r] - want[r]).abs() <= 1e-4 * want[r].abs().max(1.0));
    }
    assert!(y[rows..].iter().all(|&v| v == 7.0), "skipped pairs were written");
    assert_eq!(bytemuck::pod_collect_to_vec::<u8, u32>(&words), vec![1, 2]);
    let err = ctx.check_fault(&words).unwrap_err().to_string();
    assert!(
        err.contains("expert 2") && err.contains("without being resident"),
        "{err}"
    );
    // The check cleared the word: a step without a missing expert reads it clean.
    let (_, words) = run(&[0, 0, 0]);
    assert!(ctx.check_fault(&words).is_ok());
    assert!(group_by_expert(&[0, 2], &[0, OTHER_WAVE, NOT_RESIDENT]).is_err());
    assert_eq!(
        group_by_expert(&[0, 1], &[0, OTHER_WAVE, NOT_RESIDENT]).unwrap().1,
        vec![0, 0, 1]
    );
}

/// Run matvec on the GPU and compare with the CPU reference.
fn check(ctx: &GpuContext, ty: BlockType, rows: usize, k: usize, cols: usize) {
    check_dense(ctx, false, ty, rows, k, cols);
}

fn k_for(ty: BlockType) -> usize {
    if ty.block_size() == 256 { 512 } else { 96 }
}

/// The reducing kernels (matvec, matvec_id) with the given reduction and activation
/// binding for short rows, in the lavapipe's own (lanes) layout.
fn run_all_formats(subgroups: bool, uniform_activations: bool) {
    run_all_formats_with(GpuOptions {
        subgroups,
        max_binding_bytes: None,
        uniform_activations,
        ..Default::default()
    });
}

/// [`run_all_formats`] in a context made with `options`, which must get what it asks.
fn run_all_formats_with(options: GpuOptions) {
    run_formats_with(options, GPU_FORMATS);
}

/// The reducing kernels over `formats` in a context made with `options`.
fn run_formats_with(options: GpuOptions, formats: &[BlockType]) {
    let ctx = context_with(options.clone());
    assert_eq!(ctx.features.subgroups, options.subgroups && device_has_subgroups());
    assert_eq!(ctx.max_uniform_x_bytes > 0, options.uniform_activations);
    assert_eq!(ctx.tuning, Tuning::for_adapter(wgpu::DeviceType::Cpu).with(&options));
    for &ty in formats {
        let k = k_for(ty);
        for cols in [1, 3, 8] {
            check(&ctx, ty, 13, k, cols);
        }
        check_experts(&ctx, false, ty, 13, k, 3);
        // One column takes 8 rows per invocation, 64 apart: 600 rows fill every row slot of
        // a first workgroup and part of a second; 150 rows per expert reach the third slot.
        check(&ctx, ty, 600, k, 1);
        check_experts(&ctx, false, ty, 150, k, 1);
        // Rows of 2048 are split over a whole workgroup and reduced (shorter rows take
        // one invocation per row).
        check(&ctx, ty, 6, 2048, 1);
        check(&ctx, ty, 6, 2048, 3);
        check_experts(&ctx, false, ty, 5, 2048, 2);
    }
}

/// A context with each matmul tiling: lavapipe's padded tiles, then the GPUs' swizzled
/// ones in f32 and in f16 (where the device has shader-f16).
fn tiled_contexts() -> Vec<GpuContext> {
    let with = |tiles, shader_f16| {
        context_with(GpuOptions {
            matmul_tiles: Some(tiles),
            shader_f16,
            ..Default::default()
        })
    };
    let mut contexts = vec![with(MatmulTiles::Padded, false), with(MatmulTiles::Swizzled, false)];
    assert!(contexts.iter().all(|c| !c.features.f16));
    let f16 = with(MatmulTiles::Swizzled, true);
    if f16.features.f16 {
        contexts.push(f16);
    }
    contexts
}

#[test]
fn matmul_all_formats() {
    for ctx in tiled_contexts() {
        for &ty in GPU_FORMATS {
            let k = k_for(ty);
            // 33 columns take the swizzled kernel's 64-column tiles.
            for cols in [1, 3, 8, 33] {
                check_dense(&ctx, true, ty, 70, k, cols);
            }
        }
    }
}

#[test]
fn matmul_id_all_formats() {
    for ctx in tiled_contexts() {
        for &ty in GPU_FORMATS {
            let k = k_for(ty);
            check_experts(&ctx, true, ty, 70, k, 17);
            // 180 pairs over 5 experts: more than 32 per expert take 64-column tiles.
            check_experts(&ctx, true, ty, 70, k, 90);
        }
    }
}

#[test]
fn expert_pools_split_across_bindings() {
    for subgroups in [true, false] {
        // 13 x 256 IQ1_S experts are 650 bytes; a 1400-byte binding holds 2 of the 5 slots.
        let ctx = context(subgroups, Some(1400));
        check_experts(&ctx, false, BlockType::IQ1_S, 13, 256, 3);
        check_experts(&ctx, true, BlockType::IQ1_S, 13, 256, 3);
        let gx = GpuExperts::upload(
            &ctx,
            "e",
            BlockType::IQ1_S,
            256,
            13,
            &weights(BlockType::IQ1_S, 65, 256, 3),
        )
        .unwrap();
        assert_eq!(gx.chunks.iter().map(|c| c.slots).collect::<Vec<_>>(), vec![2, 2, 1]);
        // Rows of 2048, reduced across a workgroup: 3 x 2048 Q2_K experts are 2016 bytes,
        // so a 4100-byte binding holds 2 slots; TQ1_0 (1296 bytes) 3.
        let wide = context(subgroups, Some(4100));
        for ty in [BlockType::Q2_K, BlockType::TQ1_0] {
            check_experts(&wide, false, ty, 3, 2048, 2);
            check_experts(&wide, true, ty, 3, 2048, 2);
        }
    }
}

#[test]
fn matvec_all_formats_shared_memory_reduction() {
    run_all_formats(false, true);
}

#[test]
fn matvec_all_formats_storage_activations() {
    run_all_formats(true, false);
}

#[test]
fn matvec_all_formats_shared_memory_reduction_storage_activations() {
    run_all_formats(false, false);
}

/// The real-GPU layout (every row split over a workgroup, ggml's row order), forced on
/// lavapipe: by format family and with 1 and 8 rows per workgroup (8 is cut to 4 for 8
/// columns), with subgroup and shared-memory reductions.
#[test]
fn matvec_all_formats_split_layout() {
    for (subgroups, rows) in [(true, None), (false, Some(8)), (true, Some(1))] {
        run_all_formats_with(GpuOptions {
            subgroups,
            uniform_activations: true,
            matvec_layout: Some(RowLayout::Split),
            matvec_rows: rows,
            ..Default::default()
        });
    }
}

/// The IQ lattices in the place the other layout's table does not put them: in workgroup
/// memory with lanes (lavapipe's default keeps them in storage), in storage with split.
#[test]
fn matvec_lattice_formats_either_lattice_place() {
    let iq = [BlockType::IQ2_XXS, BlockType::IQ1_S, BlockType::IQ1_M];
    for (subgroups, layout, shared) in [(true, RowLayout::Lanes, true), (false, RowLayout::Split, false)] {
        run_formats_with(
            GpuOptions {
                subgroups,
                matvec_layout: Some(layout),
                shared_lattice: Some(shared),
                ..Default::default()
            },
            &iq,
        );
    }
}

#[test]
fn uniform_activation_binding_needs_a_fitting_buffer() {
    let ctx = context(true, None);
    if ctx.max_uniform_x_bytes == 0 {
        return;
    }
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM;
    let page = ctx.alloc("page", 4096, usage).unwrap();
    let storage_only = ctx.alloc("storage", 4096, wgpu::BufferUsages::STORAGE).unwrap();
    let act = |buffer, cols, stride| Activations {
        buffer,
        cols,
        stride,
        norm: None,
    };
    assert_eq!(act(&page.buffer, 1, 576).uniform_pages(&ctx, 576), 1);
    assert_eq!(
        act(&page.buffer, 2, 576).uniform_pages(&ctx, 576),
        0,
        "4608 bytes need 2 pages"
    );
    assert_eq!(
        act(&storage_only.buffer, 1, 576).uniform_pages(&ctx, 576),
        0,
        "no UNIFORM usage"
    );
    assert_eq!(
        act(&page.buffer, 2, 98).uniform_pages(&ctx, 96),
        0,
        "columns not 4-aligned"
    );
    assert_eq!(
        act(&page.buffer, 1, 2048).uniform_pages(&ctx, 2048),
        0,
        "long rows are reduced"
    );
}

#[test]
fn matvec_all_formats_subgroup_reduction() {
    assert!(
        device_has_subgroups(),
        "the test device must offer subgroups so that path is exercised"
    );
    run_all_formats(true, true);
}

#[test]
fn tensors_split_across_bindings() {
    for (subgroups, uniform_activations) in [(true, true), (false, true), (true, false)] {
        let options = |limit| GpuOptions {
            subgroups,
            max_binding_bytes: Some(limit),
            uniform_activations,
            ..Default::default()
        };
        // Short rows are stored in groups of 8 (row_interleave), and chunks hold whole
        // groups: a 2400-byte limit gives IQ2_XXS (132-byte rows at k = 512) 16-row chunks
        // and Q2_K (168) and Q4_0 (288) 8-row chunks, so 20 rows take 2 or 3 bindings, the
        // last one with a part group.
        let ctx = context_with(options(2400));
        assert_eq!(ctx.features.subgroups, subgroups && device_has_subgroups());
        for &ty in &[BlockType::IQ2_XXS, BlockType::Q2_K, BlockType::Q4_0] {
            let row_bytes = ty.row_bytes(512).unwrap();
            let gw = GpuWeights::upload(&ctx, "w", ty, 512, &weights(ty, 20, 512, 1)).unwrap();
            assert_eq!(gw.interleave, 3, "{ty}");
            assert_eq!(gw.chunks.len(), 20usize.div_ceil(2400 / row_bytes / 8 * 8), "{ty}");
            assert!(gw.chunks.len() > 1);
            check(&ctx, ty, 20, 512, 3);
            check_dense(&ctx, true, ty, 20, 512, 9);
        }
        // Long rows (k = 2048, reduced across a workgroup) stay row-major: a 5000-byte
        // limit holds 4 Q4_0 rows (1152 bytes), 7 Q2_K rows (672), 12 IQ1_S rows (400)
        // or 1 F16 row (4096), so 20 rows take 5, 3, 2 or 20 bindings.
        let long = context_with(options(5000));
        for &ty in &[BlockType::Q4_0, BlockType::Q2_K, BlockType::IQ1_S, BlockType::F16] {
            let row_bytes = ty.row_bytes(2048).unwrap();
            let gw = GpuWeights::upload(&long, "w", ty, 2048, &weights(ty, 20, 2048, 2)).unwrap();
            assert_eq!(gw.interleave, 0, "{ty}");
            assert_eq!(gw.chunks.len(), 20usize.div_ceil(5000 / row_bytes), "{ty}");
            assert!(gw.chunks.len() > 1, "{ty}");
            check(&long, ty, 20, 2048, 1);
            check(&long, ty, 20, 2048, 3);
            check_dense(&long, true, ty, 20, 2048, 9);
        }
    }
    let one_group = context(true, Some(1000));
    assert!(
        GpuWeights::upload(
            &one_group,
            "w",
            BlockType::IQ2_XXS,
            512,
            &weights(BlockType::IQ2_XXS, 20, 512, 1)
        )
        .is_err(),
        "8 rows of 132 bytes do not fit a 1000-byte binding"
    );
}

#[test]
fn bad_shapes_are_errors() {
    let ctx = context(true, None);
    assert!(GpuWeights::upload(&ctx, "w", BlockType::Q4_K, 256, &[0u8; 100]).is_err());
    let tiny = context(true, Some(64));
    assert!(
        GpuWeights::upload(&tiny, "w", BlockType::Q4_K, 256, &[0u8; 144]).is_err(),
        "a row larger than a binding"
    );
    let gw = GpuWeights::upload(&ctx, "w", BlockType::Q8_0, 64, &[0u8; 68 * 2]).unwrap();
    let xb = ctx.alloc("x", 64 * 4, wgpu::BufferUsages::STORAGE).unwrap();
    let y = ctx.alloc("y", 8, wgpu::BufferUsages::STORAGE).unwrap();
    let mut rec = ctx.recorder();
    let nine = Activations {
        buffer: &xb.buffer,
        cols: 9,
        stride: 64,
        norm: None,
    };
    assert!(gw.matvec(&ctx, &mut rec, &nine, &Output::store(&y.buffer, 2)).is_err());
    let two = Activations {
        buffer: &xb.buffer,
        cols: 2,
        stride: 64,
        norm: None,
    };
    assert!(
        gw.matvec(&ctx, &mut rec, &two, &Output::store(&y.buffer, 2)).is_err(),
        "x holds one column only"
    );
}

#[test]
fn allocations_are_counted_and_released() {
    let ctx = context(true, None);
    assert_eq!(ctx.allocated_bytes(), 0);
    let gw = GpuWeights::upload(&ctx, "w", BlockType::TQ2_0, 256, &weights(BlockType::TQ2_0, 3, 256, 5)).unwrap();
    assert_eq!(
        ctx.allocated_bytes(),
        528,
        "3 rows of 66 bytes in a group of 8 interleaved rows"
    );
    drop(gw);
    assert_eq!(ctx.allocated_bytes(), 0);
}

/// A device the host application created, with WebGPU's default limits, handed in.
#[test]
fn runs_on_a_device_handed_in_by_the_host() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let before = device.limits();
    let ctx = GpuContext::from_device(device, queue, GpuOptions::default());
    assert!(!ctx.features.subgroups, "features the host did not enable are not used");
    assert_eq!(
        ctx.max_binding_bytes,
        before.max_storage_buffer_binding_size.min(before.max_buffer_size)
    );
    for &ty in &[BlockType::TQ1_0, BlockType::IQ1_S, BlockType::Q2_K, BlockType::IQ2_XXS] {
        check(&ctx, ty, 9, 256, 3);
    }
    assert_eq!(ctx.device.limits(), before, "limits are never raised");
}

/// A lost device is an error on every later call, never a panic.
#[test]
fn lost_device_is_an_error() {
    let ctx = context(true, None);
    let gw = GpuWeights::upload(&ctx, "w", BlockType::Q8_0, 64, &weights(BlockType::Q8_0, 2, 64, 1)).unwrap();
    ctx.device.destroy();
    ctx.wait().ok();
    let err = ctx.check_lost().unwrap_err().to_string();
    assert!(err.contains("device lost"), "{err}");
    assert!(ctx.alloc("y", 64, wgpu::BufferUsages::STORAGE).is_err());
    assert!(ctx.upload("x", &[0u8; 256], wgpu::BufferUsages::STORAGE).is_err());
    let mut rec = ctx.recorder();
    let x = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let act = Activations {
        buffer: &x,
        cols: 1,
        stride: 64,
        norm: None,
    };
    assert!(gw.matvec(&ctx, &mut rec, &act, &Output::store(&x, 2)).is_err());
}

/// `Output::add` adds the product to what the output holds (the fused residual add).
#[test]
fn accumulating_output_adds_to_the_buffer() {
    let ctx = context(true, None);
    for (tiled, cols) in [(false, 3), (true, 33)] {
        let (ty, rows, k) = (BlockType::Q4_0, 70, 96);
        let packed = weights(ty, rows, k, 17);
        let (x, xb) = activations(&ctx, cols * k, 23);
        let (expected, bound) = lowbit::cpu::matvec(ty, &packed, k, &x, cols).unwrap();
        let base: Vec<f32> = (0..cols * rows).map(|i| (i % 7) as f32 - 3.0).collect();
        let y = ctx
            .upload(
                "y",
                bytemuck::cast_slice(&base),
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            )
            .unwrap();
        let gw = GpuWeights::upload(&ctx, "w", ty, k, &packed).unwrap();
        let act = Activations {
            buffer: &xb.buffer,
            cols,
            stride: k,
            norm: None,
        };
        let mut rec = ctx.recorder();
        if tiled {
            gw.matmul(&ctx, &mut rec, &act, &Output::add(&y.buffer, rows)).unwrap();
        } else {
            gw.matvec(&ctx, &mut rec, &act, &Output::add(&y.buffer, rows)).unwrap();
        }
        ctx.queue.submit([rec.finish()]);
        let with_base: Vec<f32> = expected.iter().zip(&base).map(|(e, b)| e + b).collect();
        let bound: Vec<f32> = bound.iter().zip(&base).map(|(v, b)| v + b.abs()).collect();
        assert_close(
            &read(&ctx, &y, cols * rows),
            &with_base,
            &bound,
            tolerance(&ctx, tiled),
            &format!("accumulate tiled {tiled}"),
        );
    }
}

/// The bandwidth baselines of `bench kernels`: the copy kernel copies every byte, the
/// read-only kernel loads them and stores nothing.
#[test]
fn baseline_kernels_copy_and_only_read() {
    let ctx = context(true, None);
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let src = ctx.upload("src", &bytes, usage).unwrap();
    let dst = ctx.upload("dst", &[7u8; 4096], usage).unwrap();
    let mut rec = ctx.recorder();
    ctx.read_kernel(&mut rec, &src.buffer, &dst.buffer).unwrap();
    ctx.queue.submit([rec.finish()]);
    assert_eq!(ctx.read_back(&dst.buffer, 4096).unwrap(), vec![7u8; 4096]);
    let mut rec = ctx.recorder();
    ctx.copy_kernel(&mut rec, &src.buffer, &dst.buffer).unwrap();
    ctx.queue.submit([rec.finish()]);
    assert_eq!(ctx.read_back(&dst.buffer, 4096).unwrap(), bytes);
    let small = ctx.alloc("small", 16, usage).unwrap();
    assert!(
        ctx.copy_kernel(&mut ctx.recorder(), &src.buffer, &small.buffer)
            .is_err()
    );
}

/// `bench kernels` on lavapipe times with device timestamps (lavapipe has them), and
/// its rows are finite and positive.
#[test]
fn kernel_benchmarks_use_device_timestamps() {
    use lowbit::gpu::bench;
    let ctx = context(true, None);
    assert!(ctx.timestamps, "lavapipe offers TIMESTAMP_QUERY");
    assert_eq!(bench::Clock::of(&ctx), bench::Clock::Gpu);
    let (copy, read) = bench::baselines(&ctx, 1 << 20, 1, 2).unwrap();
    assert!(copy > 0.0 && read > 0.0 && copy.is_finite() && read.is_finite());
    let r = bench::bench_kernel(&ctx, Kernel::Matvec, BlockType::Q4_1, (64, 256), 4, 1).unwrap();
    assert!(r.seconds > 0.0 && r.gbps().is_finite() && r.copies > 1, "{r:?}");
    let r = bench::bench_kernel(&ctx, Kernel::Matmul, BlockType::Q4_1, (64, 256), 16, 1).unwrap();
    assert!(r.seconds > 0.0 && r.gflops().is_finite() && r.copies == 1, "{r:?}");
    let r = bench::bench_kernel(&ctx, Kernel::MatvecId, BlockType::IQ1_S, (64, 256), 2, 1).unwrap();
    assert!(r.seconds > 0.0 && r.gbps().is_finite() && r.copies >= 16, "{r:?}");
    assert!(bench::bench_kernel(&ctx, Kernel::GetRows, BlockType::Q4_1, (64, 256), 1, 1).is_err());
}
