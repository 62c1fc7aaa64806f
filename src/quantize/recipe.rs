//! Which type each tensor gets: rules (`REGEX [@ layers A..B | @ moe A..B] = TYPE`,
//! first match wins, as llama-quantize's `--tensor-type`), presets that reproduce the
//! Unsloth DeepSeek-R1 dynamic quants, `uniform-TYPE` baselines, and llama.cpp's
//! fallback when a row is not a whole number of blocks
//! (`tensor_type_fallback` in llama.cpp's src/llama-quant.cpp).

use crate::error::{Error, Result};
use crate::quant::BlockType;
use regex::Regex;
use std::fmt;
use std::ops::Range;

/// The role of a tensor in a (MoE) transformer, from its GGUF name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TensorClass {
    Embedding,
    Output,
    Attention,
    DenseFfn,
    SharedExpert,
    RoutedExpert,
    /// Router (`ffn_gate_inp`), expert bias (`exp_probs_b`), norms: kept F32.
    Control,
    Other,
}

impl TensorClass {
    pub fn of(name: &str) -> Self {
        match kind_of(name) {
            "token_embd" => TensorClass::Embedding,
            "output" => TensorClass::Output,
            p if p.ends_with("norm") || p == "ffn_gate_inp" || p == "exp_probs_b" => TensorClass::Control,
            p if p.ends_with("_exps") => TensorClass::RoutedExpert,
            p if p.ends_with("_shexp") => TensorClass::SharedExpert,
            p if p.starts_with("attn_") => TensorClass::Attention,
            "ffn_gate" | "ffn_up" | "ffn_down" => TensorClass::DenseFfn,
            _ => TensorClass::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TensorClass::Embedding => "embedding",
            TensorClass::Output => "output",
            TensorClass::Attention => "attention",
            TensorClass::DenseFfn => "dense ffn",
            TensorClass::SharedExpert => "shared experts",
            TensorClass::RoutedExpert => "routed experts",
            TensorClass::Control => "norms/router",
            TensorClass::Other => "other",
        }
    }
}

/// A tensor's name without the layer and suffix: `blk.3.ffn_down_exps.weight` →
/// `ffn_down_exps`.
pub fn kind_of(name: &str) -> &str {
    let base = name
        .strip_suffix(".weight")
        .or(name.strip_suffix(".bias"))
        .unwrap_or(name);
    base.rsplit('.').next().unwrap_or(base)
}

/// `blk.N.` → N.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Where a rule applies.
#[derive(Clone, Debug, PartialEq)]
pub enum Layers {
    All,
    /// Absolute layer indices.
    Range(Range<usize>),
    /// Indices among the MoE layers (0 = the first layer with routed experts).
    Moe(Range<usize>),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub pattern: Regex,
    pub layers: Layers,
    pub ty: BlockType,
}

impl Rule {
    /// `REGEX=TYPE` (the `--tensor-type` spelling).
    pub fn parse_assignment(s: &str) -> Result<Self> {
        parse_line(s)?.ok_or_else(|| Error::Unsupported(format!("empty rule '{s}'")))
    }

    /// Whether the rule applies to tensor `name` (`first_moe`: the first MoE layer).
    pub fn matches(&self, name: &str, first_moe: Option<usize>) -> bool {
        if !self.pattern.is_match(name) {
            return false;
        }
        match (&self.layers, layer_of(name)) {
            (Layers::All, _) => true,
            (Layers::Range(r), Some(l)) => r.contains(&l),
            (Layers::Moe(r), Some(l)) => first_moe.is_some_and(|f| l >= f && r.contains(&(l - f))),
            _ => false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.pattern.as_str())?;
        match &self.layers {
            Layers::All => {}
            Layers::Range(r) => write!(f, " @ layers {}..{}", r.start, r.end)?,
            Layers::Moe(r) => write!(f, " @ moe {}..{}", r.start, r.end)?,
        }
        write!(f, " = {}", self.ty.name().to_uppercase())
    }
}

fn parse_range(s: &str) -> Result<Range<usize>> {
    let bad = || Error::Unsupported(format!("layer range '{s}' is not A..B"));
    let (a, b) = s.trim().split_once("..").ok_or_else(bad)?;
    let (a, b) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a >= b {
        return Err(bad());
    }
    Ok(a..b)
}

/// One recipe line; None for blank lines and comments.
fn parse_line(line: &str) -> Result<Option<Rule>> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| Error::Unsupported(format!("recipe line '{line}': {why}"));
    let (lhs, ty) = line
        .rsplit_once('=')
        .ok_or_else(|| bad("expected REGEX [@ layers A..B] = TYPE"))?;
    let ty = BlockType::parse(ty.trim())?;
    if !ty.can_quantize() {
        return Err(bad(&format!("lowbit cannot quantize to {}", ty.name())));
    }
    let (pattern, layers) = match lhs.split_once('@') {
        None => (lhs.trim(), Layers::All),
        Some((p, l)) => {
            let l = l.trim();
            let layers = if let Some(r) = l.strip_prefix("layers") {
                Layers::Range(parse_range(r)?)
            } else if let Some(r) = l.strip_prefix("moe") {
                Layers::Moe(parse_range(r)?)
            } else {
                return Err(bad("a layer range is '@ layers A..B' or '@ moe A..B'"));
            };
            (p.trim(), layers)
        }
    };
    let pattern = Regex::new(pattern).map_err(|e| bad(&e.to_string()))?;
    Ok(Some(Rule { pattern, layers, ty }))
}

/// An ordered list of rules; tensors no rule matches keep their type.
#[derive(Clone, Debug, Default)]
pub struct Recipe {
    pub rules: Vec<Rule>,
}

/// The preset names, for help and errors.
pub const PRESETS: &[&str] = &["ud-iq1_s", "ud-iq1_m", "ud-iq2_xxs", "ud-q2_k_xl", "uniform-TYPE"];

/// What every Unsloth preset does outside the routed experts: attention, dense layers and
/// shared experts at Q4_K, with the latent projections and down projections at Q6_K;
/// token_embd Q4_K, output Q6_K. (Router, norms and exp_probs_b are never quantized.)
const UD_COMMON: &str = r"
attn_kv_a_mqa|attn_kv_b|attn_k_b|attn_v_b = Q6_K
attn_ = Q4_K
ffn_down_shexp|ffn_down\.weight = Q6_K
_shexp|ffn_gate\.weight|ffn_up\.weight = Q4_K
token_embd = Q4_K
^output\.weight = Q6_K
";

impl Recipe {
    /// Parse the text format: one `REGEX [@ layers A..B | @ moe A..B] = TYPE` per line,
    /// `#` comments.
    pub fn parse(text: &str) -> Result<Self> {
        let rules = text
            .lines()
            .filter_map(|l| parse_line(l).transpose())
            .collect::<Result<_>>()?;
        Ok(Recipe { rules })
    }

    /// A preset by name, or a recipe file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some(r) = Self::preset(name_or_path)? {
            return Ok(r);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(Error::Unsupported(format!(
                "'{name_or_path}' is neither a preset ({}) nor a recipe file",
                PRESETS.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text)
    }

    /// The named preset, None if `name` is not one.
    pub fn preset(name: &str) -> Result<Option<Self>> {
        let experts = match name.to_ascii_lowercase().as_str() {
            // UD-IQ1_S: experts 1.56 bit, down_proj 2.06 bit in the first 3 MoE layers.
            "ud-iq1_s" => "ffn_down_exps @ moe 0..3 = IQ2_XXS\n_exps = IQ1_S",
            // UD-IQ1_M: gate/up 1.75 bit, down_proj kept at 2.06 bit.
            "ud-iq1_m" => "ffn_down_exps = IQ2_XXS\n_exps = IQ1_M",
            // UD-IQ2_XXS: experts 2.06 bit, down_proj 2.5 bit in the first 3 MoE layers.
            "ud-iq2_xxs" => "ffn_down_exps @ moe 0..3 = Q2_K\n_exps = IQ2_XXS",
            // UD-Q2_K_XL: experts 2.5 bit, down_proj 3.5 bit in the first 3 MoE layers.
            "ud-q2_k_xl" => "ffn_down_exps @ moe 0..3 = Q3_K\n_exps = Q2_K",
            n => {
                return match n.strip_prefix("uniform-") {
                    Some(ty) => {
                        let ty = BlockType::parse(ty)?;
                        Ok(Some(Self::parse(&format!(".* = {}", ty.name()))?))
                    }
                    None => Ok(None),
                };
            }
        };
        Ok(Some(Self::parse(&format!("{experts}\n{UD_COMMON}"))?))
    }

    /// Rules `first` go before this recipe's (`--tensor-type` overrides a preset).
    pub fn with_overrides(mut self, first: Vec<Rule>) -> Self {
        self.rules.splice(0..0, first);
        self
    }

    /// The first matching rule's type for `name`.
    pub fn type_for(&self, name: &str, first_moe: Option<usize>) -> Option<BlockType> {
        self.rules.iter().find(|r| r.matches(name, first_moe)).map(|r| r.ty)
    }

    pub fn to_text(&self) -> String {
        self.rules.iter().map(|r| format!("{r}\n")).collect()
    }
}

/// llama.cpp's fallback for a type whose blocks do not divide a row of `k`
/// (`tensor_type_fallback` in src/llama-quant.cpp): the IQ formats fall back to IQ4_NL,
/// Q2_K/Q3_K/TQ1_0/TQ2_0 to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (all with
/// 32-element blocks), and to F16 when 32 does not divide k either.
pub fn fallback(ty: BlockType, k: usize) -> Option<BlockType> {
    if k.is_multiple_of(ty.block_size()) {
        return None;
    }
    let f = match ty {
        BlockType::IQ1_S | BlockType::IQ1_M | BlockType::IQ2_XXS => BlockType::IQ4_NL,
        BlockType::Q4_K => BlockType::Q5_0,
        BlockType::Q5_K => BlockType::Q5_1,
        BlockType::Q6_K => BlockType::Q8_0,
        _ => BlockType::Q4_0,
    };
    Some(if k.is_multiple_of(f.block_size()) {
        f
    } else {
        BlockType::F16
    })
}
