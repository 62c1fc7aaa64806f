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
