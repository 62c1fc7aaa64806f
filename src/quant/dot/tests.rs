//! Every kernel at every SIMD level this CPU runs against the scalar level (the codecs'
//! dequantized row times the dequantized column), and the scalar level against the exact
//! product of the dequantized row and the unquantized activations.

use super::*;
use crate::quant::{self, BlockType};

/// Every weight format a product reads.
const TYPES: &[BlockType] = &[
    BlockType::F32,
    BlockType::F16,
    BlockType::BF16,
    BlockType::Q4_0,
    BlockType::Q4_1,
    BlockType::Q5_0,
    BlockType::Q5_1,
    BlockType::Q8_0,
    BlockType::IQ4_NL,
    BlockType::Q2_K,
    BlockType::Q3_K,
    BlockType::Q4_K,
    BlockType::Q5_K,
    BlockType::Q6_K,
    BlockType::IQ2_XXS,
    BlockType::IQ1_S,
    BlockType::IQ1_M,
    BlockType::TQ1_0,
    BlockType::TQ2_0,
];

/// Deterministic values in about [-1, 1) with a few large ones (as activations have).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            if i % 97 == 5 { v * 8.0 } else { v }
        })
        .collect()
}

fn quantized_column(ty: BlockType, x: &[f32]) -> QuantizedInput {
    let mut input = QuantizedInput::new(DotType::of(ty).unwrap(), x.len(), 1).unwrap();
    input.quantize_column(0, x);
    input
}

#[test]
fn every_level_matches_the_scalar_level() {
    let k = 1024;
    for &ty in TYPES {
        for seed in 0..4 {
            let w = quant::quantize(ty, &values(k, seed), k, None).unwrap();
            let mut wd = vec![0f32; k];
            quant::dequantize_row(ty, &w, &mut wd).unwrap();
            let x = values(k, 100 + seed);
            let input = quantized_column(ty, &x);
            let mut xd = vec![0f32; k];
            input.column(0).dequantize(&mut xd);
            let scale: f64 = wd.iter().zip(&xd).map(|(a, b)| (a * b).abs() as f64).sum();
            let wmax = wd.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
            let xsum: f64 = xd.iter().map(|v| v.abs() as f64).sum();
            // f32 rounding of sums over k terms, and of a scale times a min or delta
            // term that the SIMD kernels apply to whole sub-block sums.
            let bound = 1e-5 * (scale + wmax * xsum) + 1e-6;
            let reference = Kernel::new(ty, Simd::Scalar).unwrap().dot(&w, input.column(0));
            for simd in Simd::available() {
                let kernel = Kernel::new(ty, simd).unwrap();
                let got = kernel.dot(&w, input.column(0));
                assert!(
                    ((got - reference) as f64).abs() <= bound,
                    "{} at {simd:?} (simd kernel: {}), seed {seed}: {got} against scalar {reference} (bound {bound})",
                    ty.name(),
                    kernel.is_simd()
                );
            }
        }
    }
}

#[test]
fn tile_kernels_give_the_one_pair_sums_in_every_shape() {
    let k = 523;
    for &ty in TYPES {
        let k = if DotType::of(ty).unwrap().block_size() == 1 {
            k
        } else {
            512
        };
        let ws: Vec<Vec<u8>> = (0..TILE as u64)
            .map(|r| quant::quantize(ty, &values(k, 1 + r), k, None).unwrap())
            .collect();
        let mut input = QuantizedInput::new(DotType::of(ty).unwrap(), k, TILE).unwrap();
        for c in 0..TILE {
            input.quantize_column(c, &values(k, 20 + c as u64));
        }
        let cols: Vec<_> = (0..TILE).map(|c| input.column(c)).collect();
        let rows: Vec<&[u8]> = ws.iter().map(|w| &w[..]).collect();
        for simd in Simd::available() {
            let kernel = Kernel::new(ty, simd).unwrap();
            for nr in 1..=TILE {
                for nc in 1..=TILE {
                    let mut sums = [[f32::NAN; TILE]; TILE];
                    // SAFETY: the shapes are those `dot` checks below.
                    unsafe { kernel.tile_unchecked(&rows[..nr], &cols[..nc], &mut sums) };
                    for r in 0..nr {
                        for c in 0..nc {
                            let (tile, single) = (sums[r][c], kernel.dot(rows[r], cols[c]));
                            let what = format!("{} at {simd:?}, ({r}, {c}) of a {nr} x {nc} tile", ty.name());
                            // The float tiles of several pairs sum in another order than the
                            // one-pair kernel (fewer accumulators); the integer ones are exact.
                            if DotType::of(ty).unwrap() == DotType::F32 && (nr, nc) != (1, 1) {
                                assert!(
                                    (tile - single).abs() <= 1e-5 * single.abs().max(1.0),
                                    "{what}: {tile} {single}"
                                );
                            } else {
                                assert_eq!(tile.to_bits(), single.to_bits(), "{what}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_best_level_has_a_simd_kernel_for_every_format() {
    let best = *Simd::available().last().unwrap();
    if best == Simd::Scalar {
        return;
    }
    for &ty in TYPES {
        assert!(
            Kernel::new(ty, best).unwrap().is_simd(),
            "{} has no {best:?} kernel",
            ty.name()
        );
    }
}

#[test]
fn scalar_level_is_the_exact_product_within_activation_rounding() {
    let k = 512;
    for &ty in TYPES {
        let w = quant::quantize(ty, &values(k, 7), k, None).unwrap();
        let mut wd = vec![0f32; k];
        quant::dequantize_row(ty, &w, &mut wd).unwrap();
        let x = values(k, 8);
        let exact: f64 = wd.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = wd.iter().zip(&x).map(|(a, b)| (a * b).abs() as f64).sum();
        let got = Kernel::new(ty, Simd::Scalar)
            .unwrap()
            .dot(&w, quantized_column(ty, &x).column(0)) as f64;
        // An 8-bit activation is within half a step (1/254 of its block's largest value,
        // at most 8 here) of the value.
        let bound = if DotType::of(ty).unwrap() == DotType::F32 {
            1e-5 * scale
        } else {
            0.02 * scale
        };
        assert!((got - exact).abs() <= bound, "{}: {got} against {exact}", ty.name());
    }
}

#[test]
fn q8_blocks_follow_ggml() {
    let x = values(256, 3);
    let mut q8k = [BlockQ8K::default()];
    quantize_q8_k(&x, &mut q8k);
    let (i, &max) = x
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    assert_eq!(q8k[0].qs[i], -127, "the largest magnitude maps to -127");
    assert!((q8k[0].d * -127.0 - max).abs() <= 1e-6 * max.abs());
    for (s, q) in q8k[0].bsums.iter().zip(q8k[0].qs.chunks(16)) {
        assert_eq!(*s as i32, q.iter().map(|&v| v as i32).sum::<i32>());
    }
    let mut q81 = [BlockQ8_1::default(); 8];
    quantize_q8_1(&x, &mut q81);
    for b in &q81 {
        assert_eq!(b.s, b.d * b.qs.iter().map(|&v| v as i32).sum::<i32>() as f32);
        assert_eq!(b.d, half::f16::from_f32(b.d).to_f32(), "d is an f16 value");
        assert!(b.qs.iter().any(|&q| q.abs() == 127));
    }
    let zeros = [0f32; 32];
    let mut q80 = [BlockQ8_0::default()];
    quantize_q8_0(&zeros, &mut q80);
    assert_eq!((q80[0].d, q80[0].qs), (0.0, [0; 32]));
}

/// Values whose quantized form is a tie: 127 sets d = 1 (exact in f16), so x / d is x
/// itself, and halves must round away from zero as `roundf` does.
fn ties(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i % 32 {
            0 => 127.0,
            j => (j as f32 - 16.0) + if j % 2 == 0 { 0.5 } else { -0.5 },
        })
        .collect()
}

#[test]
fn q8_rounds_halves_away_from_zero() {
    let x = ties(32);
    let mut q = [BlockQ8_0::default()];
    quantize_q8_0(&x, &mut q);
    assert_eq!(q[0].d, 1.0);
    for (&v, &got) in x.iter().zip(&q[0].qs) {
        let want = if v > 0.0 { v + 0.5 } else { v - 0.5 }.trunc();
        assert_eq!(got as f32, want, "{v}");
    }
}

#[test]
fn simd_quantizers_give_the_scalar_blocks() {
    for x in [
        values(1024, 7),
        ties(1024),
        vec![0.0; 1024],
        values(1024, 8).iter().map(|v| -v.abs()).collect(),
    ] {
        let (mut a, mut b) = (vec![BlockQ8_0::default(); 32], vec![BlockQ8_0::default(); 32]);
        quantize_q8_0(&x, &mut a);
        q8::quantize_q8_0_scalar(&x, &mut b);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(a, b)| (a.d.to_bits(), a.qs) == (b.d.to_bits(), b.qs))
        );
        let (mut a, mut b) = (vec![BlockQ8_1::default(); 32], vec![BlockQ8_1::default(); 32]);
        quantize_q8_1(&x, &mut a);
        q8::quantize_q8_1_scalar(&x, &mut b);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(a, b)| (a.d.to_bits(), a.s.to_bits(), a.qs) == (b.d.to_bits(), b.s.to_bits(), b.qs))
        );
        let (mut a, mut b) = (vec![BlockQ8K::default(); 4], vec![BlockQ8K::default(); 4]);
        quantize_q8_k(&x, &mut a);
        q8::quantize_q8_k_scalar(&x, &mut b);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(a, b)| (a.d.to_bits(), a.qs, a.bsums) == (b.d.to_bits(), b.qs, b.bsums))
        );
    }
}

#[test]
fn levels_parse_and_unknown_ones_are_refused() {
    assert_eq!(Simd::parse("AVX2").unwrap(), Simd::Avx2);
    assert_eq!(Simd::parse("scalar").unwrap(), Simd::Scalar);
    assert!(Simd::parse("neon").is_err());
    assert!(DotType::of(BlockType::I32).is_err());
    assert!(QuantizedInput::new(DotType::Q8K, 100, 1).is_err());
}
