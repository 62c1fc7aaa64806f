// out[t][0..k] = dequantized row ids[t] of a packed table (the embedding lookup).
// One invocation per (token, 32-element unit); decodes with the format's `decode32`.
// The bound chunk holds rows [first_row, first_row + rows); tokens outside it are left
// to the dispatch of their own chunk.

struct RowsParams {
    k: u32,
    n: u32,
    rows: u32,
    first_row: u32,
    // log2 of the table's row interleave (block_in, weights.wgsl).
    interleave: u32,
}

@group(0) @binding(0) var<uniform> p: RowsParams;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> grid: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let units = p.k / 32u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= units * p.n) {
        return;
    }
    let t = i / units;
    let u = i % units;
    if (ids[t] < p.first_row || ids[t] - p.first_row >= p.rows) {
        return;
    }
    let row = ids[t] - p.first_row;
    let subs = BLOCK_ELEMS / 32u;
    var wv: array<f32, 32>;
    decode32(block_in(row, u / subs, p.k / BLOCK_ELEMS, p.interleave), u % subs, &wv);
    for (var j = 0u; j < 32u; j++) {
        out[t * p.k + 32u * u + j] = wv[j];
    }
}
