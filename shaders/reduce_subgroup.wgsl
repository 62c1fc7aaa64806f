// Workgroup reduction with subgroupAdd, then one partial per subgroup through workgroup
// memory. Makes no assumption about the subgroup size or how lanes map to subgroups.
// After `reduce_rows(lane, acc, n)`, red[j] holds the workgroup-wide sum of acc[j] for
// j < n; `n` must be uniform (only the live outputs are reduced).

struct Lane {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
}

var<workgroup> red: array<f32, WG * OUTPUTS>;

fn reduce_rows(lane: Lane, acc: ptr<function, array<f32, OUTPUTS>>, n: u32) {
    for (var j = 0u; j < n; j++) {
        let s = subgroupAdd((*acc)[j]);
        if (lane.sg_lane == 0u) {
            red[lane.sg_id * OUTPUTS + j] = s;
        }
    }
    workgroupBarrier();
    var total = 0.0;
    if (lane.lid < n) {
        for (var g = 0u; g < lane.n_sg; g++) {
            total += red[g * OUTPUTS + lane.lid];
        }
    }
    workgroupBarrier();
    if (lane.lid < n) {
        red[lane.lid] = total;
    }
    workgroupBarrier();
}
