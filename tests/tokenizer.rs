//! The tokenizer lowbit builds from GGUF metadata against independent tokenizers.
//!
//! * tiny-moe: the fixture's Hugging Face `tokenizer.json` (made outside lowbit; the
//!   fixtures README states llama.cpp's tokenization of persuasion.txt equals it) on all
//!   of persuasion.txt, and llama.cpp's reference prompt tokens.
//! * SmolLM2: token ids produced by llama.cpp itself (llama-cpp-python), stored in
//!   tests/data/smollm2_tokens.json by scripts/gen_smollm2_reference.py.

use lowbit::gguf::File;
use lowbit::tokenizer::Tokenizer;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("../shared/fixtures").join(name)
}

#[test]
fn tiny_moe_matches_the_reference_tokenizer_on_the_whole_corpus() {
    let ours = Tokenizer::from_gguf(&File::open(fixture("tiny-moe-f16.gguf")).unwrap()).unwrap();
    let hf = tokenizers::Tokenizer::from_file(fixture("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(fixture("persuasion.txt")).unwrap();
    let expected = hf.encode_fast(text.as_str(), false).unwrap().get_ids().to_vec();
    let got = ours.encode(&text, false, false).unwrap();
    let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first difference at token {first_diff:?}");
    assert_eq!(got.len(), expected.len());
    assert!(got.len() > 100_000);
    let with_bos = ours.encode(&text, true, false).unwrap();
    assert_eq!(with_bos[0], 0, "BOS added, as tokenizer.ggml.add_bos_token says");
    let reference: Vec<u32> =
        serde_json::from_str(&std::fs::read_to_string(fixture("ref-prompt-tokens.json")).unwrap()).unwrap();
    // The reference prompt is BOS then the start of chapter 1, which our tokens of the
    // whole file contain verbatim.
    assert_eq!(reference[0], with_bos[0]);
    assert!(
        got.windows(reference.len() - 1).any(|w| w == &reference[1..]),
        "llama.cpp's reference prompt tokens not found"
    );
    assert_eq!(
        ours.decode(&got[..2000]).unwrap(),
        hf.decode(&expected[..2000], false).unwrap()
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    let model = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let ours = Tokenizer::from_gguf(&File::open(&model).expect("run scripts/fetch_smollm2.sh")).unwrap();
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/smollm2_tokens.json")).unwrap()).unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let special = case["parse_special"].as_bool().unwrap();
        let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            ours.encode(text, true, special).unwrap(),
            expected,
            "{text:?} (parse_special {special})"
        );
    }
}

#[test]
fn chat_template_renders_chatml() {
    let ours =
        Tokenizer::from_gguf(&File::open(root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap()).unwrap();
    let prompt = ours.chat_prompt(&[("user".into(), "Hi there".into())]).unwrap();
    assert!(prompt.contains("<|im_start|>user\nHi there<|im_end|>\n"), "{prompt}");
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    let ids = ours.encode(&prompt, true, true).unwrap();
    assert!(
        ids.contains(&1) && ids.contains(&2),
        "<|im_start|> and <|im_end|> are single tokens: {ids:?}"
    );
    assert!(ours.stop.contains(&2));
}

#[test]
fn missing_tokenizer_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    lowbit::gguf::write(&path, &[], &[], lowbit::gguf::SplitPolicy::Single, |_, _| Ok(())).unwrap();
    let err = Tokenizer::from_gguf(&File::open(&path).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.ggml.model"), "{err}");
}
