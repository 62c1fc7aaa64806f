//! GGUF v3 writer, following `gguf_write_to_buf` in `ggml/src/gguf.cpp`.
//!
//! Each output file is written to a temporary file in the target directory, flushed,
//! `fsync`ed and only then renamed onto its final name, so an interrupted write never
//! leaves a partial file under that name. A split model (`--split` in llama.cpp's
//! `gguf-split`) puts all metadata in the first shard and `split.no`, `split.count`
//! and `split.tensors.count` in every shard.

use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, TensorInfo, shard_path};
use super::value::Value;
use crate::error::{Error, Result};
use crate::quant::BlockType;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A tensor to write: its name, type and dimensions (`ne[0]` first).
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    pub ty: BlockType,
    pub dims: Vec<u64>,
}

impl From<&TensorInfo> for TensorSpec {
    /// The spec of a tensor as a file holds it.
    fn from(info: &TensorInfo) -> Self {
        TensorSpec {
            name: info.name.clone(),
            ty: info.ty,
            dims: info.dims.clone(),
        }
    }
}

impl TensorSpec {
    /// Bytes of data, or an error when `ne[0]` is not whole blocks.
    pub fn size(&self) -> Result<u64> {
        let row = self
            .ty
            .row_bytes(*self.dims.first().unwrap_or(&0) as usize)
            .map_err(|e| Error::Shape(format!("tensor '{}': {e}", self.name)))?;
        Ok(self.dims[1..].iter().product::<u64>() * row as u64)
    }
}

/// How to spread tensors over files.
#[derive(Clone, Copy, Debug)]
pub enum SplitPolicy {
    /// One file.
    Single,
    /// At most this many tensors per shard.
    MaxTensors(usize),
    /// At most this many tensor-data bytes per shard (a larger tensor gets a shard of its own).
    MaxBytes(u64),
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn check_metadata(metadata: &[(String, Value)]) -> Result<()> {
    fn check(key: &str, v: &Value) -> Result<()> {
        if let Value::Array(ty, items) = v {
            for item in items {
                if item.value_type() != *ty {
                    return Err(Error::Metadata {
                        key: key.into(),
                        reason: format!("array of {ty:?} holds a {:?}", item.value_type()),
                    });
                }
                check(key, item)?;
            }
        }
        Ok(())
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in metadata {
        if !seen.insert(k.as_str()) {
            return Err(Error::Metadata {
                key: k.clone(),
                reason: "given twice".into(),
            });
        }
        check(k, v)?;
    }
    Ok(())
}

fn alignment_of(metadata: &[(String, Value)]) -> Result<u64> {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(*a as u64),
        Some((_, v)) => Err(Error::Metadata {
            key: "general.alignment".into(),
            reason: format!("must be a non-zero power of two u32, got {v:?}"),
        }),
    }
}

/// The header bytes (up to the aligned start of the data section) of one file.
fn header(metadata: &[(String, Value)], tensors: &[TensorSpec], sizes: &[u64], alignment: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(GGUF_MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut out, k);
        out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0u64;
    for (t, &size) in tensors.iter().zip(sizes) {
        put_string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += size.div_ceil(alignment) * alignment;
    }
    let padded = (out.len() as u64).div_ceil(alignment) * alignment;
    out.resize(padded as usize, 0);
    out
}

/// Group tensor indices into shards under `policy`.
fn plan_shards(sizes: &[u64], policy: SplitPolicy) -> Vec<std::ops::Range<usize>> {
    let mut shards = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        let full = match policy {
            SplitPolicy::Single => false,
            SplitPolicy::MaxTensors(n) => i - start >= n.max(1),
            SplitPolicy::MaxBytes(max) => i > start && bytes + size > max,
        };
        if full {
            shards.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    shards.push(start..sizes.len());
    shards
}

/// Write a GGUF file (or the shards of a split one) atomically.
///
/// `fill(i, out)` must write exactly the data bytes of `tensors[i]`; it is called once
/// per tensor, in order, so tensors can be produced (quantized) one at a time.
/// Returns the paths written. With a split policy that yields several shards,
/// `path = DIR/NAME.gguf` becomes `DIR/NAME-00001-of-0000N.gguf`, ….
/// The bytes [`write()`] puts before the tensor data of a single file (header and
/// tensor infos, padded to the alignment), and the alignment of each tensor's data.
pub fn header_size(metadata: &[(String, Value)], tensors: &[TensorSpec]) -> Result<(u64, u64)> {
    let alignment = alignment_of(metadata)?;
    let sizes = tensors.iter().map(TensorSpec::size).collect::<Result<Vec<_>>>()?;
    Ok((header(metadata, tensors, &sizes, alignment).len() as u64, alignment))
}

pub fn write(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorSpec],
    policy: SplitPolicy,
    mut fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    check_metadata(metadata)?;
    let alignment = alignment_of(metadata)?;
    let sizes = tensors.iter().map(TensorSpec::size).collect::<Result<Vec<_>>>()?;
    let mut names = std::collections::HashSet::new();
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(Error::Shape(format!("tensor '{}' given twice", t.name)));
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let shards = plan_shards(&sizes, policy);
    let count = shards.len();
    let targets: Vec<PathBuf> = if count == 1 {
        vec![path.to_path_buf()]
    } else {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        (1..=count)
            .map(|i| shard_path(&dir, stem, i as u32, count as u32))
            .collect()
    };

    let mut temps = Vec::with_capacity(count);
    for (no, range) in shards.iter().enumerate() {
        let mut shard_meta: Vec<(String, Value)> = Vec::new();
        if no == 0 {
            shard_meta.extend(metadata.iter().filter(|(k, _)| !k.starts_with("split.")).cloned());
        } else if metadata.iter().any(|(k, _)| k == "general.alignment") {
            shard_meta.push(("general.alignment".into(), Value::U32(alignment as u32)));
        }
        if count > 1 {
            shard_meta.push(("split.no".into(), Value::U16(no as u16)));
            shard_meta.push(("split.count".into(), Value::U16(count as u16)));
            shard_meta.push(("split.tensors.count".into(), Value::I32(tensors.len() as i32)));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".lowbit-")
            .suffix(".gguf.tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let target = &targets[no];
        let io = |e| Error::io(target, e);
        let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
        out.write_all(&header(
            &shard_meta,
            &tensors[range.clone()],
            &sizes[range.clone()],
            alignment,
        ))
        .map_err(io)?;
        for i in range.clone() {
            let mut counting = Counting {
                inner: &mut out,
                written: 0,
            };
            fill(i, &mut counting)?;
            if counting.written != sizes[i] {
                return Err(Error::Shape(format!(
                    "tensor '{}': wrote {} bytes, its shape and type need {}",
                    tensors[i].name, counting.written, sizes[i]
                )));
            }
            let pad = sizes[i].div_ceil(alignment) * alignment - sizes[i];
            out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        }
        out.flush().map_err(io)?;
        drop(out);
        tmp.as_file().sync_all().map_err(io)?;
        temps.push(tmp);
    }
    for (tmp, target) in temps.into_iter().zip(&targets) {
        tmp.persist(target).map_err(|e| Error::io(target, e.error))?;
    }
    Ok(targets)
}
