//! The disk's own sequential read rate, the physical limit of decoding under a RAM
//! budget: `lowbit bench stream --ram-budget` measures it in the same run as the decode
//! and divides the host cache's read rate by it.

use crate::error::{Error, Result};
use crate::gguf::File;
use std::time::Instant;

/// Bytes read per call in the sequential measurement.
const PIECE: usize = 8 << 20;
/// Sequential runs the measurement spreads over the file.
const RUNS: u64 = 32;

/// Cold sequential read rates of a model file, bytes per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskRate {
    /// Bytes each measurement read.
    pub bytes: u64,
    /// Through the page cache from a cold start (`POSIX_FADV_DONTNEED` first, the
    /// kernel's read-ahead on): None where the cache could not be dropped.
    pub buffered: Option<f64>,
    /// Around the page cache (direct I/O); None where the file system has none.
    pub direct: Option<f64>,
}

impl DiskRate {
    /// The faster of the two: what the disk can deliver.
    pub fn best(&self) -> Option<f64> {
        match (self.buffered, self.direct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Read up to `limit` bytes of the file's largest shard, in `RUNS` sequential runs of
/// `PIECE`-byte reads spread evenly over its tensor data (mostly expert bytes in a
/// MoE file, not only the resident weights at its start that every load reads), once
/// through a dropped page cache and once direct.
pub fn measure(file: &File, limit: u64) -> Result<DiskRate> {
    let shard = file
        .shards()
        .iter()
        .max_by_key(|s| s.bytes().len())
        .ok_or_else(|| Error::Unsupported("a file without shards".into()))?;
    let start = shard.header.data_offset;
    let span = shard.bytes().len() as u64 - start;
    let run = (span.min(limit) / RUNS).max(1);
    let mut buf = vec![0u8; PIECE];
    let mut rate = |page_cache: bool| -> Result<f64> {
        let t = Instant::now();
        for r in 0..RUNS {
            let first = start + r * (span - run) / (RUNS - 1);
            let mut at = 0;
            while at < run {
                let n = (run - at).min(PIECE as u64) as usize;
                shard
                    .read_via(page_cache, first + at, &mut buf[..n])
                    .map_err(|e| Error::io(&shard.path, e))?;
                at += n as u64;
            }
        }
        Ok((run * RUNS) as f64 / t.elapsed().as_secs_f64())
    };
    let buffered = if crate::gguf::direct::evict_page_cache(&shard.path) {
        Some(rate(true)?)
    } else {
        None
    };
    let direct = if shard.direct_reads() { Some(rate(false)?) } else { None };
    Ok(DiskRate {
        bytes: run * RUNS,
        buffered,
        direct,
    })
}
