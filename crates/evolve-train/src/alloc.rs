//! The allocator's settings for training.
//!
//! A training step allocates and frees hundreds of activation and gradient buffers of the same
//! few sizes. glibc serves buffers over its `mmap` threshold (128 KiB at first) with fresh
//! mappings and returns freed memory at the top of the heap past its trim threshold, so every
//! step unmaps its buffers (TLB shootdowns across the threads) and faults and zeroes the pages
//! again on the next: on the tiny model's step, which is small enough for this to dominate,
//! keeping the memory took it from 108 to 75 ms (medians of 8 alternating runs).

/// Largest buffer served from the heap; larger ones (a vocabulary's logits) stay mappings.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory the heap keeps at its top instead of returning it to the system.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Makes glibc keep freed memory for reuse (once per process; elsewhere, nothing).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: `mallopt` only changes two numeric settings, under the allocator's own lock.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        });
    }
}
