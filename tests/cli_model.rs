//! The model commands end to end on SmolLM2 with the CPU backend: perplexity output
//! format, --save-logits / --kld-base against itself, logits for explicit tokens, and
//! generation stopping at end-of-text unless --ignore-eos.

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

/// Decoded tokens, from `--stats`' "decode: N tokens in ..." line.
fn decoded_tokens(stderr: &str) -> usize {
    let line = stderr.lines().find(|l| l.starts_with("decode: ")).expect(stderr);
    line["decode: ".len()..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn generation_stops_at_end_of_text_unless_told_not_to() {
    // Greedy SmolLM2 ends this answer well before 40 tokens.
    let args = [
        "generate",
        "-m",
        &model(),
        "-p",
        "The capital of France is",
        "-n",
        "40",
        "--temp",
        "0",
        "--stats",
        "--backend",
        "cpu",
    ];
    let (ok, _, err) = lowbit(&args);
    assert!(ok, "{err}");
    assert!(decoded_tokens(&err) < 40, "{err}");
    let (ok, _, err) = lowbit(&[&args[..], &["--ignore-eos"]].concat());
    assert!(ok, "{err}");
    assert_eq!(decoded_tokens(&err), 40, "{err}");
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

fn fixture(name: &str) -> String {
    root()
        .join("../shared/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn router_trace_and_quantize_commands() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let out = dir.path().join("l.f32");
    let (ok, _, err) = lowbit(&[
        "logits",
        "-m",
        &fixture("tiny-moe-f16.gguf"),
        "--backend",
        "cpu",
        "--tokens",
        "0,11,12,13,14,15",
        "-o",
        out.to_str().unwrap(),
        "--router-trace",
        trace.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 6 * 5, "6 tokens x 5 MoE layers");
    assert!(lines[0].starts_with("0 1 ") && lines[0].split(' ').count() == 2 + 4);

    // --dry-run prints the plan and writes nothing; a real run writes the file, the
    // recipe that replays it and the SVG report.
    let q = dir.path().join("q.gguf");
    let recipe = dir.path().join("r.txt");
    let svg = dir.path().join("r.svg");
    let (ok, plan, err) = lowbit(&[
        "quantize",
        &fixture("tiny-moe-f16.gguf"),
        q.to_str().unwrap(),
        "--recipe",
        "ud-iq1_s",
        "--tensor-type",
        "token_embd=Q8_0",
        "--dry-run",
    ]);
    assert!(ok, "{err}");
    assert!(!q.exists());
    assert!(plan.contains("token_embd.weight") && plan.contains("q8_0"), "{plan}");
    assert!(err.contains("smaller") && err.contains("routed experts"), "{err}");
    let (ok, _, err) = lowbit(&[
        "quantize",
        &fixture("tiny-moe-f16.gguf"),
        q.to_str().unwrap(),
        "--recipe",
        "uniform-q8_0",
        "--write-recipe",
        recipe.to_str().unwrap(),
        "--report",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let q2 = dir.path().join("q2.gguf");
    let (ok, _, err) = lowbit(&[
        "quantize",
        &fixture("tiny-moe-f16.gguf"),
        q2.to_str().unwrap(),
        "--recipe",
        recipe.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&q).unwrap(),
        std::fs::read(&q2).unwrap(),
        "the written recipe replays the plan"
    );
    let (ok, _, err) = lowbit(&[
        "quantize",
        &fixture("tiny-moe-f16.gguf"),
        "--recipe",
        "no-such-thing",
        "--dry-run",
    ]);
    assert!(!ok && err.contains("neither a preset"), "{err}");
}
