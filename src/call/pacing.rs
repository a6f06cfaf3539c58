//! Calls-per-second pacing per trunk, sans-IO: the caller asks for a slot at `now` and gets the instant
//! its INVITE may go, or a refusal when that is further away than the longest wait allowed.
//!
//! Virtual scheduling (GCRA without burst): each trunk remembers when its next slot is free; a call takes
//! `max(now, next_free)` and pushes `next_free` on by `1 / cps`. The queue is bounded by time, not by a
//! count, so a burst of N calls on a 1 CPS trunk with a 10 s limit admits 10 and refuses the rest at once
//! instead of letting them time out one by one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send now.
    Now,
    /// Send at this instant (the call waits in line).
    At(Instant),
    /// The line is longer than the limit: refuse, naming how long the wait would have been.
    Refused { wait: Duration },
}

#[derive(Debug)]
pub struct Pacer {
    max_wait: Duration,
    next_free: HashMap<String, Instant>,
}

impl Pacer {
    pub fn new(max_wait: Duration) -> Self {
        Pacer {
            max_wait,
            next_free: HashMap::new(),
        }
    }

    /// A slot on `trunk` at `cps` calls per second.
    pub fn admit(&mut self, now: Instant, trunk: &str, cps: f64) -> Slot {
        let interval = Duration::from_secs_f64(1.0 / cps.max(0.001));
        // Entries far in the past carry no information: forget them so the map stays as small as the set
        // of trunks in use.
        if self.next_free.len() > 1024 {
            self.next_free.retain(|_, t| *t > now);
        }
        let free = self.next_free.get(trunk).copied().unwrap_or(now).max(now);
        let wait = free.duration_since(now);
        if wait > self.max_wait {
            return Slot::Refused { wait };
        }
        self.next_free.insert(trunk.to_owned(), free + interval);
        if wait.is_zero() {
            Slot::Now
        } else {
            Slot::At(free)
        }
    }
}

/// A [`Pacer`] that several controllers (engine shards) can share: cloning shares the lines. The lock is
/// taken once per outbound call.
#[derive(Debug, Clone)]
pub struct TrunkPacer(Arc<Mutex<Pacer>>);

impl TrunkPacer {
    pub fn new(max_wait: Duration) -> Self {
        TrunkPacer(Arc::new(Mutex::new(Pacer::new(max_wait))))
    }

    /// A slot on `trunk` at `cps` calls per second (see [`Pacer::admit`]).
    pub fn admit(&self, now: Instant, trunk: &str, cps: f64) -> Slot {
        // A panic while holding the lock leaves the lines as they were: still usable.
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.admit(now, trunk, cps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cps_spaces_calls_a_second_apart_and_refuses_past_the_limit() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(3));
        assert_eq!(p.admit(t0, "twilio", 1.0), Slot::Now);
        assert_eq!(p.admit(t0, "twilio", 1.0), Slot::At(t0 + Duration::from_secs(1)));
        assert_eq!(p.admit(t0, "twilio", 1.0), Slot::At(t0 + Duration::from_secs(2)));
        assert_eq!(p.admit(t0, "twilio", 1.0), Slot::At(t0 + Duration::from_secs(3)));
        assert_eq!(
            p.admit(t0, "twilio", 1.0),
            Slot::Refused {
                wait: Duration::from_secs(4)
            }
        );
        // Another trunk has its own line.
        assert_eq!(p.admit(t0, "telnyx", 20.0), Slot::Now);
        // Time passes: the line moves.
        assert_eq!(p.admit(t0 + Duration::from_secs(10), "twilio", 1.0), Slot::Now);
    }

    #[test]
    fn twenty_cps_admits_twenty_in_the_first_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(950));
        let admitted = (0..40)
            .filter(|_| !matches!(p.admit(t0, "t", 20.0), Slot::Refused { .. }))
            .count();
        assert_eq!(admitted, 20);
    }
}
