//! Text generation as a library: a [`Generator`] holds a model's [`Session`] (the KV
//! cache), a [`Sampler`] and the token history, takes prompts and gives one token at a
//! time with its text. The CLI's `generate` and `chat` are thin users of it.
//!
//! ```no_run
//! use lowbit::cpu::CpuBackend;
//! use lowbit::generate::Generator;
//! use lowbit::gguf::File;
//! use lowbit::model::Model;
//! use lowbit::sample::SamplerConfig;
//! use lowbit::tokenizer::Tokenizer;
//!
//! # fn main() -> lowbit::error::Result<()> {
//! let file = File::open("model.gguf")?;
//! let mut backend = CpuBackend::fast(0)?;
//! let model = Model::load(&file, &mut backend, |_, _| {})?;
//! let tokenizer = Tokenizer::from_gguf(&file)?;
//! let mut g = Generator::new(&model, &tokenizer, &mut backend, 512, SamplerConfig::default())?;
//! g.prompt(&mut backend, &tokenizer.encode("Once upon a time", true, true)?)?;
//! while let Some(token) = g.next_token(&mut backend)? {
//!     print!("{}", token.text);
//! }
//! # Ok(())
//! # }
//! ```

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Model, Session};
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;

/// A generated token and the text it completes (empty while it ends inside a UTF-8
/// character; the next token's text then carries the whole character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    pub text: String,
}

/// A generation over one model: its cache, sampler and history.
pub struct Generator<'m, B: Backend> {
    model: &'m Model<B>,
    tokenizer: &'m Tokenizer,
    pub session: Session<B>,
    sampler: Sampler,
    /// Every token the cache holds, prompts and generated ones.
    history: Vec<u32>,
    /// The logits after the last token run, None before the first prompt.
    logits: Option<Vec<f32>>,
    /// Tokens generated since the last prompt.
    out: Vec<u32>,
    text: TextStream,
    /// Keep generating past end-of-text tokens.
    pub ignore_eos: bool,
}

impl<'m, B: Backend> Generator<'m, B> {
    /// A generation with room for `n_ctx` positions, sampling as `sampling` says.
    pub fn new(
        model: &'m Model<B>,
        tokenizer: &'m Tokenizer,
        backend: &mut B,
        n_ctx: usize,
        sampling: SamplerConfig,
    ) -> Result<Self> {
        Ok(Generator {
            model,
            tokenizer,
            session: model.session(backend, n_ctx)?,
            sampler: Sampler::new(sampling),
            history: Vec::new(),
            logits: None,
            out: Vec::new(),
            text: TextStream::default(),
            ignore_eos: false,
        })
    }

    /// Run `tokens` after what the cache holds (one batched pass); the next token is
    /// sampled from the last one's logits.
    pub fn prompt(&mut self, backend: &mut B, tokens: &[u32]) -> Result<()> {
        self.logits = Some(self.model.forward(backend, &mut self.session, tokens, false)?);
        self.history.extend_from_slice(tokens);
        self.out.clear();
        self.text = TextStream::default();
        Ok(())
    }

    /// Run `tokens` once and forget them: the cache and history are as before (a timing
    /// run's warm-up).
    pub fn warm_up(&mut self, backend: &mut B, tokens: &[u32]) -> Result<()> {
        let pos = self.session.pos;
        self.model.forward(backend, &mut self.session, tokens, false)?;
        self.session.pos = pos;
        Ok(())
    }

    /// Sample the next token, run it and return it with its text; None at an
    /// end-of-text token (unless [`Self::ignore_eos`]) or a full context.
    pub fn next_token(&mut self, backend: &mut B) -> Result<Option<Token>> {
        let logits = self
            .logits
            .as_ref()
            .ok_or_else(|| Error::Unsupported("next_token before any prompt".into()))?;
        let id = self.sampler.sample(logits, &self.history);
        if (!self.ignore_eos && self.tokenizer.stop.contains(&id)) || self.session.pos >= self.session.n_ctx {
            return Ok(None);
        }
        self.history.push(id);
        self.out.push(id);
        let text = self.text.next(self.tokenizer, &self.out)?;
        self.logits = Some(self.model.forward(backend, &mut self.session, &[id], false)?);
        Ok(Some(Token { id, text }))
    }

    /// Every token the cache holds.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Empty the cache and history.
    pub fn reset(&mut self) {
        self.session.reset();
        self.history.clear();
        self.logits = None;
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
