//! The process's allocator (mimalloc) and how soon it gives freed memory back to the OS: a
//! command that runs to completion keeps it for reuse; a server gives it back as mimalloc
//! does by default. An operator's `MIMALLOC_PURGE_DELAY` always wins.
//!
//! The workspace's one use of `unsafe`: mimalloc's options are set through its C interface,
//! and no safe binding offers them.
#![allow(unsafe_code)]

use std::ffi::c_long;
use std::sync::OnceLock;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// mimalloc, not glibc's malloc: the jobs allocate from every rayon thread at once (Polars'
/// group-bys and strings, the generators' lists) and the server a few small buffers per
/// request; glibc serves both worse (arena locks, `malloc_consolidate` walks). Measured in
/// docs/benchmarks.md ("The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h's `mi_option_e` (the same place in v2 and v3; the
/// `libmimalloc-sys` bindings name the options before it and after it, not it): how many
/// milliseconds freed memory waits before it is returned to the OS; -1 never.
const PURGE_DELAY: mi_option_t = 15;

/// The operator's setting of [`PURGE_DELAY`], which this module never overrides.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// mimalloc's own purge delay, as it was before [`keep_freed_memory`] changed it.
static DEFAULT_PURGE_DELAY: OnceLock<c_long> = OnceLock::new();

/// Keeps freed memory in the process for the rest of its work instead of returning it to the
/// OS a second after it is freed. `recur run`'s steps free and allocate gigabytes at a time
/// (Polars' frames, the generators' tables); returned memory comes back as fresh pages the
/// kernel zeroes one by one, which at a million customers was ~33 of the recommendations'
/// ~270 CPU-seconds (docs/benchmarks.md, "Freed memory kept"). The cost: what the process
/// frees stays resident until it ends, and it peaks higher (~16.6 GB rather than ~13.8 GB
/// there).
pub(crate) fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
        return;
    }
    // SAFETY: mimalloc's options are plain integers any thread may read or set at any time.
    let default = unsafe { mi_option_get(PURGE_DELAY) };
    DEFAULT_PURGE_DELAY.get_or_init(|| default);
    // SAFETY: as above.
    unsafe { mi_option_set(PURGE_DELAY, -1) };
}

/// Undoes [`keep_freed_memory`] for a process that goes on to serve: between requests and
/// reloads, freed memory goes back to the OS again.
pub(crate) fn return_freed_memory() {
    if let Some(default) = DEFAULT_PURGE_DELAY.get() {
        // SAFETY: as in `keep_freed_memory`.
        unsafe { mi_option_set(PURGE_DELAY, *default) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> c_long {
        // SAFETY: as in `keep_freed_memory`.
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn freed_memory_is_kept_then_given_back() {
        let default = purge_delay();
        keep_freed_memory();
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
            assert_eq!(
                purge_delay(),
                default,
                "the operator's setting is left alone"
            );
            return;
        }
        // mimalloc 3's default purge delay, and no other option's default: the option at
        // `PURGE_DELAY` is the purge delay (a change of mimalloc's enum fails here).
        assert_eq!(default, 1000, "mimalloc's purge delay by default");
        assert_eq!(purge_delay(), -1);
        return_freed_memory();
        assert_eq!(purge_delay(), default);
    }
}
