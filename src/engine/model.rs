//! [`Model`]: weights loaded on an engine, shared by any number of sessions.

use super::requirements::check_model;
use super::session::Session;
use super::{Engine, EngineKind};
use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::generate::Generator;
use crate::gguf::File;
use crate::gpu::{GpuBackend, GpuContext};
use crate::model;
use crate::sample::SamplerConfig;
use crate::stream::StreamOptions;
use crate::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How [`Model::load`] loads.
#[derive(Default)]
pub struct LoadOptions {
    /// Positions each session's cache holds; 0 for the model's training context, at
    /// most 4096.
    pub n_ctx: usize,
    /// Device bytes the model may hold in all (weights, caches, activations); the
    /// routed experts of a MoE model stream through the rest. None: all resident.
    pub vram_budget: Option<u64>,
    /// Host bytes for weights read into memory and the host expert cache; None:
    /// computed from (or uploaded from) the file's memory map.
    pub ram_budget: Option<u64>,
    /// Called with (tensors done, tensors in all) as the weights load.
    pub progress: Option<Box<dyn FnMut(usize, usize) + Send>>,
}

/// A model's weights on one backend, and that backend, which sessions take turns on.
pub(crate) struct Loaded<B: Backend> {
    pub(crate) model: Arc<model::Model<B>>,
    pub(crate) backend: Mutex<B>,
}

impl<B: Backend> Loaded<B> {
    /// A generation over these weights with its own cache of the model's context.
    pub(crate) fn generator(&self, shared: &Shared, sampling: SamplerConfig) -> Result<Generator<B>> {
        let mut backend = lock(&self.backend)?;
        Generator::new(
            self.model.clone(),
            shared.tokenizer.clone(),
            &mut backend,
            shared.n_ctx,
            sampling,
        )
    }
}

/// The weights on the GPU or the CPU.
pub(crate) enum Net {
    Gpu(Box<Loaded<GpuBackend>>),
    Cpu(Box<Loaded<CpuBackend>>),
}

pub(crate) struct Shared {
    pub(crate) net: Net,
    pub(crate) tokenizer: Arc<Tokenizer>,
    pub(crate) n_ctx: usize,
    /// The file's memory map, which CPU weights compute from.
    _file: File,
}

/// A loaded model: cheap to clone, `Send + Sync`, shared by its sessions (each with its
/// own cache; they take turns on the model's backend, one call at a time).
#[derive(Clone)]
pub struct Model {
    pub(crate) shared: Arc<Shared>,
}

impl Model {
    /// Load the GGUF file at `path` onto `engine` (llama or deepseek2 architecture, any
    /// block format lowbit runs). On a GPU, the device's limits are checked against
    /// the model's largest buffer first; a VRAM budget is checked against the memory
    /// plan before any upload.
    pub fn load(engine: &Engine, path: impl AsRef<Path>, mut options: LoadOptions) -> Result<Model> {
        let file = File::open(path.as_ref())?;
        let tokenizer = Arc::new(Tokenizer::from_gguf(&file)?);
        let n_ctx = match options.n_ctx {
            0 => model::context_length(&file)?.min(4096),
            n => n,
        };
        let stream = StreamOptions {
            vram_budget: options.vram_budget,
            ram_budget: options.ram_budget,
            n_ctx,
            ..StreamOptions::default()
        };
        let mut progress = options.progress.take();
        let mut tick = |done: usize, total: usize| {
            if let Some(p) = progress.as_mut() {
                p(done, total)
            }
        };
        let gpu = |ctx: GpuContext, tick: &mut dyn FnMut(usize, usize)| -> Result<Net> {
            check_model(
                &ctx.device.limits(),
                model::largest_buffer(&file, n_ctx)?,
                &file.path().display().to_string(),
            )?;
            let mut backend = GpuBackend::with_context(ctx);
            let model = model::Model::load_with(&file, &mut backend, &stream, tick)?;
            Ok(Net::Gpu(Box::new(Loaded {
                model: Arc::new(model),
                backend: Mutex::new(backend),
            })))
        };
        let net = match &engine.kind {
            EngineKind::Own(own, options) => gpu(GpuContext::on_own(own, options), &mut tick)?,
            EngineKind::Host(device, queue, options) => gpu(
                GpuContext::from_device(device.clone(), queue.clone(), options.clone()),
                &mut tick,
            )?,
            EngineKind::Cpu(threads) => cpu(&file, CpuBackend::fast(*threads)?, &stream, &mut tick)?,
            EngineKind::CpuReference => cpu(&file, CpuBackend::default(), &stream, &mut tick)?,
        };
        Ok(Model {
            shared: Arc::new(Shared {
                net,
                tokenizer,
                n_ctx,
                _file: file,
            }),
        })
    }

    /// A new session with its own cache of [`Self::n_ctx`] positions, sampling as
    /// `sampling` says (temperature 0: greedy, chosen on the device).
    pub fn session(&self, sampling: SamplerConfig) -> Result<Session> {
        Session::new(self.shared.clone(), sampling)
    }

    /// Positions each session's cache holds.
    pub fn n_ctx(&self) -> usize {
        self.shared.n_ctx
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// The backend and device the model runs on, in words.
    pub fn backend_name(&self) -> Result<String> {
        Ok(match &self.shared.net {
            Net::Gpu(l) => lock(&l.backend)?.name(),
            Net::Cpu(l) => lock(&l.backend)?.name(),
        })
    }
}

fn cpu(
    file: &File,
    mut backend: CpuBackend,
    stream: &StreamOptions,
    tick: &mut dyn FnMut(usize, usize),
) -> Result<Net> {
    let model = model::Model::load_with(file, &mut backend, stream, tick)?;
    Ok(Net::Cpu(Box::new(Loaded {
        model: Arc::new(model),
        backend: Mutex::new(backend),
    })))
}

/// The backend, for one call.
pub(crate) fn lock<B>(backend: &Mutex<B>) -> Result<std::sync::MutexGuard<'_, B>> {
    backend
        .lock()
        .map_err(|_| Error::Unsupported("a session panicked while holding the model's backend".into()))
}
