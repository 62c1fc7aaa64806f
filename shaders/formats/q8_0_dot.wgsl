// dot32 for block_q8_0 (layout in q8_0.wgsl): Σ d·q·x = d·Σ q·x, the scale applied once
// per block (dequantize_row_q8_0 folded into the dot product).
// The 34-byte block at an even byte offset b lies within the aligned window of three
// vec4 loads at b >> 4 (rather than ten word loads): its words 0..=8 are the window's
// words s..s+8, s = (b >> 2) mod 4. d is the low or high half of word 0; quant word i
// is word i + 1 when b is 2 mod 4, else the halves of words i and i + 1 joined.

fn dot32(b: u32, sub: u32, xv: ptr<function, Unit>) -> f32 {
    let v = b >> 4u;
    let s = (b >> 2u) & 3u;
    let a0 = w[v];
    let a1 = w[v + 1u];
    let a2 = w[v + 2u];
    let lo = window4(a0, a1, s);
    let mid = window4(a1, a2, s);
    let hi = window4(a2, a2, s).x;
    // Words 1..=8 and, shifted by one, 0..=7 of the block.
    let next = array<vec4<u32>, 2>(vec4<u32>(lo.yzw, mid.x), vec4<u32>(mid.yzw, hi));
    let cur = array<vec4<u32>, 2>(lo, mid);
    let aligned = (b & 2u) != 0u;
    var s32 = 0.0;
    for (var h = 0u; h < 2u; h++) {
        let q = select((cur[h] >> vec4<u32>(16u)) | (next[h] << vec4<u32>(16u)), next[h], aligned);
        s32 += dot(sbytes_f32(q.x), (*xv).v[4u * h])
            + dot(sbytes_f32(q.y), (*xv).v[4u * h + 1u])
            + dot(sbytes_f32(q.z), (*xv).v[4u * h + 2u])
            + dot(sbytes_f32(q.w), (*xv).v[4u * h + 3u]);
    }
    let d = unpack2x16float(select(lo.x, lo.x >> 16u, aligned)).x;
    return d * s32;
}
