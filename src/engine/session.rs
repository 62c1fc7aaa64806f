//! [`Session`]: one conversation over a shared [`super::Model`]: its cache, sampler and
//! history, advanced blocking or in bounded steps.

use super::model::{Loaded, Net, Shared, lock};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::generate::{Budget, Generator, Step, Token};
use crate::gpu::GpuBackend;
use crate::gpu::context::ErrorScopes;
use crate::sample::SamplerConfig;
use std::sync::Arc;

/// The generation on the model's backend.
enum Generation {
    Gpu(Generator<GpuBackend>),
    Cpu(Generator<CpuBackend>),
}

/// One conversation: `Send`, so it can live on any thread; sessions of one model run
/// their calls one at a time on its backend.
pub struct Session {
    shared: Arc<Shared>,
    generation: Generation,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, sampling: SamplerConfig) -> Result<Self> {
        let generation = match &shared.net {
            Net::Gpu(l) => Generation::Gpu(l.generator(&shared, sampling)?),
            Net::Cpu(l) => Generation::Cpu(l.generator(&shared, sampling)?),
        };
        Ok(Session { shared, generation })
    }

    /// Queue `text` after the conversation so far (with the tokenizer's BOS first when
    /// the session is empty); it runs in the next steps. The chat template is the
    /// caller's ([`crate::tokenizer::Tokenizer::chat_prompt`]).
    pub fn prompt(&mut self, text: &str) -> Result<()> {
        let first = self.history().is_empty();
        let tokens = self.shared.tokenizer.encode(text, first, true)?;
        self.prompt_tokens(&tokens)
    }

    /// Queue `tokens` after the conversation so far.
    pub fn prompt_tokens(&mut self, tokens: &[u32]) -> Result<()> {
        match &mut self.generation {
            Generation::Gpu(g) => g.queue_prompt(tokens),
            Generation::Cpu(g) => g.queue_prompt(tokens),
        }
    }

    /// Record at most `budget` of work, submit it and return at once, never waiting for
    /// the device: [`Step::Pending`] while work remains or is in flight, a token once
    /// its greedy id (or logits) has arrived, [`Step::Done`] at the end. On the CPU the
    /// budget's layers are computed before it returns.
    pub fn step(&mut self, budget: Budget) -> Result<Step> {
        let shared = self.shared.clone();
        match (&shared.net, &mut self.generation) {
            (Net::Gpu(l), Generation::Gpu(g)) => on_gpu(l, "a generation step", |b| g.step(b, budget)),
            (Net::Cpu(l), Generation::Cpu(g)) => g.step(&mut *lock(&l.backend)?, budget),
            _ => Err(mismatch()),
        }
    }

    /// [`Self::step`], recorded into the host's `encoder` after what it holds: nothing
    /// is submitted, the host submits when it likes (a Bevy render node, an egui paint
    /// callback), and the read-back maps when it does. GPU only; a MoE model that must
    /// read its routes to the host in the middle of a pass (expert streaming) cannot
    /// step this way.
    pub fn step_into(&mut self, encoder: &mut wgpu::CommandEncoder, budget: Budget) -> Result<Step> {
        let shared = self.shared.clone();
        let (Net::Gpu(l), Generation::Gpu(g)) = (&shared.net, &mut self.generation) else {
            return Err(Error::Unsupported(
                "recording into a wgpu encoder needs a GPU engine".into(),
            ));
        };
        on_gpu(l, "a generation step", |b| {
            let placeholder = b.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lowbit placeholder"),
            });
            b.record_into(std::mem::replace(encoder, placeholder));
            let out = g.step(b, budget);
            if let Some(host) = b.take_encoder() {
                *encoder = host;
            }
            out
        })
    }

    /// The next token, waiting for the device (native programs that can block); None at
    /// an end-of-text token (unless ignored) or a full context.
    pub fn next_token(&mut self) -> Result<Option<Token>> {
        let shared = self.shared.clone();
        match (&shared.net, &mut self.generation) {
            (Net::Gpu(l), Generation::Gpu(g)) => on_gpu(l, "generating a token", |b| g.next_token(b)),
            (Net::Cpu(l), Generation::Cpu(g)) => g.next_token(&mut *lock(&l.backend)?),
            _ => Err(mismatch()),
        }
    }

    /// Keep generating past end-of-text tokens.
    pub fn set_ignore_eos(&mut self, ignore: bool) {
        match &mut self.generation {
            Generation::Gpu(g) => g.ignore_eos = ignore,
            Generation::Cpu(g) => g.ignore_eos = ignore,
        }
    }

    /// Every token of the conversation: prompts and generated tokens.
    pub fn history(&self) -> &[u32] {
        match &self.generation {
            Generation::Gpu(g) => g.history(),
            Generation::Cpu(g) => g.history(),
        }
    }

    /// Forget the conversation (the cache is kept for reuse), dropping work in flight.
    pub fn reset(&mut self) {
        match &mut self.generation {
            Generation::Gpu(g) => g.reset(),
            Generation::Cpu(g) => g.reset(),
        }
    }
}

fn mismatch() -> Error {
    Error::Unsupported("a session of another backend than its model's".into())
}

/// Run `f` on the model's GPU backend inside error scopes pushed and popped within
/// this call: an error lowbit's work caused is an error of this call, and the host's
/// own errors never land in lowbit's scopes. A lost device is an error too.
fn on_gpu<T>(l: &Loaded<GpuBackend>, what: &str, f: impl FnOnce(&mut GpuBackend) -> Result<T>) -> Result<T> {
    let mut backend = lock(&l.backend)?;
    backend.ctx.check_lost()?;
    let scopes = ErrorScopes::push(&backend.ctx.device);
    let out = f(&mut backend);
    let caught = scopes.pop(what);
    let out = out?;
    caught?;
    backend.ctx.check_lost()?;
    Ok(out)
}
