//! A persistent pool of workers that spin and then park, as ggml's CPU backend keeps
//! its threads (`ggml_graph_compute_thread`, `ggml/src/ggml-cpu/ggml-cpu.c`): one
//! operation is one [`Pool::run`], which wakes the workers, runs on the caller too,
//! and returns when every thread that joined has finished (the operation's one
//! barrier). Work is handed out in chunks from an atomic counter
//! ([`Pool::for_each_chunk`]), so a worker that the OS has not scheduled in time (the
//! machine busy with other work) is simply not waited for: the caller takes its chunks.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins (yielding to other threads now and then) before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// In `active`: the caller has finished its part, so no worker may join the job.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// The job of the current generation: called with the thread's index.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// The current job, valid while a worker that joined it is counted in `active`.
    job: Mutex<Option<SendJob>>,
    /// Bumped once per job; idle workers look for a change.
    generation: AtomicUsize,
    /// Workers running the current job, and [`CLOSED`] once the caller is done.
    active: AtomicUsize,
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
// SAFETY: the job is `Sync` and outlives every worker counted in `active`.
unsafe impl Send for SendJob {}

/// `threads - 1` workers plus the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Spin (pausing, and yielding the CPU every 64 rounds) until `done()`.
fn spin_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

impl Pool {
    /// A pool of `threads` threads in all (the caller is one); at least one.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            active: AtomicUsize::new(CLOSED),
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

    /// Run `f(thread)` on the caller (thread 0) and on each worker that wakes in time
    /// to join, and return when all of those have finished. Jobs share their work
    /// through counters ([`Self::for_each_chunk`]), never by thread index. A panic in
    /// any thread is raised here after all have stopped.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            return f(0);
        }
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased; the job is cleared below, after every
        // worker that joined has finished it and no other can join, before `f` ends.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
        *s.job.lock().expect("pool lock") = Some(SendJob(job));
        s.active.fetch_and(!CLOSED, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.sleep.lock().expect("pool lock");
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        s.active.fetch_or(CLOSED, Ordering::SeqCst);
        spin_until(|| s.active.load(Ordering::Acquire) == CLOSED);
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

    /// Rows per chunk for `rows` rows: about two chunks per thread, 8 to 128 rows each.
    /// Longer chunks are longer sequential streams for the hardware prefetcher; at four
    /// chunks per thread (up to 64 rows) decode was 5-10% slower, alternated in the same
    /// minutes on SmolLM2 and the F16 fixture.
    pub fn chunk_rows(&self, rows: usize) -> usize {
        rows.div_ceil(2 * self.threads()).clamp(8, 128)
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
        let idle = Instant::now();
        let mut spins = 0u32;
        while s.generation.load(Ordering::Acquire) == seen {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            if idle.elapsed() < SPIN {
                std::thread::yield_now();
                continue;
            }
            let mut guard = s.sleep.lock().expect("pool lock");
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.generation.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                guard = s.wake.wait(guard).expect("pool lock");
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        if s.active.fetch_add(1, Ordering::SeqCst) & CLOSED != 0 {
            // Too late for this job: the caller has finished it.
            seen = s.generation.load(Ordering::SeqCst);
            s.active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        // While this worker is counted, the job cannot change.
        seen = s.generation.load(Ordering::SeqCst);
        let job = s.job.lock().expect("pool lock").expect("a job while joined");
        // SAFETY: the job stays valid while this worker is counted in `active`.
        if catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)(tid) })).is_err() {
            s.panicked.store(true, Ordering::SeqCst);
        }
        s.active.fetch_sub(1, Ordering::Release);
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
        // Long enough for the worker to spin out and park.
        std::thread::sleep(Duration::from_millis(50));
        // The caller waits for the worker to take the first chunk, so the worker must
        // wake for the job to finish.
        let woke = AtomicBool::new(false);
        pool.for_each_chunk(2, 1, |r| {
            if r.start == 0 {
                spin_until(|| woke.load(Ordering::SeqCst));
            } else {
                woke.store(true, Ordering::SeqCst);
            }
        });
        assert!(woke.load(Ordering::SeqCst));
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = Pool::new(2);
        // Item 1 waits for the other thread to take item 0, so each thread takes one.
        let taken = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.for_each_chunk(2, 1, |r| {
                if r.start == 0 {
                    taken.store(true, Ordering::SeqCst);
                    panic!("one thread fails");
                }
                spin_until(|| taken.load(Ordering::SeqCst));
            })
        }));
        assert!(r.is_err());
        let ran = AtomicUsize::new(0);
        pool.for_each_chunk(100, 1, |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 100);
    }
}
