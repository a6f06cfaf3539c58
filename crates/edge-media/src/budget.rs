//! A ceiling on the media sockets open at once.
//!
//! Media is what runs a process out of file descriptors: four sockets per anchored call. Left to the
//! kernel's limit, the last calls before `EMFILE` also take the descriptors the rest of the edge needs
//! (accepting a SIP TCP connection or an API request, opening the store's files), so an overloaded edge
//! would stop answering its operators too. Each freshly bound pair first takes two places here; the
//! places come back when its sockets close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Media sockets open now and the most allowed.
#[derive(Debug)]
pub(crate) struct SocketBudget {
    open: AtomicUsize,
    max: usize,
}

impl SocketBudget {
    /// `max` sockets at most (`usize::MAX`: no ceiling but the kernel's).
    pub(crate) fn new(max: usize) -> Arc<SocketBudget> {
        Arc::new(SocketBudget {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// Places for `n` sockets, or `None` when they would pass the ceiling.
    pub(crate) fn reserve(self: &Arc<Self>, n: usize) -> Option<SocketTicket> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                open.checked_add(n).filter(|&after| after <= self.max)
            })
            .ok()?;
        Some(SocketTicket {
            budget: self.clone(),
            n,
        })
    }

    /// The ceiling.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Sockets holding a place now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Places held for some sockets; given back when dropped (with the sockets it travels with).
#[derive(Debug)]
pub(crate) struct SocketTicket {
    budget: Arc<SocketBudget>,
    n: usize,
}

impl Drop for SocketTicket {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_held_until_the_ticket_goes() {
        let b = SocketBudget::new(4);
        let first = b.reserve(2).unwrap();
        let second = b.reserve(2).unwrap();
        assert!(b.reserve(2).is_none(), "ceiling of 4 reached");
        assert_eq!(b.open(), 4);
        drop(first);
        assert_eq!(b.open(), 2);
        assert!(b.reserve(2).is_some());
        drop(second);
        assert_eq!(b.open(), 0);
        assert!(SocketBudget::new(usize::MAX).reserve(usize::MAX).is_some());
    }
}
