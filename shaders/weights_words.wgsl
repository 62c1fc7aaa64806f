// The packed weights (binding 1): the GGUF bytes unchanged, as u32 words (read through
// the byte-access helpers of common.wgsl where blocks straddle words).

@group(0) @binding(1) var<storage, read> w: array<u32>;
