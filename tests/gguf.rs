//! GGUF reader and writer: round trips through real files, split models, atomic
//! writes, and malformed input (crafted, truncated, bit-flipped) that must be
//! reported as errors, never panics.

use lowbit::gguf::{self, File, SplitPolicy, TensorSpec, Value, ValueType};
use lowbit::{BlockType, Error};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

/// Copy `src` to `dst` through the writer, one tensor at a time.
fn rewrite(src: &File, dst: &Path, policy: SplitPolicy) -> Vec<PathBuf> {
    let specs: Vec<TensorSpec> = src.tensors().map(|t| TensorSpec::from(t.info)).collect();
    let views: Vec<_> = src.tensors().collect();
    gguf::write(dst, src.metadata_entries(), &specs, policy, |i, out| {
        out.write_all(views[i].bytes).map_err(|e| Error::io(dst, e))
    })
    .unwrap()
}

fn assert_same_model(a: &File, b: &File) {
    let meta = |f: &File| {
        f.metadata_entries()
            .iter()
            .filter(|(k, _)| !k.starts_with("split."))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(meta(a), meta(b));
    assert_eq!(a.tensor_count(), b.tensor_count());
    for t in a.tensors() {
        let u = b.tensor(&t.info.name).unwrap();
        assert_eq!((t.info.ty, &t.info.dims), (u.info.ty, &u.info.dims), "{}", t.info.name);
        assert!(t.bytes == u.bytes, "{}: data differs", t.info.name);
    }
}

#[test]
fn reads_fixture_metadata_and_tensors() {
    let f = File::open(fixture("tiny-moe-Q4_K_M.gguf")).unwrap();
    assert_eq!(f.tensor_count(), 106);
    assert_eq!(
        f.metadata("general.architecture").and_then(Value::as_str),
        Some("deepseek2")
    );
    assert_eq!(f.metadata("deepseek2.block_count").and_then(Value::as_u64), Some(6));
    let tokens = f.metadata("tokenizer.ggml.tokens").and_then(Value::as_array).unwrap();
    assert_eq!(tokens.len(), 4096);
    let t = f.tensor("blk.1.ffn_up_exps.weight").unwrap();
    assert_eq!(t.info.dims, vec![256, 256, 32]);
    assert_eq!(
        t.bytes.len() as u64,
        t.info.ty.row_bytes(256).unwrap() as u64 * 256 * 32
    );
    assert_eq!(t.info.file_offset % 32, 0);
}

#[test]
fn round_trip_preserves_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = fixture("tiny-moe-IQ1_S.gguf");
    let src = File::open(&src_path).unwrap();
    let out = dir.path().join("copy.gguf");
    assert_eq!(rewrite(&src, &out, SplitPolicy::Single), vec![out.clone()]);
    // llama.cpp's writer and ours lay the file out the same way: identical bytes.
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&src_path).unwrap());
    assert_same_model(&src, &File::open(&out).unwrap());
}

#[test]
fn split_model_opens_as_one_from_any_shard() {
    let dir = tempfile::tempdir().unwrap();
    let src = File::open(fixture("tiny-moe-Q2_K.gguf")).unwrap();
    let paths = rewrite(&src, &dir.path().join("model.gguf"), SplitPolicy::MaxTensors(40));
    assert_eq!(paths.len(), 3);
    assert!(paths[1].ends_with("model-00002-of-00003.gguf"));
    for p in &paths {
        let opened = File::open(p).unwrap();
        assert_eq!(opened.shards().len(), 3);
        assert_eq!(
            opened.metadata("split.tensors.count").and_then(Value::as_u64),
            Some(106)
        );
        assert_same_model(&src, &opened);
    }
    let by_bytes = rewrite(&src, &dir.path().join("bytes.gguf"), SplitPolicy::MaxBytes(4 << 20));
    assert!(by_bytes.len() > 2);
    assert_same_model(&src, &File::open(&by_bytes[0]).unwrap());
    std::fs::remove_file(&paths[2]).unwrap();
    assert!(
        matches!(File::open(&paths[0]), Err(Error::Io { .. })),
        "a missing shard is an error"
    );
}

#[test]
fn all_value_types_and_nested_arrays_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let meta = vec![
        ("general.alignment".to_string(), Value::U32(64)),
        ("a.u8".into(), Value::U8(7)),
        ("a.i8".into(), Value::I8(-7)),
        ("a.u16".into(), Value::U16(65535)),
        ("a.i16".into(), Value::I16(-300)),
        ("a.u32".into(), Value::U32(1 << 31)),
        ("a.i32".into(), Value::I32(-5)),
        ("a.f32".into(), Value::F32(1.5)),
        ("a.bool".into(), Value::Bool(true)),
        ("a.str".into(), Value::String("héllo".into())),
        ("a.u64".into(), Value::U64(u64::MAX)),
        ("a.i64".into(), Value::I64(i64::MIN)),
        ("a.f64".into(), Value::F64(-2.25)),
        ("a.empty".into(), Value::Array(ValueType::F32, vec![])),
        (
            "a.nested".into(),
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
                    Value::Array(ValueType::String, vec![Value::String("x".into())]),
                ],
            ),
        ),
    ];
    let specs = vec![
        TensorSpec {
            name: "a".into(),
            ty: BlockType::Q8_0,
            dims: vec![64, 3],
        },
        TensorSpec {
            name: "b".into(),
            ty: BlockType::F32,
            dims: vec![5],
        },
    ];
    let data: Vec<Vec<u8>> = specs
        .iter()
        .map(|s| (0..s.size().unwrap()).map(|i| (i * 7 % 251) as u8).collect())
        .collect();
    let out = dir.path().join("values.gguf");
    gguf::write(&out, &meta, &specs, SplitPolicy::Single, |i, w| {
        w.write_all(&data[i]).map_err(|e| Error::io("", e))
    })
    .unwrap();
    let f = File::open(&out).unwrap();
    assert_eq!(f.metadata_entries(), &meta[..]);
    for (s, d) in specs.iter().zip(&data) {
        let t = f.tensor(&s.name).unwrap();
        assert_eq!(t.bytes, &d[..]);
        assert_eq!(t.info.file_offset % 64, 0);
    }
}

#[test]
fn interrupted_write_leaves_no_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    std::fs::write(&out, b"previous contents").unwrap();
    let specs = vec![
        TensorSpec {
            name: "a".into(),
            ty: BlockType::F32,
            dims: vec![4],
        },
        TensorSpec {
            name: "b".into(),
            ty: BlockType::F32,
            dims: vec![4],
        },
    ];
    let r = gguf::write(&out, &[], &specs, SplitPolicy::Single, |i, w| {
        if i == 1 {
            return Err(Error::Unsupported("interrupted".into()));
        }
        w.write_all(&[0u8; 16]).map_err(|e| Error::io("", e))
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read(&out).unwrap(), b"previous contents");
    let short = gguf::write(&out, &[], &specs, SplitPolicy::Single, |_, w| {
        w.write_all(&[0u8; 8]).map_err(|e| Error::io("", e))
    });
    assert!(
        matches!(short, Err(Error::Shape(_))),
        "a tensor with too few bytes is rejected"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("out.gguf")],
        "temporary files are cleaned up"
    );
}

/// A minimal GGUF builder for crafting broken files.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&n_tensors.to_le_bytes());
        v.extend_from_slice(&n_kv.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn str(self, s: &str) -> Self {
        let mut r = self.u64(s.len() as u64);
        r.0.extend_from_slice(s.as_bytes());
        r
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    fn pad(mut self, data: usize) -> Self {
        let len = self.0.len().div_ceil(32) * 32 + data;
        self.0.resize(len, 0);
        self
    }
}

fn parse_err(bytes: &[u8]) -> String {
    match gguf::parse(bytes, Path::new("crafted.gguf")) {
        Ok(_) => panic!("accepted a malformed file"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn crafted_malformed_files_give_descriptive_errors() {
    let cases: Vec<(Raw, &str)> = vec![
        (Raw(b"GGML\x03\0\0\0".to_vec()), "bad magic"),
        (Raw::new(1, 0, 0), "unsupported GGUF version 1"),
        (Raw::new(3, 0, u64::MAX), "metadata count"),
        (Raw::new(3, u64::MAX / 2, 0), "tensor count"),
        (Raw::new(3, 0, 1).u64(1 << 40), "cannot fit"),
        (Raw::new(3, 0, 1).u64(1 << 40).u64(0), "truncated: metadata key"),
        (Raw::new(3, 0, 1).str("k").u32(99), "unknown value type 99"),
        (Raw::new(3, 0, 1).str("k").u32(9).u32(8).u64(1 << 50), "array length"),
        (
            Raw::new(3, 0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(1),
            "duplicate metadata key 'k'",
        ),
        (
            Raw::new(3, 0, 1).str("general.alignment").u32(4).u32(48),
            "general.alignment",
        ),
        (
            Raw::new(3, 0, 1)
                .str("k")
                .u32(7)
                .0
                .iter()
                .copied()
                .chain([2u8])
                .collect::<Vec<_>>()
                .into(),
            "neither 0 nor 1",
        ),
        (
            Raw::new(3, 1, 0).tensor("t", &[32, 1, 1, 1, 1], 0, 0).pad(128),
            "n_dims 5",
        ),
        (
            Raw::new(3, 1, 0).tensor("t", &[32], 4, 0).pad(128),
            "unknown ggml type id 4",
        ),
        (
            Raw::new(3, 1, 0).tensor("t", &[100], 12, 0).pad(1024),
            "not a multiple of the q4_K block size 256",
        ),
        (Raw::new(3, 1, 0).tensor("t", &[32], 0, 8).pad(256), "not aligned"),
        (Raw::new(3, 1, 0).tensor("t", &[32], 0, 0).pad(64), "outside the"),
        (
            Raw::new(3, 1, 0).tensor("t", &[1 << 32, 1 << 32, 1 << 32], 0, 0).pad(0),
            "overflows",
        ),
        (
            Raw::new(3, 2, 0)
                .tensor("t", &[4], 0, 0)
                .tensor("t", &[4], 0, 32)
                .pad(64),
            "duplicate tensor name",
        ),
        (
            Raw::new(3, 1, 0)
                .str("bad\u{0}")
                .0
                .iter()
                .copied()
                .chain([0xff, 0xfe])
                .collect::<Vec<_>>()
                .into(),
            "cannot fit",
        ),
    ];
    for (raw, needle) in cases {
        let msg = parse_err(&raw.0);
        assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
        assert!(msg.starts_with("crafted.gguf"), "errors name the file: {msg}");
    }
    let mut bad_utf8 = Raw::new(3, 0, 1).u64(2).0;
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 4, 0, 0, 0, 1, 0, 0, 0]);
    assert!(parse_err(&bad_utf8).contains("UTF-8"));
}

impl From<Vec<u8>> for Raw {
    fn from(v: Vec<u8>) -> Self {
        Raw(v)
    }
}

/// Every truncation of a real file that cuts into its header or data is an error, and
/// bit flips anywhere in the header never panic.
#[test]
fn truncated_and_bit_flipped_real_files_never_panic() {
    let bytes = std::fs::read(fixture("tiny-moe-TQ1_0.gguf")).unwrap();
    let path = Path::new("tiny-moe-TQ1_0.gguf");
    let header = gguf::parse(&bytes, path).unwrap();
    let data_end = header.tensors.iter().map(|t| t.file_offset + t.size).max().unwrap() as usize;
    let mut cuts: Vec<usize> = (0..header.data_offset as usize).step_by(7).collect();
    cuts.extend((header.data_offset as usize..data_end).step_by(99_991));
    cuts.push(data_end - 1);
    for cut in cuts {
        assert!(
            gguf::parse(&bytes[..cut], path).is_err(),
            "truncation at {cut} was accepted"
        );
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut flipped = bytes[..header.data_offset as usize + 4096].to_vec();
    for _ in 0..5_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bit = (state % (header.data_offset * 8)) as usize;
        flipped[bit / 8] ^= 1 << (bit % 8);
        let _ = gguf::parse(&flipped, path);
        flipped[bit / 8] ^= 1 << (bit % 8);
    }
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// The values `scripts/gen_gguf_values.py` wrote, as literals, in its order.
fn gguf_py_values() -> Vec<(String, Value)> {
    use Value as V;
    use ValueType as T;
    let arr = |t: T, v: Vec<Value>| V::Array(t, v);
    let s = |x: &str| V::String(x.into());
    vec![
        ("general.architecture".into(), s("testarch")),
        ("t.u8".into(), V::U8(255)),
        ("t.i8".into(), V::I8(-128)),
        ("t.u16".into(), V::U16(65535)),
        ("t.i16".into(), V::I16(-32768)),
        ("t.u32".into(), V::U32(u32::MAX)),
        ("t.i32".into(), V::I32(i32::MIN)),
        ("t.u64".into(), V::U64(u64::MAX)),
        ("t.i64".into(), V::I64(i64::MIN)),
        ("t.f32".into(), V::F32(-1e-40)),
        ("t.f32_inf".into(), V::F32(f32::INFINITY)),
        ("t.f64".into(), V::F64(f64::from_bits(1))),
        ("t.bool_true".into(), V::Bool(true)),
        ("t.bool_false".into(), V::Bool(false)),
        ("t.str".into(), s("héllo, wörld ✓")),
        ("t.str_empty".into(), s("")),
        ("t.arr_u8".into(), arr(T::U8, vec![V::U8(0), V::U8(1), V::U8(255)])),
        ("t.arr_i8".into(), arr(T::I8, vec![V::I8(-128), V::I8(0), V::I8(127)])),
        ("t.arr_u16".into(), arr(T::U16, vec![V::U16(0), V::U16(65535)])),
        ("t.arr_i16".into(), arr(T::I16, vec![V::I16(-32768), V::I16(32767)])),
        ("t.arr_u32".into(), arr(T::U32, vec![V::U32(1), V::U32(u32::MAX)])),
        ("t.arr_i32".into(), arr(T::I32, vec![V::I32(-1), V::I32(i32::MAX)])),
        ("t.arr_u64".into(), arr(T::U64, vec![V::U64(0), V::U64(u64::MAX)])),
        (
            "t.arr_i64".into(),
            arr(T::I64, vec![V::I64(i64::MIN), V::I64(i64::MAX)]),
        ),
        (
            "t.arr_f32".into(),
            arr(T::F32, vec![V::F32(0.5), V::F32(-0.0), V::F32(3.25)]),
        ),
        ("t.arr_f64".into(), arr(T::F64, vec![V::F64(0.1), V::F64(-1e300)])),
        (
            "t.arr_bool".into(),
            arr(T::Bool, vec![V::Bool(true), V::Bool(false), V::Bool(true)]),
        ),
        ("t.arr_str".into(), arr(T::String, vec![s("a"), s(""), s("ünï")])),
        (
            "t.arr_nested".into(),
            arr(
                T::Array,
                vec![arr(T::I32, vec![V::I32(1), V::I32(2)]), arr(T::I32, vec![V::I32(3)])],
            ),
        ),
    ]
}

/// Every float in `v`, by bits (`Value`'s `PartialEq` has -0.0 == 0.0).
fn float_bits(v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::F32(x) => out.push(x.to_bits() as u64),
        Value::F64(x) => out.push(x.to_bits()),
        Value::Array(_, items) => items.iter().for_each(|i| float_bits(i, out)),
        _ => {}
    }
}

/// `tests/data/gguf_values.gguf` was written by gguf-py (`scripts/gen_gguf_values.py`), a
/// writer independent of lowbit: one key of every value type, arrays of every element
/// type (strings, nested arrays), and F32, F16 and Q8_0 tensors. lowbit's reader must see
/// exactly the script's values and tensor bytes, and lowbit's writer, given the same
/// content, must produce gguf-py's file byte for byte (both follow gguf.cpp's layout:
/// metadata in order, tensor infos, data aligned to 32 with every tensor padded).
/// gguf-py cannot write an empty array, so that case is only in the round trip above.
#[test]
fn gguf_py_file_reads_exactly_and_lowbit_rewrites_it_byte_for_byte() {
    let path = data("gguf_values.gguf");
    let theirs = std::fs::read(&path).unwrap();
    let f = File::open(&path).unwrap();
    let expected = gguf_py_values();
    assert_eq!(f.metadata_entries(), &expected[..]);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    f.metadata_entries().iter().for_each(|(_, v)| float_bits(v, &mut got));
    expected.iter().for_each(|(_, v)| float_bits(v, &mut want));
    assert_eq!(got, want, "float bits (signed zero, subnormals, infinity)");

    // The script's tensor values, exact in f32: ((i * 37) % 101 - 50) / 16.
    let values = |n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 16.0).collect() };
    let f32_bytes: Vec<u8> = values(5).iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16_bytes: Vec<u8> = values(16)
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let q8_bytes = lowbit::quant::quantize(BlockType::Q8_0, &values(192), 64, None).unwrap();
    let tensors = [
        ("t.f32", BlockType::F32, vec![5u64], f32_bytes),
        ("t.f16", BlockType::F16, vec![8, 2], f16_bytes),
        ("t.q8_0", BlockType::Q8_0, vec![64, 3], q8_bytes),
    ];
    assert_eq!(f.tensor_count(), tensors.len());
    for ((name, ty, dims, bytes), t) in tensors.iter().zip(f.tensors()) {
        assert_eq!((t.info.name.as_str(), t.info.ty, &t.info.dims), (*name, *ty, dims));
        assert!(t.bytes == &bytes[..], "{name}: bytes differ from gguf-py's");
        assert_eq!(t.info.file_offset % 32, 0);
    }
    let q8 = f.tensor("t.q8_0").unwrap().dequantize().unwrap();
    let max_err = q8
        .iter()
        .zip(values(192))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("gguf-py Q8_0 dequantized: max |err| {max_err} (max |value| 3.125)");
    assert!(max_err <= 3.125 / 127.0, "{max_err}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lowbit.gguf");
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, ty, dims, _)| TensorSpec {
            name: name.to_string(),
            ty: *ty,
            dims: dims.clone(),
        })
        .collect();
    gguf::write(&out, &expected, &specs, SplitPolicy::Single, |i, w| {
        w.write_all(&tensors[i].3).map_err(|e| Error::io("", e))
    })
    .unwrap();
    let ours = std::fs::read(&out).unwrap();
    let first_diff = ours.iter().zip(&theirs).position(|(a, b)| a != b);
    assert!(
        ours == theirs,
        "lowbit wrote {} bytes, gguf-py {}; first difference at {first_diff:?}",
        ours.len(),
        theirs.len()
    );
}

/// A small model written as 3 shards of 2 tensors: `DIR/m-0000i-of-00003.gguf`.
fn three_shards(dir: &Path) -> Vec<PathBuf> {
    let meta = vec![("general.architecture".to_string(), Value::String("llama".into()))];
    let specs: Vec<TensorSpec> = ["t.a", "t.b", "t.c", "t.d", "t.e", "t.f"]
        .iter()
        .map(|n| TensorSpec {
            name: n.to_string(),
            ty: BlockType::F32,
            dims: vec![8],
        })
        .collect();
    let paths = gguf::write(
        &dir.join("m.gguf"),
        &meta,
        &specs,
        SplitPolicy::MaxTensors(2),
        |i, w| w.write_all(&[i as u8; 32]).map_err(|e| Error::io("", e)),
    )
    .unwrap();
    assert_eq!(paths.len(), 3);
    assert!(File::open(&paths[0]).is_ok());
    paths
}

/// Replace the one occurrence of `from` in `path` by `to` (same length).
fn patch(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let at: Vec<usize> = (0..bytes.len() - from.len())
        .filter(|&i| &bytes[i..i + from.len()] == from)
        .collect();
    assert_eq!(at.len(), 1, "{from:?} in {}", path.display());
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to);
    std::fs::write(path, bytes).unwrap();
}

/// A metadata key/value as the writer puts it: key, type U16 (2), value.
fn u16_kv(key: &str, v: u16) -> Vec<u8> {
    let mut b = (key.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&v.to_le_bytes());
    b
}

fn open_err(path: &Path) -> String {
    match File::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

/// Split metadata that contradicts the shard file names, and a tensor held by two shards,
/// are errors that name the key (or tensor) and the file, never a model opened from the
/// wrong shards.
#[test]
fn split_metadata_contradicting_the_file_names_is_an_error() {
    let dir = tempfile::tempdir().unwrap();

    // The names say 2 shards, split.count says 3.
    let paths = three_shards(dir.path());
    let two: Vec<PathBuf> = (1..=2)
        .map(|i| gguf::reader::shard_path(dir.path(), "two", i, 2))
        .collect();
    for (p, q) in paths.iter().zip(&two) {
        std::fs::copy(p, q).unwrap();
    }
    for q in &two {
        let e = open_err(q);
        assert!(
            e.contains("split.count") && e.contains("says 3") && e.contains("name says 2"),
            "{e}"
        );
    }
    // The name says 1 shard (of 1), split.count says 3.
    let one = gguf::reader::shard_path(dir.path(), "one", 1, 1);
    std::fs::copy(&paths[0], &one).unwrap();
    let e = open_err(&one);
    assert!(
        e.contains("split.count") && e.contains("says 3") && e.contains("name says 1"),
        "{e}"
    );
    // A shard number beyond the count in the name.
    let four = gguf::reader::shard_path(dir.path(), "m", 4, 3);
    std::fs::copy(&paths[0], &four).unwrap();
    let e = open_err(&four);
    assert!(e.contains("split.no") && e.contains("shard number 4"), "{e}");
    std::fs::remove_file(&four).unwrap();

    // One shard (not the one opened) says split.count 2 among names of 3.
    patch(&paths[1], &u16_kv("split.count", 3), &u16_kv("split.count", 2));
    for p in [&paths[0], &paths[2]] {
        let e = open_err(p);
        assert!(
            e.contains("split.count") && e.contains("m-00002-of-00003.gguf") && e.contains("says 2"),
            "{e}"
        );
    }
    // split.no contradicting the name: the third file says it is the second.
    let paths = three_shards(dir.path());
    patch(&paths[2], &u16_kv("split.no", 2), &u16_kv("split.no", 1));
    let e = open_err(&paths[0]);
    assert!(
        e.contains("split.no") && e.contains("m-00003-of-00003.gguf") && e.contains("has split.no 1"),
        "{e}"
    );

    // The same tensor in two shards: the third shard's "t.e" renamed "t.a".
    let paths = three_shards(dir.path());
    patch(&paths[2], b"\x03\0\0\0\0\0\0\0t.e", b"\x03\0\0\0\0\0\0\0t.a");
    for p in &paths {
        let e = open_err(p);
        assert!(
            e.contains("'t.a'") && e.contains("more than one shard") && e.contains("m-00001-of-00003.gguf"),
            "{e}"
        );
    }
}
