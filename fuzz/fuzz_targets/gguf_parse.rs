//! Fuzz the GGUF reader: any byte string must parse to a header or an error, never a
//! panic or an out-of-bounds read. Accepted files also have the first row of every
//! tensor dequantized, so arbitrary block bytes go through every decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lowbit::gguf;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = gguf::parse(data, Path::new("fuzz.gguf")) else {
        return;
    };
    for t in &header.tensors {
        let row = t.row_len() as usize;
        let Ok(row_bytes) = t.ty.row_bytes(row) else { continue };
        if !t.ty.can_dequantize() || row == 0 || row > 1 << 16 {
            continue;
        }
        let start = t.file_offset as usize;
        let bytes = &data[start..start + row_bytes.min(t.size as usize)];
        if bytes.len() == row_bytes {
            let mut out = vec![0f32; row];
            lowbit::quant::dequantize_row(t.ty, bytes, &mut out).expect("a whole row always decodes");
        }
    }
});
