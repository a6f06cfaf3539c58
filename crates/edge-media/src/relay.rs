//! Per-call RTP/RTCP relay: two port pairs (one facing each leg), one task,
//! one 2 KiB receive buffer, no allocation per packet.
//!
//! A relay can also play ringback toward a side instead of relaying the other side's RTP to it
//! ([`RelayHandle::ringback`], see [`crate::ringback`]), e.g. to the caller while a transfer target rings.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event::MediaEvent;
use crate::g711::G711Law;
use crate::latch::{Latch, LatchVerdict, RelatchRule};
use crate::ports::{BoundPair, PortPool};
use crate::ringback::{Ringback, RingbackCodec, PACKET, PTIME};
use crate::sdp::{crypto_of, rewrite_sdp_srtp, RemoteMedia, SdpError};
use crate::socket::ReadableUdp;
use crate::srtp::{LegCrypto, LegUpdate, MediaEncryption, Negotiation, MAX_OVERHEAD};
use crate::transcode::{self, LawRule};
use crate::worker::RemoteRelay;

/// Receive buffer; a datagram that fills it may have been truncated by the
/// kernel and is dropped (audio RTP is far below the 1500-byte MTU).
const RECV_BUF: usize = 2048;
/// Packets taken from one ready socket before the others are polled again.
const DRAIN_BATCH: usize = 16;

/// Which leg a relay port pair faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Leg A (conventionally the caller / carrier leg).
    A,
    /// Leg B (conventionally the callee / agent leg).
    B,
}

impl Side {
    /// The opposite leg.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Counters of one relay (monotonic, readable at any time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Packets received on side A and forwarded to B's peer.
    pub relayed_a_to_b: u64,
    /// Packets received on side B and forwarded to A's peer.
    pub relayed_b_to_a: u64,
    /// Packets from a non-latched source (spoofing, stale calls).
    pub dropped_foreign: u64,
    /// Datagrams that are not RTP/RTCP version 2.
    pub dropped_malformed: u64,
    /// Packets with no known destination yet (other leg's SDP not set, nothing latched).
    pub dropped_no_destination: u64,
    /// SRTP/SRTCP packets that did not authenticate, were replayed, or came before keys were agreed.
    pub dropped_srtp: u64,
}

#[derive(Debug, Default)]
struct Counters {
    relayed: [AtomicU64; 2],
    foreign: AtomicU64,
    malformed: AtomicU64,
    no_destination: AtomicU64,
    srtp_dropped: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Remotes {
    /// SDP-declared (rtp, rtcp) per side.
    declared: [Option<(SocketAddr, SocketAddr)>; 2],
    /// When both sides became known: starts the media-timeout clock.
    armed_at: Option<Instant>,
    /// G.711 law conversion of the audio sent toward each side (`transcode.rs`).
    laws: [Option<LawRule>; 2],
}

/// State shared between the handle and the relay task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    remotes: Mutex<Remotes>,
    /// Bumped on every `set_remote`, so the hot path only does one atomic load.
    generation: AtomicU64,
    counters: Counters,
    /// Ringback wanted toward each side (`Some`: playing, in that codec).
    ringback: Mutex<[Option<RingbackCodec>; 2]>,
    /// Wakes the relay task when `ringback` changed.
    control: tokio::sync::Notify,
    /// SRTP contexts for each side, taken by the task (`srtp.rs`).
    srtp: Mutex<[Option<LegUpdate>; 2]>,
    /// Bumped when `srtp` has something for the task.
    srtp_generation: AtomicU64,
}

impl Shared {
    fn remotes(&self) -> MutexGuard<'_, Remotes> {
        // Plain data, no invariants across fields: poisoning is harmless.
        self.remotes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn srtp(&self) -> MutexGuard<'_, [Option<LegUpdate>; 2]> {
        self.srtp.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ringback(&self) -> MutexGuard<'_, [Option<RingbackCodec>; 2]> {
        self.ringback.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            relayed_a_to_b: c.relayed[0].load(Ordering::Relaxed),
            relayed_b_to_a: c.relayed[1].load(Ordering::Relaxed),
            dropped_foreign: c.foreign.load(Ordering::Relaxed),
            dropped_malformed: c.malformed.load(Ordering::Relaxed),
            dropped_no_destination: c.no_destination.load(Ordering::Relaxed),
            dropped_srtp: c.srtp_dropped.load(Ordering::Relaxed),
        }
    }
}

/// The sockets and ports of a relay: side A's pair, then side B's. They go back to the pool (still bound,
/// see [`crate::ports`]) when the relay's task ends or is aborted.
pub(crate) struct RelayIo {
    pairs: Option<[BoundPair; 2]>,
    /// Where the pairs go back to; `None` in a media worker, whose sockets simply close (the edge
    /// keeps the ports).
    pool: Option<Arc<PortPool>>,
}

impl RelayIo {
    pub(crate) fn new(pairs: [BoundPair; 2], pool: Option<Arc<PortPool>>) -> Self {
        RelayIo {
            pairs: Some(pairs),
            pool,
        }
    }

    /// Socket `index` = `side * 2 + kind` (kind 0 = RTP, 1 = RTCP).
    fn socket(&self, index: usize) -> Option<&ReadableUdp> {
        self.pairs.as_ref()?.get(index / 2)?.sockets.get(index % 2)
    }
}

impl Drop for RelayIo {
    fn drop(&mut self) {
        if let (Some(pairs), Some(pool)) = (self.pairs.take(), &self.pool) {
            pool.park(pairs);
        }
    }
}

pub(crate) struct RelayParams {
    pub(crate) call_id: Arc<str>,
    pub(crate) relatch: RelatchRule,
    pub(crate) media_timeout: Duration,
    pub(crate) events: mpsc::UnboundedSender<MediaEvent>,
}

/// A running relay for one bridged call. Dropping it stops the relay and
/// returns its ports (to quarantine).
#[derive(Debug)]
pub struct RelayHandle {
    call_id: Arc<str>,
    /// What each side's SDP said about codecs, and where ringback is on (kept here, on the edge, so a
    /// relay in a worker gets the codec chosen for it).
    negotiated: Mutex<Negotiated>,
    public_ip: std::net::IpAddr,
    rtp_ports: [u16; 2],
    backend: Backend,
    /// The session (`o=`) the edge presents to each side (`origin.rs`).
    origins: Mutex<crate::origin::Origins>,
    /// The SRTP keys agreed with each side (`srtp.rs`).
    srtp: Mutex<Negotiation>,
}

/// Codecs per side, from the SDP given to [`RelayHandle::set_remote`].
#[derive(Debug, Default)]
struct Negotiated {
    /// G.711 payload types of each side, in its SDP's order.
    g711: [Vec<(u8, G711Law)>; 2],
    event_pt: [Option<u8>; 2],
    ringback: [bool; 2],
    /// The G.711 laws of the SDP the edge last presented to each side (`None` before any).
    presented: [Option<Vec<G711Law>>; 2],
    /// The conversion last given to the relay toward each side.
    laws: [Option<LawRule>; 2],
}

impl Negotiated {
    /// The codec to play ringback toward `to` in: a G.711 law both sides' SDP name (the other side's
    /// order first: when `to` made the offer, that is the answer's order), else `to`'s first G.711, else
    /// PCMU/0; the payload type is `to`'s.
    fn ringback_codec(&self, to: Side) -> RingbackCodec {
        // Only the laws of the session `to` has, once the edge gave it one (a carrier answered PCMU
        // takes PCMU, whatever its offer also listed).
        let presented = self.presented[to.index()].as_deref();
        let kept: Vec<(u8, G711Law)> = self.g711[to.index()]
            .iter()
            .filter(|(_, law)| presented.is_none_or(|p| p.contains(law)))
            .copied()
            .collect();
        let mine = if kept.is_empty() { &self.g711[to.index()] } else { &kept };
        let theirs = &self.g711[to.other().index()];
        let common = theirs
            .iter()
            .find_map(|(_, law)| mine.iter().find(|(_, l)| l == law))
            .or(mine.first());
        let (payload_type, law) = common.copied().unwrap_or((0, G711Law::Ulaw));
        RingbackCodec {
            law,
            payload_type,
            event_pt: self.event_pt[to.index()],
        }
    }

    /// The law conversion toward `to` that the sessions now call for (`transcode::law_rule`).
    fn law_rule(&self, to: Side) -> Option<LawRule> {
        transcode::law_rule(
            &self.g711[to.index()],
            self.presented[to.index()].as_deref(),
            &self.g711[to.other().index()],
        )
    }
}

fn laws_of(codecs: &[(u8, G711Law)]) -> Vec<G711Law> {
    codecs.iter().map(|(_, law)| *law).collect()
}

/// The G.711 payload types a peer's SDP lists (static 0 and 8 when it names no codecs).
fn g711_codecs(remote: &RemoteMedia) -> Vec<(u8, G711Law)> {
    if remote.codecs.is_empty() {
        return remote
            .payload_types
            .iter()
            .filter_map(|&pt| match pt {
                0 => Some((0, G711Law::Ulaw)),
                8 => Some((8, G711Law::Alaw)),
                _ => None,
            })
            .collect();
    }
    remote
        .codecs
        .iter()
        .filter(|c| c.clock_rate == 8000)
        .filter_map(|c| {
            if c.name.eq_ignore_ascii_case("PCMU") {
                Some((c.payload_type, G711Law::Ulaw))
            } else if c.name.eq_ignore_ascii_case("PCMA") {
                Some((c.payload_type, G711Law::Alaw))
            } else {
                None
            }
        })
        .collect()
}

/// Where the relay's loop runs.
#[derive(Debug)]
enum Backend {
    /// A task of this process.
    InProcess { shared: Arc<Shared>, task: JoinHandle<()> },
    /// A media worker process (the edge's own descriptors ran out, see [`crate::worker`]).
    Worker(RemoteRelay),
}

/// SDP-declared (RTP, RTCP) destinations; unspecified addresses or port 0 declare none.
fn declared(remote: &RemoteMedia) -> Option<(SocketAddr, SocketAddr)> {
    if remote.addr.is_unspecified() || remote.rtp_port == 0 {
        return None;
    }
    Some((
        SocketAddr::new(remote.addr, remote.rtp_port),
        SocketAddr::new(remote.addr, remote.rtcp_port),
    ))
}

impl RelayHandle {
    pub(crate) fn spawn(io: RelayIo, rtp_ports: [u16; 2], public_ip: std::net::IpAddr, params: RelayParams) -> Self {
        let shared = Arc::new(Shared::default());
        let call_id = params.call_id.clone();
        let task = tokio::spawn(run(io, shared.clone(), params));
        RelayHandle {
            call_id,
            negotiated: Mutex::default(),
            public_ip,
            rtp_ports,
            backend: Backend::InProcess { shared, task },
            origins: Mutex::default(),
            srtp: Mutex::default(),
        }
    }

    pub(crate) fn in_worker(
        remote: RemoteRelay,
        rtp_ports: [u16; 2],
        public_ip: std::net::IpAddr,
        call_id: Arc<str>,
    ) -> Self {
        RelayHandle {
            call_id,
            negotiated: Mutex::default(),
            public_ip,
            rtp_ports,
            backend: Backend::Worker(remote),
            origins: Mutex::default(),
            srtp: Mutex::default(),
        }
    }

    /// Call-ID this relay was allocated for.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Address to put in the SDP sent to `side`'s peer (the engine's public IP).
    pub fn public_ip(&self) -> std::net::IpAddr {
        self.public_ip
    }

    /// RTP port facing `side` (RTCP is this + 1). Put it in the SDP sent to that leg.
    pub fn local_port(&self, side: Side) -> u16 {
        self.rtp_ports[side.index()]
    }

    /// Declares where `side`'s peer wants media (from its SDP). Used until that
    /// peer's own packets latch a source. Call again after a re-INVITE: a
    /// changed address also drops that side's latch, so the next packet from
    /// the peer latches afresh. Unspecified addresses (0.0.0.0, old-style hold)
    /// or port 0 clear the declared destination and keep the latch.
    /// The codecs it lists choose the payload type of ringback toward that side
    /// ([`Self::ringback`]); a ringback already playing switches to them.
    pub fn set_remote(&self, side: Side, remote: &RemoteMedia) {
        let replay = {
            let mut n = self.negotiated();
            n.g711[side.index()] = g711_codecs(remote);
            n.event_pt[side.index()] = remote.telephone_event_pt;
            [Side::A, Side::B].map(|to| n.ringback[to.index()].then(|| n.ringback_codec(to)))
        };
        self.update_laws();
        self.set_declared(side, declared(remote));
        for (to, codec) in [Side::A, Side::B].into_iter().zip(replay) {
            if codec.is_some() {
                self.set_ringback(to, codec);
            }
        }
    }

    /// Ringback toward `to` (e.g. the caller while a transfer target rings) on or off. While on, RTP
    /// from the other side is not forwarded to `to`; `to`'s peer gets the North American ringback tone
    /// (440 + 480 Hz, 2 s on, 4 s off) instead: 20 ms packets of a stream of the relay's own (SSRC,
    /// sequence, timestamp; marker on the first packet), in the G.711 law and payload type of `to`'s
    /// SDP (PCMU/0 if it named none). Off: relaying resumes at once, and the first relayed audio
    /// packet toward `to` carries the marker bit (see [`crate::ringback`] for why). RTCP is relayed
    /// throughout; `to`'s own media still reaches the other side; switching on when on (or off when
    /// off) changes nothing.
    pub fn ringback(&self, to: Side, on: bool) {
        let codec = {
            let mut n = self.negotiated();
            n.ringback[to.index()] = on;
            on.then(|| n.ringback_codec(to))
        };
        self.set_ringback(to, codec);
    }

    /// Whether ringback is on toward `to`.
    pub fn ringback_on(&self, to: Side) -> bool {
        self.negotiated().ringback[to.index()]
    }

    /// Gives the relay the law conversions the sessions now call for, where they changed.
    fn update_laws(&self) {
        let changed: Vec<(Side, Option<LawRule>)> = {
            let mut n = self.negotiated();
            [Side::A, Side::B]
                .into_iter()
                .filter_map(|to| {
                    let rule = n.law_rule(to);
                    (n.laws[to.index()] != rule).then(|| {
                        n.laws[to.index()] = rule;
                        (to, rule)
                    })
                })
                .collect()
        };
        for (to, rule) in changed {
            if let Some(r) = &rule {
                tracing::debug!(call_id = %self.call_id, ?to, from_pt = r.from_pt, to_pt = r.to_pt, "G.711 law converted toward {to:?}");
            }
            self.set_law(to, rule);
        }
    }

    pub(crate) fn set_law(&self, to: Side, rule: Option<LawRule>) {
        let shared = match &self.backend {
            Backend::InProcess { shared, .. } => shared,
            Backend::Worker(remote) => return remote.set_law(to, rule),
        };
        shared.remotes().laws[to.index()] = rule;
        shared.generation.fetch_add(1, Ordering::Release);
    }

    fn negotiated(&self) -> MutexGuard<'_, Negotiated> {
        // Plain data: poisoning is harmless.
        self.negotiated.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_ringback(&self, to: Side, codec: Option<RingbackCodec>) {
        match &self.backend {
            Backend::InProcess { shared, .. } => {
                shared.ringback()[to.index()] = codec;
                shared.control.notify_one();
            }
            Backend::Worker(remote) => remote.set_ringback(to, codec),
        }
    }

    pub(crate) fn set_declared(&self, side: Side, declared: Option<(SocketAddr, SocketAddr)>) {
        let shared = match &self.backend {
            Backend::InProcess { shared, .. } => shared,
            Backend::Worker(remote) => return remote.set_declared(side, declared),
        };
        let mut r = shared.remotes();
        r.declared[side.index()] = declared;
        if r.armed_at.is_none() && r.declared.iter().all(Option::is_some) {
            r.armed_at = Some(Instant::now());
        }
        drop(r);
        shared.generation.fetch_add(1, Ordering::Release);
    }

    /// One-stop SDP handling for the B2BUA: rewrites an offer/answer received
    /// from leg `from` so the other leg sends its media to our port facing it,
    /// and records `from`'s declared media via [`Self::set_remote`]. Nothing is
    /// changed on error (answer the offer with `err.sip_status()`).
    pub fn anchor_sdp(
        &self,
        from: Side,
        sdp: &[u8],
        allowed_codecs: Option<&[String]>,
    ) -> Result<(Bytes, RemoteMedia), SdpError> {
        self.anchor(from, sdp, allowed_codecs, true)
    }

    /// [`Self::anchor_sdp`] for an offer (`offer`) or an answer from `from`, with SRTP: the keys in
    /// `from`'s SDP are taken for its leg (an `RTP/SAVP` offer is answered with a fresh key of the edge's,
    /// a plain one from a `srtp_required` side refused), and the body for the other side carries the
    /// edge's own keys for that leg as its policy ([`Self::set_encryption`]) says, never `from`'s.
    pub fn anchor(
        &self,
        from: Side,
        sdp: &[u8],
        allowed_codecs: Option<&[String]>,
        offer: bool,
    ) -> Result<(Bytes, RemoteMedia), SdpError> {
        let to = from.other();
        let crypto = crypto_of(sdp)?;
        let (body, remote) = {
            let mut n = self.negotiation();
            let mut trial = n.clone();
            trial.take_in(from.index(), &crypto, offer)?;
            let out_offer = trial.out_is_offer(to.index(), offer);
            let out = trial.out_for(to.index(), out_offer, &crypto.proto)?;
            // Rewritten before the keys are committed: a body refused here (no codec in common) changes
            // nothing.
            let rewritten = rewrite_sdp_srtp(sdp, self.public_ip, self.local_port(to), allowed_codecs, &out)?;
            *n = trial;
            rewritten
        };
        self.push_srtp();
        // The body names the codecs `remote` lists: that is the session `to` now has.
        self.negotiated().presented[to.index()] = Some(laws_of(&g711_codecs(&remote)));
        self.set_remote(from, &remote);
        Ok((self.stamp_origin(to, &body), remote))
    }

    /// Takes an answer from `from`'s new peer (a fallback agent after the first agent's 183, a transfer
    /// target) while the other side keeps the session the edge already gave it: no body is made for it
    /// (RFC 3261 13.2.1: the first SDP answer to an INVITE is the answer; later ones are ignored), and
    /// where the new peer chose the other G.711 law the relay converts (`transcode.rs`). Nothing is
    /// changed on error.
    pub fn keep_answer(
        &self,
        from: Side,
        sdp: &[u8],
        allowed_codecs: Option<&[String]>,
    ) -> Result<RemoteMedia, SdpError> {
        let crypto = crypto_of(sdp)?;
        let remote = {
            let mut n = self.negotiation();
            let mut trial = n.clone();
            trial.take_new_peer_answer(from.index(), &crypto)?;
            let (_, remote) =
                crate::sdp::rewrite_sdp(sdp, self.public_ip, self.local_port(from.other()), allowed_codecs)?;
            *n = trial;
            remote
        };
        self.set_remote(from, &remote);
        self.push_srtp();
        Ok(remote)
    }

    /// An offer toward a new peer on `to` (a transfer target), made from `sdp` (the session the other
    /// side has, as it last sent it) with the edge's fresh keys for that peer as `policy` says. The peer
    /// now on `to` keeps its keys and media until the new one answers ([`Self::keep_answer`]): a transfer
    /// that fails leaves the call as it was, and the old peer never holds a key the new one uses. Nothing
    /// is changed on error.
    pub fn offer_new_peer(
        &self,
        to: Side,
        policy: MediaEncryption,
        sdp: &[u8],
        allowed_codecs: Option<&[String]>,
    ) -> Result<Bytes, SdpError> {
        let crypto = crypto_of(sdp)?;
        let body = {
            let mut n = self.negotiation();
            let mut trial = n.clone();
            let out = trial.offer_new_peer(to.index(), policy, &crypto.proto)?;
            let (body, _) = rewrite_sdp_srtp(sdp, self.public_ip, self.local_port(to), allowed_codecs, &out)?;
            *n = trial;
            body
        };
        Ok(self.stamp_origin(to, &body))
    }

    /// Early media from `from`'s new peer (offered with [`Self::offer_new_peer`], not answered yet). With
    /// no SRTP on that side, now or offered, it is taken as [`Self::keep_answer`] takes an answer
    /// (`Ok(true)`). With SRTP it is not taken (`Ok(false)`): taking it would put the new peer's keys in
    /// place of the current peer's, and a new peer that then fails (busy, no answer) would leave the
    /// current one with keys it does not have. Nothing is changed then; the caller keeps its ringback.
    pub fn early_media(&self, from: Side, sdp: &[u8], allowed_codecs: Option<&[String]>) -> Result<bool, SdpError> {
        let keyed = {
            let n = self.negotiation();
            n.is_srtp(from.index()) || n.new_peer_is_srtp(from.index()) || crypto_of(sdp)?.secure()
        };
        if keyed {
            return Ok(false);
        }
        self.keep_answer(from, sdp, allowed_codecs).map(|_| true)
    }

    /// The new peer offered on `side` will not answer: its pending keys are dropped.
    pub fn forget_new_peer(&self, side: Side) {
        self.negotiation().forget_new_peer(side.index());
    }

    /// The media encryption policy of `side`'s leg (default `none`), for the next SDP exchanged with it.
    /// `new_peer`: a new peer on that side (another agent, a transfer target), whose keys start afresh.
    pub fn set_encryption(&self, side: Side, policy: MediaEncryption, new_peer: bool) {
        let mut n = self.negotiation();
        if new_peer {
            n.new_peer(side.index(), policy);
        } else {
            n.set_policy(side.index(), policy);
        }
    }

    /// Whether `side`'s leg uses SRTP (or is offered it).
    pub fn is_srtp(&self, side: Side) -> bool {
        self.negotiation().is_srtp(side.index())
    }

    fn negotiation(&self) -> MutexGuard<'_, Negotiation> {
        // Keys and flags; a panic cannot leave them half-changed (changes are made on a copy).
        self.srtp.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the relay task the contexts the negotiation now calls for.
    fn push_srtp(&self) {
        let shared = match &self.backend {
            Backend::InProcess { shared, .. } => shared,
            Backend::Worker(remote) => {
                // The worker makes the contexts from the keys (`ToWorker::Keys`).
                let updates = {
                    let mut n = self.negotiation();
                    [n.key_update(0), n.key_update(1)]
                };
                for (side, update) in [Side::A, Side::B].into_iter().zip(updates) {
                    if let Some(update) = update {
                        remote.set_keys(side, update);
                    }
                }
                return;
            }
        };
        let updates = {
            let mut n = self.negotiation();
            [n.update(0), n.update(1)]
        };
        Self::install_srtp(shared, updates);
    }

    /// In a media worker: the keys the edge sent for `side` (`ToWorker::Keys`), installed as
    /// [`Self::push_srtp`] installs the edge's own.
    pub(crate) fn set_keys(&self, side: Side, update: crate::srtp::KeyUpdate) {
        let Backend::InProcess { shared, .. } = &self.backend else {
            return;
        };
        let mut updates = [None, None];
        updates[side.index()] = Some(update.contexts());
        Self::install_srtp(shared, updates);
    }

    /// Hands context changes to the relay task (merged with any it has not taken yet).
    fn install_srtp(shared: &Shared, updates: [Option<LegUpdate>; 2]) {
        if updates.iter().all(Option::is_none) {
            return;
        }
        let mut pending = shared.srtp();
        for (slot, update) in pending.iter_mut().zip(updates) {
            if let Some(update) = update {
                match slot {
                    Some(old) => old.merge(update),
                    None => *slot = Some(update),
                }
            }
        }
        drop(pending);
        shared.srtp_generation.fetch_add(1, Ordering::Release);
    }

    /// The edge's own `o=` line toward `to` in `body`, version bumped only on a real change.
    fn stamp_origin(&self, to: Side, body: &[u8]) -> Bytes {
        // A session id that differs per relay and side: the port facing that side, and when.
        let sess_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .wrapping_mul(100_000)
            .wrapping_add(u64::from(self.local_port(to)));
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        origins.stamp(to.index(), body, self.public_ip, sess_id)
    }

    /// The edge's own offer toward `to` (calls the edge originates): our port facing that leg.
    pub fn offer_sdp(&self, to: Side, allowed_codecs: Option<&[String]>) -> Bytes {
        let srtp = self.negotiation().out_for(to.index(), true, "RTP/AVP").ok();
        let offer = crate::sdp::offer_sdp(self.public_ip, self.local_port(to), allowed_codecs, srtp.as_ref());
        self.push_srtp();
        self.negotiated().presented[to.index()] = Some(crate::sdp::offered_laws(allowed_codecs));
        self.update_laws();
        self.stamp_origin(to, &offer)
    }

    /// Current counters. A relay in a worker process reports its counters when released; until then
    /// they read zero.
    pub fn stats(&self) -> RelayStats {
        match &self.backend {
            Backend::InProcess { shared, .. } => shared.stats(),
            Backend::Worker(_) => RelayStats::default(),
        }
    }

    /// True once the relay stopped on its own (media timeout, or its worker process is gone).
    pub fn is_finished(&self) -> bool {
        match &self.backend {
            Backend::InProcess { task, .. } => task.is_finished(),
            Backend::Worker(remote) => remote.is_finished(),
        }
    }

    /// Stops the relay; when this returns its ports are in quarantine.
    pub async fn release(mut self) -> RelayStats {
        match &mut self.backend {
            Backend::InProcess { shared, task } => {
                task.abort();
                // Cancelled (or already finished): either way the task state is dropped now.
                let _ = task.await;
                shared.stats()
            }
            Backend::Worker(remote) => remote.release().await,
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        // A worker's relay is stopped by `RemoteRelay`'s own drop.
        if let Backend::InProcess { task, .. } = &self.backend {
            task.abort();
        }
    }
}

enum Wake {
    Packet {
        index: usize,
        from: SocketAddr,
        len: usize,
    },
    RecvError,
    Timer,
    /// `Shared::ringback` changed.
    Control,
    /// A ringback packet is due.
    Tick,
}

/// RTCP multiplexed on an RTP socket (RFC 5761: packet types 192-223).
fn is_muxed_rtcp(packet: &[u8]) -> bool {
    packet.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// Even socket indexes are RTP, odd ones RTCP.
fn is_rtp_socket(index: usize) -> bool {
    index & 1 == 0
}

/// RTP (v2 header parses) on RTP sockets, plus RTCP there too for rtcp-mux
/// peers (RFC 5761: packet types 192-223); RTCP v2 on RTCP sockets.
fn is_valid(index: usize, packet: &[u8]) -> bool {
    if packet.len() >= RECV_BUF {
        return false;
    }
    let rtcp = packet.len() >= 8 && packet[0] >> 6 == 2;
    if is_rtp_socket(index) {
        rtp_rs::RtpReader::new(packet).is_ok() || (rtcp && (192..=223).contains(&packet[1]))
    } else {
        rtcp
    }
}

async fn run(io: RelayIo, shared: Arc<Shared>, params: RelayParams) {
    let mut buf = [0u8; RECV_BUF];
    let mut router = Router::default();
    let timeout = params.media_timeout;
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    let mut start = 0usize;
    let mut ringback: [Ringback; 2] = Default::default();
    let mut tx = [0u8; PACKET];
    // Runs while ringback plays toward either side.
    let mut ticker: Option<tokio::time::Interval> = None;
    let control = shared.control.notified();
    tokio::pin!(control);
    // SRTP per side (`srtp.rs`); plain until the SDP says otherwise. `work` holds the packet being
    // transformed, with room for the tag.
    let mut crypto: [LegCrypto; 2] = Default::default();
    let mut crypto_generation = 0u64;
    let mut work: Vec<u8> = Vec::with_capacity(RECV_BUF + MAX_OVERHEAD);

    loop {
        let wake = poll_fn(|cx| {
            // Control and ringback first: a flood on the sockets must not delay them.
            if control.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Control);
            }
            if ticker.as_mut().is_some_and(|t| t.poll_tick(cx).is_ready()) {
                return Poll::Ready(Wake::Tick);
            }
            for i in 0..4 {
                let index = (start + i) % 4;
                let Some(socket) = io.socket(index) else { continue };
                match socket.poll_recv_from(cx, &mut buf) {
                    Poll::Ready(Ok((len, from))) => {
                        return Poll::Ready(Wake::Packet { index, from, len });
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "relay recv error");
                        return Poll::Ready(Wake::RecvError);
                    }
                    Poll::Pending => {}
                }
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;

        let (index, from, len) = match wake {
            Wake::Packet { index, from, len } => (index, from, len),
            Wake::RecvError => continue,
            Wake::Control => {
                control.set(shared.control.notified());
                let wanted = *shared.ringback();
                let now = Instant::now();
                for (r, codec) in ringback.iter_mut().zip(wanted) {
                    r.set(codec, now);
                }
                let playing = ringback.iter().any(|r| r.playing.is_some());
                if !playing {
                    ticker = None;
                } else if ticker.is_none() {
                    let mut t = tokio::time::interval(PTIME);
                    // Late ticks are caught up, so the stream keeps pace with its timestamps.
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    ticker = Some(t);
                }
                continue;
            }
            Wake::Tick => {
                router.refresh(&shared);
                refresh_crypto(&shared, &mut crypto, &mut crypto_generation);
                let now = Instant::now();
                for (side, r) in ringback.iter_mut().enumerate() {
                    // Built even with nowhere to send it, so the timestamps keep to the clock.
                    let Some(len) = r.next(now, &mut tx) else { continue };
                    let (Some(dest), Some(socket)) = (router.rtp_dest(side), io.socket(side * 2)) else {
                        continue;
                    };
                    work.clear();
                    work.extend_from_slice(&tx[..len]);
                    if crypto[side].protect(&mut work, false).is_err() {
                        continue;
                    }
                    if let Err(e) = socket.send_to(&work, dest) {
                        tracing::debug!(error = %e, %dest, "ringback send failed");
                    }
                }
                continue;
            }
            Wake::Timer => {
                let now = Instant::now();
                let armed_at = shared.remotes().armed_at;
                let Some(armed_at) = armed_at else {
                    sleep.as_mut().reset((now + timeout).into());
                    continue;
                };
                let idle_since = router.last_rx.map_or(armed_at, |rx| rx.max(armed_at));
                if now.saturating_duration_since(idle_since) >= timeout {
                    tracing::info!(call_id = %params.call_id, "media timeout");
                    let _ = params.events.send(MediaEvent::Timeout {
                        call_id: params.call_id.clone(),
                    });
                    return;
                }
                sleep.as_mut().reset((idle_since + timeout).into());
                continue;
            }
        };
        start = (index + 1) % 4;
        // Drain the ready socket directly (one syscall per packet, no re-poll of
        // the others), bounded so the other sockets and the timer get their turn.
        let mut next = Some((from, len));
        let mut handled = 0;
        refresh_crypto(&shared, &mut crypto, &mut crypto_generation);
        while let Some((from, len)) = next {
            let secure = !crypto[0].is_plain() || !crypto[1].is_plain();
            if secure {
                // Authenticated and decrypted before it may latch anything.
                work.clear();
                work.extend_from_slice(&buf[..len]);
                let rtcp = !is_rtp_socket(index) || is_muxed_rtcp(&work);
                if crypto[index / 2].unprotect(&mut work, rtcp).is_err() {
                    shared.counters.srtp_dropped.fetch_add(1, Ordering::Relaxed);
                    handled += 1;
                    next = next_packet(&io, index, &mut buf, handled);
                    continue;
                }
            }
            let packet: &mut [u8] = if secure { &mut work[..] } else { &mut buf[..len] };
            if let Some((out, dest)) = router.route(&shared, params.relatch, index, from, packet) {
                let audio = is_rtp_socket(index) && !is_muxed_rtcp(packet);
                let toward = &mut ringback[out / 2];
                if audio && toward.playing.is_some() {
                    // Ringback plays toward that side instead: the packet is not forwarded.
                    handled += 1;
                    next = next_packet(&io, index, &mut buf, handled);
                    continue;
                }
                if audio {
                    if let Some(rule) = &router.laws[out / 2] {
                        transcode::apply(rule, packet);
                    }
                }
                if audio && toward.mark_resume && Some(packet[1] & 0x7F) != toward.event_pt {
                    // The first relayed audio after ringback starts a talkspurt (marker bit).
                    packet[1] |= 0x80;
                    toward.mark_resume = false;
                }
                let packet: &[u8] = if secure {
                    if crypto[out / 2].protect(&mut work, !audio).is_err() {
                        handled += 1;
                        next = next_packet(&io, index, &mut buf, handled);
                        continue;
                    }
                    &work
                } else {
                    packet
                };
                // Never waits: a full send buffer drops the packet (real-time media has no use for
                // a late one, and waiting would stall the other direction).
                match io.socket(out).map(|s| s.send_to(packet, dest)) {
                    Some(Ok(_)) => {
                        shared.counters.relayed[index / 2].fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, %dest, "relay send failed"),
                    None => {}
                }
            }
            handled += 1;
            next = next_packet(&io, index, &mut buf, handled);
        }
    }
}

/// Takes the SRTP contexts the handle left for the task (one atomic load when there are none).
fn refresh_crypto(shared: &Shared, crypto: &mut [LegCrypto; 2], seen: &mut u64) {
    let generation = shared.srtp_generation.load(Ordering::Acquire);
    if generation == *seen {
        return;
    }
    *seen = generation;
    let updates = std::mem::take(&mut *shared.srtp());
    for (leg, update) in crypto.iter_mut().zip(updates) {
        if let Some(update) = update {
            update.apply(leg);
        }
    }
}

/// The next packet waiting on socket `index`, unless `handled` reached the batch.
fn next_packet(io: &RelayIo, index: usize, buf: &mut [u8], handled: usize) -> Option<(SocketAddr, usize)> {
    if handled >= DRAIN_BATCH {
        return None;
    }
    io.socket(index)
        .and_then(|s| s.try_recv_from(buf).ok())
        .map(|(len, from)| (from, len))
}

/// Per-relay routing state: latches and the SDP-declared destinations.
#[derive(Default)]
struct Router {
    latches: [Latch; 4],
    declared: [Option<(SocketAddr, SocketAddr)>; 2],
    /// The last address each side's SDP declared; a hold (no address) leaves it, so a resume to
    /// another address is still a move.
    last_declared: [Option<(SocketAddr, SocketAddr)>; 2],
    seen_generation: Option<u64>,
    last_rx: Option<Instant>,
    /// G.711 law conversion toward each side.
    laws: [Option<LawRule>; 2],
}

impl Router {
    /// Where RTP for `side`'s peer goes: its latched source, else its SDP address.
    fn rtp_dest(&self, side: usize) -> Option<SocketAddr> {
        self.latches[side * 2].latched().or(self.declared[side].map(|d| d.0))
    }

    /// Validates and latches a packet received on socket `index`; returns the
    /// socket to send it from and the destination, or `None` (counted) to drop.
    fn route(
        &mut self,
        shared: &Shared,
        relatch: RelatchRule,
        index: usize,
        from: SocketAddr,
        packet: &[u8],
    ) -> Option<(usize, SocketAddr)> {
        let counters = &shared.counters;
        if !is_valid(index, packet) {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.refresh(shared);
        let now = Instant::now();
        if self.latches[index].offer(from, now, relatch) == LatchVerdict::Drop {
            counters.foreign.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last_rx = Some(now);
        let other = 1 - index / 2;
        let out = other * 2 + (index & 1);
        let latched = self.latches[out].latched();
        let dest = if is_rtp_socket(index) {
            latched.or(self.declared[other].map(|d| d.0))
        } else {
            latched.or(self.declared[other].map(|d| d.1)).or_else(|| {
                let rtp = self.latches[other * 2].latched()?;
                Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
            })
        };
        if dest.is_none() {
            counters.no_destination.fetch_add(1, Ordering::Relaxed);
        }
        dest.map(|d| (out, d))
    }

    /// Takes in new SDP declarations (one atomic load when there are none).
    fn refresh(&mut self, shared: &Shared) {
        let generation = shared.generation.load(Ordering::Acquire);
        if self.seen_generation != Some(generation) {
            self.seen_generation = Some(generation);
            let (updated, laws) = {
                let r = shared.remotes();
                (r.declared, r.laws)
            };
            self.laws = laws;
            for (side, new) in updated.iter().enumerate() {
                let Some(new) = *new else { continue };
                let (rtp, rtcp) = (&self.latches[side * 2], &self.latches[side * 2 + 1]);
                let reset = match self.last_declared[side] {
                    // A changed SDP address (re-INVITE moving media, a hold in between or not): forget
                    // the old source so the peer latches again on its next packet.
                    Some(last) => last != new,
                    // The first declaration. The peer's first packets may arrive before the answer
                    // that declares it (always so for a relay in a media worker, which hears of the
                    // SDP a moment after the peer does): keep a latch from the declared host, drop one
                    // from any other (NAT, or a spoofer racing the answer; the next packet latches).
                    None => {
                        let from_elsewhere =
                            |l: &Latch, ip: std::net::IpAddr| l.latched().is_some_and(|a| a.ip() != ip);
                        from_elsewhere(rtp, new.0.ip()) || from_elsewhere(rtcp, new.1.ip())
                    }
                };
                if reset {
                    self.latches[side * 2] = Latch::default();
                    self.latches[side * 2 + 1] = Latch::default();
                }
                self.last_declared[side] = Some(new);
            }
            self.declared = updated;
        }
    }
}
