//! The CPU backend's streamed routed experts: a MoE layer's step under a RAM budget,
//! wave by wave through the host expert cache ([`crate::stream::host`]). Each pair's
//! products are the resident path's own ([`pair_products`] over the same bytes), so the
//! logits do not depend on the budget.

use super::backend::{CpuBackend, CpuRoutes, CpuTensor, PairMatrices, pair_products, pair_sums_into, swiglu_values};
use crate::error::{Error, Result};

impl CpuBackend {
    /// A streamed layer's step: per wave, make its experts resident, then gate, up,
    /// SwiGLU and down of the wave's pairs; the pair sums go into `acc`. With `next`
    /// (prefetch), the next streamed layer's predicted experts are read ahead while the
    /// last wave computes.
    pub(super) fn streamed_ffn(
        &mut self,
        idx: usize,
        h: &CpuTensor,
        routes: &CpuRoutes,
        acc: &mut CpuTensor,
        next: Option<(usize, &CpuRoutes)>,
    ) -> Result<()> {
        let host = self
            .host
            .as_mut()
            .ok_or_else(|| Error::Unsupported("streamed experts without a host cache".into()))?;
        let shape = host.shape(idx).clone();
        let pairs = routes.ids.len();
        let n_tokens = pairs / routes.n_used.max(1);
        let mut g = CpuTensor::zeros(pairs, shape.ff);
        let mut u = CpuTensor::zeros(pairs, shape.ff);
        let mut d = CpuTensor::zeros(pairs, shape.n_embd);
        let gate_up = |p: usize| PairMatrices {
            ty: shape.types[p],
            k: shape.n_embd,
            rows: shape.ff,
        };
        let down = PairMatrices {
            ty: shape.types[2],
            k: shape.ff,
            rows: shape.n_embd,
        };
        let waves = host.waves(idx, &routes.ids, n_tokens);
        for (w, wave) in waves.iter().enumerate() {
            let tokens = if w == 0 { n_tokens as u64 } else { 0 };
            host.load_wave(idx, wave, &routes.ids, tokens)?;
            // The last wave's compute overlaps the read-ahead of the next layer's
            // predicted experts.
            let read_ahead = next
                .filter(|_| w + 1 == waves.len())
                .map(|(j, predicted)| (j, predicted.ids.as_slice()));
            let fast = self.fast.as_ref();
            host.compute_with_read_ahead(idx, wave, read_ahead, |view| {
                let part = |p: usize| move |pair: usize| view.expert(routes.ids[pair]).map(|parts| parts[p]);
                pair_products(fast, gate_up(0), part(0), h, routes, false, &mut g)?;
                pair_products(fast, gate_up(1), part(1), h, routes, false, &mut u)?;
                let a = swiglu_values(fast, &g, &u);
                pair_products(fast, down, part(2), &a, routes, true, &mut d)
            })?;
        }
        pair_sums_into(&d, routes.n_used, acc)
    }
}
