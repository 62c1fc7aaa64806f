//! Text generation as a library: a [`Generator`] holds a model's [`Session`] (the KV
//! cache), a [`Sampler`] and the token history, takes prompts and gives one token at a
//! time with its text, either blocking ([`Generator::next_token`]) or in bounded steps
//! that never wait for the device ([`Generator::step`]). The CLI's `generate` and `chat`
//! and [`crate::engine::Session`] are users of it.
//!
//! ```no_run
//! use lowbit::cpu::CpuBackend;
//! use lowbit::generate::Generator;
//! use lowbit::gguf::File;
//! use lowbit::model::Model;
//! use lowbit::sample::SamplerConfig;
//! use lowbit::tokenizer::Tokenizer;
//! use std::sync::Arc;
//!
//! # fn main() -> lowbit::error::Result<()> {
//! let file = File::open("model.gguf")?;
//! let mut backend = CpuBackend::fast(0)?;
//! let model = Arc::new(Model::load(&file, &mut backend, |_, _| {})?);
//! let tokenizer = Arc::new(Tokenizer::from_gguf(&file)?);
//! let mut g = Generator::new(model, tokenizer.clone(), &mut backend, 512, SamplerConfig::default())?;
//! g.prompt(&mut backend, &tokenizer.encode("Once upon a time", true, true)?)?;
//! while let Some(token) = g.next_token(&mut backend)? {
//!     print!("{}", token.text);
//! }
//! # Ok(())
//! # }
//! ```

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Model, Pass, Session};
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

/// A generated token and the text it completes (empty while it ends inside a UTF-8
/// character; the next token's text then carries the whole character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The token id.
    pub id: u32,
    /// The text it adds.
    pub text: String,
}

/// How much work one [`Generator::step`] may record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// At most this many units: a transformer layer, or the output head (norm, head
    /// product, greedy argmax and the read-back) as one.
    Layers(usize),
    /// Up to one whole token: the rest of the pass in flight and its head.
    Token,
}

/// What a [`Generator::step`] ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Work is recorded or in flight; call again.
    Pending,
    /// A new token (its own pass runs in the next steps).
    Token(Token),
    /// Generation ended: an end-of-text token (unless ignored) or a full context.
    Done,
}

/// Where the generation's device work stands.
enum Phase<B: Backend> {
    /// Nothing in flight.
    Idle,
    /// A pass of the queued tokens, some layers run.
    Running(Pass<B>),
    /// The head's result (the greedy id, or the logits) on its way to the host.
    Reading(B::Read),
}

/// A generation over one model: its cache, sampler and history.
pub struct Generator<B: Backend> {
    model: Arc<Model<B>>,
    tokenizer: Arc<Tokenizer>,
    /// The model's session: the cache and its position.
    pub session: Session<B>,
    sampler: Sampler,
    /// Every token the cache holds or will once `pending` has run.
    history: Vec<u32>,
    /// Tokens of the history not run yet (a prompt, or the last sampled token).
    pending: Vec<u32>,
    phase: Phase<B>,
    /// What the last pass left for sampling: the greedy id alone (`[id]`, chosen on the
    /// device) or the last position's logits. None before any prompt.
    result: Option<Vec<f32>>,
    /// Whether the device picks greedy tokens (temperature 0 and no penalty).
    device_greedy: bool,
    /// Tokens generated since the last prompt.
    out: Vec<u32>,
    text: TextStream,
    /// Keep generating past end-of-text tokens.
    pub ignore_eos: bool,
}

impl<B: Backend> Generator<B> {
    /// A generation with room for `n_ctx` positions, sampling as `sampling` says.
    pub fn new(
        model: Arc<Model<B>>,
        tokenizer: Arc<Tokenizer>,
        backend: &mut B,
        n_ctx: usize,
        sampling: SamplerConfig,
    ) -> Result<Self> {
        Ok(Generator {
            session: model.session(backend, n_ctx)?,
            model,
            tokenizer,
            device_greedy: sampling.temp <= 0.0 && sampling.repeat_penalty == 1.0,
            sampler: Sampler::new(sampling),
            history: Vec::new(),
            pending: Vec::new(),
            phase: Phase::Idle,
            result: None,
            out: Vec::new(),
            text: TextStream::default(),
            ignore_eos: false,
        })
    }

    /// Queue `tokens` after the history, to run in the next steps (nothing runs now);
    /// the next token is then sampled after the last of them.
    pub fn queue_prompt(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::Shape("a prompt of no tokens".into()));
        }
        if !matches!(self.phase, Phase::Idle) {
            return Err(Error::Unsupported(
                "a prompt while a pass is in flight (step until it ends)".into(),
            ));
        }
        self.history.extend_from_slice(tokens);
        self.pending.extend_from_slice(tokens);
        self.out.clear();
        self.text = TextStream::default();
        self.result = None;
        Ok(())
    }

    /// Run `tokens` after what the cache holds (one batched pass), waiting for it; the
    /// next token is sampled from the last one's logits.
    pub fn prompt(&mut self, backend: &mut B, tokens: &[u32]) -> Result<()> {
        self.queue_prompt(tokens)?;
        self.complete(backend)
    }

    /// Run `tokens` once and forget them: the cache and history are as before (a timing
    /// run's warm-up).
    pub fn warm_up(&mut self, backend: &mut B, tokens: &[u32]) -> Result<()> {
        if !matches!(self.phase, Phase::Idle) {
            return Err(Error::Unsupported("a warm-up while a pass is in flight".into()));
        }
        let pos = self.session.pos;
        self.model.forward(backend, &mut self.session, tokens, false)?;
        self.session.pos = pos;
        Ok(())
    }

    /// Sample the next token, run it (waiting for its logits) and return it with its
    /// text; None at an end-of-text token (unless [`Self::ignore_eos`]) or a full context.
    pub fn next_token(&mut self, backend: &mut B) -> Result<Option<Token>> {
        self.complete(backend)?;
        match self.emit()? {
            Step::Token(token) => {
                self.complete(backend)?;
                Ok(Some(token))
            }
            _ => Ok(None),
        }
    }

    /// Record at most `budget` of work and return without waiting for the device: a
    /// token once its logits (or greedy id) have arrived, [`Step::Pending`] while work
    /// remains or is in flight, [`Step::Done`] when generation has ended.
    pub fn step(&mut self, backend: &mut B, budget: Budget) -> Result<Step> {
        let mut left = match budget {
            Budget::Layers(n) => n,
            Budget::Token => usize::MAX,
        };
        loop {
            match &mut self.phase {
                Phase::Reading(read) => match backend.read_poll(read)? {
                    Some(values) => {
                        self.phase = Phase::Idle;
                        self.result = Some(values);
                    }
                    None => return Ok(Step::Pending),
                },
                Phase::Running(pass) => {
                    left -= self.model.advance(backend, &mut self.session, pass, left)?;
                    if !pass.finished(&self.model) || left == 0 {
                        backend.submit()?;
                        return Ok(Step::Pending);
                    }
                    left -= 1;
                    self.read_head(backend)?;
                }
                Phase::Idle if !self.pending.is_empty() => self.begin_pending(backend)?,
                Phase::Idle => return self.emit(),
            }
        }
    }

    /// Begin the pass of the queued tokens (their embedding).
    fn begin_pending(&mut self, backend: &mut B) -> Result<()> {
        let pass = self.model.begin(backend, &self.session, &self.pending, false)?;
        self.pending.clear();
        self.phase = Phase::Running(pass);
        Ok(())
    }

    /// Finish the pass in flight: its head, then the read of the greedy id (on the
    /// device) or of the logits.
    fn read_head(&mut self, backend: &mut B) -> Result<()> {
        let Phase::Running(pass) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Err(Error::Unsupported("no pass to finish".into()));
        };
        let logits = self.model.finish(backend, &mut self.session, pass)?;
        let chosen = match self.device_greedy {
            true => backend.argmax(&logits)?,
            false => logits,
        };
        let read = backend.read_start(&chosen)?;
        self.phase = Phase::Reading(read);
        Ok(())
    }

    /// Run what is queued and in flight to the end, waiting for the device.
    fn complete(&mut self, backend: &mut B) -> Result<()> {
        loop {
            match &mut self.phase {
                Phase::Reading(read) => {
                    self.result = Some(backend.read_wait(read)?);
                    self.phase = Phase::Idle;
                }
                Phase::Running(pass) => {
                    self.model.advance(backend, &mut self.session, pass, usize::MAX)?;
                    self.read_head(backend)?;
                }
                Phase::Idle if !self.pending.is_empty() => self.begin_pending(backend)?,
                Phase::Idle => return Ok(()),
            }
        }
    }

    /// Sample from the last pass's result and queue the token: [`Step::Token`], or
    /// [`Step::Done`] at a stop.
    fn emit(&mut self) -> Result<Step> {
        let result = self
            .result
            .as_ref()
            .ok_or_else(|| Error::Unsupported("a token before any prompt".into()))?;
        let id = match self.device_greedy {
            true => result.first().map_or(0, |&v| v as u32),
            false => self.sampler.sample(result, &self.history),
        };
        if (!self.ignore_eos && self.tokenizer.stop.contains(&id)) || self.session.pos >= self.session.n_ctx {
            return Ok(Step::Done);
        }
        self.result = None;
        self.history.push(id);
        self.pending.push(id);
        self.out.push(id);
        let text = self.text.next(&self.tokenizer, &self.out)?;
        Ok(Step::Token(Token { id, text }))
    }

    /// Every token the cache holds, or will once the queued ones have run.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Empty the cache and history, dropping any work in flight.
    pub fn reset(&mut self) {
        self.session.reset();
        self.history.clear();
        self.pending.clear();
        self.phase = Phase::Idle;
        self.result = None;
        self.out.clear();
        self.text = TextStream::default();
    }
}

/// The text of generated tokens as it comes, decoded from the last few tokens only (as
/// Hugging Face's streamers do): decoding the whole output at every step costs time
/// that grows with its length.
#[derive(Default)]
struct TextStream {
    /// Tokens before `prefix` are printed and left behind.
    prefix: usize,
    /// Tokens before `read` are printed.
    read: usize,
}

impl TextStream {
    /// The text `out` adds to what is printed: whole characters only, since a token can
    /// end inside a UTF-8 sequence. The tokens from `prefix` on are decoded with their
    /// printed part and that part's length cut off, so that a decoder's handling of a
    /// first token (a leading space stripped) does not change the text.
    fn next(&mut self, tokenizer: &Tokenizer, out: &[u32]) -> Result<String> {
        let printed = tokenizer.decode(&out[self.prefix..self.read])?;
        let text = tokenizer.decode(&out[self.prefix..])?;
        match text.get(printed.len()..) {
            Some(new) if !new.is_empty() && !new.ends_with('\u{fffd}') => {
                let new = new.to_string();
                self.prefix = self.read;
                self.read = out.len();
                Ok(new)
            }
            _ => Ok(String::new()),
        }
    }
}
