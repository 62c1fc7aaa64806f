//! A persistent pool of workers that spin and then park, as ggml's CPU backend keeps
//! its threads (`ggml_graph_compute_thread`, `ggml/src/ggml-cpu/ggml-cpu.c`): one
//! operation is one [`Pool::run`], which wakes the workers, runs on the caller too,
//! and returns when every thread has finished (the operation's one barrier). Work is
//! handed out in chunks from an atomic counter ([`Pool::for_each_chunk`]).

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins of an idle worker (about a millisecond) before it parks.
const SPINS: u32 = 1 << 15;

/// The job of the current generation: called once per thread with the thread's index.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// The current job, valid while `pending` is not zero.
    job: Mutex<Option<SendJob>>,
    /// Bumped once per job; workers run a job when they see it change.
    generation: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// A worker's job panicked.
    panicked: AtomicBool,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the job is `Sync` and outlives its generation ([`Pool::run`] waits).
unsafe impl Send for SendJob {}

/// `threads - 1` workers plus the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool of `threads` threads in all (the caller is one); at least one.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|tid| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("lowbit-cpu-{tid}"))
                    .spawn(move || worker(&shared, tid))
                    .expect("spawning a CPU worker")
            })
            .collect();
        Pool { shared, workers }
    }

    /// Threads in all, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(thread)` on every thread (the caller is thread 0) and return when all
    /// have finished. A panic in any of them is raised here after all have stopped.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            return f(0);
        }
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased; the job is cleared below, after every
        // worker has finished it, before `f` goes out of scope.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
        *s.job.lock().expect("pool lock") = Some(SendJob(job));
        s.pending.store(self.workers.len(), Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.sleep.lock().expect("pool lock");
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        *s.job.lock().expect("pool lock") = None;
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a lowbit CPU worker panicked");
        }
    }

    /// `f(range)` for consecutive ranges of `chunk` items covering `0..n`, handed to the
    /// threads as they become free. Work of one chunk runs on the caller alone.
    pub fn for_each_chunk(&self, n: usize, chunk: usize, f: impl Fn(Range<usize>) + Sync) {
        let chunk = chunk.max(1);
        if n <= chunk || self.workers.is_empty() {
            if n > 0 {
                f(0..n);
            }
            return;
        }
        let next = AtomicUsize::new(0);
        self.run(&|_| {
            loop {
                let start = next.fetch_add(chunk, Ordering::Relaxed);
                if start >= n {
                    break;
                }
                f(start..(start + chunk).min(n));
            }
        });
    }

    /// Rows per chunk for `rows` rows: about four chunks per thread, 8 to 64 rows each.
    pub fn chunk_rows(&self, rows: usize) -> usize {
        rows.div_ceil(4 * self.threads()).clamp(8, 64)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.sleep.lock().expect("pool lock");
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(s: &Shared, tid: usize) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        loop {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            if s.generation.load(Ordering::Acquire) != seen {
                break;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut guard = s.sleep.lock().expect("pool lock");
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.generation.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                guard = s.wake.wait(guard).expect("pool lock");
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        }
        seen = s.generation.load(Ordering::Acquire);
        let job = s.job.lock().expect("pool lock").expect("a job for a new generation");
        // SAFETY: the job stays valid until `pending` reaches zero.
        if catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)(tid) })).is_err() {
            s.panicked.store(true, Ordering::SeqCst);
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Physical cores (Linux: distinct core ids per package in `/proc/cpuinfo`), else the
/// logical CPUs the process may use.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let mut package = "";
    for line in info.lines() {
        let (key, value) = line.split_once(':').map_or(("", ""), |(k, v)| (k.trim(), v.trim()));
        match key {
            "physical id" => package = value,
            "core id" => {
                cores.insert((package.to_string(), value.to_string()));
            }
            _ => {}
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_once_on_any_thread_count() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for n in [0, 1, 7, 64, 1000] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.for_each_chunk(n, 3, |r| {
                    for i in r {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "{threads} threads, {n} items"
                );
            }
        }
    }

    #[test]
    fn parked_workers_wake_for_the_next_job() {
        let pool = Pool::new(2);
        let ran = AtomicUsize::new(0);
        pool.run(&|_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
        // Long enough for the worker to spin out and park.
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.run(&|_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = Pool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(&|tid| assert_ne!(tid, 1, "worker fails"))));
        assert!(r.is_err());
        let ran = AtomicUsize::new(0);
        pool.run(&|_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }
}
