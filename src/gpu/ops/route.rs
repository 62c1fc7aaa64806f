//! Expert selection on the device (`route.wgsl`), as llama.cpp's `build_moe_ffn` and
//! the reference `Router::select`: softmax or sigmoid gating, the selection bias,
//! group-limited top-k, normalized and scaled weights.

use crate::backend::{Gating, Router};
use crate::error::Result;
use crate::gpu::GpuWeights;
use crate::gpu::backend::{GpuBackend, GpuRoutes, GpuTensor, USAGE, groups, shape_err};
use std::cell::OnceCell;

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("route.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RouteParams {
    pub n: u32,
    pub n_expert: u32,
    pub n_used: u32,
    pub sigmoid: u32,
    pub groups: u32,
    pub groups_used: u32,
    pub normalize: u32,
    pub has_bias: u32,
    pub scale: f32,
}

impl GpuBackend {
    pub(crate) fn route_op(
        &mut self,
        logits: &GpuTensor,
        bias: Option<&GpuWeights>,
        router: &Router,
    ) -> Result<GpuRoutes> {
        router.check()?;
        if logits.width != router.n_expert {
            return Err(shape_err(
                "route",
                format!("{} logits for {} experts", logits.width, router.n_expert),
            ));
        }
        if let Some(b) = bias
            && (b.k * b.rows != router.n_expert || b.ty != crate::quant::BlockType::F32)
        {
            return Err(shape_err(
                "route",
                format!("{} bias of {} for {} experts", b.ty, b.k * b.rows, router.n_expert),
            ));
        }
        let pairs = logits.n * router.n_used;
        let ids = self.ctx.alloc("route ids", (pairs * 4) as u64, USAGE)?;
        let weights = self.ctx.alloc("route weights", (pairs * 4) as u64, USAGE)?;
        let params = RouteParams {
            n: logits.n as u32,
            n_expert: router.n_expert as u32,
            n_used: router.n_used as u32,
            sigmoid: (router.gating == Gating::Sigmoid) as u32,
            groups: router.groups as u32,
            groups_used: router.groups_used as u32,
            normalize: router.normalize as u32,
            has_bias: bias.is_some() as u32,
            scale: router.scale,
        };
        let bias_buffer = bias.map_or(&logits.buffer.buffer, |b| &b.chunks[0].buffer.buffer);
        let grid = groups(&self.ctx, logits.n, 64);
        self.simple(
            "route",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &[&logits.buffer.buffer, bias_buffer, &ids.buffer, &weights.buffer],
            grid,
        )?;
        Ok(GpuRoutes {
            ids,
            weights,
            n_tokens: logits.n,
            n_used: router.n_used,
            host_ids: OnceCell::new(),
            grouped: OnceCell::new(),
        })
    }
}
