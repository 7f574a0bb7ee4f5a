//! The operator's allocator: jemalloc with one arena, giving the pages it
//! frees back to the system at once.
//!
//! Ten thousand cached pipelines are hundreds of thousands of small blocks
//! (their names, conditions and strings). glibc's allocator adds a header
//! and a 32-byte minimum to each, and the ramp to that many leaves its heap
//! full of holes it keeps; jemalloc packs small blocks by size class without
//! headers. Measured with 10,000 pipelines Ready (docs/heap-profile.md):
//! glibc tuned to two arenas and trimmed 71.2 MiB resident, jemalloc with
//! its defaults (an arena per core, freed pages kept ten seconds) 74.1 MiB,
//! configured as here 61.7 MiB, for the same operator CPU.
//!
//! `_RJEM_MALLOC_CONF` in the environment still overrides these settings.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it starts: one arena (the operator's few threads
/// share it), and dirty and unused pages given back as soon as they are
/// freed instead of kept for reuse.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 44] = b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0\0";

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    fn setting<T: Default>(name: &CStr) -> T {
        let mut value = T::default();
        let mut size = size_of::<T>();
        // SAFETY: `value` is a `T` of `size` bytes, the type jemalloc gives `name`.
        let code = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(code, 0, "mallctl {name:?}");
        value
    }

    #[test]
    fn jemalloc_runs_with_one_arena_and_gives_freed_pages_back_at_once() {
        drop(vec![0u8; 1 << 20]); // jemalloc is initialised by a first allocation
        assert_eq!(setting::<u32>(c"opt.narenas"), 1);
        assert_eq!(setting::<isize>(c"opt.dirty_decay_ms"), 0);
        assert_eq!(setting::<isize>(c"opt.muzzy_decay_ms"), 0);
    }
}
