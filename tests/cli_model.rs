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

/// `perplexity` of `model` on `text` in chunks of 64 tokens on the exact CPU backend (cpu-ref), with
/// `extra` arguments.
fn perplexity(model: &str, text: &std::path::Path, chunks: usize, extra: &[&str]) -> (bool, String, String) {
    let chunks = chunks.to_string();
    let args = [
        "perplexity",
        "-m",
        model,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        &chunks,
        "--backend",
        "cpu-ref",
    ];
    lowbit(&[&args[..], extra].concat())
}

#[test]
fn perplexity_saves_logits_and_compares_against_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    let austen = std::fs::read_to_string(root().join("../shared/fixtures/austen.txt")).unwrap();
    std::fs::write(&text, &austen[..6000]).unwrap();
    let base = dir.path().join("base.kl");
    let (ok, out, err) = perplexity(&model(), &text, 3, &["--save-logits", base.to_str().unwrap()]);
    assert!(ok, "{err}");
    let last = out.trim_end().lines().last().unwrap();
    assert!(last.starts_with("PPL = ") && last.contains(" +/- "), "{out}");
    // Against the same protocol run on shared/oracles/llama_ref.py (exact float64) with
    // llama.cpp's token ids (scripts/gen_smollm2_perplexity.py): 35.630561. Measured:
    // lowbit prints 35.6306, |Δ|/ppl 1.1e-6, at the 4-decimal print's resolution (1.4e-6).
    let ppl = number_after(&out, "PPL = ");
    let reference = reference_ppl("smollm2_perplexity.json", &[]);
    let rel = (ppl / reference - 1.0).abs();
    eprintln!("SmolLM2 perplexity {ppl} vs float64 oracle {reference:.6}: |Δ|/ppl {rel:.2e}");
    assert!(rel < 1e-5, "{ppl} vs {reference}"); // a few times what is measured

    let (ok, out, err) = perplexity(&model(), &text, 3, &["--kld-base", base.to_str().unwrap()]);
    assert!(ok, "{err}");
    // Against itself only the f16 rounding of the saved log-probabilities remains, which
    // the renormalized KL turns into a tiny positive remainder: printed as 0.000000
    // (< 5e-7; tests/eval.rs measures at most 9.2e-7 a position on tiny-moe). A sign
    // error, or the plain f16 sum (+-2e-4 a position), shows in the sixth decimal.
    let kld = number_after(&out, "mean KLD = ");
    eprintln!("SmolLM2 KLD against itself: {kld}");
    assert!((0.0..=1e-6).contains(&kld) && !out.contains("mean KLD = -"), "{out}");
    assert!(out.contains("same top = 100.00%"), "{out}");
    assert!(out.trim_end().ends_with(last), "same perplexity against itself");

    // A base saved from another vocabulary (SmolLM2: 49152) against tiny-moe (4096).
    let (ok, _, err) = perplexity(
        &fixture("tiny-moe-f16.gguf"),
        &text,
        1,
        &["--kld-base", base.to_str().unwrap()],
    );
    assert!(!ok && err.trim_end().lines().count() == 1, "{err}");
    assert!(err.contains("vocabulary of 49152") && err.contains("4096"), "{err}");
}

/// The number printed after `label` in `out`.
fn number_after(out: &str, label: &str) -> f64 {
    let at = out.find(label).unwrap_or_else(|| panic!("no {label:?} in {out}")) + label.len();
    out[at..].split(' ').next().unwrap().trim().parse().unwrap()
}

/// A reference perplexity from tests/data/NAME, under the JSON keys `path`.
fn reference_ppl(name: &str, path: &[&str]) -> f64 {
    let text = std::fs::read_to_string(root().join("tests/data").join(name)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for k in path {
        v = v[*k].take();
    }
    v["ppl"].as_f64().unwrap()
}

/// The perplexity CLI on tiny-moe-f16 against llama.cpp. llama.cpp's own perplexity runs
/// (fixtures README, 128 chunks of 256) take ~4 s a chunk here on the CPU backend, ~9
/// minutes; so instead one chunk of 64 on a text that starts where the fixture prompt
/// starts: its tokens are the prompt's, and the perplexity of its scored half computed
/// from llama.cpp's logits of that prompt (scripts/gen_eval_reference.py, numpy) is
/// 135.808091.
#[test]
fn tiny_moe_perplexity_matches_llama_cpp_logits() {
    let persuasion = std::fs::read_to_string(fixture("persuasion.txt")).unwrap();
    let start = persuasion.find("Sir Walter Elliot").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, &persuasion[start..start + 3000]).unwrap();

    let file = lowbit::gguf::File::open(fixture("tiny-moe-f16.gguf")).unwrap();
    let tokens = lowbit::tokenizer::Tokenizer::from_gguf(&file)
        .unwrap()
        .encode(&persuasion[start..start + 3000], true, false)
        .unwrap();
    let prompt: Vec<u32> =
        serde_json::from_str(&std::fs::read_to_string(fixture("ref-prompt-tokens.json")).unwrap()).unwrap();
    assert_eq!(
        &tokens[..64],
        &prompt[..],
        "the chunk is the prompt llama.cpp's logits are of"
    );

    let (ok, out, err) = perplexity(&fixture("tiny-moe-f16.gguf"), &text, 1, &[]);
    assert!(ok, "{err}");
    let ppl = number_after(&out, "PPL = ");
    let reference = reference_ppl("eval_reference.json", &["cli_c64"]);
    let rel = (ppl / reference - 1.0).abs();
    eprintln!("tiny-moe perplexity {ppl} vs llama.cpp's logits {reference:.6}: |Δ|/ppl {rel:.2e}");
    // Measured: 135.8123, |Δ|/ppl 3.1e-5 (llama.cpp's logits are themselves 0.0044 from an
    // independent JAX run at most).
    assert!(rel < 1.5e-4, "{ppl} vs {reference}"); // a few times what is measured
}

/// A deepseek2 model with one tensor dropped does not load: the error names the tensor.
/// Each is dropped from a copy of tiny-moe-f16 written with lowbit's writer.
#[test]
fn a_model_missing_a_tensor_fails_to_load_naming_it() {
    use lowbit::gguf::{File, SplitPolicy, TensorSpec};
    let src = File::open(fixture("tiny-moe-f16.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dropped.gguf");
    let logits = dir.path().join("l.f32");
    for missing in [
        "output.weight",
        "blk.0.ffn_gate.weight",
        "blk.0.attn_k_b.weight",
        "blk.2.attn_v_b.weight",
        "blk.3.ffn_down_exps.weight",
        "blk.4.ffn_up_shexp.weight",
        "blk.5.exp_probs_b.bias",
    ] {
        let kept: Vec<_> = src.tensors().filter(|t| t.info.name != missing).collect();
        assert_eq!(kept.len() + 1, src.tensor_count(), "{missing}");
        let specs: Vec<TensorSpec> = kept.iter().map(|t| TensorSpec::from(t.info)).collect();
        lowbit::gguf::write(&out, src.metadata_entries(), &specs, SplitPolicy::Single, |i, w| {
            w.write_all(kept[i].bytes).map_err(|e| lowbit::Error::io("", e))
        })
        .unwrap();
        let (ok, _, err) = lowbit(&[
            "logits",
            "-m",
            out.to_str().unwrap(),
            "--tokens",
            "0,11",
            "-o",
            logits.to_str().unwrap(),
            "--backend",
            "cpu",
        ]);
        eprintln!("without {missing}: {}", err.trim_end());
        assert!(!ok && err.trim_end().lines().count() == 1, "{missing}: {err}");
        assert!(err.contains(&format!("'{missing}'")), "{missing}: {err}");
    }
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
