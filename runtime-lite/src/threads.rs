//! Intra-op parallelism: [`Exec`] runs a kernel's independent tasks on the calling thread
//! alone, or (with `std`) also on a small pool of persistent workers.
//!
//! A parallel section allocates nothing: the caller publishes a borrowed task function under
//! a mutex (waking workers only if they sleep: between sections they spin briefly), and
//! every thread takes tasks from its own contiguous share of them first, then from the
//! others' (one atomic counter per share, tagged with the section's generation). The caller
//! returns once every task has finished. A panic in a task is reported on the calling
//! thread.
//!
//! The shares keep data where it was made: consecutive kernels split their rows the same
//! way, so the rows a thread writes in one are mostly the rows it reads in the next, from
//! its own core's cache.

#[cfg(feature = "std")]
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(feature = "std")]
use std::sync::{Arc, Condvar, Mutex};

/// Where a model's kernels run their tasks.
#[derive(Default)]
pub struct Exec {
    #[cfg(feature = "std")]
    pool: Option<Pool>,
}

impl Exec {
    /// Everything on the calling thread.
    pub const fn single() -> Self {
        Self {
            #[cfg(feature = "std")]
            pool: None,
        }
    }

    /// The calling thread plus `threads - 1` persistent workers (`threads <= 1`: none).
    /// Without the `std` feature there are no threads and this is [`Exec::single`].
    pub fn with_threads(threads: usize) -> Self {
        #[cfg(feature = "std")]
        {
            Self {
                pool: (threads > 1).then(|| Pool::new(threads - 1)),
            }
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = threads;
            Self::single()
        }
    }

    /// Threads that run tasks, the caller included.
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            return pool.workers.len() + 1;
        }
        1
    }

    /// Runs `task(i)` for every `i < n_tasks`, in parallel when there are workers.
    pub fn for_each(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            if n_tasks > 1 {
                pool.run(n_tasks, task);
                return;
            }
        }
        for i in 0..n_tasks {
            task(i);
        }
    }

    /// Splits `data` into consecutive chunks of `chunk` elements (the last may be shorter) and
    /// runs `task(index, chunk)` for each, in parallel when there are workers. This is the
    /// safe way for a kernel to hand disjoint parts of its output to threads.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        task: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let chunk = chunk.max(1);
        if self.threads() == 1 {
            for (i, part) in data.chunks_mut(chunk).enumerate() {
                task(i, part);
            }
            return;
        }
        let len = data.len();
        let shared = SharedMut::new(data);
        self.for_each(len.div_ceil(chunk), &|i| {
            let start = i * chunk;
            // SAFETY: task i takes only [i * chunk, (i + 1) * chunk) clipped to the buffer,
            // disjoint from every other task's range; `shared` panics if out of bounds.
            let part = unsafe { shared.slice(start, chunk.min(len - start)) };
            task(i, part);
        });
    }
}

#[cfg(feature = "std")]
struct Pool {
    shared: Arc<Shared>,
    workers: std::vec::Vec<std::thread::JoinHandle<()>>,
}

/// A published task function with its lifetime erased; only called for a task index claimed
/// in its own generation, which `Pool::run` outlives (it returns once every claimed task has
/// finished).
#[cfg(feature = "std")]
#[derive(Clone, Copy)]
struct Job {
    task: *const (dyn Fn(usize) + Sync),
    n_tasks: usize,
}

// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive while it can be called.
#[cfg(feature = "std")]
unsafe impl Send for Job {}

#[cfg(feature = "std")]
struct State {
    job: Option<Job>,
    generation: u32,
    sleepers: usize,
    shutdown: bool,
}

/// Spin iterations a worker waits for the next job before it sleeps: parallel sections of a
/// model come microseconds apart, much sooner than a sleeping thread wakes up.
#[cfg(feature = "std")]
const SPIN: u32 = 1 << 13;

#[cfg(feature = "std")]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// The generation last published, which spinning workers watch.
    published: AtomicU32,
    /// Per thread (the caller first), its share's generation (high 32 bits) and next
    /// unclaimed task (low 32 bits): a claim is one compare-and-swap, and a worker still
    /// holding an older job cannot claim a task of the new one.
    shares: std::boxed::Box<[Share]>,
    /// Tasks of the current generation that have finished.
    done: AtomicUsize,
    panicked: AtomicBool,
    /// Whether a section is in progress.
    running: AtomicBool,
}

/// Clears the section flag when the section ends, also by a panic.
#[cfg(feature = "std")]
struct Running<'a>(&'a AtomicBool);

#[cfg(feature = "std")]
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One thread's share of a section's tasks, alone on its cache lines.
#[cfg(feature = "std")]
#[repr(align(128))]
struct Share(AtomicU64);

#[cfg(feature = "std")]
impl Shared {
    /// The state of a pool of `threads` threads, the caller included.
    fn new(threads: usize) -> Self {
        Self {
            state: Mutex::new(State {
                job: None,
                generation: 0,
                sleepers: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            published: AtomicU32::new(0),
            shares: (0..threads).map(|_| Share(AtomicU64::new(0))).collect(),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            running: AtomicBool::new(false),
        }
    }

    /// Claims the next task of generation `generation` for thread `me`: from its own share
    /// while that has tasks left, then from the others' in turn; none once the generation is
    /// no longer the current one.
    fn claim(&self, me: usize, generation: u32, n_tasks: usize) -> Option<usize> {
        let parts = self.shares.len();
        for s in (me..parts).chain(0..me) {
            let (start, end) = (s * n_tasks / parts, (s + 1) * n_tasks / parts);
            let slot = &self.shares[s].0;
            let mut word = slot.load(Ordering::Acquire);
            loop {
                let (g, next) = ((word >> 32) as u32, (word & 0xffff_ffff) as usize);
                if g != generation || start + next >= end {
                    break;
                }
                match slot.compare_exchange_weak(
                    word,
                    word + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(start + next),
                    Err(now) => word = now,
                }
            }
        }
        None
    }

    /// Runs the tasks of `job` thread `me` claims until none is left, counting each finished
    /// one (also one that panicked, which is recorded).
    fn work(&self, me: usize, generation: u32, job: Job) {
        while let Some(i) = self.claim(me, generation, job.n_tasks) {
            // SAFETY: task i of this generation was claimed, so `Pool::run` is still waiting
            // for it to finish and keeps the function alive.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                (*job.task)(i)
            }))
            .is_ok();
            if !ok {
                self.panicked.store(true, Ordering::Release);
            }
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(feature = "std")]
impl Pool {
    fn new(workers: usize) -> Self {
        let shared = Arc::new(Shared::new(workers + 1));
        let workers = (1..=workers)
            .map(|me| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || worker(&shared, me))
            })
            .collect();
        Self { shared, workers }
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        assert!(u32::try_from(n_tasks).is_ok(), "too many parallel tasks");
        // One section at a time: a task that starts a section of its own, or a second thread
        // sharing this executor, runs its tasks on the calling thread instead.
        if self.shared.running.swap(true, Ordering::Acquire) {
            for i in 0..n_tasks {
                task(i);
            }
            return;
        }
        let _running = Running(&self.shared.running);
        // SAFETY: only the lifetime is erased; the function is called only for tasks claimed
        // in this generation, and this function returns after all of them have finished.
        let erased: *const (dyn Fn(usize) + Sync + 'static) =
            unsafe { core::mem::transmute(task as *const (dyn Fn(usize) + Sync)) };
        let job = Job {
            task: erased,
            n_tasks,
        };
        let generation = {
            let mut state = self.shared.lock();
            state.generation = state.generation.wrapping_add(1);
            state.job = Some(job);
            self.shared.done.store(0, Ordering::Release);
            self.shared.panicked.store(false, Ordering::Release);
            for share in &*self.shared.shares {
                share
                    .0
                    .store(u64::from(state.generation) << 32, Ordering::Release);
            }
            self.shared
                .published
                .store(state.generation, Ordering::Release);
            if state.sleepers > 0 {
                self.shared.work.notify_all();
            }
            state.generation
        };
        self.shared.work(0, generation, job);
        // Every task is claimed; wait for the workers' last ones.
        let mut spins = 0u32;
        while self.shared.done.load(Ordering::Acquire) < n_tasks {
            spins += 1;
            if spins < SPIN {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.shared.lock().job = None;
        assert!(
            !self.shared.panicked.load(Ordering::Acquire),
            "a parallel task panicked"
        );
    }
}

#[cfg(feature = "std")]
fn worker(shared: &Shared, me: usize) {
    let mut seen = 0u32;
    loop {
        // Spin briefly for the next generation, then sleep until it is published.
        let mut spins = 0;
        while shared.published.load(Ordering::Acquire) == seen && spins < SPIN {
            core::hint::spin_loop();
            spins += 1;
        }
        let job = {
            let mut state = shared.lock();
            while !state.shutdown && state.generation == seen {
                state.sleepers += 1;
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                state.sleepers -= 1;
            }
            if state.shutdown {
                return;
            }
            seen = state.generation;
            state.job
        };
        if let Some(job) = job {
            shared.work(me, seen, job);
        }
    }
}

#[cfg(feature = "std")]
impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// How a product over blocks of rows (output pixels) by tiles of columns splits into tasks:
/// each unit is one block of rows over one share of the column tiles.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Split {
    /// Rows per block.
    pub block: usize,
    /// Blocks of rows.
    pub blocks: usize,
    /// Column tiles per share.
    per_split: usize,
    /// Shares of the column tiles.
    col_split: usize,
    /// Units of work: blocks times shares.
    pub units: usize,
    /// Units per task.
    pub per_task: usize,
    /// Whether a task's units are one share of the columns over consecutive blocks.
    by_columns: bool,
}

impl Split {
    /// The pixels of one block when `pixels` output pixels (rows of the product) are cut into
    /// blocks of at most `max` for `threads` threads: at least two blocks per thread when
    /// there are threads, each a whole number of `tile`-pixel tiles. Threads then split the
    /// pixels, not the columns: split by columns, two threads would write the same cache lines
    /// of every pixel's row.
    pub(crate) fn block(pixels: usize, threads: usize, tile: usize, max: usize) -> usize {
        if threads > 1 && pixels < max * 2 * threads {
            pixels
                .div_ceil(2 * threads)
                .next_multiple_of(tile)
                .clamp(tile, max)
        } else {
            max
        }
    }

    /// The split of `rows` rows in blocks of at most `max` (whole `tile`s) by `col_tiles`
    /// column tiles of `cols` columns over `threads` threads.
    ///
    /// With `by_columns` allowed, a product with more columns than rows (more weights than
    /// input: a transformer's projections, a CNN's late layers) gives each task one contiguous
    /// range of columns over all the rows, so that each reads only its share of the weights.
    /// Otherwise threads split the rows ([`Split::block`]); the columns too only when there
    /// are too few blocks to give every thread work. Tasks are four per thread, to even out
    /// their lengths.
    pub(crate) fn new(
        (rows, tile, max): (usize, usize, usize),
        (cols, col_tiles): (usize, usize),
        threads: usize,
        by_columns: bool,
    ) -> Self {
        if by_columns && threads > 1 && cols > rows && col_tiles >= 2 * threads {
            let blocks = rows.div_ceil(max);
            let col_split = 2 * threads;
            return Self {
                block: max,
                blocks,
                per_split: col_tiles.div_ceil(col_split),
                col_split,
                units: blocks * col_split,
                per_task: blocks,
                by_columns: true,
            };
        }
        let block = Self::block(rows, threads, tile, max);
        let blocks = rows.div_ceil(block);
        let col_split = if threads == 1 || blocks >= 2 * threads {
            1
        } else {
            col_tiles.min((2 * threads).div_ceil(blocks)).max(1)
        };
        let units = blocks * col_split;
        Self {
            block,
            blocks,
            per_split: col_tiles.div_ceil(col_split),
            col_split,
            units,
            per_task: if threads == 1 {
                units
            } else {
                units.div_ceil(threads * 4).max(1)
            },
            by_columns: false,
        }
    }

    /// Tasks to run.
    pub(crate) fn tasks(&self) -> usize {
        self.units.div_ceil(self.per_task)
    }

    /// The units of task `task`.
    pub(crate) fn task_units(&self, task: usize) -> core::ops::Range<usize> {
        task * self.per_task..((task + 1) * self.per_task).min(self.units)
    }

    /// Unit `unit`'s block of rows and its column tiles (of `col_tiles`).
    pub(crate) fn unit(&self, unit: usize, col_tiles: usize) -> (usize, core::ops::Range<usize>) {
        let (b, split) = if self.by_columns {
            (unit % self.blocks, unit / self.blocks)
        } else {
            (unit / self.col_split, unit % self.col_split)
        };
        let first = (split * self.per_split).min(col_tiles);
        (b, first..((split + 1) * self.per_split).min(col_tiles))
    }
}

/// A mutable buffer that parallel tasks share to write disjoint parts of it.
#[derive(Clone, Copy)]
pub struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _buffer: core::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: tasks write disjoint regions only (the contract of `slice`).
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    /// Wraps `slice`, which stays mutably borrowed while this lives.
    pub fn new(slice: &'a mut [T]) -> Self {
        Self {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _buffer: core::marker::PhantomData,
        }
    }

    /// The sub-slice `[start, start + len)`.
    ///
    /// Panics if the range is outside the buffer.
    ///
    /// # Safety
    /// No two sub-slices in use at the same time overlap.
    pub unsafe fn slice(&self, start: usize, len: usize) -> &'a mut [T] {
        assert!(
            start.checked_add(len).is_some_and(|end| end <= self.len),
            "shared slice out of bounds"
        );
        // SAFETY: in bounds (asserted), the buffer is borrowed for 'a, and the caller
        // guarantees no overlapping sub-slice is alive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// A raw pointer to element `start`, for writes inside `[start, start + len)` that other
    /// tasks interleave with (the rows of a tile): no slice is made.
    ///
    /// Panics if the range is outside the buffer.
    pub fn span_ptr(&self, start: usize, len: usize) -> *mut T {
        assert!(
            start.checked_add(len).is_some_and(|end| end <= self.len),
            "shared slice out of bounds"
        );
        // SAFETY: in bounds (asserted).
        unsafe { self.ptr.add(start) }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once() {
        let exec = Exec::with_threads(3);
        assert_eq!(exec.threads(), 3);
        for n in [0, 1, 2, 7, 100] {
            let hits: std::vec::Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            exec.for_each(n, &|i| {
                hits[i].fetch_add(1, Ordering::SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
        }
    }

    #[test]
    fn threads_take_their_own_share_first_then_the_others() {
        let shared = Shared::new(3);
        for share in &*shared.shares {
            share.0.store(7 << 32, Ordering::Release);
        }
        // Ten tasks in shares [0, 3), [3, 6), [6, 10): thread 1 takes its own, then thread
        // 2's, then the caller's.
        let order: std::vec::Vec<usize> = core::iter::from_fn(|| shared.claim(1, 7, 10)).collect();
        assert_eq!(order, [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
        // Nothing is left, and an older generation claims nothing.
        assert_eq!(shared.claim(0, 7, 10), None);
        shared.shares[0].0.store(8 << 32, Ordering::Release);
        assert_eq!(shared.claim(0, 7, 10), None);
        assert_eq!(shared.claim(0, 8, 10), Some(0));
    }

    #[test]
    fn chunks_cover_the_buffer_once() {
        for threads in [1, 2, 3] {
            let exec = Exec::with_threads(threads);
            let mut data = std::vec![0usize; 103];
            exec.for_each_chunk(&mut data, 10, &|i, part| {
                for (j, v) in part.iter_mut().enumerate() {
                    *v += i * 10 + j + 1;
                }
            });
            assert!(data.iter().enumerate().all(|(k, &v)| v == k + 1));
        }
    }

    #[test]
    fn nested_sections_run_on_the_calling_thread() {
        let exec = Exec::with_threads(2);
        let count = AtomicUsize::new(0);
        exec.for_each(4, &|_| {
            exec.for_each(3, &|_| {
                count.fetch_add(1, Ordering::SeqCst);
            });
        });
        assert_eq!(count.load(Ordering::SeqCst), 12);
    }

    #[test]
    fn a_panicking_task_is_reported_and_the_pool_survives() {
        let exec = Exec::with_threads(2);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            exec.for_each(8, &|i| assert!(i != 5, "task 5 fails"));
        }));
        assert!(result.is_err());
        let count = AtomicUsize::new(0);
        exec.for_each(4, &|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }
}
