//! Numbers with a purchase in progress in this process, so two concurrent requests cannot
//! both buy (and then one of them release) the same number.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct PurchaseLocks {
    numbers: Arc<Mutex<HashSet<String>>>,
}

/// Held for the whole purchase; dropping it frees the number.
#[derive(Debug)]
pub struct Reservation {
    numbers: Arc<Mutex<HashSet<String>>>,
    number: String,
}

impl PurchaseLocks {
    /// `None` while another request is purchasing `number`.
    pub fn reserve(&self, number: &str) -> Option<Reservation> {
        // A poisoned lock only means a panic elsewhere mid-insert; the set is still usable.
        let mut set = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(number.to_owned()).then(|| Reservation {
            numbers: Arc::clone(&self.numbers),
            number: number.to_owned(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut set = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_until_dropped() {
        let locks = PurchaseLocks::default();
        let r = locks.reserve("+1").unwrap();
        assert!(locks.reserve("+1").is_none());
        assert!(locks.reserve("+2").is_some());
        drop(r);
        assert!(locks.reserve("+1").is_some());
    }
}
