//! Causal attention over a layer's cache (`attention.wgsl`), one workgroup per (token,
//! head): the new keys and values are appended with buffer copies first; grouped KV
//! heads; for MLA the values are the first `v_dim` of each key (`Values::KeyPrefix`).

use crate::backend::{Heads, Values, attention_of_parts, check_attention, check_split};
use crate::error::Result;
use crate::gpu::backend::{GpuBackend, GpuCache, GpuTensor, shape_err};

/// The WGSL source.
pub(crate) const SOURCE: &str = include_str!("attention.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AttnParams {
    pub n: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub k_dim: u32,
    pub v_dim: u32,
    pub pos0: u32,
    pub scale: f32,
    pub v_row: u32,
    pub v_head: u32,
}

/// `n` contiguous rows of a cache's width, at byte `offset` of `buffer`: keys or values
/// to append to a cache.
#[derive(Clone, Copy)]
pub(crate) struct CacheRows<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
}

/// `MAX_HEAD_DIM` in attention.wgsl: value dimensions per workgroup.
const MAX_HEAD_DIM: usize = 128;

impl GpuBackend {
    /// Append `n` tokens' keys (and values, when the cache has its own) to `cache` at
    /// `pos0`, then run attention.wgsl for queries `[n][heads * k_dim]` at the start of
    /// `q` (shapes checked by the caller).
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &mut self,
        q: &wgpu::Buffer,
        n: usize,
        k: CacheRows,
        v: Option<CacheRows>,
        cache: &mut GpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<GpuTensor> {
        let (kw, vw) = (cache.k_width, cache.v_width);
        if v.is_some() != cache.v.is_some() {
            return Err(shape_err("attention", "values unlike the cache's".into()));
        }
        self.record("cache copy", |_, rec| {
            rec.encoder().copy_buffer_to_buffer(
                k.buffer,
                k.offset,
                &cache.k.buffer,
                (pos0 * kw * 4) as u64,
                (n * kw * 4) as u64,
            );
            if let (Some(v), Some(vc)) = (v, &cache.v) {
                rec.encoder().copy_buffer_to_buffer(
                    v.buffer,
                    v.offset,
                    &vc.buffer,
                    (pos0 * vw * 4) as u64,
                    (n * vw * 4) as u64,
                );
            }
            Ok(())
        })?;
        let out = self.tensor(n, h.heads * h.v_dim)?;
        let (v_buffer, v_row, v_head) = match &cache.v {
            Some(vc) => (&vc.buffer, vw, h.v_dim),
            None => (&cache.k.buffer, kw, h.k_dim),
        };
        let params = AttnParams {
            n: n as u32,
            heads: h.heads as u32,
            kv_heads: h.kv_heads as u32,
            k_dim: h.k_dim as u32,
            v_dim: h.v_dim as u32,
            pos0: pos0 as u32,
            scale: h.scale,
            v_row: v_row as u32,
            v_head: v_head as u32,
        };
        let buffers = [q, &cache.k.buffer, v_buffer, &out.buffer.buffer];
        self.simple(
            "attention",
            SOURCE,
            "main",
            bytemuck::bytes_of(&params),
            &buffers,
            ((n * h.heads) as u32, h.v_dim.div_ceil(MAX_HEAD_DIM) as u32, 1),
        )?;
        Ok(out)
    }

    pub(crate) fn attention_op(
        &mut self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: Values<GpuTensor>,
        cache: &mut GpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<GpuTensor> {
        let own_v = v.own();
        check_attention(
            (q.n, q.width),
            (k.n, k.width),
            own_v.map(|v| (v.n, v.width)),
            (cache.k_width, cache.v_width, cache.n_ctx),
            h,
            pos0,
        )?;
        let k_rows = CacheRows {
            buffer: &k.buffer.buffer,
            offset: 0,
        };
        let v_rows = own_v.map(|v| CacheRows {
            buffer: &v.buffer.buffer,
            offset: 0,
        });
        self.attend(&q.buffer.buffer, q.n, k_rows, v_rows, cache, h, pos0)
    }

    /// One token: keys and values go to the cache straight from the stacked row, and the
    /// kernel reads the query from its start (no split). More tokens: split, then attend.
    pub(crate) fn attention_stacked_op(
        &mut self,
        qkv: &GpuTensor,
        widths: [usize; 3],
        cache: &mut GpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<GpuTensor> {
        if qkv.n != 1 {
            return attention_of_parts(self, qkv, widths, cache, h, pos0);
        }
        check_split(qkv.width, &widths)?;
        let [qw, kw, vw] = widths;
        check_attention(
            (1, qw),
            (1, kw),
            Some((1, vw)),
            (cache.k_width, cache.v_width, cache.n_ctx),
            h,
            pos0,
        )?;
        let buffer = &qkv.buffer.buffer;
        let k_rows = CacheRows {
            buffer,
            offset: (qw * 4) as u64,
        };
        let v_rows = CacheRows {
            buffer,
            offset: ((qw + kw) * 4) as u64,
        };
        self.attend(buffer, 1, k_rows, Some(v_rows), cache, h, pos0)
    }
}
