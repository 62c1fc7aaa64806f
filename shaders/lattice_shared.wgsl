// The format's IQ lattice copied from the `grid` binding into workgroup memory once per
// workgroup (`load_lattice`, in uniform control flow, by the n invocations of the
// workgroup), so that the divergent lookups of the decoders hit shared memory instead of
// scattering over cache lines (llama.cpp's Vulkan shaders do the same, `init_iq_shmem`).
// LATTICE_BASE and LATTICE_WORDS, the words of `grid` this format reads, are prepended by
// the host. `kgrid(base, i)` is entry i of a ggml compressed lattice (`kgrid_*`, 2 bits
// per level) stored at word `base` of `grid`, two u16 entries per u32.

var<workgroup> lattice: array<u32, LATTICE_WORDS>;

fn load_lattice(lid: u32, n: u32) {
    for (var i = lid; i < LATTICE_WORDS; i += n) {
        lattice[i] = grid[LATTICE_BASE + i];
    }
    workgroupBarrier();
}

fn kgrid(base: u32, i: u32) -> u32 {
    return (lattice[base - LATTICE_BASE + (i >> 1u)] >> ((i & 1u) * 16u)) & 0xffffu;
}
