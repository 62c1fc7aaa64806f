//! GPU kernel throughput on the default adapter (lavapipe in CI): the copy kernel, and
//! matvec of a 4096 x 4096 matrix per format, reported by criterion in bytes of weights
//! read per second. `lowbit bench kernels` prints the full table (both shapes, ratio to
//! copy, matmul GFLOP/s). Run: `cargo bench --bench kernels`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lowbit::gpu::{Activations, GPU_FORMATS, GpuContext, GpuOptions, GpuWeights, Output};
use std::time::{Duration, Instant};

const K: usize = 4096;
const ROWS: usize = 4096;

fn bench(c: &mut Criterion) {
    let ctx = GpuContext::new(GpuOptions::from_env().expect("LOWBIT_* settings")).expect("a GPU adapter");
    eprintln!("adapter: {}", ctx.adapter_name);
    let mut group = c.benchmark_group(format!("gpu {}", ctx.adapter_name));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let bytes = 64u64 << 20;
    let src = ctx.alloc("src", bytes, wgpu::BufferUsages::STORAGE).unwrap();
    let dst = ctx.alloc("dst", bytes, wgpu::BufferUsages::STORAGE).unwrap();
    group.throughput(Throughput::Bytes(2 * bytes));
    group.bench_function("copy (read + write)", |b| {
        b.iter_custom(|n| {
            let mut rec = ctx.recorder();
            for _ in 0..n {
                ctx.copy_kernel(&mut rec, &src.buffer, &dst.buffer).unwrap();
            }
            let start = Instant::now();
            ctx.queue.submit([rec.finish()]);
            ctx.wait().unwrap();
            start.elapsed()
        })
    });

    let x: Vec<f32> = (0..K).map(|i| (i % 17) as f32 * 0.01).collect();
    let xb = ctx
        .upload("x", bytemuck::cast_slice(&x), wgpu::BufferUsages::STORAGE)
        .unwrap();
    let y = ctx.alloc("y", (ROWS * 4) as u64, wgpu::BufferUsages::STORAGE).unwrap();
    for &ty in GPU_FORMATS {
        let packed: Vec<u8> = (0..ty.row_bytes(K).unwrap() * ROWS)
            .map(|i| if i % 2 == 1 { 0x1c } else { (i * 31) as u8 })
            .collect();
        let w = GpuWeights::upload(&ctx, "w", ty, K, &packed).unwrap();
        let act = Activations {
            buffer: &xb.buffer,
            cols: 1,
            stride: K,
            norm: None,
        };
        group.throughput(Throughput::Bytes(packed.len() as u64));
        group.bench_function(format!("matvec {ty} {K}x{ROWS}"), |b| {
            b.iter_custom(|n| {
                let mut rec = ctx.recorder();
                for _ in 0..n {
                    w.matvec(&ctx, &mut rec, &act, &Output::store(&y.buffer, ROWS)).unwrap();
                }
                let start = Instant::now();
                ctx.queue.submit([rec.finish()]);
                ctx.wait().unwrap();
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
