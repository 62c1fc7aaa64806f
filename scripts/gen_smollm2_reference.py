#!/usr/bin/env python3
"""Reference token ids for SmolLM2 from llama.cpp itself, through llama-cpp-python.

Writes tests/data/smollm2_tokens.json: a list of {"text", "parse_special", "ids"} where
ids = llama.cpp's tokenization with add_special=True (as llama-cli and llama-perplexity
call it). tests/tokenizer.rs checks lowbit's GGUF-built tokenizer against it.

Usage: CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python
       ./scripts/fetch_smollm2.sh && python3 scripts/gen_smollm2_reference.py
"""
import json
import os

from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
AUSTEN = os.path.join(ROOT, "..", "shared", "fixtures", "austen.txt")

texts = [
    ("The capital of France is", False),
    ("Hello world! 1234567 tokens, numbers 3.14159 and   spaces\n\n\ttabs", False),
    ("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", True),
    ("<|im_start|>user\nWhat is 2+2?<|im_end|>", False),
    ("naïve café — “quotes” 日本語 emoji 🙂 don't I'll we've", False),
    (open(AUSTEN, encoding="utf-8").read()[:20000], False),
]

llm = Llama(model_path=MODEL, vocab_only=True, verbose=False)
cases = []
for text, special in texts:
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)
    cases.append({"text": text, "parse_special": special, "ids": ids})
out = os.path.join(ROOT, "tests", "data", "smollm2_tokens.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump(cases, f, ensure_ascii=False)
print("wrote", out, [len(c["ids"]) for c in cases])
