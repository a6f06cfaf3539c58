//! Per-direction SRTP/SRTCP contexts: the packet transforms, ROC estimation and replay protection.

use aes::cipher::KeyInit;
use aes::Aes128;
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use zeroize::Zeroize;

use crate::error::SrtpError;
use crate::kdf::{aes_cm_xor, derive, Label};
use crate::key::MasterKey;
use crate::sdes::{CryptoAttribute, Mki};
use crate::suite::{SrtpSuite, KEY_LEN, MAX_SALT_LEN};

/// Default cap on SSRCs per context. A call leg has one or two (audio, maybe a retransmission or
/// a re-INVITE's new source); the cap bounds the state a peer can make the edge hold.
pub const DEFAULT_MAX_SSRCS: usize = 16;

/// Replay window width (RFC 3711 §3.3.2 requires at least 64).
const WINDOW: u64 = 64;
/// SRTP packet indices are 48 bits (ROC || SEQ).
const MAX_RTP_INDEX: u64 = (1 << 48) - 1;
/// SRTCP indices are 31 bits.
const MAX_RTCP_INDEX: u32 = (1 << 31) - 1;
/// The E flag of the SRTCP trailer word.
const E_FLAG: u32 = 1 << 31;

/// The cipher of one of SRTP / SRTCP with its derived session keys.
enum Transform {
    /// AES-CM encryption with HMAC-SHA1 authentication. `mac` is keyed once; each packet clones
    /// the keyed state (no key schedule per packet).
    Cm { aes: Aes128, mac: Hmac<Sha1> },
    /// AES-128-GCM: encryption and authentication in one.
    Gcm(Aes128Gcm),
}

/// Session keys of SRTP or SRTCP (RFC 3711 §4.3).
struct Session {
    transform: Transform,
    /// Session salt, 14 bytes for AES-CM, 12 (the first 12 here) for GCM.
    salt: [u8; MAX_SALT_LEN],
    tag_len: usize,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The ciphers wipe their key schedules themselves (the `zeroize` features of aes, aes-gcm
        // and hmac); the salt is ours.
        self.salt.zeroize();
    }
}

impl Session {
    fn derive(suite: SrtpSuite, master: &Aes128, master_salt: &[u8; 14], rtcp: bool) -> Session {
        let (enc, auth, salt_label) = if rtcp {
            (Label::RtcpEncryption, Label::RtcpAuth, Label::RtcpSalt)
        } else {
            (Label::RtpEncryption, Label::RtpAuth, Label::RtpSalt)
        };
        let mut key = [0u8; KEY_LEN];
        derive(master, master_salt, enc, &mut key);
        let mut salt = [0u8; MAX_SALT_LEN];
        derive(master, master_salt, salt_label, &mut salt[..suite.salt_len()]);
        let tag_len = if rtcp {
            suite.rtcp_tag_len()
        } else {
            suite.rtp_tag_len()
        };
        let transform = if suite.is_gcm() {
            Transform::Gcm(Aes128Gcm::new(&key.into()))
        } else {
            // 160-bit HMAC-SHA1 key (RFC 3711 §8.2: n_a = 160).
            let mut auth_key = [0u8; 20];
            derive(master, master_salt, auth, &mut auth_key);
            let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&auth_key).expect("HMAC takes any key length");
            auth_key.zeroize();
            Transform::Cm {
                aes: Aes128::new(&key.into()),
                mac,
            }
        };
        key.zeroize();
        Session {
            transform,
            salt,
            tag_len,
        }
    }

    /// The AES-CM IV (RFC 3711 §4.1.1): salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16.
    fn cm_iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, i) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= i;
        }
        iv
    }

    /// The GCM IV (RFC 7714 §8.1 / §9.1): the 12-byte salt XOR 0x0000 || SSRC || `tail` (ROC || SEQ
    /// for SRTP, 0x0000 || SRTCP index for SRTCP).
    fn gcm_nonce(&self, ssrc: u32, tail: [u8; 6]) -> Nonce<aes_gcm::aead::consts::U12> {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..].copy_from_slice(&tail);
        for (b, s) in iv.iter_mut().zip(&self.salt[..12]) {
            *b ^= s;
        }
        Nonce::from(iv)
    }
}

/// Replay state of one stream (RFC 3711 §3.3.2): the highest accepted index and a bitmap of the
/// 64 indices below and including it.
#[derive(Clone, Copy, Debug)]
struct Window {
    highest: u64,
    seen: u64,
}

impl Window {
    fn new(index: u64) -> Window {
        Window {
            highest: index,
            seen: 1,
        }
    }

    fn check(&self, ssrc: u32, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        let delta = self.highest - index;
        if delta >= WINDOW {
            Err(SrtpError::TooOld { ssrc, index })
        } else if self.seen & (1 << delta) != 0 {
            Err(SrtpError::Replayed { ssrc, index })
        } else {
            Ok(())
        }
    }

    /// Marks `index` seen; call only after [`Window::check`] passed and the packet authenticated.
    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let shift = index - self.highest;
            self.seen = if shift >= WINDOW { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = index;
        } else {
            self.seen |= 1 << (self.highest - index);
        }
    }
}

/// The packet index of `seq` on a stream whose replay window is `window` (`None`: its first packet):
/// estimated from the highest index seen (RFC 3711 Appendix A), checked against the window, and refused past
/// the 2^48 index space. The same rule for protecting and unprotecting.
fn rtp_index(window: Option<Window>, ssrc: u32, seq: u16) -> Result<u64, SrtpError> {
    let index = match window {
        Some(window) => {
            let index = estimate_index(window.highest, seq).ok_or(SrtpError::TooOld {
                ssrc,
                index: u64::from(seq),
            })?;
            window.check(ssrc, index)?;
            index
        }
        None => u64::from(seq),
    };
    if index > MAX_RTP_INDEX {
        return Err(SrtpError::KeyExhausted);
    }
    Ok(index)
}

/// The packet index of `seq` given the stream's highest index so far (RFC 3711 §3.3.1 and
/// Appendix A): the ROC guess v is ROC - 1, ROC or ROC + 1, whichever puts the index nearest the
/// highest one. `None` when it would be before index 0 (a packet from before the stream began).
fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u32;
    let seq32 = u32::from(seq);
    let v = if s_l < 32768 {
        if seq32 > s_l + 32768 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if s_l - 32768 > seq32 {
        roc + 1
    } else {
        roc
    };
    Some((v << 16) | u64::from(seq))
}

/// Per-SSRC state of a context.
#[derive(Clone, Copy, Debug)]
struct Stream {
    ssrc: u32,
    rtp: Option<Window>,
    rtcp: Option<Window>,
    /// Next SRTCP index to send (RFC 3711 §3.4: starts at 0).
    rtcp_next: u32,
}

impl Stream {
    fn new(ssrc: u32) -> Stream {
        Stream {
            ssrc,
            rtp: None,
            rtcp: None,
            rtcp_next: 0,
        }
    }
}

/// One direction of one leg: protects what the edge sends to a peer, or unprotects what a peer
/// sends to the edge. Sans-IO: it transforms byte buffers and keeps the crypto state; the relay
/// owns the sockets.
///
/// A leg therefore has two contexts, each from its own key: the peer's key (from its `a=crypto`)
/// for [`unprotect_rtp`](SrtpContext::unprotect_rtp), the edge's own fresh key (in the edge's
/// `a=crypto`) for [`protect_rtp`](SrtpContext::protect_rtp). Do not use one context in both
/// directions: SSRC state is shared, so the two would trip each other's replay checks.
///
/// Packets are transformed in place. `protect_*` appends the tag (and MKI); reserve
/// [`SrtpContext::max_overhead`] bytes of capacity in the buffer and nothing is allocated.
pub struct SrtpContext {
    suite: SrtpSuite,
    rtp: Session,
    rtcp: Session,
    /// MKI field carried by every packet of this key (empty: none).
    mki: Vec<u8>,
    streams: Vec<Stream>,
    max_ssrcs: usize,
    /// Packets (SRTP and SRTCP) this key may still protect or accept, from the SDES lifetime.
    packets_left: Option<u64>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("ssrcs", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// A context for `key`, with no MKI, no lifetime and [`DEFAULT_MAX_SSRCS`].
    pub fn new(key: &MasterKey) -> SrtpContext {
        let suite = key.suite();
        let mut master_salt = [0u8; 14];
        master_salt[..suite.salt_len()].copy_from_slice(key.salt());
        let master = Aes128::new_from_slice(key.key()).expect("master keys are 16 bytes");
        let context = SrtpContext {
            suite,
            rtp: Session::derive(suite, &master, &master_salt, false),
            rtcp: Session::derive(suite, &master, &master_salt, true),
            mki: Vec::new(),
            streams: Vec::new(),
            max_ssrcs: DEFAULT_MAX_SSRCS,
            packets_left: None,
        };
        master_salt.zeroize();
        context
    }

    /// A context for the key, lifetime and MKI of an `a=crypto` line.
    pub fn from_crypto(attr: &CryptoAttribute) -> SrtpContext {
        let mut context = SrtpContext::new(&attr.key);
        context.mki = attr.mki.map(Mki::to_bytes).unwrap_or_default();
        context.packets_left = attr.lifetime;
        context
    }

    /// Sets the cap on SSRCs (at least 1); a new SSRC beyond it is [`SrtpError::TooManySsrcs`].
    pub fn with_max_ssrcs(mut self, max: usize) -> SrtpContext {
        self.max_ssrcs = max.max(1);
        self
    }

    /// The suite of this context.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// Most bytes `protect_rtp` or `protect_rtcp` add to a packet.
    pub fn max_overhead(&self) -> usize {
        self.suite.rtp_tag_len().max(self.suite.rtcp_tag_len()) + 4 + self.mki.len()
    }

    fn stream_index(&self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.ssrc == ssrc)
    }

    fn stream_or_insert(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        match self.stream_index(ssrc) {
            Some(i) => Ok(i),
            None if self.streams.len() >= self.max_ssrcs => Err(SrtpError::TooManySsrcs(self.max_ssrcs)),
            None => {
                self.streams.push(Stream::new(ssrc));
                Ok(self.streams.len() - 1)
            }
        }
    }

    fn spend_packet(&mut self) -> Result<(), SrtpError> {
        match &mut self.packets_left {
            Some(0) => Err(SrtpError::KeyExhausted),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn check_lifetime(&self) -> Result<(), SrtpError> {
        match self.packets_left {
            Some(0) => Err(SrtpError::KeyExhausted),
            _ => Ok(()),
        }
    }

    /// Turns an RTP packet into SRTP in place: encrypts the payload and appends MKI and tag.
    ///
    /// The packet index comes from the packet's own SEQ with the ROC estimated as a receiver
    /// would, so a relayed stream keeps its sequence numbers and out-of-order input works.
    /// Protecting an index twice is refused ([`SrtpError::Replayed`]): it would reuse keystream.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header_len = rtp_header_len(packet)?;
        let ssrc = read_u32(packet, 8);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        self.check_lifetime()?;
        let slot = self.stream_or_insert(ssrc)?;
        let index = rtp_index(self.streams[slot].rtp, ssrc, seq)?;
        self.spend_packet()?;
        let roc = (index >> 16) as u32;
        packet.reserve(self.rtp.tag_len + self.mki.len());
        match &self.rtp.transform {
            Transform::Cm { aes, mac } => {
                let iv = self.rtp.cm_iv(ssrc, index);
                aes_cm_xor(aes, &iv, &mut packet[header_len..]);
                let mut mac = mac.clone();
                mac.update(packet);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                packet.extend_from_slice(&self.mki);
                packet.extend_from_slice(&tag[..self.rtp.tag_len]);
            }
            Transform::Gcm(gcm) => {
                let nonce = self.rtp.gcm_nonce(ssrc, rtp_tail(roc, seq));
                let (header, payload) = packet.split_at_mut(header_len);
                let tag = gcm
                    .encrypt_inout_detached(&nonce, header, payload.into())
                    .map_err(|_| SrtpError::Malformed("payload too long"))?;
                packet.extend_from_slice(&tag);
                packet.extend_from_slice(&self.mki);
            }
        }
        let stream = &mut self.streams[slot];
        match &mut stream.rtp {
            Some(window) => window.accept(index),
            None => stream.rtp = Some(Window::new(index)),
        }
        Ok(())
    }

    /// Turns an SRTP packet back into RTP in place: checks replay, MKI and tag, decrypts, and
    /// truncates MKI and tag. On any error the packet must be dropped (its content is unspecified).
    ///
    /// A new SSRC gets state only once its packet authenticated, so forged packets cannot use up
    /// the SSRC cap.
    pub fn unprotect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let trailer = self.rtp.tag_len + self.mki.len();
        if packet.len() < 12 + trailer {
            return Err(SrtpError::Malformed("shorter than header and tag"));
        }
        let body_len = packet.len() - trailer;
        let header_len = rtp_header_len(&packet[..body_len])?;
        let ssrc = read_u32(packet, 8);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        self.check_lifetime()?;
        let slot = self.stream_index(ssrc);
        let index = rtp_index(slot.and_then(|i| self.streams[i].rtp), ssrc, seq)?;
        // AES-CM: body | MKI | tag (RFC 3711 §3.1); GCM: body | tag | MKI (RFC 7714 §8).
        let (mki_at, tag_at) = if self.suite.is_gcm() {
            (body_len + self.rtp.tag_len, body_len)
        } else {
            (body_len, body_len + self.mki.len())
        };
        if !self.mki.is_empty() && packet[mki_at..mki_at + self.mki.len()] != self.mki[..] {
            return Err(SrtpError::UnknownMki);
        }
        if slot.is_none() && self.streams.len() >= self.max_ssrcs {
            // Checked again after authentication; refusing early saves the crypto.
            return Err(SrtpError::TooManySsrcs(self.max_ssrcs));
        }
        let roc = (index >> 16) as u32;
        match &self.rtp.transform {
            Transform::Cm { aes, mac } => {
                let mut mac = mac.clone();
                mac.update(&packet[..body_len]);
                mac.update(&roc.to_be_bytes());
                mac.verify_truncated_left(&packet[tag_at..tag_at + self.rtp.tag_len])
                    .map_err(|_| SrtpError::AuthFailed)?;
                let iv = self.rtp.cm_iv(ssrc, index);
                aes_cm_xor(aes, &iv, &mut packet[header_len..body_len]);
            }
            Transform::Gcm(gcm) => {
                let nonce = self.rtp.gcm_nonce(ssrc, rtp_tail(roc, seq));
                let tag =
                    Tag::try_from(&packet[tag_at..tag_at + self.rtp.tag_len]).map_err(|_| SrtpError::AuthFailed)?;
                let (header, payload) = packet[..body_len].split_at_mut(header_len);
                gcm.decrypt_inout_detached(&nonce, header, payload.into(), &tag)
                    .map_err(|_| SrtpError::AuthFailed)?;
            }
        }
        let slot = match slot {
            Some(i) => i,
            None => self.stream_or_insert(ssrc)?,
        };
        self.spend_packet()?;
        let stream = &mut self.streams[slot];
        match &mut stream.rtp {
            Some(window) => window.accept(index),
            None => stream.rtp = Some(Window::new(index)),
        }
        packet.truncate(body_len);
        Ok(())
    }

    /// Turns an RTCP compound packet into SRTCP in place: encrypts all but the first 8 bytes and
    /// appends E flag + SRTCP index, MKI and tag (RFC 3711 §3.4; RFC 7714 §9 for GCM).
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        check_rtcp_header(packet)?;
        let ssrc = read_u32(packet, 4);
        self.check_lifetime()?;
        let slot = self.stream_or_insert(ssrc)?;
        let index = self.streams[slot].rtcp_next;
        if index > MAX_RTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        self.spend_packet()?;
        let word = (E_FLAG | index).to_be_bytes();
        packet.reserve(4 + self.rtcp.tag_len + self.mki.len());
        match &self.rtcp.transform {
            Transform::Cm { aes, mac } => {
                let iv = self.rtcp.cm_iv(ssrc, u64::from(index));
                aes_cm_xor(aes, &iv, &mut packet[8..]);
                packet.extend_from_slice(&word);
                let mut mac = mac.clone();
                mac.update(packet);
                let tag = mac.finalize().into_bytes();
                packet.extend_from_slice(&self.mki);
                packet.extend_from_slice(&tag[..self.rtcp.tag_len]);
            }
            Transform::Gcm(gcm) => {
                let nonce = self.rtcp.gcm_nonce(ssrc, rtcp_tail(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&packet[..8]);
                aad[8..].copy_from_slice(&word);
                let tag = gcm
                    .encrypt_inout_detached(&nonce, &aad, (&mut packet[8..]).into())
                    .map_err(|_| SrtpError::Malformed("payload too long"))?;
                packet.extend_from_slice(&tag);
                packet.extend_from_slice(&word);
                packet.extend_from_slice(&self.mki);
            }
        }
        self.streams[slot].rtcp_next = index + 1;
        Ok(())
    }

    /// Turns an SRTCP packet back into RTCP in place (replay check on the SRTCP index, MKI, tag,
    /// decryption when the E flag is set) and truncates the trailer.
    pub fn unprotect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let tag_len = self.rtcp.tag_len;
        let trailer = 4 + tag_len + self.mki.len();
        if packet.len() < 8 + trailer {
            return Err(SrtpError::Malformed("shorter than header and SRTCP trailer"));
        }
        let body_len = packet.len() - trailer;
        check_rtcp_header(&packet[..body_len])?;
        let ssrc = read_u32(packet, 4);
        self.check_lifetime()?;
        // AES-CM: body | E+index | MKI | tag (RFC 3711 §3.4); GCM: body | tag | E+index | MKI
        // (RFC 7714 §9).
        let (word_at, mki_at, tag_at) = if self.suite.is_gcm() {
            (body_len + tag_len, body_len + tag_len + 4, body_len)
        } else {
            (body_len, body_len + 4, body_len + 4 + self.mki.len())
        };
        let word = read_u32(packet, word_at);
        let encrypted = word & E_FLAG != 0;
        let index = word & !E_FLAG;
        let slot = self.stream_index(ssrc);
        if let Some(window) = slot.and_then(|i| self.streams[i].rtcp) {
            window.check(ssrc, u64::from(index))?;
        }
        if !self.mki.is_empty() && packet[mki_at..mki_at + self.mki.len()] != self.mki[..] {
            return Err(SrtpError::UnknownMki);
        }
        if slot.is_none() && self.streams.len() >= self.max_ssrcs {
            return Err(SrtpError::TooManySsrcs(self.max_ssrcs));
        }
        match &self.rtcp.transform {
            Transform::Cm { aes, mac } => {
                let mut mac = mac.clone();
                mac.update(&packet[..body_len + 4]);
                mac.verify_truncated_left(&packet[tag_at..tag_at + tag_len])
                    .map_err(|_| SrtpError::AuthFailed)?;
                if encrypted {
                    let iv = self.rtcp.cm_iv(ssrc, u64::from(index));
                    aes_cm_xor(aes, &iv, &mut packet[8..body_len]);
                }
            }
            Transform::Gcm(gcm) => {
                let nonce = self.rtcp.gcm_nonce(ssrc, rtcp_tail(index));
                // Put E+index right after the body so the authenticated data is contiguous:
                // body | E+index | tag.
                packet[body_len..body_len + tag_len + 4].rotate_right(4);
                let tag =
                    Tag::try_from(&packet[body_len + 4..body_len + 4 + tag_len]).map_err(|_| SrtpError::AuthFailed)?;
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&packet[..8]);
                    aad[8..].copy_from_slice(&word.to_be_bytes());
                    gcm.decrypt_inout_detached(&nonce, &aad, (&mut packet[8..body_len]).into(), &tag)
                        .map_err(|_| SrtpError::AuthFailed)?;
                } else {
                    // RFC 7714 §9.2: unencrypted SRTCP authenticates the whole packet.
                    gcm.decrypt_inout_detached(&nonce, &packet[..body_len + 4], (&mut [][..]).into(), &tag)
                        .map_err(|_| SrtpError::AuthFailed)?;
                }
            }
        }
        let slot = match slot {
            Some(i) => i,
            None => self.stream_or_insert(ssrc)?,
        };
        self.spend_packet()?;
        let stream = &mut self.streams[slot];
        match &mut stream.rtcp {
            Some(window) => window.accept(u64::from(index)),
            None => stream.rtcp = Some(Window::new(u64::from(index))),
        }
        packet.truncate(body_len);
        Ok(())
    }

    /// Test hook: the next SRTCP index this context sends for `ssrc` (RFC vectors start mid-stream).
    #[cfg(test)]
    pub(crate) fn set_rtcp_index(&mut self, ssrc: u32, index: u32) {
        let slot = self.stream_or_insert(ssrc).expect("room for the test SSRC");
        self.streams[slot].rtcp_next = index;
    }

    /// Test hook: a context with session keys given directly, as the RFC 7714 vectors give them
    /// (the same key and salt for SRTP and SRTCP).
    #[cfg(test)]
    pub(crate) fn with_session_keys(suite: SrtpSuite, key: &[u8; 16], salt: &[u8], auth: &[u8; 20]) -> SrtpContext {
        let session = |rtcp: bool| {
            let mut s = [0u8; MAX_SALT_LEN];
            s[..salt.len()].copy_from_slice(salt);
            let transform = if suite.is_gcm() {
                Transform::Gcm(Aes128Gcm::new(&(*key).into()))
            } else {
                Transform::Cm {
                    aes: Aes128::new(&(*key).into()),
                    mac: <Hmac<Sha1> as KeyInit>::new_from_slice(auth).expect("any key length"),
                }
            };
            Session {
                transform,
                salt: s,
                tag_len: if rtcp {
                    suite.rtcp_tag_len()
                } else {
                    suite.rtp_tag_len()
                },
            }
        };
        SrtpContext {
            suite,
            rtp: session(false),
            rtcp: session(true),
            mki: Vec::new(),
            streams: Vec::new(),
            max_ssrcs: DEFAULT_MAX_SSRCS,
            packets_left: None,
        }
    }
}

/// The first 8 bytes of RTCP (V/P/RC, PT, length, SSRC of the sender) stay in the clear.
fn check_rtcp_header(packet: &[u8]) -> Result<(), SrtpError> {
    if packet.len() < 8 {
        return Err(SrtpError::Malformed("shorter than an RTCP header"));
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::Malformed("not RTCP version 2"));
    }
    Ok(())
}

/// 0x0000 || SRTCP index, the SRTCP part of the GCM IV (RFC 7714 §9.1).
fn rtcp_tail(index: u32) -> [u8; 6] {
    let mut tail = [0u8; 6];
    tail[2..].copy_from_slice(&index.to_be_bytes());
    tail
}

/// Length of the RTP header with CSRCs and extension (RFC 3550 §5.1, §5.3.1): the part SRTP
/// leaves in the clear.
fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < 12 {
        return Err(SrtpError::Malformed("shorter than an RTP header"));
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::Malformed("not RTP version 2"));
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        if packet.len() < len + 4 {
            return Err(SrtpError::Malformed("extension header past the end"));
        }
        let words = u16::from_be_bytes([packet[len + 2], packet[len + 3]]);
        len += 4 + 4 * usize::from(words);
    }
    if len > packet.len() {
        return Err(SrtpError::Malformed("header past the end"));
    }
    Ok(len)
}

/// ROC || SEQ, the SRTP part of the GCM IV.
fn rtp_tail(roc: u32, seq: u16) -> [u8; 6] {
    let mut tail = [0u8; 6];
    tail[..4].copy_from_slice(&roc.to_be_bytes());
    tail[4..].copy_from_slice(&seq.to_be_bytes());
    tail
}

fn read_u32(packet: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
}
