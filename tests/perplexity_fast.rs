//! The fast CPU backend's perplexity on `persuasion.txt` under llama.cpp's protocol
//! (`-c 256`, the first 128 chunks) for every fixture file, against the values
//! llama.cpp's `llama-perplexity` printed for the same files (fixtures README): within
//! 0.5%. The fast backend computes as llama.cpp's CPU backend does (8-bit activations),
//! so this is where its arithmetic meets an independent implementation end to end.

mod common;
use common::fixture_path;

/// (file, llama.cpp's perplexity over the first 128 chunks).
const PUBLISHED: [(&str, f64); 9] = [
    ("tiny-moe-f16.gguf", 67.2766),
    ("tiny-moe-Q8_0.gguf", 67.2420),
    ("tiny-moe-Q4_K_M.gguf", 67.3627),
    ("tiny-moe-Q2_K.gguf", 68.4496),
    ("tiny-moe-IQ2_XXS.gguf", 70.23),
    ("tiny-moe-IQ1_M.gguf", 73.68),
    ("tiny-moe-IQ1_S.gguf", 77.52),
    ("tiny-moe-TQ2_0.gguf", 3718.8),
    ("tiny-moe-TQ1_0.gguf", 3718.8),
];

#[test]
fn fast_perplexity_is_within_half_a_percent_of_llama_cpp_for_every_fixture_file() {
    let text = fixture_path("persuasion.txt");
    let mut failures = Vec::new();
    for (name, published) in PUBLISHED {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lowbit"))
            .args(["perplexity", "-m"])
            .arg(fixture_path(name))
            .arg("-f")
            .arg(&text)
            .args(["-c", "256", "--chunks", "128", "--backend", "cpu", "-t", "2"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let ppl: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PPL = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no PPL line in {stdout}"));
        let rel = ppl / published - 1.0;
        eprintln!("{name}: {ppl} against llama.cpp's {published} ({:+.3}%)", 100.0 * rel);
        if rel.abs() > 0.005 {
            failures.push(format!("{name}: {ppl} against {published}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
