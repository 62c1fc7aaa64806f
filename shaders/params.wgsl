// Parameters and bindings shared by the kernels that read packed weights
// (matvec, matvec_id, matmul, matmul_id). Mirrors `Params` in src/gpu/pipelines.rs.
// The weights (binding 1) come from weights.wgsl, the
// activations (binding 2) from activations_storage.wgsl or activations_uniform.wgsl.

struct Params {
    // Rows of the chunk (dense) or rows per expert (expert kernels).
    rows: u32,
    // Row length (elements).
    k: u32,
    // Activation columns (dense).
    ncols: u32,
    // Where the chunk's first row lands in y (dense).
    row_offset: u32,
    x_stride: u32,
    y_stride: u32,
    // Expert kernels: experts used per token, slots held by the bound chunk, pairs.
    n_used: u32,
    first_slot: u32,
    n_slots: u32,
    n_pairs: u32,
    // 1: add the product to what y holds (y += W·x, the residual add fused in); 0: store.
    accumulate: u32,
    // Expert kernels: pairs per activation column (n_used when a token's pairs share its
    // input, 1 when each pair has its own), and 1 to scale results by the route weight.
    x_group: u32,
    weighted: u32,
    // RMSNorm epsilon, when a norm is fused in (norm_uniform.wgsl).
    eps: f32,
    // log2 of the row interleave of the weights (see block_at; 0: ggml's row-major).
    interleave: u32,
}

// One unit of work of a product kernel (workgroup_id.z), as the addressing part defines it.
struct Job {
    // Whether its weights are in the bound chunk.
    live: bool,
    // First weight row of the job within the bound chunk.
    w_row0: u32,
    ncols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> grid: array<u32>;

// Write one output: store it, or add it to y when accumulating.
fn emit(i: u32, v: f32) {
    if (p.accumulate != 0u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

// Byte offset of block `blk` of weight row `row` of the bound chunk (layout: block_in in
// weights.wgsl).
fn block_at(row: u32, blk: u32) -> u32 {
    return block_in(row, blk, p.k / BLOCK_ELEMS, p.interleave);
}
