// Workgroup reduction through workgroup memory (the fallback when subgroups are absent).
// After `reduce_rows(lane, acc, n)`, red[j] holds the workgroup-wide sum of acc[j] for
// j < n; `n` must be uniform (only the live outputs are reduced).

struct Lane {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> red: array<f32, WG * OUTPUTS>;

fn reduce_rows(lane: Lane, acc: ptr<function, array<f32, OUTPUTS>>, n: u32) {
    for (var j = 0u; j < n; j++) {
        red[j * WG + lane.lid] = (*acc)[j];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane.lid < s) {
            for (var j = 0u; j < n; j++) {
                red[j * WG + lane.lid] += red[j * WG + lane.lid + s];
            }
        }
        workgroupBarrier();
    }
    var total = 0.0;
    if (lane.lid < n) {
        total = red[lane.lid * WG];
    }
    workgroupBarrier();
    if (lane.lid < n) {
        red[lane.lid] = total;
    }
    workgroupBarrier();
}
