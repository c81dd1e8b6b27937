//! Data parallelism on candle's persistent barrier pool (`CANDLE_NUM_THREADS` threads): its
//! workers spin between calls, so the hundreds of small parallel steps of a decoding step
//! cost microseconds, not thread wake-ups.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Runs `f(i)` for every `i < n`, spread over the pool's threads (the caller's included).
pub(crate) fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    if n <= 1 {
        (0..n).for_each(f);
        return;
    }
    let cursor = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute(|_| {
        loop {
            let i = cursor.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            f(i);
        }
    });
}

/// Splits `out` into chunks of `len` and runs `f(index, chunk)` for each, in parallel.
pub(crate) fn chunks_mut<T: Send>(out: &mut [T], len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let slots: Vec<Mutex<&mut [T]>> = out.chunks_mut(len.max(1)).map(Mutex::new).collect();
    for_each(slots.len(), |i| {
        let mut chunk = slots[i].lock().unwrap_or_else(PoisonError::into_inner);
        f(i, &mut chunk);
    });
}
