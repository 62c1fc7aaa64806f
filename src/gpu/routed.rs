//! The GPU backend's routed-expert products: `matvec_id` / `matmul_id` over a pool and
//! its slot table, the MoE FFN of resident stacks, and of streamed layers wave by wave
//! (see [`super::stream`]).

use super::backend::{GpuBackend, GpuRouted, GpuRoutes, GpuTensor, GroupedBuffers};
use super::matvec::{Activations, MAX_COLS};
use super::moe::{GpuExperts, Grouped, Routing, group_by_expert};
use super::stream::Streamer;
use crate::backend::{Backend, check_matmul_id, resident_routed_ffn};
use crate::error::{Error, Result};
use std::time::Instant;

impl GpuBackend {
    /// Pairs of `routes` grouped by expert with slots from `slots` (expert → slot), on
    /// the device; reads the ids back when only the device has them.
    fn group(&mut self, routes: &GpuRoutes, slots: &[u32]) -> Result<GroupedBuffers> {
        if routes.host_ids.get().is_none() {
            self.sync_for("grouping routed pairs by expert")?;
            let bytes = self.ctx.read_back(&routes.ids.buffer, routes.ids.buffer.size())?;
            let _ = routes.host_ids.set(bytemuck::pod_collect_to_vec(&bytes));
        }
        let ids = &routes.host_ids.get().expect("set above")[..routes.n_tokens * routes.n_used];
        let (order, segments) = group_by_expert(ids, slots)?;
        let max_count = segments.chunks(3).map(|s| s[2] as usize).max().unwrap_or(0);
        let usage = wgpu::BufferUsages::STORAGE;
        Ok(GroupedBuffers {
            order: self.ctx.upload("pair order", bytemuck::cast_slice(&order), usage)?,
            segments: self.ctx.upload("segments", bytemuck::cast_slice(&segments), usage)?,
            n_segments: segments.len() / 3,
            max_count,
        })
    }

    /// [`Backend::matmul_id`] over `pool` with expert → slot table `slot_of` on the
    /// device and, for the grouped product, `slots` on the host (None: the identity,
    /// grouped once per routes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn expert_product(
        &mut self,
        pool: &GpuExperts,
        slot_of: &wgpu::Buffer,
        slots: Option<&[u32]>,
        x: &GpuTensor,
        routes: &GpuRoutes,
        weighted: bool,
        y: &mut GpuTensor,
    ) -> Result<()> {
        let pairs = routes.n_tokens * routes.n_used;
        check_matmul_id(
            (x.n, x.width),
            (y.n, y.width),
            routes.n_tokens,
            pairs,
            pool.rows,
            pool.k,
        )?;
        let act = Activations {
            buffer: x.buffer(),
            cols: x.n,
            stride: x.width,
            norm: None,
        };
        if routes.n_tokens <= MAX_COLS {
            let y_buffer = y.buffer();
            return self.record("matvec_id", |ctx, rec| {
                let routing = Routing {
                    ids: &routes.ids.buffer,
                    slot_of,
                    weights: &routes.weights.buffer,
                    fault: &ctx.fault_buffer()?.buffer,
                    n_tokens: routes.n_tokens,
                    n_used: routes.n_used,
                    weighted,
                };
                pool.matvec_id(ctx, rec, &act, &routing, y_buffer, y.width)
            });
        }
        let fresh;
        let g = match slots {
            Some(table) => {
                fresh = self.group(routes, table)?;
                &fresh
            }
            None => {
                if routes.grouped.get().is_none() {
                    let identity: Vec<u32> = (0..pool.slots as u32).collect();
                    let g = self.group(routes, &identity)?;
                    let _ = routes.grouped.set(g);
                }
                routes.grouped.get().expect("set above")
            }
        };
        let grouped = Grouped {
            order: &g.order.buffer,
            segments: &g.segments.buffer,
            weights: &routes.weights.buffer,
            n_segments: g.n_segments,
            max_count: g.max_count,
            n_tokens: routes.n_tokens,
            n_used: routes.n_used,
            weighted,
        };
        let y_buffer = y.buffer();
        self.record("matmul_id", |ctx, rec| {
            pool.matmul_id(ctx, rec, &act, &grouped, y_buffer, y.width)
        })
    }

    /// [`Backend::routed_ffn`].
    pub(crate) fn routed_ffn_of(
        &mut self,
        experts: &GpuRouted,
        h: &GpuTensor,
        routes: &GpuRoutes,
        acc: &mut GpuTensor,
        next: Option<(&GpuRouted, &GpuRoutes)>,
    ) -> Result<()> {
        match experts {
            GpuRouted::Resident(r) => resident_routed_ffn(self, r, h, routes, acc),
            &GpuRouted::Streamed(idx) => {
                let mut s = self
                    .stream
                    .take()
                    .ok_or_else(|| Error::Gpu("streamed experts without a streamer".into()))?;
                let next = next.and_then(|(r, p)| match r {
                    &GpuRouted::Streamed(j) => Some((j, p)),
                    GpuRouted::Resident(_) => None,
                });
                let out = self.streamed_ffn(&mut s, idx, h, routes, acc, next);
                self.stream = Some(s);
                out
            }
        }
    }

    /// Gate, up, SwiGLU and down of one wave (pairs of other waves are left alone by
    /// the kernels; the SwiGLU is recomputed for all pairs, unchanged where done).
    #[allow(clippy::too_many_arguments)]
    fn wave_products(
        &mut self,
        s: &Streamer,
        idx: usize,
        slots: Option<&[u32]>,
        h: &GpuTensor,
        routes: &GpuRoutes,
        gu: (&mut GpuTensor, &mut GpuTensor),
        d: &mut GpuTensor,
    ) -> Result<()> {
        let ([gate, up, down], table) = s.bindings(idx);
        let (g, u) = gu;
        self.expert_product(gate, table, slots, h, routes, false, g)?;
        self.expert_product(up, table, slots, h, routes, false, u)?;
        let a = self.swiglu(g, u)?;
        self.expert_product(down, table, slots, &a, routes, true, d)
    }

    /// A streamed layer's step: read the routes back (with the next layer's predicted
    /// routes when prefetching), then per wave admit and upload its experts, rewrite the
    /// table, and record the products; the pair sums go into `acc`.
    #[allow(clippy::too_many_arguments)]
    fn streamed_ffn(
        &mut self,
        s: &mut Streamer,
        idx: usize,
        h: &GpuTensor,
        routes: &GpuRoutes,
        acc: &mut GpuTensor,
        next: Option<(usize, &GpuRoutes)>,
    ) -> Result<()> {
        let shape = s.shape(idx).clone();
        let (n_tokens, n_used) = (routes.n_tokens, routes.n_used);
        let pairs = n_tokens * n_used;
        let mut g = self.tensor(pairs, shape.ff)?;
        let mut u = self.tensor(pairs, shape.ff)?;
        let mut d = self.tensor(pairs, shape.n_embd)?;
        if s.complete(idx) && next.is_none() && n_tokens <= MAX_COLS {
            s.count_resident_step(idx, pairs, n_tokens);
            self.wave_products(s, idx, None, h, routes, (&mut g, &mut u), &mut d)?;
            return self.add_pair_sums(&d, n_used, acc);
        }
        let start = Instant::now();
        self.sync_for("streaming experts")?;
        let mut parts = vec![(&routes.ids.buffer, (pairs * 4) as u64)];
        if let Some((_, p)) = next {
            parts.push((&p.ids.buffer, (p.n_tokens * p.n_used * 4) as u64));
        }
        let back = self.ctx.read_back_parts(&parts)?;
        let ids: Vec<u32> = bytemuck::pod_collect_to_vec(&back[0]);
        let _ = routes.host_ids.set(ids.clone());
        let waves = s.waves(idx, &ids, n_tokens);
        // The step's distinct experts, sorted: the waves in order.
        let step: Vec<u32> = waves.iter().flat_map(|w| w.experts.iter().copied()).collect();
        let wait = start.elapsed();
        let mut upload = std::time::Duration::ZERO;
        for (w, wave) in waves.iter().enumerate() {
            let t = Instant::now();
            if w > 0 {
                self.flush();
            }
            let tokens = if w == 0 { n_tokens as u64 } else { 0 };
            let table = s.load_wave(&self.ctx, idx, wave, &step, &ids, tokens)?;
            upload += t.elapsed();
            self.wave_products(s, idx, Some(&table), h, routes, (&mut g, &mut u), &mut d)?;
        }
        s.count_wait(idx, wait, upload);
        if let (Some((j, _)), Some(p), Some(last)) = (next, back.get(1), waves.last()) {
            // The products go first: the predicted experts' host copies then run while
            // the device computes them, and their device copies land after them.
            self.flush();
            let predicted: Vec<u32> = bytemuck::pod_collect_to_vec(p);
            s.prefetch(&self.ctx, idx, &last.experts, j, &predicted)?;
        }
        self.add_pair_sums(&d, n_used, acc)
    }
}
