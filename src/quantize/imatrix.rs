//! Importance matrices: the mean squared input activation of every matrix product, per
//! matrix slice (per expert for `_exps` tensors, per head for MLA's `attn_k_b`/`attn_v_b`),
//! in llama.cpp's two file formats (tools/imatrix/imatrix.cpp):
//!
//! - GGUF (`general.type = imatrix`): per tensor `NAME.in_sum2` F32 `[k, n_mat]` (sums of
//!   x²) and `NAME.counts` F32 `[1, n_mat]` (inputs summed; one count for a whole dense
//!   tensor), plus `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`.
//! - legacy `.dat`: `i32 n_entries`, then per entry `i32 name_len, name, i32 ncall,
//!   i32 nval, f32 values[nval]` with values = mean · ncall, then `i32 chunks, i32 len,
//!   dataset name`.

use crate::error::{Error, Result};
use crate::gguf::{File, SplitPolicy, TensorSpec, Value, write};
use crate::quant::BlockType;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Statistics of one weight tensor's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Σ x² per input column, `[n_mat][k]`.
    pub sum2: Vec<f32>,
    /// Inputs summed per matrix (`n_mat` values), or one for all matrices.
    pub counts: Vec<f32>,
}

impl Entry {
    pub fn new(k: usize, n_mat: usize, per_matrix_counts: bool) -> Self {
        Entry {
            sum2: vec![0.0; k * n_mat],
            counts: vec![0.0; if per_matrix_counts { n_mat } else { 1 }],
        }
    }

    /// The count that applies to matrix `m`.
    pub fn count(&self, m: usize) -> f32 {
        if self.counts.len() == 1 {
            self.counts[0]
        } else {
            self.counts[m]
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, Entry>,
    pub datasets: Vec<String>,
    pub chunks: usize,
    pub chunk_size: usize,
}

fn malformed(path: &Path, reason: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    }
}

impl Imatrix {
    /// Importance weights for matrix `m` of tensor `name`, a tensor of `n_mat` matrices
    /// of `k` columns: the mean x² per column, as llama-quantize passes them. None when
    /// the tensor has no entry or the matrix saw no input. An entry of any other size
    /// (from another model, say: llama-quantize's "imatrix size ... is different from
    /// tensor size"), or with counts that match neither one nor every matrix, is an error.
    pub fn weights(&self, name: &str, m: usize, k: usize, n_mat: usize) -> Result<Option<Vec<f32>>> {
        let Some(e) = self.entries.get(name) else {
            return Ok(None);
        };
        if k == 0 || e.sum2.len() != k * n_mat || m >= n_mat {
            return Err(Error::Shape(format!(
                "imatrix entry '{name}' has {} values, the tensor needs {n_mat} x {k} = {} (rows of {k})",
                e.sum2.len(),
                k * n_mat
            )));
        }
        if e.counts.len() != 1 && e.counts.len() != n_mat {
            return Err(Error::Shape(format!(
                "imatrix entry '{name}' has {} counts for its {n_mat} matrices of {k} values",
                e.counts.len()
            )));
        }
        let c = e.count(m);
        if !(c >= 0.0 && c.is_finite()) {
            return Err(Error::Shape(format!("imatrix entry '{name}': count {c} of matrix {m}")));
        }
        if c == 0.0 {
            return Ok(None);
        }
        Ok(Some(e.sum2[m * k..(m + 1) * k].iter().map(|s| s / c).collect()))
    }

    /// Read either format (GGUF by its magic, else legacy).
    pub fn read(path: &Path) -> Result<Self> {
        let head = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if head.starts_with(b"GGUF") {
            Self::read_gguf(path)
        } else {
            Self::parse_legacy(&head, path)
        }
    }

    fn read_gguf(path: &Path) -> Result<Self> {
        let file = File::open(path)?;
        // A model (or any other GGUF) is not an imatrix: say so instead of reading no entries.
        match file.metadata("general.type") {
            Some(Value::String(t)) if t == "imatrix" => {}
            other => {
                return Err(malformed(
                    path,
                    format!(
                        "not an imatrix: general.type is {} (an imatrix GGUF says \"imatrix\")",
                        other.map_or("missing".into(), Value::display_short)
                    ),
                ));
            }
        }
        let mut im = Imatrix {
            datasets: file
                .metadata("imatrix.datasets")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            chunks: file
                .metadata("imatrix.chunk_count")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
            chunk_size: file.metadata("imatrix.chunk_size").and_then(Value::as_u64).unwrap_or(0) as usize,
            ..Default::default()
        };
        for t in file.tensors() {
            let tname = &t.info.name;
            if let Some(name) = tname.strip_suffix(".counts") {
                if file.tensor(&format!("{name}.in_sum2")).is_err() {
                    return Err(malformed(path, format!("{tname} has no {name}.in_sum2")));
                }
                continue;
            }
            let Some(name) = tname.strip_suffix(".in_sum2") else {
                return Err(malformed(
                    path,
                    format!("tensor {tname} is neither NAME.in_sum2 nor NAME.counts: not an imatrix"),
                ));
            };
            let counts = file.tensor(&format!("{name}.counts"))?;
            let (sum2, counts) = (t.dequantize()?, counts.dequantize()?);
            let n_mat = t.info.dims[1..].iter().product::<u64>() as usize;
            if counts.len() != 1 && counts.len() != n_mat {
                return Err(malformed(
                    path,
                    format!("{name}: {} counts for {n_mat} matrices", counts.len()),
                ));
            }
            if let Some(c) = counts.iter().find(|c| !(**c >= 0.0 && c.is_finite())) {
                return Err(malformed(path, format!("{name}: count {c}")));
            }
            im.entries.insert(name.to_string(), Entry { sum2, counts });
        }
        Ok(im)
    }

    /// Parse the legacy `.dat` format from `bytes` (`path` names it in errors).
    pub fn parse_legacy(bytes: &[u8], path: &Path) -> Result<Self> {
        let mut at = 0usize;
        let i32_at = |at: &mut usize| -> Result<i32> {
            let b = bytes
                .get(*at..*at + 4)
                .ok_or_else(|| malformed(path, format!("truncated at byte {at}")))?;
            *at += 4;
            Ok(i32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let n = i32_at(&mut at)?;
        if !(0..1 << 24).contains(&n) {
            return Err(malformed(path, format!("{n} entries: not an imatrix file")));
        }
        let mut im = Imatrix::default();
        let count_at = |at: &mut usize, what: &str| -> Result<usize> {
            let v = i32_at(at)?;
            usize::try_from(v).map_err(|_| malformed(path, format!("negative {what} {v} at byte {}", *at - 4)))
        };
        for _ in 0..n {
            let len = count_at(&mut at, "name length")?;
            let name = bytes
                .get(at..at + len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| malformed(path, format!("bad entry name at byte {at}")))?
                .to_string();
            at += len;
            let ncall = count_at(&mut at, "ncall")?;
            let nval = count_at(&mut at, "value count")?;
            let raw = bytes
                .get(at..at + 4 * nval)
                .ok_or_else(|| malformed(path, format!("{name}: truncated values")))?;
            at += 4 * nval;
            let sum2 = bytemuck::pod_collect_to_vec(raw);
            im.entries.insert(
                name,
                Entry {
                    sum2,
                    counts: vec![ncall as f32],
                },
            );
        }
        if at < bytes.len() {
            im.chunks = i32_at(&mut at)?.max(0) as usize;
            let len = i32_at(&mut at)?.max(0) as usize;
            if let Some(name) = bytes.get(at..at + len).and_then(|b| std::str::from_utf8(b).ok()) {
                im.datasets.push(name.to_string());
            }
        }
        Ok(im)
    }

    /// Write the GGUF format, atomically.
    pub fn write_gguf(&self, path: &Path) -> Result<()> {
        let metadata = vec![
            ("general.type".to_string(), Value::String("imatrix".into())),
            (
                "imatrix.datasets".to_string(),
                Value::Array(
                    crate::gguf::ValueType::String,
                    self.datasets.iter().map(|d| Value::String(d.clone())).collect(),
                ),
            ),
            ("imatrix.chunk_count".to_string(), Value::U32(self.chunks as u32)),
            ("imatrix.chunk_size".to_string(), Value::U32(self.chunk_size as u32)),
        ];
        let mut specs = Vec::new();
        let mut data: Vec<&[f32]> = Vec::new();
        for (name, e) in &self.entries {
            let n_mat = e.counts.len();
            if n_mat == 0 || e.sum2.len() % n_mat != 0 {
                return Err(Error::Shape(format!(
                    "imatrix entry '{name}': {} counts do not split its {} values into matrices",
                    n_mat,
                    e.sum2.len()
                )));
            }
            let k = e.sum2.len() / n_mat.max(1);
            let dims = |k: usize| {
                if n_mat > 1 {
                    vec![k as u64, n_mat as u64]
                } else {
                    vec![(k * n_mat) as u64]
                }
            };
            // A dense tensor of several matrices has one count: in_sum2 is then flat.
            let sum_dims = if n_mat > 1 { dims(k) } else { vec![e.sum2.len() as u64] };
            specs.push(TensorSpec {
                name: format!("{name}.in_sum2"),
                ty: BlockType::F32,
                dims: sum_dims,
            });
            data.push(&e.sum2);
            specs.push(TensorSpec {
                name: format!("{name}.counts"),
                ty: BlockType::F32,
                dims: if n_mat > 1 { vec![1, n_mat as u64] } else { vec![1] },
            });
            data.push(&e.counts);
        }
        write(path, &metadata, &specs, SplitPolicy::Single, |i, w| {
            w.write_all(bytemuck::cast_slice(data[i]))
                .map_err(|e| Error::io(path, e))
        })?;
        Ok(())
    }

    /// Write the legacy `.dat` format, atomically (per-expert counts are folded into
    /// the means; ncall is the chunk count).
    pub fn write_legacy(&self, path: &Path) -> Result<()> {
        let ncall = self.chunks.max(1) as f32;
        let mut out = Vec::new();
        out.extend_from_slice(&(self.entries.len() as i32).to_le_bytes());
        for (name, e) in &self.entries {
            out.extend_from_slice(&(name.len() as i32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(ncall as i32).to_le_bytes());
            out.extend_from_slice(&(e.sum2.len() as i32).to_le_bytes());
            let k = e.sum2.len() / e.counts.len().max(1);
            for (j, s) in e.sum2.iter().enumerate() {
                let c = e.count(if e.counts.len() == 1 { 0 } else { j / k });
                let mean = if c > 0.0 { s / c } else { 0.0 };
                out.extend_from_slice(&(mean * ncall).to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.chunks as i32).to_le_bytes());
        let dataset = self.datasets.first().map_or("", String::as_str);
        out.extend_from_slice(&(dataset.len() as i32).to_le_bytes());
        out.extend_from_slice(dataset.as_bytes());
        let tmp = path.with_extension("dat.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&out)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}
