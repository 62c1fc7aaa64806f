//! GGUF reader: memory-mapped, validated before use, split-aware.
//!
//! Format: `ggml/docs/gguf.md` and `gguf_init_from_file_impl` in `ggml/src/gguf.cpp`.
//! A file is: magic `GGUF`, version (u32, 2 or 3), tensor count (u64), metadata count
//! (u64), the metadata key/value pairs, the tensor infos (name, n_dims, `ne[0..n_dims]`,
//! ggml type, offset), padding to `general.alignment` (default 32), then tensor data.
//! Each tensor's offset is relative to the data section and aligned.

use super::direct::DirectReader;
use super::value::{Value, ValueType};
use crate::error::{Error, Result};
use crate::quant::{self, BlockType};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// One tensor's entry in the tensor-info table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub ty: BlockType,
    /// `ne[0..n_dims]`, `ne[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    /// Byte offset of the data from the start of the file.
    pub file_offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Elements in total.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length `ne[0]`.
    pub fn row_len(&self) -> u64 {
        self.dims[0]
    }

    /// Number of rows (`ne[1] * ne[2] * ne[3]`).
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

/// The parsed header of one GGUF file: metadata in file order and tensor infos.
#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Start of the data section.
    pub data_offset: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Malformed {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("truncated: {what} needs {n} bytes, {} left", self.remaining())));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Malformed {
            path: self.path.to_path_buf(),
            offset: start as u64,
            reason: format!("{what} is not valid UTF-8"),
        })
    }

    /// A count of items that each need at least `min_size` bytes; rejected when the
    /// rest of the file could not hold them, so a corrupt count never allocates.
    fn count(&mut self, what: &str, min_size: u64) -> Result<u64> {
        let n = self.u64(what)?;
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(self.err(format!("{what} {n} cannot fit in the {} bytes left", self.remaining())));
        }
        Ok(n)
    }

    fn value(&mut self, ty: ValueType, depth: u32) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>("u8")?[0]),
            ValueType::I8 => Value::I8(self.array::<1>("i8")?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16")?)),
            ValueType::U32 => Value::U32(self.u32("u32")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32")?)),
            ValueType::U64 => Value::U64(self.u64("u64")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64")?)),
            ValueType::Bool => match self.array::<1>("bool")?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("bool value {b} is neither 0 nor 1"))),
            },
            ValueType::String => Value::String(self.string("string value")?),
            ValueType::Array => {
                if depth >= 8 {
                    return Err(self.err("arrays nested more than 8 deep"));
                }
                let id = self.u32("array element type")?;
                let elem =
                    ValueType::from_id(id).ok_or_else(|| self.err(format!("unknown array element type {id}")))?;
                let n = self.count("array length", elem.min_encoded_size())?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

/// Parse and validate a complete GGUF file held in `bytes`. `path` only labels errors.
///
/// Every count, length, dimension, type, offset and size is checked against the
/// bytes actually present; any inconsistency is an [`Error::Malformed`] or
/// [`Error::Tensor`], never a panic or an out-of-bounds read.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Header> {
    let mut c = Cursor { bytes, pos: 0, path };
    let magic = c.array::<4>("magic")?;
    if &magic != GGUF_MAGIC {
        c.pos = 0;
        return Err(c.err(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        return Err(c.err(format!("unsupported GGUF version {version} (lowbit reads 2 and 3)")));
    }
    // A tensor info is at least name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.count("metadata count", 8 + 4 + 1)?;
    if n_tensors.saturating_mul(32) > c.remaining() {
        return Err(c.err(format!("tensor count {n_tensors} cannot fit in the file")));
    }

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut keys = HashMap::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let key_pos = c.pos;
        let key = c.string("metadata key")?;
        let id = c.u32("metadata value type")?;
        let ty = ValueType::from_id(id).ok_or_else(|| c.err(format!("key '{key}': unknown value type {id}")))?;
        let value = c.value(ty, 0)?;
        if keys.insert(key.clone(), ()).is_some() {
            c.pos = key_pos;
            return Err(c.err(format!("duplicate metadata key '{key}'")));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => *a as u64,
        Some((_, v)) => {
            return Err(c.err(format!(
                "general.alignment must be a non-zero power of two u32, got {v:?}"
            )));
        }
    };

    struct RawInfo {
        name: String,
        ty: BlockType,
        dims: Vec<u64>,
        offset: u64,
        size: u64,
    }
    let mut raw = Vec::with_capacity(n_tensors as usize);
    let mut names = HashMap::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let tensor_err = |reason: String| Error::Tensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
            reason,
        };
        let n_dims = c.u32("tensor n_dims")? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(tensor_err(format!("n_dims {n_dims} is not in 1..={MAX_DIMS}")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dimension")?);
        }
        let type_id = c.u32("tensor type")?;
        let ty = BlockType::from_id(type_id).map_err(|_| tensor_err(format!("unknown ggml type id {type_id}")))?;
        let offset = c.u64("tensor offset")?;
        if dims.iter().any(|&d| d > i64::MAX as u64) {
            return Err(tensor_err(format!("dimension out of range in {dims:?}")));
        }
        dims.iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| tensor_err(format!("element count of {dims:?} overflows")))?;
        if dims[0] % ty.block_size() as u64 != 0 {
            return Err(tensor_err(format!(
                "row length ne[0] = {} is not a multiple of the {} block size {}",
                dims[0],
                ty.name(),
                ty.block_size()
            )));
        }
        let size = (dims[0] / ty.block_size() as u64)
            .checked_mul(ty.type_size() as u64)
            .and_then(|row| dims[1..].iter().try_fold(row, |acc, &d| acc.checked_mul(d)))
            .ok_or_else(|| tensor_err(format!("byte size of {dims:?} overflows")))?;
        if offset % alignment != 0 {
            return Err(tensor_err(format!("offset {offset} is not aligned to {alignment}")));
        }
        if names.insert(name.clone(), ()).is_some() {
            return Err(tensor_err("duplicate tensor name".into()));
        }
        raw.push(RawInfo {
            name,
            ty,
            dims,
            offset,
            size,
        });
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(raw.len());
    for r in raw {
        let end = data_offset
            .checked_add(r.offset)
            .and_then(|start| start.checked_add(r.size).map(|end| (start, end)));
        match end {
            Some((start, end)) if end <= file_len => tensors.push(TensorInfo {
                name: r.name,
                ty: r.ty,
                dims: r.dims,
                file_offset: start,
                size: r.size,
            }),
            _ => {
                return Err(Error::Tensor {
                    path: path.to_path_buf(),
                    tensor: r.name,
                    reason: format!(
                        "data [{} + {}, +{}) lies outside the {} byte file",
                        data_offset, r.offset, r.size, file_len
                    ),
                });
            }
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// One GGUF file on disk, memory-mapped and validated.
pub struct Shard {
    pub path: PathBuf,
    pub header: Header,
    map: Mmap,
    /// The open file, for explicit reads that bypass the map ([`TensorRef::read`]).
    file: std::fs::File,
    /// The same file for reads that bypass the page cache too, unless
    /// [`Shard::read_through_page_cache`] asked for the page cache.
    direct: DirectReader,
    page_cache: AtomicBool,
}

impl Shard {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only and private to this process. If another process
        // truncates the file while it is mapped, reads may fault; that is the usual
        // contract of memory-mapped model files (llama.cpp makes the same one).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let header = parse(&map, &path)?;
        Ok(Shard {
            direct: DirectReader::open(&path),
            path,
            header,
            map,
            file,
            page_cache: AtomicBool::new(false),
        })
    }

    /// Whether [`Shard::read_at`] goes through the page cache (`pread`) rather than
    /// around it (direct I/O, where the file system has it; the default).
    pub fn read_through_page_cache(&self, yes: bool) {
        self.page_cache.store(yes, Ordering::Relaxed);
    }

    /// Read `buf.len()` bytes at `offset` with an explicit read (`pread`), not through
    /// the map: the bytes land in `buf` only, so the page cache does not count in this
    /// process's resident size, and a file that shrank gives an error instead of a fault.
    /// Unless [`Shard::read_through_page_cache`] was set, the read bypasses the page
    /// cache as well ([`super::direct`]), where the file system allows it.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.read_via(self.page_cache.load(Ordering::Relaxed), offset, buf)
    }

    /// [`Shard::read_at`] through the page cache or around it (falling back to the page
    /// cache where direct reads are not available), whatever the shard's setting.
    pub fn read_via(&self, page_cache: bool, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if !page_cache && let Some(r) = self.direct.read_at(offset, buf) {
            return r;
        }
        super::direct::read_exact_at(&self.file, buf, offset)
    }

    /// Whether reads around the page cache are available for this file (so far).
    pub fn direct_reads(&self) -> bool {
        self.direct.works()
    }

    /// [`Shard::read_at`] of bytes of `tensor`, the error naming the file and the tensor.
    fn read_tensor_bytes(&self, tensor: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_at(offset, buf).map_err(|e| Error::Tensor {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            reason: format!("reading {} bytes at offset {offset}: {e}", buf.len()),
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// This shard's own metadata value for `key`.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.header.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A model: one GGUF file, or the shards `NAME-0000i-of-0000N.gguf` of a split model
/// opened as one. Metadata comes from the first shard (which carries all of it);
/// tensors come from every shard.
pub struct File {
    shards: Vec<Arc<Shard>>,
    /// Tensor name to (shard, index in that shard's header).
    index: HashMap<String, (usize, usize)>,
    /// All tensors in shard order, then file order.
    order: Vec<(usize, usize)>,
}

/// A tensor that owns its shard: its bytes can be read again at any time, from any
/// thread, for as long as the reference lives (the file stays mapped), without reopening
/// the file. Streamed experts keep one per tensor.
#[derive(Clone)]
pub struct TensorRef {
    pub shard: Arc<Shard>,
    /// Index in the shard's header.
    index: usize,
}

impl TensorRef {
    pub fn info(&self) -> &TensorInfo {
        &self.shard.header.tensors[self.index]
    }

    /// The tensor's byte range in its shard.
    pub fn range(&self) -> std::ops::Range<usize> {
        let info = self.info();
        // In bounds: `parse` checked file_offset + size <= file length.
        info.file_offset as usize..(info.file_offset + info.size) as usize
    }

    pub fn bytes(&self) -> &[u8] {
        &self.shard.bytes()[self.range()]
    }

    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            info: self.info(),
            bytes: self.bytes(),
            path: &self.shard.path,
            shard: Some(&self.shard),
        }
    }

    /// Bytes `range` of the tensor (relative to its start) read into `buf` with an
    /// explicit read (see [`Shard::read_at`]); the error names the file and the tensor.
    pub fn read(&self, range: std::ops::Range<usize>, buf: &mut [u8]) -> Result<()> {
        let info = self.info();
        if range.end > info.size as usize || range.len() != buf.len() {
            return Err(Error::Tensor {
                path: self.shard.path.clone(),
                tensor: info.name.clone(),
                reason: format!("bytes {range:?} of a tensor of {} into {} bytes", info.size, buf.len()),
            });
        }
        self.shard
            .read_tensor_bytes(&info.name, info.file_offset + range.start as u64, buf)
    }
}

/// A tensor's info and its bytes, borrowed from the memory map (no copy).
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub bytes: &'a [u8],
    pub path: &'a Path,
    /// The shard `bytes` lie in, when they are the file's own (not computed at load).
    pub shard: Option<&'a Arc<Shard>>,
}

impl TensorView<'_> {
    /// The shard and the byte range in it that `bytes` are, when they are the file's.
    pub fn mapped(&self) -> Option<(Arc<Shard>, std::ops::Range<usize>)> {
        let shard = self.shard?;
        let base = shard.bytes().as_ptr() as usize;
        let start = (self.bytes.as_ptr() as usize).checked_sub(base)?;
        let range = start..start + self.bytes.len();
        (range.end <= shard.bytes().len()).then(|| (shard.clone(), range))
    }

    /// The bytes in memory this process owns: read from the file with an explicit read
    /// when they are the file's (never touching the map), copied otherwise.
    pub fn read_owned(&self) -> Result<Vec<u8>> {
        let Some((shard, range)) = self.mapped() else {
            return Ok(self.bytes.to_vec());
        };
        let mut buf = vec![0u8; range.len()];
        shard.read_tensor_bytes(&self.info.name, range.start as u64, &mut buf)?;
        Ok(buf)
    }

    /// Dequantize the whole tensor to f32 in ggml element order (`ne[0]` fastest).
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        if !self.info.ty.can_dequantize() {
            return Err(Error::Tensor {
                path: self.path.to_path_buf(),
                tensor: self.info.name.clone(),
                reason: format!("type {} cannot be dequantized", self.info.ty),
            });
        }
        quant::dequantize(self.info.ty, self.bytes, self.info.row_len() as usize).map_err(|e| Error::Tensor {
            path: self.path.to_path_buf(),
            tensor: self.info.name.clone(),
            reason: e.to_string(),
        })
    }
}

/// `(prefix, index, count)` when `path` is named like a split shard `PREFIX-00001-of-00003.gguf`.
pub fn split_name(path: &Path) -> Option<(String, u32, u32)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    if index.len() != 5 || count.len() != 5 {
        return None;
    }
    Some((prefix.to_string(), index.parse().ok()?, count.parse().ok()?))
}

/// The path of shard `index` (1-based) of `count` next to `prefix`.
pub fn shard_path(dir: &Path, prefix: &str, index: u32, count: u32) -> PathBuf {
    dir.join(format!("{prefix}-{index:05}-of-{count:05}.gguf"))
}

impl File {
    /// Open a model. Given any shard of a split model, all shards are opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let first = Shard::open(path)?;
        let split_count = first.metadata("split.count").cloned();
        let shards = match (split_name(path), split_count) {
            (Some((prefix, opened, count)), Some(declared)) => {
                let split_err = |key: &str, shard: &Path, reason: String| Error::Metadata {
                    key: key.into(),
                    reason: format!("{}: {reason}", shard.display()),
                };
                let check_count = |shard: &Shard, declared: Option<&Value>| match declared {
                    Some(v) if v.as_u64() == Some(count as u64) => Ok(()),
                    v => Err(split_err(
                        "split.count",
                        &shard.path,
                        format!(
                            "says {} shards but the file name says {count}",
                            v.map_or("nothing".into(), |v| v.display_short())
                        ),
                    )),
                };
                check_count(&first, Some(&declared))?;
                if opened == 0 || opened > count {
                    return Err(split_err(
                        "split.no",
                        path,
                        format!("the file name's shard number {opened} is not in 1..={count}"),
                    ));
                }
                let dir = path.parent().unwrap_or(Path::new("."));
                let mut first = Some(first);
                let mut shards = Vec::with_capacity(count as usize);
                for i in 1..=count {
                    let p = shard_path(dir, &prefix, i, count);
                    let shard = match first.take_if(|_| i == opened) {
                        Some(shard) => shard,
                        None => Shard::open(&p)?,
                    };
                    check_count(&shard, shard.metadata("split.count"))?;
                    let no = shard.metadata("split.no").and_then(Value::as_u64);
                    if no != Some((i - 1) as u64) {
                        return Err(split_err(
                            "split.no",
                            &p,
                            format!(
                                "has split.no {}, its name makes it shard {i} of {count} (split.no {})",
                                no.map_or("missing".into(), |n| n.to_string()),
                                i - 1
                            ),
                        ));
                    }
                    shards.push(shard);
                }
                shards
            }
            (None, Some(declared)) if declared.as_u64().is_some_and(|n| n > 1) => {
                return Err(Error::Metadata {
                    key: "split.count".into(),
                    reason: format!(
                        "{} is shard of a {}-way split model but is not named NAME-0000i-of-0000N.gguf",
                        path.display(),
                        declared.display_short()
                    ),
                });
            }
            _ => vec![first],
        };
        Self::from_shards(shards)
    }

    fn from_shards(shards: Vec<Shard>) -> Result<Self> {
        let mut index = HashMap::new();
        let mut order = Vec::new();
        for (s, shard) in shards.iter().enumerate() {
            for (t, info) in shard.header.tensors.iter().enumerate() {
                if let Some((other, _)) = index.insert(info.name.clone(), (s, t)) {
                    return Err(Error::Tensor {
                        path: shard.path.clone(),
                        tensor: info.name.clone(),
                        reason: format!(
                            "tensor appears in more than one shard (also in {})",
                            shards[other].path.display()
                        ),
                    });
                }
                order.push((s, t));
            }
        }
        let shards = shards.into_iter().map(Arc::new).collect();
        let file = File { shards, index, order };
        if let Some(expected) = file.metadata("split.tensors.count").and_then(Value::as_u64)
            && expected != file.order.len() as u64
        {
            return Err(Error::Metadata {
                key: "split.tensors.count".into(),
                reason: format!("says {expected} tensors, the shards hold {}", file.order.len()),
            });
        }
        Ok(file)
    }

    /// [`Shard::read_through_page_cache`] for every shard.
    pub fn read_through_page_cache(&self, yes: bool) {
        for s in &self.shards {
            s.read_through_page_cache(yes);
        }
    }

    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// Path of the first shard.
    pub fn path(&self) -> &Path {
        &self.shards[0].path
    }

    /// Metadata of the first shard, in file order.
    pub fn metadata_entries(&self) -> &[(String, Value)] {
        &self.shards[0].header.metadata
    }

    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata_entries().iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every tensor, in shard order then file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.order.iter().map(|&(s, t)| self.view(s, t))
    }

    pub fn tensor_count(&self) -> usize {
        self.order.len()
    }

    fn view(&self, s: usize, t: usize) -> TensorView<'_> {
        let shard = &self.shards[s];
        let info = &shard.header.tensors[t];
        // In bounds: `parse` checked file_offset + size <= file length.
        let bytes = &shard.bytes()[info.file_offset as usize..(info.file_offset + info.size) as usize];
        TensorView {
            info,
            bytes,
            path: &shard.path,
            shard: Some(shard),
        }
    }

    fn find(&self, name: &str) -> Result<(usize, usize)> {
        self.index.get(name).copied().ok_or_else(|| Error::Tensor {
            path: self.path().to_path_buf(),
            tensor: name.to_string(),
            reason: "no such tensor".into(),
        })
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let (s, t) = self.find(name)?;
        Ok(self.view(s, t))
    }

    /// A tensor by name, as a reference that keeps its shard open.
    pub fn tensor_ref(&self, name: &str) -> Result<TensorRef> {
        let (s, index) = self.find(name)?;
        Ok(TensorRef {
            shard: self.shards[s].clone(),
            index,
        })
    }
}
