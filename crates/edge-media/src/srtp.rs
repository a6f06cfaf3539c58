//! SRTP on each leg (issue 20): the edge terminates SRTP per leg with keys of its own.
//!
//! For each side the relay handle keeps what the SDP exchanged with that side's peer said: the key
//! the peer sends with (its `a=crypto`) and the key the edge sends with (a fresh one, in the edge's
//! SDP toward that peer; never the other leg's key). From those the relay task gets one inbound
//! context (unprotect what the side sends) and one outbound context (protect what goes to it)
//! ([`LegCrypto`]). A side that is plain RTP has neither.
//!
//! Policy per side ([`MediaEncryption`]): `none` offers plain RTP toward the side, `srtp` offers
//! `RTP/SAVP` with the edge's keys, `srtp_required` does too and refuses a plain offer or answer from
//! it (488). Whatever the policy, an `RTP/SAVP` offer from a side is answered `RTP/SAVP` (the peer
//! asked for it).
//!
//! Keys never leave this module other than in SDP bodies: `CryptoAttribute` and `SrtpContext` print no
//! key bytes, and errors name suites and tags only.

use std::sync::atomic::{AtomicU64, Ordering};

use edge_srtp::{CryptoAttribute, SrtpContext, SrtpError};

use crate::sdp::SdpError;

/// Media encryption policy of a leg (`[[carriers]] media_encryption`, an agent's or a trunk's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediaEncryption {
    /// Plain RTP offered toward the leg; an `RTP/SAVP` offer from it is still answered with SRTP.
    #[default]
    None,
    /// `RTP/SAVP` offered toward the leg; a plain offer or answer from it is accepted.
    Srtp,
    /// `RTP/SAVP` offered toward the leg; a plain offer from it is refused with 488.
    SrtpRequired,
}

impl MediaEncryption {
    /// Every value, as configured.
    pub const ALL: [MediaEncryption; 3] = [
        MediaEncryption::None,
        MediaEncryption::Srtp,
        MediaEncryption::SrtpRequired,
    ];

    /// `"none"`, `"srtp"`, `"srtp_required"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaEncryption::None => "none",
            MediaEncryption::Srtp => "srtp",
            MediaEncryption::SrtpRequired => "srtp_required",
        }
    }

    /// The policy a configuration value names.
    pub fn parse(s: &str) -> Option<MediaEncryption> {
        MediaEncryption::ALL.into_iter().find(|m| m.as_str() == s)
    }

    fn offers_srtp(self) -> bool {
        !matches!(self, MediaEncryption::None)
    }
}

impl std::fmt::Display for MediaEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SRTP packets dropped by every relay and voicemail session of this process, by reason.
static DROPS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
const DROP_REASONS: [&str; 5] = ["auth_failed", "replayed", "malformed", "not_negotiated", "other"];

/// Counts a dropped packet.
pub(crate) fn count_drop(e: Option<&SrtpError>) {
    let i = match e {
        Some(SrtpError::AuthFailed) => 0,
        Some(SrtpError::Replayed { .. } | SrtpError::TooOld { .. }) => 1,
        Some(SrtpError::Malformed(_)) => 2,
        None => 3,
        Some(_) => 4,
    };
    DROPS[i].fetch_add(1, Ordering::Relaxed);
}

/// SRTP/SRTCP packets dropped so far by this process's relays and voicemail sessions, by reason
/// (`auth_failed`, `replayed` (replayed or older than the replay window), `malformed`,
/// `not_negotiated` (keys not agreed yet), `other` (unknown MKI, too many SSRCs, key used up)).
pub fn srtp_dropped() -> [(&'static str, u64); 5] {
    std::array::from_fn(|i| (DROP_REASONS[i], DROPS[i].load(Ordering::Relaxed)))
}

/// One direction of a leg in the relay task (`Debug` shows no key: `SrtpContext`'s prints none).
#[derive(Debug)]
pub(crate) enum Dir {
    /// Plain RTP.
    Plain,
    /// SRTP is being negotiated with this side and no key is agreed yet: nothing passes.
    Blocked,
    /// SRTP with this context.
    Srtp(Box<SrtpContext>),
}

/// The crypto of one leg in the relay task.
pub(crate) struct LegCrypto {
    pub(crate) inbound: Dir,
    pub(crate) outbound: Dir,
}

impl Default for LegCrypto {
    fn default() -> Self {
        LegCrypto {
            inbound: Dir::Plain,
            outbound: Dir::Plain,
        }
    }
}

/// Extra room an SRTP buffer needs beyond the packet (tag, SRTCP index, MKI).
pub(crate) const MAX_OVERHEAD: usize = 64;

impl LegCrypto {
    /// Unprotects a packet `side` sent, in place. `Err` means drop (counted).
    pub(crate) fn unprotect(&mut self, packet: &mut Vec<u8>, rtcp: bool) -> Result<(), ()> {
        match &mut self.inbound {
            Dir::Plain => Ok(()),
            Dir::Blocked => {
                count_drop(None);
                Err(())
            }
            Dir::Srtp(ctx) => {
                let r = if rtcp {
                    ctx.unprotect_rtcp(packet)
                } else {
                    ctx.unprotect_rtp(packet)
                };
                r.map_err(|e| count_drop(Some(&e)))
            }
        }
    }

    /// Protects a packet going to this side, in place. `Err` means drop (counted).
    pub(crate) fn protect(&mut self, packet: &mut Vec<u8>, rtcp: bool) -> Result<(), ()> {
        match &mut self.outbound {
            Dir::Plain => Ok(()),
            Dir::Blocked => {
                count_drop(None);
                Err(())
            }
            Dir::Srtp(ctx) => {
                let r = if rtcp {
                    ctx.protect_rtcp(packet)
                } else {
                    ctx.protect_rtp(packet)
                };
                r.map_err(|e| count_drop(Some(&e)))
            }
        }
    }

    /// Whether any transform applies (the relay's fast path skips the copy when not).
    pub(crate) fn is_plain(&self) -> bool {
        matches!((&self.inbound, &self.outbound), (Dir::Plain, Dir::Plain))
    }
}

/// A change of one direction of a leg, given to the relay task.
#[derive(Debug)]
pub(crate) enum Update {
    /// Leave the context as it is (same key: a new context would reuse keystream).
    Keep,
    Set(Dir),
}

/// Changes for one leg.
#[derive(Debug)]
pub(crate) struct LegUpdate {
    pub(crate) inbound: Update,
    pub(crate) outbound: Update,
}

impl LegUpdate {
    pub(crate) fn apply(self, leg: &mut LegCrypto) {
        if let Update::Set(d) = self.inbound {
            leg.inbound = d;
        }
        if let Update::Set(d) = self.outbound {
            leg.outbound = d;
        }
    }

    /// Adds a later update to one the task has not taken yet.
    pub(crate) fn merge(&mut self, later: LegUpdate) {
        if let Update::Set(d) = later.inbound {
            self.inbound = Update::Set(d);
        }
        if let Update::Set(d) = later.outbound {
            self.outbound = Update::Set(d);
        }
    }
}

/// One direction's change as keys rather than contexts: what travels to a media worker, which makes the
/// contexts itself ([`KeyUpdate::contexts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyDir {
    Keep,
    Plain,
    Blocked,
    Srtp(CryptoAttribute),
}

/// A leg's change as keys ([`KeyDir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyUpdate {
    pub(crate) inbound: KeyDir,
    pub(crate) outbound: KeyDir,
}

impl KeyUpdate {
    /// The contexts the relay task installs.
    pub(crate) fn contexts(self) -> LegUpdate {
        let make = |d: KeyDir| match d {
            KeyDir::Keep => Update::Keep,
            KeyDir::Plain => Update::Set(Dir::Plain),
            KeyDir::Blocked => Update::Set(Dir::Blocked),
            KeyDir::Srtp(k) => Update::Set(Dir::Srtp(Box::new(SrtpContext::from_crypto(&k)))),
        };
        LegUpdate {
            inbound: make(self.inbound),
            outbound: make(self.outbound),
        }
    }
}

/// What a peer's SDP says about SRTP on its anchored audio stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct CryptoIn {
    /// The `m=` line's transport (`RTP/AVP`, `RTP/SAVP`, ...).
    pub(crate) proto: String,
    /// The values of its `a=crypto` lines (without `a=crypto:`).
    pub(crate) lines: Vec<String>,
}

impl CryptoIn {
    pub(crate) fn secure(&self) -> bool {
        is_secure_proto(&self.proto)
    }

    /// The lines the edge can use, in the peer's order (unusable ones are skipped: RFC 4568 §7.1.1).
    fn usable(&self) -> Vec<CryptoAttribute> {
        self.lines
            .iter()
            .filter_map(|l| match CryptoAttribute::parse(l) {
                Ok(a) => Some(a),
                Err(e) => {
                    // The error names the suite or parameter, never the key.
                    tracing::debug!(error = %e, "a=crypto line skipped");
                    None
                }
            })
            .collect()
    }
}

/// `RTP/SAVP` and `RTP/SAVPF` (SDES-keyed SRTP).
pub(crate) fn is_secure_proto(proto: &str) -> bool {
    let p = proto.as_bytes();
    p.len() >= 8 && p[..8].eq_ignore_ascii_case(b"RTP/SAVP")
}

/// `proto` made secure (`RTP/AVP` -> `RTP/SAVP`, `RTP/AVPF` -> `RTP/SAVPF`) or plain (the reverse).
fn proto_as(proto: &str, secure: bool) -> String {
    let upper = proto.to_ascii_uppercase();
    match (secure, upper.strip_prefix("RTP/SAVP"), upper.strip_prefix("RTP/AVP")) {
        (true, Some(_), _) | (false, None, Some(_)) => upper,
        (true, None, Some(rest)) => format!("RTP/SAVP{rest}"),
        (false, Some(rest), _) => format!("RTP/AVP{rest}"),
        (true, None, None) => "RTP/SAVP".into(),
        (false, None, None) => "RTP/AVP".into(),
    }
}

/// What the edge's SDP toward a side says: its transport and `a=crypto` values.
#[derive(Debug, Clone)]
pub(crate) struct CryptoOut {
    pub(crate) proto: String,
    pub(crate) lines: Vec<String>,
}

/// Whether a side's last SDP was an offer or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offer,
    Answer,
}

/// The keys agreed with one side (`peer`: what it sends with; `ours`: what the edge sends with).
#[derive(Default, Clone, Debug)]
struct SideKeys {
    policy: MediaEncryption,
    peer: Option<CryptoAttribute>,
    ours: Option<CryptoAttribute>,
    /// The lines of the edge's last offer to this side (`Some(empty)`: a plain offer).
    offered: Option<Vec<CryptoAttribute>>,
    /// The transport of this side's last offer (echoed in the edge's answer).
    offer_proto: String,
    last_in: Option<Kind>,
    /// The keys the relay task has for this side (so a repeated answer makes no new context).
    installed: Option<(Option<CryptoAttribute>, Option<CryptoAttribute>)>,
    /// The task blocks this side until keys are agreed (an SRTP offer went out, no answer yet).
    blocked: bool,
}

/// The SRTP negotiation of one relay, both sides.
#[derive(Default, Clone, Debug)]
pub(crate) struct Negotiation {
    sides: [SideKeys; 2],
    /// A new peer offered on a side (a transfer target) while the current peer keeps its keys: it takes
    /// that side's place on its answer ([`Self::take_new_peer_answer`]).
    pending: [Option<Box<SideKeys>>; 2],
}

impl Negotiation {
    /// The SRTP part of an offer toward a new peer on `to` (a transfer target) under `policy`, with fresh
    /// keys of the edge's: the peer now on `to` keeps its own keys (the call goes on with it if the new
    /// one never answers), and never learns a key the new peer uses. A later call replaces it.
    pub(crate) fn offer_new_peer(
        &mut self,
        to: usize,
        policy: MediaEncryption,
        in_proto: &str,
    ) -> Result<CryptoOut, SdpError> {
        let mut fresh = Negotiation::default();
        fresh.sides[to].policy = policy;
        let out = fresh.out_for(to, true, in_proto)?;
        let mut keys = std::mem::take(&mut fresh.sides[to]);
        // The task still has the current peer's contexts: the new ones replace them on the answer.
        keys.installed = self.sides[to].installed.clone();
        self.pending[to] = Some(Box::new(keys));
        Ok(out)
    }

    /// Whether the new peer offered on `side` was offered SRTP.
    pub(crate) fn new_peer_is_srtp(&self, side: usize) -> bool {
        self.pending[side]
            .as_deref()
            .is_some_and(|p| p.offered.as_ref().is_some_and(|o| !o.is_empty()))
    }

    /// The new peer offered on `side` will not answer.
    pub(crate) fn forget_new_peer(&mut self, side: usize) {
        self.pending[side] = None;
    }

    /// Takes an answer from `from`: the pending new peer's ([`Self::offer_new_peer`]), which then takes
    /// the side's place, or else the current peer's. Nothing changes on error.
    pub(crate) fn take_new_peer_answer(&mut self, from: usize, input: &CryptoIn) -> Result<(), SdpError> {
        let Some(pending) = self.pending[from].as_deref() else {
            return self.take_in(from, input, false);
        };
        let mut trial = Negotiation::default();
        trial.sides[from] = pending.clone();
        trial.take_in(from, input, false)?;
        self.sides[from] = std::mem::take(&mut trial.sides[from]);
        self.pending[from] = None;
        Ok(())
    }

    pub(crate) fn set_policy(&mut self, side: usize, policy: MediaEncryption) {
        self.sides[side].policy = policy;
    }

    /// A new peer on `side` (another agent, a transfer target): its keys are forgotten, the policy set.
    pub(crate) fn new_peer(&mut self, side: usize, policy: MediaEncryption) {
        let s = &mut self.sides[side];
        s.policy = policy;
        s.peer = None;
        s.ours = None;
        s.offered = None;
        s.last_in = None;
    }

    /// Takes the SRTP part of SDP received from `from`; `offer` says whether it is an offer.
    /// Nothing changes on error.
    pub(crate) fn take_in(&mut self, from: usize, input: &CryptoIn, offer: bool) -> Result<(), SdpError> {
        let s = &mut self.sides[from];
        let (peer, ours) = if input.secure() {
            let usable = input.usable();
            if offer {
                // The line of the session already agreed if it is offered again (a refresh keeps its
                // keys), else the peer's first usable line.
                let same = |a: &CryptoAttribute| {
                    s.ours
                        .as_ref()
                        .is_some_and(|o| o.tag == a.tag && o.suite() == a.suite())
                };
                let chosen = usable
                    .iter()
                    .find(|a| same(a))
                    .or(usable.first())
                    .cloned()
                    .ok_or(SdpError::NoUsableCrypto)?;
                let ours = match s.ours.as_ref().filter(|o| same(o) && o.tag == chosen.tag) {
                    Some(o) => o.clone(),
                    None => chosen.answer().map_err(|_| SdpError::NoUsableCrypto)?,
                };
                (Some(chosen), Some(ours))
            } else {
                let offered = s.offered.as_deref().unwrap_or_default();
                usable
                    .iter()
                    .find_map(|a| {
                        offered
                            .iter()
                            .find(|o| o.tag == a.tag && o.suite() == a.suite())
                            .map(|o| (Some(a.clone()), Some(o.clone())))
                    })
                    .ok_or(SdpError::CryptoMismatch)?
            }
        } else {
            if s.policy == MediaEncryption::SrtpRequired {
                return Err(SdpError::SrtpRequired);
            }
            (None, None)
        };
        if offer {
            s.offer_proto = input.proto.clone();
        }
        s.peer = peer;
        s.ours = ours;
        s.last_in = Some(if offer { Kind::Offer } else { Kind::Answer });
        s.blocked = false;
        Ok(())
    }

    /// Whether the SDP made from `from`'s (an offer when `offer_in`) is an offer toward the other side:
    /// offers make offers; an answer makes an answer, but for a side that made no offer (a call the
    /// edge originated: the dialled party's answer is the agent's offer).
    pub(crate) fn out_is_offer(&self, to: usize, offer_in: bool) -> bool {
        offer_in || self.sides[to].last_in != Some(Kind::Offer)
    }

    /// The SRTP part of the edge's SDP toward `to`, made from SDP whose transport was `in_proto`.
    pub(crate) fn out_for(&mut self, to: usize, offer: bool, in_proto: &str) -> Result<CryptoOut, SdpError> {
        let s = &mut self.sides[to];
        if !offer {
            let proto = if s.offer_proto.is_empty() {
                "RTP/AVP".to_owned()
            } else {
                s.offer_proto.clone()
            };
            let lines = s.ours.iter().map(CryptoAttribute::to_sdp_value).collect();
            return Ok(CryptoOut { proto, lines });
        }
        if !s.policy.offers_srtp() {
            s.offered = Some(Vec::new());
            return Ok(CryptoOut {
                proto: proto_as(in_proto, false),
                lines: Vec::new(),
            });
        }
        let lines = match &s.ours {
            // A session with keys: offered again as it is (RFC 4568 §7.1.4 lets a re-offer keep them).
            Some(ours) => vec![ours.clone()],
            None => CryptoAttribute::offer().map_err(|_| SdpError::NoUsableCrypto)?,
        };
        if s.ours.is_none() {
            s.blocked = true;
        }
        let values = lines.iter().map(CryptoAttribute::to_sdp_value).collect();
        s.offered = Some(lines);
        Ok(CryptoOut {
            proto: proto_as(in_proto, true),
            lines: values,
        })
    }

    /// What the relay task must change for `side` now, if anything.
    pub(crate) fn update(&mut self, side: usize) -> Option<LegUpdate> {
        self.key_update(side).map(KeyUpdate::contexts)
    }

    /// [`Self::update`] as keys (for a relay in a media worker).
    pub(crate) fn key_update(&mut self, side: usize) -> Option<KeyUpdate> {
        let s = &mut self.sides[side];
        if s.blocked && s.peer.is_none() {
            s.installed = None;
            return Some(KeyUpdate {
                inbound: KeyDir::Blocked,
                outbound: KeyDir::Blocked,
            });
        }
        let want = (s.peer.clone(), s.ours.clone());
        let (old_in, old_out) = match &s.installed {
            Some((i, o)) => (Some(i.clone()), Some(o.clone())),
            None => (None, None),
        };
        let make = |k: &Option<CryptoAttribute>| match k {
            Some(k) => KeyDir::Srtp(k.clone()),
            None => KeyDir::Plain,
        };
        let inbound = if old_in.as_ref() == Some(&want.0) {
            KeyDir::Keep
        } else {
            make(&want.0)
        };
        let outbound = if old_out.as_ref() == Some(&want.1) {
            KeyDir::Keep
        } else {
            make(&want.1)
        };
        s.installed = Some(want);
        let update = KeyUpdate { inbound, outbound };
        (update
            != KeyUpdate {
                inbound: KeyDir::Keep,
                outbound: KeyDir::Keep,
            })
        .then_some(update)
    }

    /// Whether `side` carries SRTP (or is being offered it).
    pub(crate) fn is_srtp(&self, side: usize) -> bool {
        let s = &self.sides[side];
        s.peer.is_some() || s.ours.is_some() || s.blocked
    }
}

/// The voicemail's keys from a caller's offer: the answer's SRTP part and the two contexts
/// (`None`: the offer is plain).
pub(crate) fn voicemail_keys(input: &CryptoIn) -> Result<Option<(CryptoOut, LegCrypto)>, SdpError> {
    if !input.secure() {
        return Ok(None);
    }
    let chosen = input.usable().into_iter().next().ok_or(SdpError::NoUsableCrypto)?;
    let ours = chosen.answer().map_err(|_| SdpError::NoUsableCrypto)?;
    let out = CryptoOut {
        proto: input.proto.clone(),
        lines: vec![ours.to_sdp_value()],
    };
    let leg = LegCrypto {
        inbound: Dir::Srtp(Box::new(SrtpContext::from_crypto(&chosen))),
        outbound: Dir::Srtp(Box::new(SrtpContext::from_crypto(&ours))),
    };
    Ok(Some((out, leg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_srtp::SrtpSuite;

    fn input(proto: &str, lines: &[CryptoAttribute]) -> CryptoIn {
        CryptoIn {
            proto: proto.into(),
            lines: lines.iter().map(CryptoAttribute::to_sdp_value).collect(),
        }
    }

    #[test]
    fn srtp_offer_is_answered_with_a_fresh_key_and_the_other_side_gets_its_own() {
        let mut n = Negotiation::default();
        n.set_policy(1, MediaEncryption::None);
        let carrier = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
        n.take_in(0, &input("RTP/SAVP", std::slice::from_ref(&carrier)), true)
            .unwrap();
        assert!(n.out_is_offer(1, true));
        let to_b = n.out_for(1, true, "RTP/AVP").unwrap();
        assert_eq!(to_b.proto, "RTP/AVP");
        assert!(to_b.lines.is_empty());
        n.take_in(1, &input("RTP/AVP", &[]), false).unwrap();
        assert!(!n.out_is_offer(0, false));
        let to_a = n.out_for(0, false, "RTP/AVP").unwrap();
        assert_eq!(to_a.proto, "RTP/SAVP");
        assert_eq!(to_a.lines.len(), 1);
        let answer = CryptoAttribute::parse(&to_a.lines[0]).unwrap();
        assert_eq!(answer.tag, 1);
        assert_eq!(answer.suite(), SrtpSuite::AesCm128HmacSha1_80);
        assert_ne!(answer.key, carrier.key, "never the peer's key");
        // The same answer again (a 183, then the 200): the same key.
        n.take_in(1, &input("RTP/AVP", &[]), false).unwrap();
        assert_eq!(n.out_for(0, false, "RTP/AVP").unwrap().lines, to_a.lines);
        assert!(n.update(0).is_some());
        assert!(n.update(0).is_none(), "the same keys make no new contexts");
    }

    #[test]
    fn required_refuses_plain_and_srtp_offer_toward_required_side() {
        let mut n = Negotiation::default();
        n.set_policy(0, MediaEncryption::SrtpRequired);
        assert_eq!(n.take_in(0, &input("RTP/AVP", &[]), true), Err(SdpError::SrtpRequired));
        n.set_policy(1, MediaEncryption::Srtp);
        n.set_policy(0, MediaEncryption::None);
        n.take_in(0, &input("RTP/AVP", &[]), true).unwrap();
        let to_b = n.out_for(1, true, "RTP/AVP").unwrap();
        assert_eq!(to_b.proto, "RTP/SAVP");
        assert_eq!(to_b.lines.len(), 3);
        assert!(n.is_srtp(1));
        // B answers the AES-CM-80 line (tag 2) with its own key.
        let offered = CryptoAttribute::parse(&to_b.lines[1]).unwrap();
        let b_key = CryptoAttribute::generate(offered.tag, offered.suite()).unwrap();
        n.take_in(1, &input("RTP/SAVP", &[b_key]), false).unwrap();
        let wrong = CryptoAttribute::generate(7, SrtpSuite::AesCm128HmacSha1_80).unwrap();
        assert_eq!(
            n.take_in(1, &input("RTP/SAVP", &[wrong]), false),
            Err(SdpError::CryptoMismatch)
        );
        assert_eq!(n.out_for(0, false, "RTP/AVP").unwrap().proto, "RTP/AVP");
    }

    #[test]
    fn unusable_lines_only_is_refused() {
        let mut n = Negotiation::default();
        let input = CryptoIn {
            proto: "RTP/SAVP".into(),
            lines: vec!["1 AES_256_CM_HMAC_SHA1_80 inline:AAAA".into()],
        };
        assert_eq!(n.take_in(0, &input, true), Err(SdpError::NoUsableCrypto));
    }

    #[test]
    fn a_new_peer_gets_fresh_keys_and_the_old_one_keeps_its_own_until_the_new_one_answers() {
        let mut n = Negotiation::default();
        n.set_policy(1, MediaEncryption::Srtp);
        let first = n.out_for(1, true, "RTP/AVP").unwrap();
        let agent = CryptoAttribute::parse(&first.lines[0]).unwrap().answer().unwrap();
        n.take_in(1, &input("RTP/SAVP", &[agent]), false).unwrap();
        assert!(n.update(1).is_some(), "the first agent's contexts installed");

        let out = n.offer_new_peer(1, MediaEncryption::SrtpRequired, "RTP/SAVP").unwrap();
        assert_eq!(out.proto, "RTP/SAVP");
        assert!(!out.lines.is_empty());
        assert!(
            out.lines.iter().all(|l| !first.lines.contains(l)),
            "fresh keys for the new peer"
        );
        assert!(
            n.update(1).is_none(),
            "the first agent keeps its contexts while the new one rings"
        );
        assert_eq!(
            n.take_new_peer_answer(1, &input("RTP/AVP", &[])),
            Err(SdpError::SrtpRequired),
            "the new peer's own policy holds"
        );
        assert!(n.update(1).is_none(), "a refused answer changes nothing");
        let target = CryptoAttribute::parse(&out.lines[0]).unwrap().answer().unwrap();
        n.take_new_peer_answer(1, &input("RTP/SAVP", &[target])).unwrap();
        let u = n.update(1).expect("the new peer's contexts replace the first agent's");
        assert!(matches!(
            (&u.inbound, &u.outbound),
            (Update::Set(Dir::Srtp(_)), Update::Set(Dir::Srtp(_)))
        ));
        // A later answer on that side (the 200 after a 183) is the new peer's own again.
        let again = CryptoAttribute::parse(&out.lines[0]).unwrap().answer().unwrap();
        n.take_new_peer_answer(1, &input("RTP/SAVP", &[again])).unwrap();
    }
}
