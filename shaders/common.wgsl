// Byte access to packed ggml blocks. The weights are bound as vec4 words (weights.wgsl)
// holding the GGUF blocks unchanged; blocks of 18, 50, 54 or 66 bytes straddle u32 words, so
// every field is read through a byte offset.

fn w_u8(o: u32) -> u32 {
    return (wd(o >> 2u) >> ((o & 3u) * 8u)) & 0xffu;
}

// A little-endian u16 at an even byte offset.
fn w_u16(o: u32) -> u32 {
    return (wd(o >> 2u) >> ((o & 2u) * 8u)) & 0xffffu;
}

// A little-endian u32 at an even byte offset.
fn w_u32(o: u32) -> u32 {
    return w_u16(o) | (w_u16(o + 2u) << 16u);
}

// An f16 at an even byte offset, widened exactly to f32.
fn w_f16(o: u32) -> f32 {
    return unpack2x16float(w_u16(o)).x;
}

// The 4 bytes of `word`, low byte first, as exact floats without int-to-float
// conversions: each byte ORed into the mantissa of 2^23, then 2^23 subtracted (GPUs
// convert at a quarter of their FMA rate or less; ggml's Vulkan shaders use the same
// trick). Callers mask the bits they want first (nibbles: & 0x0f0f0f0f).
fn bytes_f32(word: u32) -> vec4<f32> {
    let v = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    return bitcast<vec4<f32>>(v | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0);
}

// The 4 bytes of `word` as exact floats of signed bytes (-128..=127): the sign bit
// flipped, so that q + 128 goes through `bytes_f32`, and 128 taken off in the same
// subtraction.
fn sbytes_f32(word: u32) -> vec4<f32> {
    let v = (vec4<u32>(word ^ 0x80808080u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    return bitcast<vec4<f32>>(v | vec4<u32>(0x4b000000u)) - vec4<f32>(8388736.0);
}

fn sign_extend8(v: u32) -> i32 {
    return bitcast<i32>(v << 24u) >> 24u;
}

// The u32 at an even byte offset o, from the aligned words lo = word o >> 2 and the one
// after it, hi: lo itself when o is a multiple of 4, else their halves joined. Runs of
// words at even offsets take one aligned load per word plus one this way.
fn joined(lo: u32, hi: u32, straddle: bool) -> u32 {
    return select(lo, (lo >> 16u) | (hi << 16u), straddle);
}

// The 4 u32s at the even byte offset o: 5 aligned loads, joined where o is 2 mod 4 (the
// fifth is unused, and clamped by the bounds checks, when o is a multiple of 4).
fn words4_at(o: u32) -> vec4<u32> {
    let i = o >> 2u;
    let w0 = wd(i);
    let w1 = wd(i + 1u);
    let w2 = wd(i + 2u);
    let w3 = wd(i + 3u);
    let w4 = wd(i + 4u);
    let s = (o & 2u) != 0u;
    return vec4<u32>(joined(w0, w1, s), joined(w1, w2, s), joined(w2, w3, s), joined(w3, w4, s));
}
