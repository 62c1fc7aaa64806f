//! What a quantization plan amounts to: sizes before and after, bits per weight per
//! tensor class, a table, and an SVG heat map of bits per tensor across layers.

use super::Planned;
use super::recipe::{TensorClass, layer_of};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Weights and bytes of one tensor class.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClassSize {
    pub weights: u64,
    pub bytes: u64,
}

impl ClassSize {
    pub fn bpw(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.weights.max(1) as f64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub weights: u64,
    pub classes: BTreeMap<TensorClass, ClassSize>,
}

impl Summary {
    pub fn of(plan: &[Planned]) -> Self {
        let mut classes = BTreeMap::<TensorClass, ClassSize>::new();
        for p in plan {
            let c = classes.entry(p.class).or_default();
            c.weights += p.n_elements();
            c.bytes += p.bytes();
        }
        Summary {
            bytes_before: plan.iter().map(Planned::source_bytes).sum(),
            bytes_after: plan.iter().map(Planned::bytes).sum(),
            weights: plan.iter().map(Planned::n_elements).sum(),
            classes,
        }
    }

    pub fn bpw(&self) -> f64 {
        self.bytes_after as f64 * 8.0 / self.weights.max(1) as f64
    }

    /// Human-readable summary (tensor data only; the header adds a few KB).
    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut s = format!(
            "size: {:.2} MiB -> {:.2} MiB ({:.1}% smaller), {:.3} bpw over {} weights\n",
            mib(self.bytes_before),
            mib(self.bytes_after),
            100.0 * (1.0 - self.bytes_after as f64 / self.bytes_before.max(1) as f64),
            self.bpw(),
            self.weights
        );
        for (class, c) in &self.classes {
            let _ = writeln!(
                s,
                "  {:<16} {:>12} weights {:>10.2} MiB {:>7.3} bpw",
                class.label(),
                c.weights,
                mib(c.bytes),
                c.bpw()
            );
        }
        s
    }
}

/// The plan as a table: tensor, shape, source type -> type, bpw, note.
pub fn table(plan: &[Planned]) -> String {
    let mut s = format!("{:<36} {:<22} {:>8} -> {:<8} note\n", "tensor", "shape", "from", "to");
    for p in plan {
        let _ = writeln!(
            s,
            "{:<36} {:<22} {:>8} -> {:<8} {}",
            p.name,
            format!("{:?}", p.dims),
            p.source.name(),
            p.ty.name(),
            p.note.as_deref().unwrap_or("")
        );
    }
    s
}

/// Color for a bpw value: blue (1.5) through green and yellow to red (8+).
fn color(bpw: f64) -> String {
    let t = ((bpw.max(1.5).log2() - 1.5f64.log2()) / (16f64.log2() - 1.5f64.log2())).clamp(0.0, 1.0);
    let hue = 240.0 * (1.0 - t);
    format!("hsl({hue:.0},75%,55%)")
}

/// An SVG heat map: one row per tensor kind (`attn_q_a`, `ffn_down_exps`, ...), one
/// column per layer, each cell colored and labelled by its bits per weight; tensors
/// outside the layers (embedding, output) in a column of their own.
pub fn svg(plan: &[Planned], title: &str) -> String {
    let kind = |name: &str| super::recipe::kind_of(name).to_string();
    let mut kinds: Vec<String> = Vec::new();
    let mut cells = BTreeMap::<(String, Option<usize>), f64>::new();
    let mut n_layers = 0;
    for p in plan {
        let k = kind(&p.name);
        if !kinds.contains(&k) {
            kinds.push(k.clone());
        }
        let layer = layer_of(&p.name);
        n_layers = n_layers.max(layer.map_or(0, |l| l + 1));
        cells.insert((k, layer), p.ty.bits_per_weight());
    }
    let (cw, ch, left, top) = (44.0, 22.0, 150.0, 60.0);
    let width = left + cw * (n_layers + 1) as f64 + 20.0;
    let height = top + ch * kinds.len() as f64 + 50.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    for l in 0..n_layers {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{l}</text>",
            left + cw * (l as f64 + 0.5),
            top - 8.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">global</text>",
        left + cw * (n_layers as f64 + 0.5),
        top - 8.0
    );
    for (r, k) in kinds.iter().enumerate() {
        let y = top + ch * r as f64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + ch * 0.7,
            escape(k)
        );
        for (c, layer) in (0..n_layers).map(Some).chain([None]).enumerate() {
            if let Some(&bpw) = cells.get(&(k.clone(), layer)) {
                let x = left + cw * c as f64;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{k} layer {layer:?}: {bpw:.2} bpw</title></rect>\
                     <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{bpw:.2}</text>",
                    cw - 2.0,
                    ch - 2.0,
                    color(bpw),
                    x + cw / 2.0,
                    y + ch * 0.7
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{}\">bits per weight; columns: layers, then tensors outside the layers</text>\n</svg>",
        height - 15.0
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
