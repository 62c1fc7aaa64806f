//! The fast CPU backend's products per format ([`lowbit::cpu::Fast::product`]): one
//! matrix of 8192 rows of 256 values (the fixture's 32 experts of 256 rows, stacked), times
//! 1 column (decode), 9 columns (the tokens an expert gets in a 70-token prefill) and 64.
//! Criterion reports weight bytes per second for one column and multiply-adds per second
//! for more. Threads: `LOWBIT_THREADS` (default: the physical cores). Run:
//! `cargo bench --bench cpu_products`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lowbit::cpu::{Fast, Rows};
use lowbit::quant::dot::{DotType, Simd};
use lowbit::quant::{self, BlockType};
use std::time::Duration;

const K: usize = 256;
const ROWS: usize = 8192;

/// Deterministic values in [-1, 1) (a stride through a period of 2,000).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed) % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("LOWBIT_THREADS").map_or(0, |t| t.parse().expect("LOWBIT_THREADS"));
    let fast = Fast::new(threads, Simd::detect().expect("LOWBIT_SIMD"));
    let mut group = c.benchmark_group(format!("cpu {} threads {}", fast.pool.threads(), fast.simd.name()));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let formats = [
        BlockType::F16,
        BlockType::Q8_0,
        BlockType::Q4_1,
        BlockType::Q2_K,
        BlockType::Q3_K,
        BlockType::Q6_K,
        BlockType::IQ2_XXS,
        BlockType::IQ1_S,
        BlockType::IQ1_M,
        BlockType::TQ1_0,
    ];
    for ty in formats {
        let w = quant::quantize(ty, &values(ROWS * K, 1), K, None).expect("quantize");
        let parts = [(ROWS, &w[..])];
        let rows = Rows {
            ty,
            k: K,
            parts: &parts,
        };
        for cols in [1, 9, 64] {
            let x = values(cols * K, 2);
            let input = fast.quantize(&x, K, K, DotType::of(ty).unwrap()).unwrap();
            let mut y = vec![0f32; cols * ROWS];
            group.throughput(if cols == 1 {
                Throughput::Bytes(w.len() as u64)
            } else {
                Throughput::Elements((cols * ROWS * K) as u64)
            });
            group.bench_function(format!("{} x {cols}", ty.name()), |b| {
                b.iter(|| fast.product(rows, &input, &mut y, ROWS, false).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
