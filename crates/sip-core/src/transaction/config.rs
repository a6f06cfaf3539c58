//! Timer and capacity configuration (RFC 3261 17.1.1.1, table 4; RFC 6026).

use std::time::Duration;

/// Smallest accepted base interval: a zero T1 would make retransmission timers fire in a
/// tight loop inside `handle_timeout`, so configuration input is clamped to this.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Largest accepted base interval: keeps `64 * T1` and `Instant + d` far from overflow.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Base timer values. Every RFC 3261 timer is derived from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; first retransmission interval (default 500 ms).
    pub t1: Duration,
    /// Cap for non-INVITE request and INVITE final-response retransmission intervals (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s): Timers I and K.
    pub t4: Duration,
    /// Timer D: INVITE client wait for final-response retransmissions, unreliable only (default 32 s).
    pub timer_d: Duration,
    /// Timer C (RFC 3261 16.6): bound on an INVITE client transaction in Proceeding, restarted by
    /// every provisional response except 100. `None` waits forever for a final response, which
    /// lets a silent peer pin state; the default bounds it to 180 s. Also bounds an INVITE
    /// server transaction the TU never answers finally (Timer C + 64*T1, see `TimerKind::Guard`).
    pub timer_c: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            timer_c: Some(Duration::from_secs(180)),
        }
    }
}

impl TimerConfig {
    /// Clamps every value into `[1 ms, 1 h]` (timer C into `[1 ms, 64 h]`) so hostile or
    /// mistyped configuration cannot cause busy loops or `Instant` overflow; T2 is kept >= T1.
    pub fn sanitized(self) -> Self {
        let clamp = |d: Duration| d.clamp(MIN_INTERVAL, MAX_INTERVAL);
        let t1 = clamp(self.t1);
        Self {
            t1,
            t2: clamp(self.t2).max(t1),
            t4: clamp(self.t4),
            timer_d: clamp(self.timer_d),
            timer_c: self
                .timer_c
                .map(|c| c.clamp(MIN_INTERVAL, MAX_INTERVAL.saturating_mul(64))),
        }
    }

    /// `64 * T1`: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// When an INVITE server transaction sends `100 Trying` on its own (RFC 3261 17.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoTrying {
    /// Never: the TU sends its own provisional responses.
    Off,
    /// As soon as the INVITE arrives (quenches retransmissions at once).
    Immediate,
    /// After the given delay unless the TU has answered first (RFC suggests 200 ms).
    After(Duration),
}

/// Whole configuration of a [`TransactionLayer`](super::TransactionLayer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxConfig {
    /// Timer base values.
    pub timers: TimerConfig,
    /// Cap on live transactions; over it new requests and `send_request` fail with
    /// [`TxError::Overloaded`](super::TxError::Overloaded) so the TU can answer 503.
    pub max_transactions: usize,
    /// Automatic `100 Trying` for INVITE server transactions.
    pub auto_trying: AutoTrying,
}

impl Default for TxConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            max_transactions: 100_000,
            auto_trying: AutoTrying::Immediate,
        }
    }
}

impl From<TimerConfig> for TxConfig {
    fn from(timers: TimerConfig) -> Self {
        Self {
            timers,
            ..Self::default()
        }
    }
}
