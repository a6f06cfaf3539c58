//! Symmetric RTP latching (a.k.a. "comedia"): send media back to where it
//! really comes from, not to the address a NATed phone wrote into its SDP.
//!
//! Rule: the first valid packet latches its source. Packets from any other
//! source are dropped while the latched source is alive. Re-latching (NAT
//! rebinding, mid-call re-route by the carrier) happens only when the latched
//! source has been silent for longer than [`RelatchRule::silence`] **and** one
//! single new source then sends [`RelatchRule::packets`] packets in a row (a
//! packet from any other source restarts the count; a packet from the latched
//! source cancels it). A spoofed packet or two can therefore never steal a live
//! stream, and a real rebinding recovers after a few packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// When a new source may replace the latched one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelatchRule {
    /// Minimum silence of the latched source before a takeover is considered.
    pub silence: Duration,
    /// Consecutive packets the new source must send (the last one is relayed).
    pub packets: u32,
}

impl Default for RelatchRule {
    fn default() -> Self {
        RelatchRule {
            silence: Duration::from_secs(1),
            packets: 5,
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchVerdict {
    /// From the latched source (or it just latched): relay it.
    Accept,
    /// Foreign source: drop and count.
    Drop,
}

/// Latch state of one socket (RTP or RTCP of one side).
#[derive(Debug, Clone, Default)]
pub struct Latch {
    latched: Option<SocketAddr>,
    last_seen: Option<Instant>,
    candidate: Option<(SocketAddr, u32)>,
}

impl Latch {
    /// Currently latched source, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Classifies a packet from `from` received at `now`.
    pub fn offer(&mut self, from: SocketAddr, now: Instant, rule: RelatchRule) -> LatchVerdict {
        let Some(current) = self.latched else {
            self.latch(from, now);
            return LatchVerdict::Accept;
        };
        if current == from {
            self.last_seen = Some(now);
            self.candidate = None;
            return LatchVerdict::Accept;
        }
        let silent_for = self
            .last_seen
            .map_or(Duration::MAX, |seen| now.saturating_duration_since(seen));
        if silent_for <= rule.silence {
            self.candidate = None;
            return LatchVerdict::Drop;
        }
        let count = match self.candidate {
            Some((addr, n)) if addr == from => n.saturating_add(1),
            _ => 1,
        };
        if count >= rule.packets.max(1) {
            tracing::debug!(old = %current, new = %from, "RTP source re-latched");
            self.latch(from, now);
            LatchVerdict::Accept
        } else {
            self.candidate = Some((from, count));
            LatchVerdict::Drop
        }
    }

    fn latch(&mut self, from: SocketAddr, now: Instant) {
        self.latched = Some(from);
        self.last_seen = Some(now);
        self.candidate = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn first_latches_then_foreign_dropped() {
        let rule = RelatchRule::default();
        let t0 = Instant::now();
        let mut l = Latch::default();
        assert_eq!(l.offer(addr(1), t0, rule), LatchVerdict::Accept);
        assert_eq!(l.offer(addr(2), t0, rule), LatchVerdict::Drop);
        for _ in 0..20 {
            assert_eq!(
                l.offer(addr(2), t0 + Duration::from_millis(500), rule),
                LatchVerdict::Drop
            );
        }
        assert_eq!(l.latched(), Some(addr(1)));
    }

    #[test]
    fn relatch_after_silence_and_streak() {
        let rule = RelatchRule::default();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(1500);
        let mut l = Latch::default();
        l.offer(addr(1), t0, rule);
        for _ in 0..4 {
            assert_eq!(l.offer(addr(2), later, rule), LatchVerdict::Drop);
        }
        // An interleaved third source restarts the streak.
        assert_eq!(l.offer(addr(3), later, rule), LatchVerdict::Drop);
        for _ in 0..4 {
            assert_eq!(l.offer(addr(2), later, rule), LatchVerdict::Drop);
        }
        assert_eq!(l.offer(addr(2), later, rule), LatchVerdict::Accept);
        assert_eq!(l.latched(), Some(addr(2)));
        assert_eq!(l.offer(addr(1), later, rule), LatchVerdict::Drop);
    }
}
