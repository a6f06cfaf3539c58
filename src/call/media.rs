//! Media as call control sees it: a relay per call that rewrites each side's SDP, and voicemail. The real
//! implementation (`crate::media_ctl::MediaCtl`, on `edge_media::MediaEngine`) binds sockets and spawns
//! tasks; call control only calls this trait, so it stays free of IO and a test can hand it a fake.

use std::path::Path;

use bytes::Bytes;
pub use edge_media::MediaEncryption;

/// The media policy of a stored agent or trunk.
pub fn encryption_of(m: edge_store::MediaEncryption) -> MediaEncryption {
    match m {
        edge_store::MediaEncryption::None => MediaEncryption::None,
        edge_store::MediaEncryption::Srtp => MediaEncryption::Srtp,
        edge_store::MediaEncryption::SrtpRequired => MediaEncryption::SrtpRequired,
    }
}

/// A leg of a call: A is the caller's (carrier, calling agent, or an API call's dialled party), B the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// No relay could be set up for a new call (ports or sockets used up, a worker down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct RelayUnavailable {
    /// What the SIP peer is told in the Warning of the 503: the cause without local detail.
    pub warning: &'static str,
    /// The whole cause, for the log.
    pub detail: String,
}

/// An SDP body the relay cannot anchor.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct SdpRefused {
    /// The SIP status to answer an offer with (400 malformed, 488 nothing usable).
    pub status: u16,
    pub detail: String,
}

/// One call's RTP relay. Dropping it releases its ports.
pub trait MediaRelay: Send {
    /// `sdp` received from `from` (an offer when `offer`, else an answer), rewritten so the other side
    /// sends its media to the relay; SRTP per leg: `from`'s keys stay with the relay, the body carries the
    /// edge's own for the other leg as its policy says ([`MediaRelay::set_encryption`]).
    fn anchor_sdp(&self, from: Side, sdp: &[u8], offer: bool) -> Result<Bytes, SdpRefused>;
    /// `side`'s media encryption policy, for the next SDP exchanged with it; `new_peer`: another peer
    /// (a fallback agent, a transfer target) whose keys start afresh.
    fn set_encryption(&self, side: Side, policy: MediaEncryption, new_peer: bool);
    /// An answer from `from`'s new peer (a fallback agent after the first one's 183, a transfer target)
    /// that the other side must not see: it keeps the session the edge already gave it (RFC 3261
    /// 13.2.1), and the relay sends to the new peer, converting G.711 law where the two differ.
    fn keep_answer(&self, from: Side, sdp: &[u8]) -> Result<(), SdpRefused>;
    /// An offer toward a new peer on `to` (a transfer target) under its own `policy`, made from `sdp` (the
    /// edge's last offer toward `to`) with fresh keys: the peer now on `to` keeps its keys until the new
    /// one answers ([`MediaRelay::keep_answer`]).
    fn offer_new_peer(&self, to: Side, policy: MediaEncryption, sdp: &[u8]) -> Result<Bytes, SdpRefused>;
    /// Early media from `from`'s new peer (offered with [`MediaRelay::offer_new_peer`], not answered yet):
    /// taken like [`MediaRelay::keep_answer`] (`Ok(true)`) when no SRTP is involved on that side; with
    /// SRTP it is not taken (`Ok(false)`): the peer now on that side keeps its keys and address, so a new
    /// peer that never answers leaves it as it was.
    fn early_media(&self, from: Side, sdp: &[u8]) -> Result<bool, SdpRefused>;
    /// The new peer offered on `side` will not answer (the transfer failed): its pending keys are dropped.
    fn forget_new_peer(&self, side: Side);
    /// The edge's own offer toward `to` (calls the edge originates).
    fn offer_sdp(&self, to: Side) -> Bytes;
    /// Ringback toward `to` on or off (the caller while a transfer target rings): while on, `to` hears
    /// the ringback tone in its own codec instead of the other side's media; off relays again at once.
    fn ringback(&self, to: Side, on: bool);
}

/// A voicemail recording in progress; its end is reported by a `MediaEvent::VoicemailEnded`.
pub trait VoicemailRecording: Send {
    /// The caller hung up: finish and store the recording.
    fn stop(&self);
}

/// The media plane for call control.
pub trait CallMedia: Send {
    /// A relay for the call with record id `call_id` (the id media events name).
    fn allocate_relay(&self, call_id: &str) -> Result<Box<dyn MediaRelay>, RelayUnavailable>;
    /// Answers `offer` with voicemail playing `greeting` (`None`: the operator's default): the SDP answer
    /// for the 200 and the recording.
    fn start_voicemail(
        &self,
        call_id: &str,
        offer: &[u8],
        greeting: Option<String>,
    ) -> Result<(Bytes, Box<dyn VoicemailRecording>), String>;
    /// A recording's path as stored (relative to the data directory).
    fn stored_path(&self, path: &Path) -> String;
}

#[cfg(test)]
pub(crate) mod fake {
    //! Media for tests: SDP passes through marked with the side it was anchored for; no sockets.

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Counts live relays and recordings, so a test can check none leaks; logs ringback switches.
    #[derive(Default, Clone)]
    pub struct FakeMedia {
        pub relays: Arc<AtomicUsize>,
        pub recordings: Arc<AtomicUsize>,
        /// Every `MediaRelay::ringback` call of every relay, in order.
        pub ringbacks: Arc<Mutex<Vec<(Side, bool)>>>,
    }

    struct Relay(Arc<AtomicUsize>, Arc<Mutex<Vec<(Side, bool)>>>);
    impl Drop for Relay {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    impl MediaRelay for Relay {
        fn anchor_sdp(&self, from: Side, sdp: &[u8], _offer: bool) -> Result<Bytes, SdpRefused> {
            Ok(Bytes::from(format!(
                "{}a=anchored:{from:?}\r\n",
                String::from_utf8_lossy(sdp)
            )))
        }
        fn keep_answer(&self, _from: Side, _sdp: &[u8]) -> Result<(), SdpRefused> {
            Ok(())
        }
        fn offer_new_peer(&self, _to: Side, _policy: MediaEncryption, sdp: &[u8]) -> Result<Bytes, SdpRefused> {
            Ok(Bytes::copy_from_slice(sdp))
        }
        fn early_media(&self, _from: Side, _sdp: &[u8]) -> Result<bool, SdpRefused> {
            Ok(true)
        }
        fn forget_new_peer(&self, _side: Side) {}
        fn set_encryption(&self, _side: Side, _policy: MediaEncryption, _new_peer: bool) {}
        fn offer_sdp(&self, to: Side) -> Bytes {
            Bytes::from(format!("v=0\r\na=offer:{to:?}\r\n"))
        }
        fn ringback(&self, to: Side, on: bool) {
            self.1.lock().unwrap_or_else(|e| e.into_inner()).push((to, on));
        }
    }

    struct Recording(Arc<AtomicUsize>);
    impl VoicemailRecording for Recording {
        fn stop(&self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    impl CallMedia for FakeMedia {
        fn allocate_relay(&self, _call_id: &str) -> Result<Box<dyn MediaRelay>, RelayUnavailable> {
            self.relays.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Relay(self.relays.clone(), self.ringbacks.clone())))
        }
        fn start_voicemail(
            &self,
            _call_id: &str,
            _offer: &[u8],
            greeting: Option<String>,
        ) -> Result<(Bytes, Box<dyn VoicemailRecording>), String> {
            self.recordings.fetch_add(1, Ordering::Relaxed);
            let sdp = format!("v=0\r\na=voicemail:{}\r\n", greeting.unwrap_or_default());
            Ok((Bytes::from(sdp), Box::new(Recording(self.recordings.clone()))))
        }
        fn stored_path(&self, path: &Path) -> String {
            path.to_string_lossy().into_owned()
        }
    }

    #[test]
    fn fake_relays_and_recordings_count_back_to_zero() {
        let media = FakeMedia::default();
        let relay = media.allocate_relay("call_1").expect("relay");
        assert_eq!(media.relays.load(Ordering::Relaxed), 1);
        let sdp = relay.anchor_sdp(Side::A, b"v=0\r\n", true).expect("anchored");
        assert!(sdp.ends_with(b"a=anchored:A\r\n"));
        assert!(relay.offer_sdp(Side::B).ends_with(b"a=offer:B\r\n"));
        relay.ringback(Side::A, true);
        relay.ringback(Side::A, false);
        assert_eq!(*media.ringbacks.lock().unwrap(), [(Side::A, true), (Side::A, false)]);
        drop(relay);
        assert_eq!(media.relays.load(Ordering::Relaxed), 0);
        let (answer, rec) = media
            .start_voicemail("call_1", b"v=0\r\n", Some("hi".into()))
            .expect("voicemail");
        assert!(answer.ends_with(b"a=voicemail:hi\r\n"));
        rec.stop();
        assert_eq!(media.recordings.load(Ordering::Relaxed), 0);
        assert_eq!(media.stored_path(Path::new("vm/a.wav")), "vm/a.wav");
    }
}
