//! What the node says about itself on `/healthz` beyond its counters: whether it is draining, and which
//! configuration it runs (generation and when it was loaded), so that an operator or `oneinbox-edge
//! reload` sees a reload applied.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    /// 1 for the file read at start, one more for each reload applied.
    generation: AtomicU64,
    loaded_at_ms: AtomicI64,
}

impl Lifecycle {
    pub fn new(loaded_at_ms: i64) -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            loaded_at_ms: AtomicI64::new(loaded_at_ms),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn loaded_at_ms(&self) -> i64 {
        self.loaded_at_ms.load(Ordering::Relaxed)
    }

    /// A reload was applied at `at_ms`; returns the new generation.
    pub(crate) fn reloaded(&self, at_ms: i64) -> u64 {
        self.loaded_at_ms.store(at_ms, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }
}
