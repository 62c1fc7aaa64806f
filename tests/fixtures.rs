//! Every tensor of every llama.cpp-made fixture (and of SmolLM2) dequantized by lowbit
//! must equal gguf-py's dequantization bit for bit. The digests of gguf-py's results are
//! in tests/data/fixture_dequant.sha256 (scripts/gen_fixture_hashes.py).

use lowbit::gguf::File;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_path(file: &str) -> PathBuf {
    if file.starts_with("SmolLM2") {
        let p = root().join("models").join(file);
        assert!(p.exists(), "{} is missing: run scripts/fetch_smollm2.sh", p.display());
        p
    } else {
        root().join("../shared/fixtures").join(file)
    }
}

fn expected() -> BTreeMap<String, Vec<(String, String, u64, String)>> {
    let text = std::fs::read_to_string(root().join("tests/data/fixture_dequant.sha256")).unwrap();
    let mut by_file: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        by_file.entry(f[0].to_string()).or_default().push((
            f[1].to_string(),
            f[2].to_string(),
            f[3].parse().unwrap(),
            f[4].to_string(),
        ));
    }
    by_file
}

fn sha256_f32(values: &[f32]) -> String {
    let digest = Sha256::digest(bytemuck::cast_slice::<f32, u8>(values));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_fixture_tensor_dequantizes_like_gguf_py() {
    let expected = expected();
    assert_eq!(expected.len(), 10, "9 tiny-moe files and SmolLM2");
    let mut checked = 0;
    for (file, tensors) in &expected {
        let model = File::open(model_path(file)).unwrap();
        assert_eq!(model.tensor_count(), tensors.len(), "{file}: tensor count");
        for (name, ty, n, digest) in tensors {
            let t = model.tensor(name).unwrap();
            assert_eq!(&t.info.ty.to_string(), ty, "{file} {name}: type");
            let values = t.dequantize().unwrap();
            assert_eq!(values.len() as u64, *n, "{file} {name}: element count");
            assert_eq!(
                &sha256_f32(&values),
                digest,
                "{file} {name} ({ty}): dequantization differs from gguf-py"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1226);
}

fn lowbit(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lowbit"))
        .args(args)
        .output()
        .unwrap()
}

/// `lowbit dequant` writes the same bits, for one tensor of each type in the fixtures.
#[test]
fn cli_dequant_matches_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen_types = std::collections::HashSet::new();
    for (file, tensors) in expected() {
        for (name, ty, _, digest) in tensors {
            if !seen_types.insert(ty.clone()) {
                continue;
            }
            let out = dir.path().join(format!("{name}.f32"));
            let path = model_path(&file);
            let o = lowbit(&["dequant", path.to_str().unwrap(), &name, "-o", out.to_str().unwrap()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(
                sha256_f32(&bytemuck::pod_collect_to_vec(&bytes)),
                digest,
                "{file} {name}"
            );
        }
    }
    assert!(seen_types.len() >= 17, "types covered: {seen_types:?}");
}

#[test]
fn cli_errors_are_one_line_with_nonzero_status() {
    let f16 = model_path("tiny-moe-f16.gguf");
    let not_gguf = root().join("Cargo.toml");
    let cases: [(&[&str], &str); 3] = [
        (
            &["dequant", f16.to_str().unwrap(), "no.such.tensor", "-o", "/tmp/x.f32"],
            "no.such.tensor",
        ),
        (&["inspect", "/nonexistent/model.gguf"], "/nonexistent/model.gguf"),
        (&["inspect", not_gguf.to_str().unwrap()], "bad magic"),
    ];
    for (args, needle) in cases {
        let o = lowbit(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn cli_inspect_reports_classes_and_bpw() {
    let path = model_path("tiny-moe-IQ1_S.gguf");
    let o = lowbit(&["inspect", path.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "routed experts",
        "shared experts",
        "attention",
        "embeddings",
        "norms",
        "total: 106 tensors",
        "8149152",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let o = lowbit(&["inspect", "--json", path.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["tensors"].as_array().unwrap().len(), 106);
    assert_eq!(json["metadata"]["general.architecture"], "deepseek2");
    let experts = &json["classes"]["routed experts"];
    let bpw = experts["bits_per_weight"].as_f64().unwrap();
    assert!(bpw > 1.5 && bpw < 2.2, "routed expert bpw {bpw}");
    let total_bytes: u64 = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(json["total"]["bytes"].as_u64().unwrap(), total_bytes);
    assert!(total_bytes < std::fs::metadata(Path::new(&path)).unwrap().len());
}
