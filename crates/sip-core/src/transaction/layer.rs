//! The transaction table: routes messages and timers to the per-transaction state machines.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::build::ResponseBuilder;
use crate::message::{Message, Method};

use super::client::{Deliver, InviteClient, NonInviteClient};
use super::key::{client_key_for_request, client_key_for_response, server_key, status_of};
use super::server::{AckOutcome, InviteServer, NonInviteServer};
use super::table::TxTable;
use super::timer::{TimerEntry, TimerKind, TimerQueue};
use super::tx::{Next, Out, Timers, Tx, TxKind};
use super::{AutoTrying, Incoming, Peer, Transmit, TxConfig, TxError, TxEvent, TxKey, TxKeyKind, TxState};

/// Stale timer entries tolerated per live timer slot before the heap is swept.
const STALE_FACTOR: usize = 4;
/// Heap size below which no sweep happens (sweeping tiny heaps is pointless).
const SWEEP_FLOOR: usize = 4096;

/// Sans-IO RFC 3261 section 17 transaction layer (with RFC 6026).
///
/// Feed it parsed messages with [`handle_incoming`](Self::handle_incoming) and the clock with
/// [`handle_timeout`](Self::handle_timeout); drain [`poll_transmit`](Self::poll_transmit) and
/// [`poll_event`](Self::poll_event) after each call. It never reads a clock or touches a socket.
pub struct TransactionLayer {
    cfg: TxConfig,
    txs: TxTable,
    timers: TimerQueue,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

/// Splits `self` into the transaction table and the output sink.
macro_rules! split {
    ($self:ident, $now:expr) => {
        (
            &mut $self.txs,
            Out {
                now: $now,
                cfg: &$self.cfg.timers,
                timers: &mut $self.timers,
                transmits: &mut $self.transmits,
                events: &mut $self.events,
            },
        )
    };
}

impl TransactionLayer {
    /// Creates an empty layer. Timer values are clamped (see [`TimerConfig::sanitized`](super::TimerConfig::sanitized)).
    pub fn new(cfg: impl Into<TxConfig>) -> Self {
        let mut cfg = cfg.into();
        cfg.timers = cfg.timers.sanitized();
        if let AutoTrying::After(d) = cfg.auto_trying {
            cfg.auto_trying = AutoTrying::After(d.min(cfg.timers.t1x64()));
        }
        Self {
            cfg,
            txs: TxTable::default(),
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Effective (sanitized) configuration.
    pub fn config(&self) -> &TxConfig {
        &self.cfg
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Current state of a transaction, `None` once terminated.
    pub fn state(&self, key: &TxKey) -> Option<TxState> {
        self.txs.get(key).map(Tx::state)
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// Earliest timer deadline; call [`handle_timeout`](Self::handle_timeout) then. May be
    /// early (a cancelled timer), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek_deadline()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.pop_due(now) {
            self.fire(now, entry);
        }
        self.maybe_sweep();
    }

    /// An incoming, already parsed message from `from`.
    pub fn handle_incoming(&mut self, now: Instant, from: Peer, msg: Message) -> Incoming {
        let incoming = if msg.is_request() {
            self.incoming_request(now, from, msg)
        } else {
            self.incoming_response(now, msg)
        };
        self.maybe_sweep();
        incoming
    }

    /// True when `msg` is a request of a live server transaction (a retransmission, or the ACK of a
    /// non-2xx answer): [`handle_incoming`](Self::handle_incoming) would answer it from that state
    /// and create none.
    pub fn is_retransmission(&self, msg: &Message) -> bool {
        server_key(msg).is_ok_and(|m| self.txs.contains_key(&m.key))
    }

    /// The TU answers server transaction `key` with a response built once (e.g.
    /// [`ResponseBuilder::build_message`]). The layer keeps its bytes for retransmission and runs
    /// Timers G/H (non-2xx INVITE), L (2xx INVITE) or J. A top Via the TU left without the request's
    /// `received`/`rport` gets them here, from the source the transaction's request came from
    /// ([`crate::build::with_received`]): every response answers along RFC 3581, whoever built it.
    pub fn respond(&mut self, now: Instant, key: &TxKey, response: Message) -> Result<(), TxError> {
        let status = response.status().ok_or(TxError::NotAResponse)?;
        let to_tag = if needs_to_tag(key, status) {
            response.to().ok().and_then(|t| t.tag().map(Box::from))
        } else {
            None
        };
        let source = self.txs.get(key).map(|tx| tx.peer.addr);
        let bytes = source
            .and_then(|s| crate::build::with_received(&response, s))
            .unwrap_or_else(|| response.bytes().clone());
        self.respond_parts(now, key, status, bytes, to_tag)
    }

    /// Transitional: [`respond`](Self::respond) with a response already serialized, which the layer
    /// re-reads (status line; the To tag of RFC 2543 transactions). For callers not yet building
    /// [`Message`]s; new code uses `respond`.
    pub fn respond_bytes(&mut self, now: Instant, key: &TxKey, response: Bytes) -> Result<(), TxError> {
        let status = status_of(&response).ok_or(TxError::NotAResponse)?;
        let to_tag = if needs_to_tag(key, status) {
            response_to_tag(&response)
        } else {
            None
        };
        self.respond_parts(now, key, status, response, to_tag)
    }

    fn respond_parts(
        &mut self,
        now: Instant,
        key: &TxKey,
        status: u16,
        response: Bytes,
        to_tag: Option<Box<str>>,
    ) -> Result<(), TxError> {
        let (txs, mut out) = split!(self, now);
        let tx = txs.get_mut(key).ok_or(TxError::NoSuchTransaction)?;
        let state = tx.state();
        let (mut t, kind) = tx.parts(key);
        let next = match kind {
            TxKind::InviteServer(s) => s.respond(status, response, to_tag, &mut t, &mut out)?,
            TxKind::NonInviteServer(s) => s.respond(status, response, &mut t, &mut out)?,
            TxKind::InviteClient(_) | TxKind::NonInviteClient(_) => {
                return Err(TxError::InvalidState {
                    status,
                    state: state.name(),
                })
            }
        };
        if next == Next::Terminate {
            self.terminate(key);
        }
        self.maybe_sweep();
        Ok(())
    }

    /// Starts a client transaction for `request` (top Via must carry a `z9hG4bK` branch) and
    /// queues its first transmission. INVITE runs Timers A/B, others E/F (A/E only unreliable).
    pub fn send_request(&mut self, now: Instant, to: Peer, request: Message) -> Result<TxKey, TxError> {
        let key = client_key_for_request(&request)?;
        if self.txs.contains_key(&key) {
            return Err(TxError::Duplicate);
        }
        self.check_capacity()?;
        let is_invite = key.method() == &Method::Invite;
        let (txs, mut out) = split!(self, now);
        let mut armed = [0; 3];
        let mut t = Timers {
            key: &key,
            peer: to,
            armed: &mut armed,
        };
        let kind = if is_invite {
            TxKind::InviteClient(InviteClient::start(request, &mut t, &mut out))
        } else {
            let bytes = request.bytes().clone();
            TxKind::NonInviteClient(NonInviteClient::start(bytes, &mut t, &mut out))
        };
        let tx = Tx { peer: to, armed, kind };
        txs.insert(key.clone(), tx);
        self.maybe_sweep();
        Ok(key)
    }

    /// The IO layer failed to send a [`Transmit`] of transaction `key` (TCP connect refused or reset,
    /// the connection gone, a UDP send error such as ICMP unreachable): the transaction terminates at once
    /// and the TU gets [`TxEvent::TransportError`] then [`TxEvent::Terminated`] (RFC 3261 17.1.4, 17.2.4).
    /// A client transaction's TU treats it like a 503 (8.1.3.1), so a call fails over now rather than after
    /// Timer B/F. A key that is gone (already terminated) is ignored.
    pub fn transport_error(&mut self, key: &TxKey) {
        if self.txs.contains_key(key) {
            self.events.push_back(TxEvent::TransportError { key: key.clone() });
            self.terminate(key);
        }
    }

    fn check_capacity(&self) -> Result<(), TxError> {
        if self.txs.len() >= self.cfg.max_transactions {
            Err(TxError::Overloaded)
        } else {
            Ok(())
        }
    }

    fn terminate(&mut self, key: &TxKey) {
        if self.txs.remove(key) {
            self.events.push_back(TxEvent::Terminated { key: key.clone() });
        }
    }

    fn fire(&mut self, now: Instant, entry: TimerEntry) {
        let (txs, mut out) = split!(self, now);
        let Some(tx) = txs.get_mut(&entry.key) else {
            return;
        };
        let slot = entry.kind.slot() as usize;
        if tx.armed[slot] != entry.seq {
            return; // cancelled or re-armed since
        }
        tx.armed[slot] = 0;
        let (mut t, kind) = tx.parts(&entry.key);
        let next = match kind {
            TxKind::InviteClient(c) => c.on_timer(entry.kind, &mut t, &mut out),
            TxKind::NonInviteClient(c) => c.on_timer(entry.kind, &mut t, &mut out),
            TxKind::InviteServer(s) => s.on_timer(entry.kind, &mut t, &mut out),
            TxKind::NonInviteServer(s) => s.on_timer(entry.kind, &mut t, &mut out),
        };
        if next == Next::Terminate {
            self.terminate(&entry.key);
        }
    }

    fn incoming_response(&mut self, now: Instant, msg: Message) -> Incoming {
        let Some(status) = msg.status() else {
            return Incoming::StrayResponse { msg };
        };
        let Ok(key) = client_key_for_response(&msg) else {
            return Incoming::StrayResponse { msg };
        };
        let (txs, mut out) = split!(self, now);
        let Some(tx) = txs.get_mut(&key) else {
            return Incoming::StrayResponse { msg };
        };
        let (mut t, kind) = tx.parts(&key);
        let (deliver, next) = match kind {
            TxKind::InviteClient(c) => c.on_response(&msg, status, &mut t, &mut out),
            TxKind::NonInviteClient(c) => c.on_response(status, &mut t, &mut out),
            TxKind::InviteServer(_) | TxKind::NonInviteServer(_) => return Incoming::StrayResponse { msg },
        };
        if next == Next::Terminate {
            self.terminate(&key);
        }
        match deliver {
            Deliver::ToTu => Incoming::Response { key, msg },
            Deliver::Absorb => Incoming::Absorbed { key },
        }
    }

    fn incoming_request(&mut self, now: Instant, from: Peer, msg: Message) -> Incoming {
        let m = match server_key(&msg) {
            Ok(m) => m,
            Err(error) => return Incoming::Rejected { msg, error },
        };
        let method = msg.method().cloned();
        if method == Some(Method::Ack) {
            return self.incoming_ack(now, m, msg);
        }
        let key = m.key;
        let (txs, mut out) = split!(self, now);
        if let Some(tx) = txs.get_mut(&key) {
            let (mut t, kind) = tx.parts(&key);
            match kind {
                TxKind::InviteServer(s) => s.on_retransmission(&mut t, &mut out),
                TxKind::NonInviteServer(s) => s.on_retransmission(&mut t, &mut out),
                TxKind::InviteClient(_) | TxKind::NonInviteClient(_) => {}
            }
            return Incoming::Absorbed { key };
        }
        if let Err(error) = self.check_capacity() {
            return Incoming::Rejected { msg, error };
        }
        let auto_trying = self.cfg.auto_trying;
        let (txs, mut out) = split!(self, now);
        let mut armed = [0; 3];
        let mut t = Timers {
            key: &key,
            peer: from,
            armed: &mut armed,
        };
        let kind = if method == Some(Method::Invite) {
            let mut s = InviteServer::new();
            if let Some(c) = out.cfg.timer_c {
                // Guard = 64*T1 + Timer C, armed in two steps (see `guard_rest`).
                let first = out.cfg.t1x64();
                t.arm(&mut out, TimerKind::Guard, first);
                s.guard_rest = Some(c);
            }
            match auto_trying {
                AutoTrying::Off => {}
                AutoTrying::Immediate => {
                    let trying = trying_for(&msg, from);
                    out.send(from, trying.clone(), &key);
                    s.last = Some(trying);
                }
                AutoTrying::After(d) => {
                    s.pending_trying = Some(trying_for(&msg, from));
                    t.arm(&mut out, TimerKind::Trying, d);
                }
            }
            TxKind::InviteServer(s)
        } else {
            let guard = out.cfg.t1x64();
            t.arm(&mut out, TimerKind::Guard, guard);
            TxKind::NonInviteServer(NonInviteServer::new())
        };
        let tx = Tx {
            peer: from,
            armed,
            kind,
        };
        txs.insert(key.clone(), tx);
        if method == Some(Method::Cancel) {
            let target = key.with_method(Method::Invite);
            let invite_key = self
                .txs
                .get(&target)
                .filter(|tx| matches!(tx.kind, TxKind::InviteServer(_)))
                .map(|_| target);
            return Incoming::Cancel {
                cancel_key: key,
                invite_key,
                msg,
            };
        }
        Incoming::NewRequest { key, msg }
    }

    /// ACK: matched to an INVITE server transaction (absorbed, or in Accepted handed to the
    /// TU), else it is the ACK for a 2xx and goes to the TU. Never creates state.
    fn incoming_ack(&mut self, now: Instant, m: super::key::ServerMatch, msg: Message) -> Incoming {
        // RFC 2543: the ACK carries the To tag of our response, the INVITE usually none.
        let key = if self.txs.contains_key(&m.key) {
            Some(m.key)
        } else if m.is_2543 {
            m.key.with_to_tag(None).filter(|k| {
                self.txs.get(k).is_some_and(|tx| match &tx.kind {
                    TxKind::InviteServer(s) => {
                        s.response_to_tag.is_some() && s.response_to_tag.as_deref() == m.to_tag.as_deref()
                    }
                    _ => false,
                })
            })
        } else {
            None
        };
        let Some(key) = key else {
            return Incoming::Ack { key: None, msg };
        };
        let (txs, mut out) = split!(self, now);
        let Some(tx) = txs.get_mut(&key) else {
            return Incoming::Ack { key: None, msg };
        };
        let (mut t, kind) = tx.parts(&key);
        let (outcome, next) = match kind {
            TxKind::InviteServer(s) => s.on_ack(&mut t, &mut out),
            TxKind::NonInviteServer(_) | TxKind::InviteClient(_) | TxKind::NonInviteClient(_) => {
                return Incoming::Ack { key: None, msg }
            }
        };
        if next == Next::Terminate {
            self.terminate(&key);
        }
        match outcome {
            AckOutcome::Absorb => Incoming::Absorbed { key },
            AckOutcome::ToTu => Incoming::Ack { key: Some(key), msg },
        }
    }

    /// Sweeps cancelled timer entries once they dominate the heap, bounding its size by a
    /// constant factor of the live transaction count.
    fn maybe_sweep(&mut self) {
        let live_bound = self.txs.len().saturating_mul(3);
        if self.timers.len() <= SWEEP_FLOOR.max(live_bound.saturating_mul(STALE_FACTOR)) {
            return;
        }
        let txs = &self.txs;
        self.timers.retain(|e| {
            txs.get(&e.key)
                .is_some_and(|tx| tx.armed[e.kind.slot() as usize] == e.seq)
        });
    }
}

/// `100 Trying` for an INVITE (no To tag added, RFC 3261 8.2.6.1).
fn trying_for(invite: &Message, from: Peer) -> Bytes {
    ResponseBuilder::for_request(invite, 100, "Trying")
        .received_from(from.addr)
        .build()
}

/// RFC 2543 server transactions match their ACK by the To tag of the final response.
fn needs_to_tag(key: &TxKey, status: u16) -> bool {
    matches!(key.kind(), TxKeyKind::Server2543(_)) && status >= 200
}

/// To tag of a serialized response (only needed for RFC 2543 ACK matching).
fn response_to_tag(response: &Bytes) -> Option<Box<str>> {
    let msg = Message::parse(response.clone()).ok()?;
    let to = msg.to().ok()?;
    to.tag().map(Box::from)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::message::Transport;

    fn msg(text: String) -> Message {
        Message::parse(Bytes::from(text)).expect("test message parses")
    }

    /// Client INVITEs over TCP answered at once leave a stale Timer B entry each; the heap
    /// must be swept instead of growing with the number of completed transactions.
    #[test]
    fn stale_timer_entries_are_swept() {
        let peer = Peer {
            addr: SocketAddr::from(([192, 0, 2, 1], 5060)),
            transport: Transport::Tcp,
            conn: Some(1),
        };
        let mut l = TransactionLayer::new(TxConfig::default());
        let now = Instant::now();
        let mut max_heap = 0;
        for i in 0..50_000 {
            let via = format!("SIP/2.0/TCP h.example.com;branch=z9hG4bKsw{i}");
            let common = format!(
                "Via: {via}\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\n\
                 Call-ID: c{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            l.send_request(now, peer, msg(format!("INVITE sip:b@h SIP/2.0\r\n{common}")))
                .unwrap();
            l.handle_incoming(now, peer, msg(format!("SIP/2.0 486 Busy\r\n{common}")));
            while l.poll_transmit().is_some() {}
            while l.poll_event().is_some() {}
            max_heap = max_heap.max(l.timers.len());
        }
        assert!(l.is_empty(), "D is zero on TCP");
        assert!(max_heap <= SWEEP_FLOOR + 1, "heap grew to {max_heap}");
        l.handle_timeout(now + Duration::from_secs(3600));
        assert_eq!(l.timers.len(), 0);
    }
}
