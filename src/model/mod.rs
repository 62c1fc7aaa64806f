//! Model architectures, described once against the [`crate::backend::Backend`] trait.

pub mod config;
pub mod deepseek2;
pub mod deepseek2_config;
pub mod llama;
mod projections;
pub mod r1;

pub use config::LlamaConfig;
pub use deepseek2::Deepseek2;
pub use deepseek2_config::Deepseek2Config;
pub use llama::Llama;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::{File, Value};
use crate::stream::{MemoryPlan, StreamOptions};
use std::io::Write;

/// The experts one token used in one MoE layer.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRecord {
    pub position: usize,
    pub layer: usize,
    pub experts: Vec<u32>,
    pub weights: Vec<f32>,
}

/// One conversation's state: the per-layer caches, the next position, and (when enabled)
/// the router trace.
pub struct Session<B: Backend> {
    pub(crate) caches: Vec<B::Cache>,
    pub pos: usize,
    pub n_ctx: usize,
    /// Expert choices of every token in every MoE layer, when tracing.
    pub trace: Option<Vec<RouteRecord>>,
}

impl<B: Backend> Session<B> {
    pub(crate) fn new(caches: Vec<B::Cache>, n_ctx: usize) -> Self {
        Session {
            caches,
            pos: 0,
            n_ctx,
            trace: None,
        }
    }

    /// Forget everything (the cache is reused; the trace is kept).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// `tokens` fit at the next position.
    pub(crate) fn check(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::Shape("forward of no tokens".into()));
        }
        if self.pos + tokens.len() > self.n_ctx {
            return Err(Error::Shape(format!(
                "{} tokens at position {} overflow the context of {}",
                tokens.len(),
                self.pos,
                self.n_ctx
            )));
        }
        Ok(())
    }
}

/// Write a router trace as text: a header, then one line per (token, layer):
/// `position layer expert:weight ...`.
pub fn write_trace(out: &mut impl Write, records: &[RouteRecord]) -> std::io::Result<()> {
    writeln!(out, "# lowbit router trace: position layer expert:weight ...")?;
    for r in records {
        write!(out, "{} {}", r.position, r.layer)?;
        for (e, w) in r.experts.iter().zip(&r.weights) {
            write!(out, " {e}:{w:.5}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn architecture(file: &File) -> &str {
    file.metadata("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The device-memory plan of a model file for `n_ctx` positions (see
/// [`deepseek2::memory_plan`]).
pub fn memory_plan(file: &File, n_ctx: usize) -> Result<MemoryPlan> {
    match architecture(file) {
        "deepseek2" => deepseek2::memory_plan(file, n_ctx),
        _ => llama_memory_plan(file, n_ctx),
    }
}

/// A llama file's plan: everything resident, K and V caches, scratch for `n_ctx` tokens.
fn llama_memory_plan(file: &File, n_ctx: usize) -> Result<MemoryPlan> {
    let c = LlamaConfig::from_gguf(file)?;
    let kv = (c.n_layer * 2 * n_ctx * c.kv_dim() * 4) as u64;
    let scratch = (4 * n_ctx * (8 * c.n_embd + 3 * c.n_ff + c.n_vocab)) as u64 + (2 << 20);
    Ok(MemoryPlan::of(file, 0, kv, scratch, Vec::new()))
}

/// The context length the model of `file` was trained for.
pub fn context_length(file: &File) -> Result<usize> {
    Ok(match architecture(file) {
        "deepseek2" => Deepseek2Config::from_gguf(file)?.n_ctx_train,
        _ => LlamaConfig::from_gguf(file)?.n_ctx_train,
    })
}

/// Bytes of the largest buffer a model binds whole for `n_ctx` positions: one layer's
/// key (or latent) cache, or the widest activations of a pass of `n_ctx` tokens (the
/// stacked gate and up products). Weights are split into bindings, so they never are.
pub fn largest_buffer(file: &File, n_ctx: usize) -> Result<u64> {
    let (cache, widest) = match architecture(file) {
        "deepseek2" => {
            let c = Deepseek2Config::from_gguf(file)?;
            (c.cache_width(), 2 * c.n_ff.max(c.n_embd))
        }
        _ => {
            let c = LlamaConfig::from_gguf(file)?;
            (c.kv_dim(), 2 * c.n_ff.max(c.n_embd))
        }
    };
    Ok(4 * n_ctx as u64 * cache.max(widest) as u64)
}

/// Any supported architecture, chosen by `general.architecture`.
pub enum Model<B: Backend> {
    Llama(Box<Llama<B>>),
    Deepseek2(Box<Deepseek2<B>>),
}

impl<B: Backend> Model<B> {
    /// Load every weight onto `backend`, all resident; `progress(done, total)` is called
    /// per tensor.
    pub fn load(file: &File, backend: &mut B, progress: impl FnMut(usize, usize)) -> Result<Self> {
        Self::load_with(file, backend, &StreamOptions::default(), progress)
    }

    /// Load under `options` (a VRAM budget: checked against the memory plan before any
    /// upload; the routed experts of a MoE model stream through slot pools).
    pub fn load_with(
        file: &File,
        backend: &mut B,
        options: &StreamOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        file.read_through_page_cache(options.page_cache);
        match architecture(file) {
            "llama" => {
                backend.plan(&llama_memory_plan(file, options.n_ctx)?, options)?;
                let model = Llama::load(file, backend, progress)?;
                backend.loaded()?;
                Ok(Model::Llama(Box::new(model)))
            }
            "deepseek2" => Ok(Model::Deepseek2(Box::new(Deepseek2::load_with(
                file, backend, options, progress,
            )?))),
            other => Err(Error::Unsupported(format!(
                "{}: architecture '{other}' (supported: llama, deepseek2)",
                file.path().display()
            ))),
        }
    }

    pub fn n_vocab(&self) -> usize {
        match self {
            Model::Llama(m) => m.config.n_vocab,
            Model::Deepseek2(m) => m.config.n_vocab,
        }
    }

    pub fn n_ctx_train(&self) -> usize {
        match self {
            Model::Llama(m) => m.config.n_ctx_train,
            Model::Deepseek2(m) => m.config.n_ctx_train,
        }
    }

    /// A fresh session with room for `n_ctx` positions.
    pub fn session(&self, backend: &mut B, n_ctx: usize) -> Result<Session<B>> {
        match self {
            Model::Llama(m) => m.session(backend, n_ctx),
            Model::Deepseek2(m) => m.session(backend, n_ctx),
        }
    }

    /// Transformer blocks, the units of [`Self::advance`].
    pub fn n_layer(&self) -> usize {
        match self {
            Model::Llama(m) => m.config.n_layer,
            Model::Deepseek2(m) => m.config.n_layer,
        }
    }

    /// Run `tokens` at the session's next positions (one batched pass) and return logits:
    /// `[tokens.len()][n_vocab]` when `all_logits`, else the last position's `[n_vocab]`.
    pub fn forward(
        &self,
        backend: &mut B,
        session: &mut Session<B>,
        tokens: &[u32],
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let mut pass = self.begin(backend, session, tokens, all_logits)?;
        self.advance(backend, session, &mut pass, usize::MAX)?;
        let logits = self.finish(backend, session, pass)?;
        backend.to_host(&logits)
    }

    /// Start a forward pass of `tokens` at the session's next positions: the embedding
    /// only. [`Self::advance`] runs its layers, [`Self::finish`] its head. A pass that is
    /// dropped before it finishes leaves the session's position where it was.
    pub fn begin(&self, backend: &mut B, session: &Session<B>, tokens: &[u32], all_logits: bool) -> Result<Pass<B>> {
        session.check(tokens)?;
        let (x, per_head) = match self {
            Model::Llama(m) => (m.embed(backend, tokens)?, None),
            Model::Deepseek2(m) => {
                let (x, routes) = m.embed(backend, tokens)?;
                (x, Some(routes))
            }
        };
        Ok(Pass {
            x,
            per_head,
            layer: 0,
            pos0: session.pos,
            n_tokens: tokens.len(),
            all_logits,
        })
    }

    /// Run up to `layers` more layers of `pass`; the number run (0 once all have run).
    pub fn advance(
        &self,
        backend: &mut B,
        session: &mut Session<B>,
        pass: &mut Pass<B>,
        layers: usize,
    ) -> Result<usize> {
        if pass.pos0 != session.pos {
            return Err(Error::Unsupported(format!(
                "a pass begun at position {} advanced at position {}",
                pass.pos0, session.pos
            )));
        }
        let end = self.n_layer().min(pass.layer.saturating_add(layers));
        let start = pass.layer;
        for l in start..end {
            let cache = &mut session.caches[l];
            match self {
                Model::Llama(m) => m.layer(backend, l, cache, &mut pass.x, pass.pos0)?,
                Model::Deepseek2(m) => {
                    let per_head = pass
                        .per_head
                        .as_ref()
                        .ok_or_else(|| Error::Unsupported("a DeepSeek pass without head routes".into()))?;
                    m.layer(
                        backend,
                        l,
                        cache,
                        &mut pass.x,
                        pass.pos0,
                        per_head,
                        session.trace.as_mut(),
                    )?
                }
            }
            pass.layer = l + 1;
        }
        Ok(end - start)
    }

    /// The head of a pass whose layers have all run: logits on the backend, `[n][n_vocab]`
    /// (every token's when the pass was begun with `all_logits`, else the last one's).
    /// The session's position moves past the pass's tokens.
    pub fn finish(&self, backend: &mut B, session: &mut Session<B>, pass: Pass<B>) -> Result<B::Tensor> {
        if !pass.finished(self) || pass.pos0 != session.pos {
            return Err(Error::Unsupported(format!(
                "finishing a pass after {} of {} layers",
                pass.layer,
                self.n_layer()
            )));
        }
        session.pos += pass.n_tokens;
        let x = if pass.all_logits {
            pass.x
        } else {
            backend.last_row(&pass.x)?
        };
        match self {
            Model::Llama(m) => m.head(backend, &x),
            Model::Deepseek2(m) => m.head(backend, &x),
        }
    }
}

/// A forward pass in progress (see [`Model::begin`]): the residual stream
/// `[n_tokens][n_embd]` after `layer` layers.
pub struct Pass<B: Backend> {
    x: B::Tensor,
    /// DeepSeek's (token, head) routes of its per-head attention matrices.
    per_head: Option<B::Routes>,
    layer: usize,
    pos0: usize,
    n_tokens: usize,
    all_logits: bool,
}

impl<B: Backend> Pass<B> {
    /// Whether every layer has run (the head is next).
    pub fn finished(&self, model: &Model<B>) -> bool {
        self.layer >= model.n_layer()
    }
}
