// The packed weights (binding 1) of F32 and F16 rows, whose 32-element units start at
// multiples of 128 and 64 bytes: as vec4<u32>, 16 bytes per load (a quarter of the loads
// of u32 words; llvmpipe does each storage load lane by lane).

@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
