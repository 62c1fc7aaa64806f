// The packed weights (binding 1): the GGUF blocks unchanged, their rows in ggml's order
// or interleaved in groups (block_in below), as vec4<u32>, so that a format can fetch 16
// bytes per load (llvmpipe does each storage load lane by lane, so the number of loads,
// not their width, is what costs). Weight buffers are padded to a multiple of 16 bytes.
// `wd` reads one u32 word.

@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

// Word `i` (byte offset 4·i) of the weights.
fn wd(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}

// Words s..s+3 of the 8 words in (a, b), for a per-invocation s in 0..=3: an aligned
// window of two vec4 loads selected without dynamic indexing.
fn window4(a: vec4<u32>, b: vec4<u32>, s: u32) -> vec4<u32> {
    let odd = (s & 1u) != 0u;
    let low = select(a, vec4<u32>(a.yzw, b.x), odd);
    let high = select(vec4<u32>(a.zw, b.xy), vec4<u32>(a.w, b.xyz), odd);
    return select(low, high, (s & 2u) != 0u);
}

// Byte offset of block `blk` of row `row` of a matrix of `nb` blocks per row, stored in
// row groups of 2^g, each group block-major (the layout of src/gpu/buffers.rs,
// `interleave_rows`).
fn block_in(row: u32, blk: u32, nb: u32, g: u32) -> u32 {
    return ((((row >> g) * nb + blk) << g) + (row & ((1u << g) - 1u))) * BLOCK_BYTES;
}
