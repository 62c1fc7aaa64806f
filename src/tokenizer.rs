//! Tokenizer built from a GGUF's own metadata with the `tokenizers` crate.
//!
//! Supports byte-level BPE (`tokenizer.ggml.model = gpt2`) with llama.cpp's pre-tokenizer
//! regexes for `tokenizer.ggml.pre` (`llama_vocab::impl::load` in llama.cpp's
//! `src/llama-vocab.cpp`): each regex splits the text in turn (matches and the text
//! between them become pieces), then bytes map to the GPT-2 byte alphabet and BPE merges
//! apply. Control and user-defined tokens are special: they are matched in the text only
//! when asked (`parse_special`), as llama.cpp does.

use crate::error::{Error, Result};
use crate::gguf::{File, Value};
use serde_json::json;

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// llama.cpp's pre-tokenizer regexes for a `tokenizer.ggml.pre` value.
fn pre_regexes(pre: &str) -> Result<Vec<&'static str>> {
    Ok(match pre {
        "gpt-2" | "default" | "mpt" | "olmo" | "jais" => vec![GPT2_REGEX],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2_REGEX]
        }
        "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" => {
            vec![
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            ]
        }
        other => {
            return Err(Error::Unsupported(format!(
                "pre-tokenizer '{other}' is not supported (tokenizer.ggml.pre)"
            )));
        }
    })
}

/// A tokenizer with the model's special tokens and chat template.
pub struct Tokenizer {
    /// Text only: special-token strings are tokenized as ordinary text.
    plain: tokenizers::Tokenizer,
    /// Control and user-defined tokens are matched as single tokens.
    special: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Token ids that end a turn or the text (EOS, `<|im_end|>`, `<|eot_id|>`, …).
    pub stop: Vec<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
    pub vocab_size: usize,
}

fn meta_u32(file: &File, key: &str) -> Option<u32> {
    file.metadata(key).and_then(Value::as_u64).map(|v| v as u32)
}

fn strings(file: &File, key: &str) -> Result<Vec<String>> {
    let arr = file
        .metadata(key)
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Metadata {
            key: key.into(),
            reason: format!("{}: missing (the model has no tokenizer)", file.path().display()),
        })?;
    arr.iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| Error::Metadata {
                key: key.into(),
                reason: "not an array of strings".into(),
            })
        })
        .collect()
}

impl Tokenizer {
    pub fn from_gguf(file: &File) -> Result<Self> {
        let model = file
            .metadata("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Metadata {
                key: "tokenizer.ggml.model".into(),
                reason: format!("{}: missing (the model has no tokenizer)", file.path().display()),
            })?;
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "tokenizer model '{model}' is not supported (lowbit reads byte-level BPE, 'gpt2')"
            )));
        }
        let pre = file
            .metadata("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let tokens = strings(file, "tokenizer.ggml.tokens")?;
        let merges = strings(file, "tokenizer.ggml.merges")?;
        let types: Vec<i64> = match file.metadata("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i64).collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::Metadata {
                key: "tokenizer.ggml.token_type".into(),
                reason: format!("{} types for {} tokens", types.len(), tokens.len()),
            });
        }
        let vocab: serde_json::Map<String, serde_json::Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        if vocab.len() != tokens.len() {
            return Err(Error::Metadata {
                key: "tokenizer.ggml.tokens".into(),
                reason: "duplicate token strings".into(),
            });
        }
        // Token types 3 (control) and 4 (user-defined) are special.
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| types[*i] == 3 || types[*i] == 4)
            .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let splits: Vec<serde_json::Value> = pre_regexes(pre)?
            .into_iter()
            .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
            .chain([json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})])
            .collect();
        let build = |added: &[serde_json::Value]| -> Result<tokenizers::Tokenizer> {
            let spec = json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": {"type": "Sequence", "pretokenizers": splits},
                "post_processor": null,
                "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                          "vocab": vocab, "merges": merges},
            });
            spec.to_string()
                .parse::<tokenizers::Tokenizer>()
                .map_err(|e| Error::Unsupported(format!("building the tokenizer: {e}")))
        };
        let bos = meta_u32(file, "tokenizer.ggml.bos_token_id");
        let eos = meta_u32(file, "tokenizer.ggml.eos_token_id");
        let mut stop: Vec<u32> = eos.into_iter().collect();
        for name in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end_of_text|>",
            "<|endoftext|>",
            "<end_of_turn>",
        ] {
            if let Some(i) = tokens.iter().position(|t| t == name)
                && !stop.contains(&(i as u32))
            {
                stop.push(i as u32);
            }
        }
        Ok(Tokenizer {
            plain: build(&[])?,
            special: build(&added)?,
            bos,
            eos,
            stop,
            add_bos: file
                .metadata("tokenizer.ggml.add_bos_token")
                .is_some_and(|v| *v == Value::Bool(true)),
            chat_template: file
                .metadata("tokenizer.chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            vocab_size: tokens.len(),
        })
    }

    /// Token ids of `text`, with BOS first when the model asks for it (`add_special`)
    /// and special-token strings matched when `parse_special`.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let t = if parse_special { &self.special } else { &self.plain };
        let enc = t
            .encode_fast(text, false)
            .map_err(|e| Error::Unsupported(format!("tokenizing: {e}")))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of `ids` (special tokens rendered as their strings).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.special
            .decode(ids, false)
            .map_err(|e| Error::Unsupported(format!("detokenizing: {e}")))
    }

    /// The prompt for `(role, content)` turns, ending with an open assistant turn,
    /// rendered from the model's own `tokenizer.chat_template` (Jinja, via minijinja).
    pub fn chat_prompt(&self, turns: &[(String, String)]) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| Error::Metadata {
            key: "tokenizer.chat_template".into(),
            reason: "the model has no chat template".into(),
        })?;
        let mut env = minijinja::Environment::new();
        env.add_template("chat", template)
            .map_err(|e| Error::Unsupported(format!("chat template: {e}")))?;
        let messages: Vec<minijinja::Value> = turns
            .iter()
            .map(|(r, c)| minijinja::context! { role => r, content => c })
            .collect();
        let token = |id: Option<u32>| id.and_then(|i| self.special.id_to_token(i)).unwrap_or_default();
        env.get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => token(self.bos),
                    eos_token => token(self.eos),
                })
            })
            .map_err(|e| Error::Unsupported(format!("chat template: {e}")))
    }
}
