// y[c][row] = sum_k W[row][k] * x[c][k] for 1..=MAX_COLS activation columns (the decode path).
//
// W: `rows` rows of `k` elements in one ggml block format, bound as its packed GGUF bytes
// (one chunk of whole rows per dispatch; `row_offset` places the chunk in y). x: column c
// at x[c * x_stride ..][..k]. y: column c at y[c * y_stride ..]. Each workgroup computes
// ROWS rows; its WG invocations split k into 32-element units, decode each unit in
// registers (`decode32` of the format part) and reuse it for every column. Sums are f32.

struct Params {
    rows: u32,
    k: u32,
    ncols: u32,
    row_offset: u32,
    x_stride: u32,
    y_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<ACT>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> grid: array<u32>;

const WG: u32 = 64u;
const ROWS: u32 = 4u;
const MAX_COLS: u32 = 8u;
const OUTPUTS: u32 = ROWS * MAX_COLS;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let row0 = (wid.x + wid.y * nwg.x) * ROWS;
    let subs = BLOCK_ELEMS / 32u;
    let row_bytes = (p.k / BLOCK_ELEMS) * BLOCK_BYTES;
    var acc: array<f32, OUTPUTS>;
    var wv: array<f32, 32>;
    for (var u = lane.lid; u < p.k / 32u; u += WG) {
        let block = u / subs;
        let sub = u % subs;
        for (var r = 0u; r < ROWS; r++) {
            let row = row0 + r;
            if (row >= p.rows) {
                break;
            }
            decode32(row * row_bytes + block * BLOCK_BYTES, sub, &wv);
            for (var c = 0u; c < p.ncols; c++) {
                let xb = c * p.x_stride + 32u * u;
                var s = 0.0;
                for (var i = 0u; i < 32u; i++) {
                    s += wv[i] * f32(x[xb + i]);
                }
                acc[r * MAX_COLS + c] += s;
            }
        }
    }
    reduce_rows(lane, &acc);
    if (lane.lid < OUTPUTS) {
        let r = lane.lid / MAX_COLS;
        let c = lane.lid % MAX_COLS;
        if (row0 + r < p.rows && c < p.ncols) {
            y[c * p.y_stride + p.row_offset + row0 + r] = red[lane.lid];
        }
    }
}
