//! Quantization throughput per format, in MB/s of f32 input, over all cores (rayon).
//!
//! Input: a 4096 x 256 f32 matrix (4 MiB) of Gaussian-like values; the IQ formats
//! get a per-column importance vector, as `llama-quantize --imatrix` passes one.
//! Run: `cargo bench --bench quantize`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lowbit::quant::{self, BlockType};
use std::hint::black_box;
use std::time::Duration;

const COLS: usize = 4096;
const ROWS: usize = 256;

fn matrix() -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    // Sum of uniforms: roughly Gaussian, with the occasional larger value.
    let x = (0..COLS * ROWS)
        .map(|_| (next() + next() + next() - 1.5) * 0.05)
        .collect();
    let w = (0..COLS).map(|_| 0.1 + next()).collect();
    (x, w)
}

fn bench(c: &mut Criterion) {
    let (x, w) = matrix();
    let mut group = c.benchmark_group("quantize");
    group.throughput(Throughput::Bytes((x.len() * 4) as u64));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for &ty in BlockType::ALL.iter().filter(|t| t.can_quantize()) {
        let iq = matches!(ty, BlockType::IQ2_XXS | BlockType::IQ1_S | BlockType::IQ1_M);
        let weights = iq.then_some(&w[..]);
        group.bench_function(ty.to_string(), |b| {
            b.iter(|| quant::quantize(ty, black_box(&x), COLS, weights).unwrap())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("dequantize");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for &ty in BlockType::ALL.iter().filter(|t| t.can_quantize()) {
        let q = quant::quantize(ty, &x, COLS, Some(&w)).unwrap();
        group.throughput(Throughput::Bytes((x.len() * 4) as u64));
        group.bench_function(ty.to_string(), |b| {
            b.iter(|| quant::dequantize(ty, black_box(&q), COLS).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
