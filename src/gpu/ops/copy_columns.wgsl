// dst[i * dst_stride + dst_offset + c] = src[i * src_stride + src_offset + c] for c < width
// and i < n: moves a column range of one row-major tensor into another (MLA assembles
// its queries and cached keys this way).

struct CopyParams {
    n: u32,
    width: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
}

@group(0) @binding(0) var<uniform> p: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x + gid.y * nwg.x * 256u;
    if (j >= p.n * p.width) {
        return;
    }
    let i = j / p.width;
    let c = j % p.width;
    dst[i * p.dst_stride + p.dst_offset + c] = src[i * p.src_stride + p.src_offset + c];
}
