//! The GPU backend: the forward pass recorded into one command encoder per step
//! (`Llama::forward` call) and submitted only when the host needs data (logits).
//!
//! Kernels besides the packed-weight products, one WGSL file each: `get_rows.wgsl`
//! (embedding lookup), `rms_norm.wgsl`, `rope.wgsl`, `attention.wgsl` and
//! `elementwise.wgsl` (SwiGLU); residual adds are fused into the products
//! (`Output::add`), and so is an RMSNorm before a product of up to 8 tokens where the
//! activations take the uniform binding (`norm_matmul`). Keys and values are appended to
//! the cache with buffer copies. Matrix products use `matvec` for up to 8 tokens,
//! `matmul` above. Stacked matrices (`stacked_matrix`) let a layer's Q/K/V and gate/up
//! be one product each. While profiling (`start_profile`), every operation is submitted
//! and waited for on its own and timed (`profile.rs`).

use super::buffers::{GpuWeights, Tracked};
use super::context::{GpuContext, GpuOptions};
use super::matvec::{Activations, MAX_COLS, Norm, Output};
use super::moe::GpuExperts;
use super::pipelines::{Kernel, PipelineKey, whole_pages};
use super::recorder::Recorder;
use super::stream::Streamer;
use crate::backend::{Backend, Heads, Rope, Router, Values, check_split, swiglu_product_unfused};
use crate::backend::{ResidentExperts, resident_routed};
use crate::error::{Error, Result};
use crate::gguf::{TensorRef, TensorView};
use crate::profile::OpProfile;
use crate::stream::host::HostExperts;
use crate::stream::{ExpertLayer, MemoryPlan, StreamOptions, StreamStats};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::time::Instant;

/// Activations `[n][width]` in a device buffer (f32).
pub struct GpuTensor {
    pub(crate) buffer: Tracked,
    pub n: usize,
    pub width: usize,
}

impl GpuTensor {
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer.buffer
    }
}

/// Keys `[pos][k_width]` and values `[pos][v_width]` for `n_ctx` positions, f32 (no
/// value buffer when values are a prefix of the keys).
pub struct GpuCache {
    pub(crate) k: Tracked,
    pub(crate) v: Option<Tracked>,
    pub(crate) k_width: usize,
    pub(crate) v_width: usize,
    pub(crate) n_ctx: usize,
}

/// A stack of matrices with its expert→slot table (the identity: every matrix resident).
pub struct GpuExpertStack {
    pub pool: GpuExperts,
    pub(crate) slot_of: Tracked,
}

/// Pairs grouped by matrix for `matmul_id`, on the device.
pub(crate) struct GroupedBuffers {
    pub(crate) order: Tracked,
    pub(crate) segments: Tracked,
    pub(crate) n_segments: usize,
    pub(crate) max_count: usize,
}

/// Routes on the device; the ids are also kept on the host when known there.
pub struct GpuRoutes {
    pub(crate) ids: Tracked,
    pub(crate) weights: Tracked,
    pub(crate) n_tokens: usize,
    pub(crate) n_used: usize,
    pub(crate) host_ids: OnceCell<Vec<u32>>,
    /// Grouped by the identity table (resident stacks).
    pub(crate) grouped: OnceCell<GroupedBuffers>,
}

/// A MoE layer's routed experts on the GPU.
pub enum GpuRouted {
    /// All uploaded at load.
    Resident(Box<ResidentExperts<GpuExpertStack>>),
    /// Streamed through the pools of [`Streamer`]; its layer index there.
    Streamed(usize),
}

pub struct GpuBackend {
    pub ctx: GpuContext,
    recorder: Option<Recorder>,
    /// Time per operation, when profiling.
    profile: Option<OpProfile>,
    /// Expert streaming, when loaded under a VRAM budget.
    pub(crate) stream: Option<Streamer>,
    /// Under a RAM budget: weights are read with explicit reads for upload (the file's
    /// map is never touched, so its pages never count in this process).
    owned_reads: bool,
    /// Staging buffers of finished reads, for the next ones ([`super::readback`]).
    pub(crate) staging: Vec<Tracked>,
    /// The last submission of lowbit's own, which a blocking read waits for.
    pub(crate) last_submission: Option<wgpu::SubmissionIndex>,
    /// Recording into the host's encoder ([`Self::record_into`]): nothing is submitted,
    /// and operations that must wait for the device are refused.
    host_encoder: bool,
}

pub(crate) const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Activation tensors may also be bound as uniforms by the decode matvec
/// ([`Activations::uniform_pages`]), so they are allocated in whole pages.
const ACTIVATIONS: wgpu::BufferUsages = USAGE.union(wgpu::BufferUsages::UNIFORM);

fn activation_bytes(values: usize) -> u64 {
    whole_pages(values as u64 * 4)
}

pub(crate) fn shape_err(op: &str, detail: String) -> Error {
    Error::Shape(format!("{op}: {detail}"))
}

/// Workgroup grid for `n` invocations of `per_group` each.
pub(crate) fn groups(ctx: &GpuContext, n: usize, per_group: usize) -> (u32, u32, u32) {
    let (x, y) = ctx.workgroups_2d(n.div_ceil(per_group) as u32);
    (x, y, 1)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowsParams {
    k: u32,
    n: u32,
    rows: u32,
    first_row: u32,
    interleave: u32,
}

/// A tensor's rows as the f32 activation columns of a product.
fn plain_activations(x: &GpuTensor) -> Activations<'_> {
    Activations {
        buffer: &x.buffer.buffer,
        cols: x.n,
        stride: x.width,
        norm: None,
    }
}

impl GpuBackend {
    /// A backend on a device of lowbit's own.
    pub fn new(options: GpuOptions) -> Result<Self> {
        Ok(Self::with_context(GpuContext::new(options)?))
    }

    /// A backend on a context built from the host application's device.
    pub fn with_context(ctx: GpuContext) -> Self {
        GpuBackend {
            ctx,
            recorder: None,
            profile: None,
            stream: None,
            owned_reads: false,
            staging: Vec::new(),
            last_submission: None,
            host_encoder: false,
        }
    }

    /// The view's bytes to upload: read into a transient buffer under a RAM budget,
    /// else the mapped bytes themselves.
    fn upload_bytes<'a>(&self, t: &TensorView<'a>) -> Result<std::borrow::Cow<'a, [u8]>> {
        Ok(match self.owned_reads {
            true => std::borrow::Cow::Owned(t.read_owned()?),
            false => std::borrow::Cow::Borrowed(t.bytes),
        })
    }

    /// Record operation `op` into this step's command encoder (created on first use);
    /// while profiling, into one of its own, submitted and waited for.
    pub(crate) fn record<T>(
        &mut self,
        op: impl Into<Cow<'static, str>>,
        f: impl FnOnce(&GpuContext, &mut Recorder) -> Result<T>,
    ) -> Result<T> {
        let start = match self.profile {
            Some(_) => {
                self.flush();
                self.ctx.wait()?;
                Some(Instant::now())
            }
            None => None,
        };
        let GpuBackend { ctx, recorder, .. } = self;
        let rec = recorder.get_or_insert_with(|| ctx.recorder());
        let out = f(ctx, rec)?;
        if let Some(start) = start {
            self.flush();
            self.ctx.wait()?;
            if let Some(p) = &mut self.profile {
                p.add(op.into(), start.elapsed());
            }
        }
        Ok(out)
    }

    pub(crate) fn tensor(&self, n: usize, width: usize) -> Result<GpuTensor> {
        Ok(GpuTensor {
            buffer: self
                .ctx
                .alloc("activations", activation_bytes(n * width), ACTIVATIONS)?,
            n,
            width,
        })
    }

    pub(crate) fn simple(
        &mut self,
        name: &'static str,
        source: &'static str,
        entry: &'static str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        grid: (u32, u32, u32),
    ) -> Result<()> {
        let pipeline = self.ctx.simple_pipeline(name, source, entry)?;
        let op = if entry == "main" { name } else { entry };
        self.record(op, |ctx, rec| {
            ctx.dispatch_simple(rec, &pipeline, params, buffers, grid)
        })
    }

    /// Submit the recorded step (nothing while recording into the host's encoder).
    pub(crate) fn flush(&mut self) {
        if self.host_encoder {
            return;
        }
        if let Some(rec) = self.recorder.take() {
            self.last_submission = Some(self.ctx.queue.submit([rec.finish()]));
        }
    }

    /// Submit the recorded step before a blocking read of `what`; an error while
    /// recording into the host's encoder, whose work only the host submits.
    pub(crate) fn sync_for(&mut self, what: &str) -> Result<()> {
        if self.host_encoder {
            return Err(Error::Unsupported(format!(
                "{what} waits for the device, which a step recorded into the host's encoder cannot do (step with lowbit's own submissions instead)"
            )));
        }
        self.flush();
        Ok(())
    }

    /// Record into `encoder` (the host's, after what it holds) until
    /// [`Self::take_encoder`]: nothing is submitted meanwhile.
    pub fn record_into(&mut self, encoder: wgpu::CommandEncoder) {
        self.flush();
        self.recorder = Some(Recorder::new(encoder));
        self.host_encoder = true;
    }

    /// The host's encoder back, with the work recorded into it since [`Self::record_into`].
    pub fn take_encoder(&mut self) -> Option<wgpu::CommandEncoder> {
        if !self.host_encoder {
            return None;
        }
        self.host_encoder = false;
        self.recorder.take().map(Recorder::into_encoder)
    }
}

impl GpuBackend {
    /// `x · Wᵀ` into `y`: matvec for up to 8 tokens, the tiled matmul above.
    fn product(&mut self, w: &GpuWeights, x: &GpuTensor, y: &Output) -> Result<()> {
        if x.width != w.k {
            return Err(shape_err(
                "matmul",
                format!("{} inputs for a matrix of rows of {}", x.width, w.k),
            ));
        }
        self.product_of(w, &plain_activations(x), y)
    }

    /// x with `norm` fused in, when the matvec of `w` can fuse it: at most MAX_COLS rows
    /// of exactly `w`'s row length taking the uniform binding, and a 1-row F32 weight of
    /// that length in uniform-usable pages.
    fn fused_norm<'a>(
        &self,
        w: &GpuWeights,
        x: &'a GpuTensor,
        norm: &'a GpuWeights,
        eps: f32,
    ) -> Option<Activations<'a>> {
        let weight = &norm.chunks.first()?.buffer.buffer;
        let act = Activations {
            norm: Some(Norm { weight, eps }),
            ..plain_activations(x)
        };
        let fusable = x.n <= MAX_COLS
            && x.width == w.k
            && norm.ty == crate::quant::BlockType::F32
            && norm.rows == 1
            && norm.k == w.k
            && weight.usage().contains(wgpu::BufferUsages::UNIFORM)
            && act.uniform_pages(&self.ctx, w.k) > 0;
        fusable.then_some(act)
    }

    /// An operation name for [`Self::record`]: `kind` alone, or when profiling (so that
    /// profiles tell products apart) with the fused steps, `epilogue`, the format and the
    /// shape (ggml's ne0 x ne1), e.g. `matvec+norm+swiglu Q4_1 576x3072`.
    fn product_op(&self, kind: &'static str, w: &GpuWeights, x: &Activations, epilogue: &str) -> Cow<'static, str> {
        match self.profile {
            Some(_) => {
                let norm = if x.norm.is_some() { "+norm" } else { "" };
                format!("{kind}{norm}{epilogue} {} {}x{}", w.ty, w.k, w.rows).into()
            }
            None => kind.into(),
        }
    }

    /// `y (+)= W · x` for activations on the device: matvec up to MAX_COLS columns,
    /// the tiled matmul above.
    fn product_of(&mut self, w: &GpuWeights, x: &Activations, y: &Output) -> Result<()> {
        let op = self.product_op(if x.cols <= MAX_COLS { "matvec" } else { "matmul" }, w, x, "");
        self.record(op, |ctx, rec| {
            if x.cols <= MAX_COLS {
                w.matvec(ctx, rec, x, y)
            } else {
                w.matmul(ctx, rec, x, y)
            }
        })
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Matrix = GpuWeights;
    type Experts = GpuExpertStack;
    type Routes = GpuRoutes;
    type Cache = GpuCache;
    type Routed = GpuRouted;
    type Read = super::readback::GpuRead;

    /// With a budget: refuse it now when the resident part cannot fit, then hold every
    /// allocation to it and stream the routed experts.
    /// Under a RAM budget too, every upload reads with explicit reads, and streamed
    /// experts come from a host cache of that budget (disk, then host, then VRAM).
    fn plan(&mut self, plan: &MemoryPlan, options: &StreamOptions) -> Result<()> {
        self.owned_reads = options.ram_budget.is_some();
        let Some(budget) = options.vram_budget else {
            return Ok(());
        };
        plan.pool_bytes(budget, crate::stream::plan::Memory::Device)?;
        let host = match options.ram_budget {
            Some(ram) if ram < plan.min_pool_bytes() => {
                return Err(Error::Budget(format!(
                    "a RAM budget of {:.1} MiB cannot hold one token's experts ({:.1} MiB) in the host cache behind the VRAM slots",
                    ram as f64 / (1 << 20) as f64,
                    plan.min_pool_bytes() as f64 / (1 << 20) as f64
                )));
            }
            Some(ram) => Some(HostExperts::new(options.clone(), ram, ram)),
            None => None,
        };
        self.ctx.set_vram_budget(Some(budget));
        self.stream = Some(Streamer::new(plan.clone(), options.clone(), host));
        Ok(())
    }

    fn loaded(&mut self) -> Result<()> {
        match (&mut self.stream, self.ctx.vram_budget()) {
            (Some(s), Some(budget)) => s.allocate(&self.ctx, budget),
            _ => Ok(()),
        }
    }

    fn routed(&mut self, shape: &ExpertLayer, tensors: &[TensorRef; 3]) -> Result<GpuRouted> {
        match &mut self.stream {
            Some(s) => Ok(GpuRouted::Streamed(s.register(&self.ctx, shape, tensors)?)),
            None => Ok(GpuRouted::Resident(Box::new(resident_routed(self, shape, tensors)?))),
        }
    }

    fn routed_ffn(
        &mut self,
        experts: &GpuRouted,
        h: &GpuTensor,
        routes: &GpuRoutes,
        acc: &mut GpuTensor,
        next: Option<(&GpuRouted, &GpuRoutes)>,
    ) -> Result<()> {
        self.routed_ffn_of(experts, h, routes, acc, next)
    }

    fn predicts(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.prefetches())
    }

    fn stream_stats(&self) -> Option<StreamStats> {
        self.stream.as_ref().map(|s| s.stats(&self.ctx))
    }

    fn host_stats(&self) -> Option<StreamStats> {
        self.stream.as_ref().and_then(|s| s.host_stats())
    }

    fn name(&self) -> String {
        format!(
            "gpu {} (subgroups {}, uniform activations up to {} KiB)",
            self.ctx.adapter_name,
            self.ctx.features.subgroups,
            self.ctx.max_uniform_x_bytes / 1024
        )
    }

    fn memory_report(&self) -> String {
        format!(
            "{:.1} MiB on the device",
            self.ctx.allocated_bytes() as f64 / (1 << 20) as f64
        )
    }

    fn start_profile(&mut self) -> Result<bool> {
        const SAMPLES: u32 = 20;
        self.flush();
        self.ctx.wait()?;
        let start = Instant::now();
        for _ in 0..SAMPLES {
            let enc = self.ctx.device.create_command_encoder(&Default::default());
            self.ctx.queue.submit([enc.finish()]);
            self.ctx.wait()?;
        }
        self.profile = Some(OpProfile::new(start.elapsed() / SAMPLES));
        Ok(true)
    }

    fn profile_report(&self, passes: usize) -> Option<String> {
        self.profile.as_ref().map(|p| p.report(passes))
    }

    fn matrix(&mut self, t: &TensorView) -> Result<GpuWeights> {
        let bytes = self.upload_bytes(t)?;
        GpuWeights::upload(&self.ctx, &t.info.name, t.info.ty, t.info.row_len() as usize, &bytes).map_err(|e| {
            Error::Tensor {
                path: t.path.to_path_buf(),
                tensor: t.info.name.clone(),
                reason: e.to_string(),
            }
        })
    }

    /// One upload of the parts' rows, back to back (rows of a ggml matrix are independent
    /// runs of blocks, so the result is the ggml layout of the stacked matrix).
    fn stacked_matrix(&mut self, parts: &[TensorView]) -> Result<Option<GpuWeights>> {
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        if parts.iter().any(|t| t.info.dims.len() != 2) {
            return Ok(None);
        }
        let (ty, k) = (first.info.ty, first.info.row_len());
        if parts.iter().any(|t| t.info.ty != ty || t.info.row_len() != k) {
            return Ok(None);
        }
        let names: Vec<&str> = parts.iter().map(|t| t.info.name.as_str()).collect();
        let name = names.join("+");
        let mut bytes = Vec::new();
        for t in parts {
            bytes.extend_from_slice(&self.upload_bytes(t)?);
        }
        GpuWeights::upload(&self.ctx, &name, ty, k as usize, &bytes)
            .map(Some)
            .map_err(|e| Error::Tensor {
                path: first.path.to_path_buf(),
                tensor: name.clone(),
                reason: e.to_string(),
            })
    }

    fn experts(&mut self, t: &TensorView) -> Result<GpuExpertStack> {
        let err = |reason: String| Error::Tensor {
            path: t.path.to_path_buf(),
            tensor: t.info.name.clone(),
            reason,
        };
        let dims = &t.info.dims;
        if dims.len() != 3 {
            return Err(err(format!("{dims:?} is not 3-D")));
        }
        let (k, rows, count) = (dims[0] as usize, dims[1] as usize, dims[2] as usize);
        let bytes = self.upload_bytes(t)?;
        let pool =
            GpuExperts::upload(&self.ctx, &t.info.name, t.info.ty, k, rows, &bytes).map_err(|e| err(e.to_string()))?;
        let identity: Vec<u32> = (0..count as u32).collect();
        let slot_of = self.ctx.upload(
            "slot table",
            bytemuck::cast_slice(&identity),
            wgpu::BufferUsages::STORAGE,
        )?;
        Ok(GpuExpertStack { pool, slot_of })
    }

    fn cache(&mut self, n_ctx: usize, k_width: usize, v_width: usize) -> Result<GpuCache> {
        let bytes = |w: usize| (n_ctx * w * 4) as u64;
        Ok(GpuCache {
            k: self.ctx.alloc("k cache", bytes(k_width), USAGE)?,
            v: if v_width > 0 {
                Some(self.ctx.alloc("v cache", bytes(v_width), USAGE)?)
            } else {
                None
            },
            k_width,
            v_width,
            n_ctx,
        })
    }

    fn rows(&self, x: &GpuTensor) -> usize {
        x.n
    }

    fn upload(&mut self, data: &[f32], n: usize, width: usize) -> Result<GpuTensor> {
        if data.len() != n * width {
            return Err(shape_err("upload", format!("{} values for [{n}][{width}]", data.len())));
        }
        let mut padded = bytemuck::cast_slice::<f32, u8>(data).to_vec();
        padded.resize(activation_bytes(data.len()) as usize, 0);
        Ok(GpuTensor {
            buffer: self.ctx.upload("activations", &padded, ACTIVATIONS)?,
            n,
            width,
        })
    }

    fn zeros(&mut self, n: usize, width: usize) -> Result<GpuTensor> {
        self.tensor(n, width)
    }

    fn reshape(&mut self, x: GpuTensor, n: usize, width: usize) -> Result<GpuTensor> {
        if n * width != x.n * x.width {
            return Err(shape_err(
                "reshape",
                format!("[{}][{}] as [{n}][{width}]", x.n, x.width),
            ));
        }
        Ok(GpuTensor {
            buffer: x.buffer,
            n,
            width,
        })
    }

    fn embed(&mut self, table: &GpuWeights, tokens: &[u32]) -> Result<GpuTensor> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= table.rows) {
            return Err(shape_err(
                "embed",
                format!("token {t} is outside the vocabulary of {}", table.rows),
            ));
        }
        let out = self.tensor(tokens.len(), table.k)?;
        let ids = self
            .ctx
            .upload("token ids", bytemuck::cast_slice(tokens), wgpu::BufferUsages::STORAGE)?;
        let key = PipelineKey::new(Kernel::GetRows, table.ty);
        let grid = groups(&self.ctx, tokens.len() * table.k / 32, 64);
        for chunk in &table.chunks {
            let params = RowsParams {
                k: table.k as u32,
                n: tokens.len() as u32,
                rows: chunk.rows as u32,
                first_row: chunk.first_row as u32,
                interleave: table.interleave,
            };
            self.record("get_rows", |ctx, rec| {
                ctx.dispatch(
                    rec,
                    key,
                    bytemuck::bytes_of(&params),
                    &[&chunk.buffer.buffer, &ids.buffer, &out.buffer.buffer],
                    grid,
                )
            })?;
        }
        Ok(out)
    }

    fn rms_norm(&mut self, x: &GpuTensor, w: &GpuWeights, eps: f32) -> Result<GpuTensor> {
        self.rms_norm_op(x, w, eps)
    }

    fn matmul(&mut self, w: &GpuWeights, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.tensor(x.n, w.rows)?;
        self.product(w, x, &Output::store(&out.buffer.buffer, w.rows))?;
        Ok(out)
    }

    /// One matvec reading the norm's weight and x through uniform bindings (matvec.wgsl
    /// with norm_uniform.wgsl) when x has at most MAX_COLS rows of exactly the matrix's
    /// row length and takes the uniform binding; otherwise the norm, then the product.
    fn norm_matmul(&mut self, w: &GpuWeights, x: &GpuTensor, norm: &GpuWeights, eps: f32) -> Result<GpuTensor> {
        let Some(act) = self.fused_norm(w, x, norm, eps) else {
            let h = self.rms_norm(x, norm, eps)?;
            return self.matmul(w, &h);
        };
        let out = self.tensor(x.n, w.rows)?;
        self.product_of(w, &act, &Output::store(&out.buffer.buffer, w.rows))?;
        Ok(out)
    }

    /// Up to MAX_COLS rows of short length: one matvec with the SwiGLU in its epilogue
    /// (and the norm fused in where `norm_matmul` would fuse it); otherwise the product,
    /// then the SwiGLU.
    fn swiglu_product(
        &mut self,
        gate_up: &GpuWeights,
        x: &GpuTensor,
        norm: Option<(&GpuWeights, f32)>,
    ) -> Result<GpuTensor> {
        if !gate_up.swiglu_fusable(&self.ctx.tuning, x.n) || x.width != gate_up.k {
            return swiglu_product_unfused(self, gate_up, x, norm);
        }
        let normed;
        let act = match norm {
            None => plain_activations(x),
            Some((weight, eps)) => match self.fused_norm(gate_up, x, weight, eps) {
                Some(act) => act,
                None => {
                    normed = self.rms_norm(x, weight, eps)?;
                    plain_activations(&normed)
                }
            },
        };
        let f = gate_up.rows / 2;
        let out = self.tensor(x.n, f)?;
        let op = self.product_op("matvec", gate_up, &act, "+swiglu");
        let y = Output::store(&out.buffer.buffer, f);
        self.record(op, |ctx, rec| gate_up.matvec_swiglu(ctx, rec, &act, &y))?;
        Ok(out)
    }

    fn matmul_add(&mut self, w: &GpuWeights, x: &GpuTensor, acc: &mut GpuTensor) -> Result<()> {
        if (acc.n, acc.width) != (x.n, w.rows) {
            return Err(shape_err(
                "matmul_add",
                format!("accumulator [{}][{}] for [{}][{}]", acc.n, acc.width, x.n, w.rows),
            ));
        }
        self.product(w, x, &Output::add(&acc.buffer.buffer, w.rows))
    }

    fn fixed_routes(&mut self, n_tokens: usize, ids: &[u32]) -> Result<GpuRoutes> {
        let all = ids.repeat(n_tokens);
        let ones = vec![1f32; all.len()];
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        Ok(GpuRoutes {
            ids: self.ctx.upload("route ids", bytemuck::cast_slice(&all), usage)?,
            weights: self.ctx.upload("route weights", bytemuck::cast_slice(&ones), usage)?,
            n_tokens,
            n_used: ids.len(),
            host_ids: OnceCell::from(all),
            grouped: OnceCell::new(),
        })
    }

    fn route(&mut self, logits: &GpuTensor, bias: Option<&GpuWeights>, router: &Router) -> Result<GpuRoutes> {
        self.route_op(logits, bias, router)
    }

    fn routes_to_host(&mut self, routes: &GpuRoutes) -> Result<(Vec<u32>, Vec<f32>)> {
        self.sync_for("reading routes")?;
        let bytes = (routes.n_tokens * routes.n_used * 4) as u64;
        let ids = self.ctx.read_back(&routes.ids.buffer, bytes)?;
        let weights = self.ctx.read_back(&routes.weights.buffer, bytes)?;
        Ok((
            bytemuck::pod_collect_to_vec(&ids),
            bytemuck::pod_collect_to_vec(&weights),
        ))
    }

    fn matmul_id(
        &mut self,
        w: &GpuExpertStack,
        x: &GpuTensor,
        routes: &GpuRoutes,
        weighted: bool,
        y: &mut GpuTensor,
    ) -> Result<()> {
        self.expert_product(&w.pool, &w.slot_of.buffer, None, x, routes, weighted, y)
    }

    fn add_pair_sums(&mut self, y: &GpuTensor, n_used: usize, acc: &mut GpuTensor) -> Result<()> {
        self.add_pair_sums_op(y, n_used, acc)
    }

    fn copy_columns(
        &mut self,
        src: &GpuTensor,
        src_offset: usize,
        dst: &mut GpuTensor,
        dst_offset: usize,
        width: usize,
    ) -> Result<()> {
        self.copy_columns_op(src, src_offset, dst, dst_offset, width)
    }

    /// One row: a buffer copy per part (no dispatch); more rows: copy_columns per part.
    fn split_columns(&mut self, x: &GpuTensor, widths: &[usize]) -> Result<Vec<GpuTensor>> {
        check_split(x.width, widths)?;
        let mut parts = Vec::with_capacity(widths.len());
        let mut offset = 0;
        for &width in widths {
            let mut part = self.tensor(x.n, width)?;
            if x.n == 1 {
                self.record("split copy", |_, rec| {
                    let bytes = (width * 4) as u64;
                    rec.encoder().copy_buffer_to_buffer(
                        &x.buffer.buffer,
                        (offset * 4) as u64,
                        &part.buffer.buffer,
                        0,
                        bytes,
                    );
                    Ok(())
                })?;
            } else {
                self.copy_columns(x, offset, &mut part, 0, width)?;
            }
            offset += width;
            parts.push(part);
        }
        Ok(parts)
    }

    fn rope(&mut self, x: &mut GpuTensor, rope: &Rope, pos0: usize) -> Result<()> {
        self.rope_op(x, rope, pos0)
    }

    fn attention(
        &mut self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: Values<GpuTensor>,
        cache: &mut GpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<GpuTensor> {
        self.attention_op(q, k, v, cache, h, pos0)
    }

    fn attention_stacked(
        &mut self,
        qkv: &GpuTensor,
        widths: [usize; 3],
        cache: &mut GpuCache,
        h: &Heads,
        pos0: usize,
    ) -> Result<GpuTensor> {
        self.attention_stacked_op(qkv, widths, cache, h, pos0)
    }

    fn swiglu(&mut self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        self.swiglu_op(gate, up)
    }

    fn swiglu_stacked(&mut self, gate_up: &GpuTensor) -> Result<GpuTensor> {
        self.swiglu_stacked_op(gate_up)
    }

    fn last_row(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.tensor(1, x.width)?;
        let bytes = (x.width * 4) as u64;
        self.record("last row copy", |_, rec| {
            rec.encoder().copy_buffer_to_buffer(
                &x.buffer.buffer,
                (x.n as u64 - 1) * bytes,
                &out.buffer.buffer,
                0,
                bytes,
            );
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads the expert fault word with the data (once an expert kernel has run): a
    /// routed pair that met a non-resident expert fails the step here.
    fn to_host(&mut self, x: &GpuTensor) -> Result<Vec<f32>> {
        self.sync_for("reading a tensor")?;
        let bytes = (x.n * x.width * 4) as u64;
        let mut parts = vec![(&x.buffer.buffer, bytes)];
        if let Some(f) = self.ctx.fault.get() {
            parts.push((&f.buffer, 8));
        }
        let back = self.ctx.read_back_parts(&parts)?;
        if let Some(words) = back.get(1) {
            self.ctx.check_fault(words)?;
        }
        Ok(bytemuck::pod_collect_to_vec(&back[0]))
    }

    fn read_start(&mut self, x: &GpuTensor) -> Result<super::readback::GpuRead> {
        self.start_read(x)
    }

    fn read_poll(&mut self, read: &mut super::readback::GpuRead) -> Result<Option<Vec<f32>>> {
        self.poll_read(read)
    }

    fn read_wait(&mut self, read: &mut super::readback::GpuRead) -> Result<Vec<f32>> {
        self.sync_for("waiting for a read")?;
        self.wait_read(read)
    }

    fn submit(&mut self) -> Result<()> {
        self.flush();
        self.ctx.check_lost()
    }

    fn argmax(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        self.argmax_rows(x)
    }
}
