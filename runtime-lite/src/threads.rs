//! Intra-op parallelism: [`Exec`] runs a kernel's independent tasks on the calling thread
//! alone, or (with `std`) also on a small pool of persistent workers.
//!
//! A parallel section allocates nothing: the caller publishes a borrowed task function under
//! a mutex, wakes the workers, takes tasks itself from a shared counter, and returns only
//! once every worker has finished with the function. A panic in a task is re-raised on the
//! calling thread.

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

/// A published task function with its lifetime erased; valid while `State::busy > 0` or the
/// publishing `Pool::run` call is on the stack.
#[cfg(feature = "std")]
#[derive(Clone, Copy)]
struct Job {
    task: *const (dyn Fn(usize) + Sync),
    n_tasks: usize,
}

// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive until no worker uses it.
#[cfg(feature = "std")]
unsafe impl Send for Job {}

#[cfg(feature = "std")]
struct State {
    job: Option<Job>,
    generation: u64,
    busy: usize,
    next: usize,
    panicked: bool,
    shutdown: bool,
}

#[cfg(feature = "std")]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
}

#[cfg(feature = "std")]
impl Shared {
    /// Takes the next task index of the current job, if any is left.
    fn claim(&self, n_tasks: usize) -> Option<usize> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.next < n_tasks {
            state.next += 1;
            Some(state.next - 1)
        } else {
            None
        }
    }
}

#[cfg(feature = "std")]
impl Pool {
    fn new(workers: usize) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                job: None,
                generation: 0,
                busy: 0,
                next: 0,
                panicked: false,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let workers = (0..workers)
            .map(|_| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || worker(&shared))
            })
            .collect();
        Self { shared, workers }
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let lock = || {
            self.shared
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        {
            let mut state = lock();
            // SAFETY: only the lifetime is erased; this function does not return before
            // `busy` is 0, i.e. before every worker that copied the job stopped calling it.
            let erased: *const (dyn Fn(usize) + Sync + 'static) =
                unsafe { core::mem::transmute(task as *const (dyn Fn(usize) + Sync)) };
            state.job = Some(Job {
                task: erased,
                n_tasks,
            });
            state.generation += 1;
            state.busy = self.workers.len();
            state.next = 0;
            state.panicked = false;
        }
        self.shared.work.notify_all();
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while let Some(i) = self.shared.claim(n_tasks) {
                task(i);
            }
        }));
        let mut state = lock();
        while state.busy > 0 {
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.job = None;
        let worker_panicked = state.panicked;
        drop(state);
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        assert!(
            !worker_panicked,
            "a parallel task panicked on a worker thread"
        );
    }
}

#[cfg(feature = "std")]
fn worker(shared: &Shared) {
    let mut seen = 0;
    loop {
        let job = {
            let mut state = shared
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while !state.shutdown && state.generation == seen {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.shutdown {
                return;
            }
            seen = state.generation;
            state.job
        };
        let mut ok = true;
        if let Some(job) = job {
            ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while let Some(i) = shared.claim(job.n_tasks) {
                    // SAFETY: `Pool::run` keeps the task alive until `busy` drops to 0, which
                    // happens only after this loop ends (below).
                    unsafe { (*job.task)(i) };
                }
            }))
            .is_ok();
        }
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.panicked |= !ok;
        state.busy -= 1;
        if state.busy == 0 {
            shared.done.notify_all();
        }
    }
}

#[cfg(feature = "std")]
impl Drop for Pool {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shutdown = true;
        self.shared.work.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
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
