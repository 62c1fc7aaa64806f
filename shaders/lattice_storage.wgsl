// The IQ lattices read from the `grid` binding where a decoder needs them (CPU adapters:
// a storage load is a cache hit there, and a copy per workgroup would cost more).
// `kgrid(base, i)` is entry i of a ggml compressed lattice (`kgrid_*`, 2 bits per level)
// stored at word `base`, two u16 entries per u32.

fn load_lattice(lid: u32, n: u32) {}

fn kgrid(base: u32, i: u32) -> u32 {
    return (grid[base + (i >> 1u)] >> ((i & 1u) * 16u)) & 0xffffu;
}
