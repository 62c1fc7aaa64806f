//! The model commands end to end on SmolLM2 with the CPU backend: perplexity output
//! format, --save-logits / --kld-base against itself, and logits for explicit tokens.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> String {
    root()
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        .to_string_lossy()
        .into_owned()
}

fn lowbit(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lowbit")).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn perplexity_saves_logits_and_compares_against_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    let austen = std::fs::read_to_string(root().join("../shared/fixtures/austen.txt")).unwrap();
    std::fs::write(&text, &austen[..6000]).unwrap();
    let base = dir.path().join("base.kl");
    let args = [
        "perplexity",
        "-m",
        &model(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        "3",
        "--backend",
        "cpu",
    ];
    let (ok, out, err) = lowbit(&[&args[..], &["--save-logits", base.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    let last = out.trim_end().lines().last().unwrap();
    assert!(last.starts_with("PPL = ") && last.contains(" +/- "), "{out}");
    let ppl: f64 = last["PPL = ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(ppl > 1.0 && ppl < 500.0, "{ppl}");
    let (ok, out, err) = lowbit(&[&args[..], &["--kld-base", base.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("mean KLD = 0.00"), "{out}");
    assert!(out.contains("same top = 100.00%"), "{out}");
    assert!(out.trim_end().ends_with(last), "same perplexity against itself");
}

#[test]
fn logits_writes_position_major_f32() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("l.f32");
    let (ok, _, err) = lowbit(&[
        "logits",
        "-m",
        &model(),
        "--tokens",
        "1,504,3458",
        "-o",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 3 * 49152 * 4);
    let (ok, _, err) = lowbit(&[
        "logits",
        "-m",
        &model(),
        "--tokens",
        "1,99999999",
        "-o",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(
        !ok && err.trim_end().lines().count() == 1 && err.contains("99999999"),
        "{err}"
    );
}
