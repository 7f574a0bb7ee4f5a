//! The process's use of glibc's allocator. Left to itself, glibc gives each
//! busy thread an arena of its own, raises its threshold for mapping large
//! blocks each time one is freed, and keeps the pages of freed memory: the
//! ramp to ten thousand pipelines leaves holes between the objects that
//! stay, and they stay resident (docs/heap-profile.md).

use std::time::Duration;

/// How often the heap is looked at for freed memory to give back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Less free memory than this in the heap is left alone.
const TRIM_ABOVE: usize = 1024 * 1024;

/// Two arenas, and blocks over 128 KiB always mapped (and so given back when
/// freed): a scrape of tens of thousands of series or a list of ten thousand
/// pipelines then does not stay in the heap after it is freed. Called before
/// the runtime's threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Gives the pages of freed heap memory back to the system every
/// [`TRIM_EVERY`], when there is enough of it and it changed since the last
/// time (an idle operator frees little, and is not trimmed over and over).
pub async fn give_back_freed_memory() {
    let mut trimmer = Trimmer::default();
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        trimmer.trim();
    }
}

/// The free memory seen after the last trim.
#[derive(Default)]
struct Trimmer {
    free_after_last: usize,
}

impl Trimmer {
    /// Trims when at least [`TRIM_ABOVE`] lies free and that changed since
    /// the last trim; whether it did.
    fn trim(&mut self) -> bool {
        let free = free_heap_bytes();
        if free < TRIM_ABOVE || free == self.free_after_last {
            return false;
        }
        let started = std::time::Instant::now();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim takes the arenas' locks itself.
        unsafe {
            libc::malloc_trim(0);
        }
        self.free_after_last = free_heap_bytes();
        tracing::debug!(free, elapsed = ?started.elapsed(), "gave freed heap memory back");
        true
    }
}

/// Bytes free in the heap's arenas, small blocks awaiting reuse included
/// (not counting mapped blocks).
fn free_heap_bytes() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        info.fordblks + info.fsmblks
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_is_given_back_once_until_the_heap_changes_again() {
        // Many small blocks, every other one freed: holes a trim can return.
        let mut blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 64]).collect();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        let mut trimmer = Trimmer::default();
        assert!(free_heap_bytes() >= TRIM_ABOVE, "{} bytes free", free_heap_bytes());
        assert!(trimmer.trim(), "megabytes of freed blocks are given back");
        assert!(!trimmer.trim(), "nothing changed since: no second trim");
        drop(blocks);
    }
}
