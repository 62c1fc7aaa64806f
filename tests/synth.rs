//! `lowbit synth` end to end: a one-layer R1-shaped file typed by a uniform recipe is
//! written, has the recipe's types and R1's shapes, and runs `logits --tokens` (it has no
//! tokenizer) to finite logits on the CPU; `generate` says it has no tokenizer.

use lowbit::gguf::File;
use lowbit::quant::BlockType;
use std::process::Command;

fn lowbit(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lowbit")).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_synthetic_r1_layer_loads_and_runs_without_a_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1-1l.gguf");
    let p = path.to_str().unwrap();
    let args = ["synth", "--like", "r1", "--layers", "1", "--dense-layers", "1"];
    let (ok, out, err) = lowbit(&[&args[..], &["--recipe", "uniform-IQ1_S", "-o", p]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("wrote") && out.contains("0.0% routed experts"), "{out}");

    let file = File::open(&path).unwrap();
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.info.dims, [7168, 129280]);
    assert_eq!(file.tensor("blk.0.ffn_up.weight").unwrap().info.ty, BlockType::IQ1_S);
    assert_eq!(file.tensor("blk.0.attn_norm.weight").unwrap().info.ty, BlockType::F32);

    let logits = dir.path().join("logits.f32");
    let l = logits.to_str().unwrap();
    let run = [
        "-m",
        p,
        "--backend",
        "cpu",
        "--tokens",
        "0,17,90001",
        "--step",
        "1",
        "-o",
        l,
    ];
    let (ok, _, err) = lowbit(&[&["logits"], &run[..]].concat());
    assert!(ok, "{err}");
    let bytes = std::fs::read(&logits).unwrap();
    let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    assert_eq!(values.len(), 3 * 129280);
    assert!(values.iter().all(|v| v.is_finite()));
    assert!(values.iter().any(|&v| v != values[0]), "constant logits");

    let (ok, _, err) = lowbit(&["generate", "-m", p, "--backend", "cpu", "-p", "hi", "-n", "1"]);
    assert!(!ok && err.contains("no tokenizer"), "{err}");
    let (ok, _, err) = lowbit(&[
        "synth",
        "--like",
        "gpt-9",
        "--layers",
        "1",
        "--dense-layers",
        "1",
        "-o",
        p,
    ]);
    assert!(!ok && err.contains("unknown architecture"), "{err}");
}
