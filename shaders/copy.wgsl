// The bandwidth baselines of the kernel benchmarks, 16 bytes per invocation: `main`
// copies (dst[i] = src[i]); `load_only` only loads, folding each vec4 into a value it stores
// only in the impossible case that it matches the buffer's length, so the loads stay.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < arrayLength(&src)) {
        dst[i] = src[i];
    }
}

@compute @workgroup_size(256)
fn load_only(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < arrayLength(&src)) {
        let v = src[i];
        let folded = v.x ^ v.y ^ v.z ^ v.w;
        if (folded == arrayLength(&src) + 0x9e3779b9u && i == 0u) {
            dst[0] = v;
        }
    }
}
