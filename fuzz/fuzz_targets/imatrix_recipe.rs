//! Fuzz the other two parsers of user files: llama.cpp's legacy imatrix format and
//! lowbit's recipe text. Any input must give a value or an error, never a panic; parsed
//! imatrices answer every weight lookup without reading out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lowbit::quantize::{Imatrix, Recipe};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(im) = Imatrix::parse_legacy(data, Path::new("fuzz.dat")) {
        for (name, e) in &im.entries {
            for k in [1, 32, e.sum2.len().max(1)] {
                let n_mat = e.sum2.len() / k;
                for n in [n_mat, e.counts.len(), 1] {
                    let _ = im.weights(name, 0, k, n);
                    let _ = im.weights(name, e.counts.len(), k, n);
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(recipe) = Recipe::parse(text)
    {
        let _ = recipe.type_for("blk.3.ffn_down_exps.weight", Some(1));
        let _ = Recipe::parse(&recipe.to_text()).expect("a parsed recipe's text parses");
    }
});
