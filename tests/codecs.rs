//! Every block format against vectors made by ggml and gguf-py
//! (`scripts/gen_codec_vectors.py`, files in `tests/data/codecs/`).

use lowbit::quant::{self, BlockType};
use std::path::PathBuf;

const ROWS: usize = 4;
const N: usize = 512;

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/codecs")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn floats(name: &str) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&data(name))
}

const REF_TYPES: &[BlockType] = &[
    BlockType::F32,
    BlockType::F16,
    BlockType::BF16,
    BlockType::Q8_0,
    BlockType::Q4_0,
    BlockType::Q4_1,
    BlockType::Q5_0,
    BlockType::Q5_1,
    BlockType::Q2_K,
    BlockType::Q3_K,
    BlockType::Q4_K,
    BlockType::Q5_K,
    BlockType::Q6_K,
    BlockType::TQ1_0,
    BlockType::TQ2_0,
    BlockType::IQ4_NL,
];
const IQ_TYPES: &[BlockType] = &[BlockType::IQ2_XXS, BlockType::IQ1_S, BlockType::IQ1_M];
const BLOCK_TYPES: &[BlockType] = &[
    BlockType::Q8_0,
    BlockType::Q4_0,
    BlockType::Q4_1,
    BlockType::Q5_0,
    BlockType::Q5_1,
    BlockType::Q2_K,
    BlockType::Q3_K,
    BlockType::Q4_K,
    BlockType::Q5_K,
    BlockType::Q6_K,
    BlockType::TQ1_0,
    BlockType::TQ2_0,
    BlockType::IQ2_XXS,
    BlockType::IQ1_S,
    BlockType::IQ1_M,
    BlockType::IQ4_NL,
];

fn file(ty: BlockType, what: &str) -> String {
    format!("{ty}.{what}")
}

/// Index and values of the first element whose f32 bits differ.
fn first_bit_difference(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, (x, y))| (i, *x, *y))
}

/// Dequantize `TYPE.{stem}.bin` and compare with gguf-py's `TYPE.{stem}.f32`, bit for bit.
fn assert_dequant_matches(types: &[BlockType], stem: &str) {
    for &ty in types {
        let blocks = data(&file(ty, &format!("{stem}.bin")));
        let expected = floats(&file(ty, &format!("{stem}.f32")));
        let got = quant::dequantize(ty, &blocks, N).unwrap();
        if let Some((i, g, e)) = first_bit_difference(&got, &expected) {
            panic!("{ty} {stem}: element {i} is {g:e}, gguf-py says {e:e}");
        }
    }
}

#[test]
fn dequantize_random_blocks_is_bit_exact() {
    assert_dequant_matches(BLOCK_TYPES, "rand");
}

#[test]
fn dequantize_reference_quants_is_bit_exact() {
    assert_dequant_matches(REF_TYPES, "ref");
}

fn first_byte_difference(got: &[u8], expected: &[u8], ty: BlockType) -> Option<String> {
    assert_eq!(got.len(), expected.len());
    got.iter().zip(expected).position(|(a, b)| a != b).map(|i| {
        format!(
            "{ty}: byte {i} (block {}, offset {}) is {:#04x}, ggml wrote {:#04x}",
            i / ty.type_size(),
            i % ty.type_size(),
            got[i],
            expected[i]
        )
    })
}

#[test]
fn reference_quantization_matches_ggml_bytes() {
    for &ty in REF_TYPES {
        let x = floats(&file(ty, "x.f32"));
        let got = quant::quantize(ty, &x, N, None).unwrap();
        if let Some(msg) = first_byte_difference(&got, &data(&file(ty, "ref.bin")), ty) {
            panic!("{msg}");
        }
    }
}

#[test]
fn imatrix_quantization_matches_ggml_bytes() {
    let w = floats("weights.f32");
    for &ty in REF_TYPES.iter().filter(|t| t.block_size() > 1) {
        let x = floats(&file(ty, "x.f32"));
        let expected = data(&file(ty, "imat.bin"));
        let rb = ty.row_bytes(N).unwrap();
        for r in 0..ROWS {
            let mut got = vec![0u8; rb];
            quant::quantize_row(ty, &x[r * N..][..N], Some(&w), &mut got).unwrap();
            if let Some(msg) = first_byte_difference(&got, &expected[r * rb..][..rb], ty) {
                panic!("row {r}: {msg}");
            }
        }
    }
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    (a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64)
        .sqrt()
}

/// The IQ lattice searches: round-trip error with importance weights no worse than
/// ggml's by more than 2%, on a fixed random set and on a real expert weight matrix
/// with llama.cpp's imatrix.
#[test]
fn iq_round_trip_error_within_two_percent_of_ggml() {
    let table = String::from_utf8(data("iq_errors.txt")).unwrap();
    let mut checked = 0;
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ty = BlockType::parse(f[0]).unwrap();
        let (set, cols): (&str, usize) = (f[1], f[3].parse().unwrap());
        let ggml_rmse: f64 = f[4].parse().unwrap();
        let x = floats(&format!("iq_{set}.x.f32"));
        let w = floats(&format!("iq_{set}.w.f32"));
        let rb = ty.row_bytes(cols).unwrap();
        let mut q = vec![0u8; x.len() / cols * rb];
        for (r, dst) in q.chunks_mut(rb).enumerate() {
            quant::quantize_row(ty, &x[r * cols..][..cols], Some(&w), dst).unwrap();
        }
        let ours = rmse(&x, &quant::dequantize(ty, &q, cols).unwrap());
        eprintln!(
            "{ty} {set}: lowbit rmse {ours:.6}, ggml {ggml_rmse:.6}, ratio {:.4}",
            ours / ggml_rmse
        );
        assert!(
            ours <= ggml_rmse * 1.02,
            "{ty} on {set}: rmse {ours} vs ggml {ggml_rmse}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

/// The IQ quantizers with weights follow ggml's search step for step, so on these
/// vectors they also reproduce its bytes.
#[test]
fn iq_imatrix_quantization_matches_ggml_bytes() {
    let w = floats("weights.f32");
    for &ty in IQ_TYPES {
        let x = floats(&file(ty, "x.f32"));
        let expected = data(&file(ty, "imat.bin"));
        let rb = ty.row_bytes(N).unwrap();
        for r in 0..ROWS {
            let mut got = vec![0u8; rb];
            quant::quantize_row(ty, &x[r * N..][..N], Some(&w), &mut got).unwrap();
            if let Some(msg) = first_byte_difference(&got, &expected[r * rb..][..rb], ty) {
                panic!("row {r}: {msg}");
            }
        }
    }
}

/// test-quantize-fns bounds: RMSE/n of the synthetic `0.1 + 2 cos(i)` signal, with
/// ggml's thresholds per format.
#[test]
fn round_trip_within_ggml_test_quantize_fns_bounds() {
    let n = 32 * 128;
    let x: Vec<f32> = (0..n).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect();
    for &(ty, bound) in &[
        (BlockType::Q4_0, 0.002),
        (BlockType::Q4_1, 0.002),
        (BlockType::Q5_0, 0.002),
        (BlockType::Q5_1, 0.002),
        (BlockType::Q8_0, 0.002),
        (BlockType::Q2_K, 0.0075),
        (BlockType::Q3_K, 0.004),
        (BlockType::Q4_K, 0.002),
        (BlockType::Q5_K, 0.002),
        (BlockType::Q6_K, 0.002),
        (BlockType::TQ1_0, 0.01),
        (BlockType::TQ2_0, 0.01),
    ] {
        let q = quant::quantize(ty, &x, n, None).unwrap();
        let y = quant::dequantize(ty, &q, n).unwrap();
        let err = (x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>()).sqrt() / n as f64;
        assert!(err < bound, "{ty}: total error {err} over ggml's bound {bound}");
    }
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    let x = vec![0.5f32; 300];
    assert!(quant::quantize(BlockType::Q4_K, &x, 300, None).is_err());
    let mut out = vec![0u8; 10];
    assert!(quant::quantize_row(BlockType::Q8_0, &x[..32], None, &mut out).is_err());
    assert!(quant::quantize_row(BlockType::Q4_0, &x[..32], Some(&x[..31]), &mut [0u8; 18]).is_err());
    assert!(quant::dequantize(BlockType::IQ1_S, &[0u8; 49], 256).is_err());
    assert!(BlockType::from_id(4).is_err());
}

#[test]
fn non_finite_input_never_panics() {
    let mut x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
    x[3] = f32::NAN;
    x[300] = f32::INFINITY;
    x[301] = f32::NEG_INFINITY;
    for &ty in BlockType::ALL.iter().filter(|t| t.can_quantize()) {
        let q = quant::quantize(ty, &x, 512, Some(&vec![1.0; 512])).unwrap();
        quant::dequantize(ty, &q, 512).unwrap();
    }
}
