// Addressing for plain (dense) weights: one job (z = 0) whose columns are the activation
// columns; weight rows are the chunk's rows, placed at `row_offset` in y.

fn job(z: u32) -> Job {
    return Job(true, 0u, p.ncols);
}

// Element index in x where column c of job z starts.
fn x_col(z: u32, c: u32) -> u32 {
    return c * p.x_stride;
}

fn y_at(z: u32, c: u32, row: u32) -> u32 {
    return c * p.y_stride + p.row_offset + row;
}

fn out_scale(z: u32, c: u32) -> f32 {
    return 1.0;
}
