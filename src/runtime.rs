//! Process start, shared by `screenrec` and the Lambda functions: the allocator's tuning, then
//! the tokio runtime.

use std::future::Future;

/// glibc's malloc, left alone, gives every thread that allocates its own arena and raises its
/// mmap threshold each time a large block is freed, after which chunk-sized buffers (1–16 MiB)
/// come from arenas that keep the memory. A merge streams hundreds of such chunks, so the
/// process's peak grew with the recording's length. Two arenas and a fixed 1 MiB threshold
/// (large buffers are mapped and returned to the system when freed) keep the peak flat
/// (README, "Benchmarks"). Must run before any thread starts.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Run `main` to completion on a multi-threaded tokio runtime, after [`tune_allocator`].
pub fn run<F: Future>(main: F) -> F::Output {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
        .block_on(main)
}
