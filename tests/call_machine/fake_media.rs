//! A fake media plane behind the public [`CallMedia`] trait: no sockets, no tasks. It counts live relays
//! (so a test can check that every call's relay is released), keeps what each voicemail was started with
//! and how often its recording was told to stop, and answers voicemail with an SDP that names the call, so a
//! test can tell that answer apart from any other body. Media events are the test's to send
//! ([`Harness::media_event`](super::harness::Harness::media_event)).
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use oneinbox_edge::call::media::{CallMedia, MediaRelay, RelayUnavailable, SdpRefused, Side, VoicemailRecording};

/// Where the fake's recordings are written; [`CallMedia::stored_path`] strips it, as the real one strips
/// the data directory.
pub const DATA_DIR: &str = "/data";

/// One `start_voicemail` the edge made.
#[derive(Debug, Clone)]
pub struct VoicemailStart {
    /// The call's public id (`call_...`), the one `MediaEvent`s name.
    pub call_id: String,
    /// The caller's SDP offer as the edge handed it over.
    pub offer: Bytes,
    pub greeting: Option<String>,
    /// The SDP answer the fake gave back (the edge's 200 must carry exactly this).
    pub answer: Bytes,
    /// How many times the edge called `VoicemailRecording::stop` on it.
    pub stops: usize,
    /// Whether the edge still holds the recording.
    pub dropped: bool,
}

#[derive(Default)]
struct Plane {
    /// Every relay ever allocated, by call id.
    allocated: Vec<String>,
    live_relays: usize,
    /// Every ringback switch the edge made, in order (side it plays toward, on/off).
    ringbacks: Vec<(Side, bool)>,
    voicemails: Vec<VoicemailStart>,
    refuse_voicemail: bool,
    /// Every answer the edge kept from the other side (`MediaRelay::keep_answer`), in order.
    kept: Vec<(Side, Bytes)>,
}

/// The fake media plane; clones share one state (the edge gets one, the test keeps one).
#[derive(Default, Clone)]
pub struct FakeMedia(Arc<Mutex<Plane>>);

impl FakeMedia {
    fn plane(&self) -> MutexGuard<'_, Plane> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every ringback switch the edge made, in order.
    pub fn ringbacks(&self) -> Vec<(Side, bool)> {
        self.plane().ringbacks.clone()
    }

    /// Every answer the relays took without showing it to the other side, in order.
    pub fn kept_answers(&self) -> Vec<(Side, Bytes)> {
        self.plane().kept.clone()
    }

    /// Relays allocated and not dropped yet.
    pub fn live_relays(&self) -> usize {
        self.plane().live_relays
    }

    /// The call ids relays were allocated for, in order.
    pub fn allocated(&self) -> Vec<String> {
        self.plane().allocated.clone()
    }

    /// Every voicemail started, in order.
    pub fn voicemails(&self) -> Vec<VoicemailStart> {
        self.plane().voicemails.clone()
    }

    /// From now on `start_voicemail` fails (as when the greeting or the recording file cannot be set up).
    pub fn refuse_voicemail(&self) {
        self.plane().refuse_voicemail = true;
    }

    /// The SDP answer the fake gives for the voicemail of `call_id`.
    pub fn voicemail_answer(call_id: &str) -> String {
        format!(
            "v=0\r\no=edge-vm 1 1 IN IP4 198.18.0.1\r\ns=voicemail\r\nc=IN IP4 198.18.0.1\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=x-voicemail:{call_id}\r\n"
        )
    }
}

struct FakeRelay {
    plane: Arc<Mutex<Plane>>,
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        let mut p = self.plane.lock().unwrap_or_else(|e| e.into_inner());
        p.live_relays -= 1;
    }
}

/// An SDP line that makes the fake relay refuse the body, as the real one refuses a plain answer from a
/// `srtp_required` leg.
pub const REFUSE: &str = "a=x-refuse\r\n";

fn refused(sdp: &[u8]) -> Result<(), SdpRefused> {
    if String::from_utf8_lossy(sdp).contains(REFUSE) {
        return Err(SdpRefused {
            status: 488,
            detail: "refused by the fake relay".into(),
        });
    }
    Ok(())
}

impl MediaRelay for FakeRelay {
    fn anchor_sdp(&self, from: Side, sdp: &[u8], _offer: bool) -> Result<Bytes, SdpRefused> {
        refused(sdp)?;
        Ok(Bytes::from(format!(
            "{}a=x-anchored:{from:?}\r\n",
            String::from_utf8_lossy(sdp)
        )))
    }

    fn offer_new_peer(
        &self,
        _to: Side,
        _policy: oneinbox_edge::call::media::MediaEncryption,
        sdp: &[u8],
    ) -> Result<Bytes, SdpRefused> {
        // The last offer toward that side, as it was: the fake has no keys to renew.
        Ok(Bytes::copy_from_slice(sdp))
    }

    fn early_media(&self, from: Side, sdp: &[u8]) -> Result<bool, SdpRefused> {
        // No keys in the fake: early media is always taken, as a plain relay takes it.
        self.keep_answer(from, sdp).map(|()| true)
    }

    fn forget_new_peer(&self, _side: Side) {}

    fn keep_answer(&self, from: Side, sdp: &[u8]) -> Result<(), SdpRefused> {
        refused(sdp)?;
        let mut p = self.plane.lock().unwrap_or_else(|e| e.into_inner());
        p.kept.push((from, Bytes::copy_from_slice(sdp)));
        Ok(())
    }

    fn set_encryption(&self, _side: Side, _policy: oneinbox_edge::call::media::MediaEncryption, _new_peer: bool) {}

    fn ringback(&self, to: Side, on: bool) {
        let mut p = self.plane.lock().unwrap_or_else(|e| e.into_inner());
        p.ringbacks.push((to, on));
    }

    fn offer_sdp(&self, to: Side) -> Bytes {
        Bytes::from(format!(
            "v=0\r\no=edge 1 1 IN IP4 198.18.0.1\r\ns=-\r\nc=IN IP4 198.18.0.1\r\nt=0 0\r\n\
             m=audio 30002 RTP/AVP 0\r\na=x-offer:{to:?}\r\n"
        ))
    }
}

struct FakeRecording {
    plane: Arc<Mutex<Plane>>,
    index: usize,
}

impl VoicemailRecording for FakeRecording {
    fn stop(&self) {
        let mut p = self.plane.lock().unwrap_or_else(|e| e.into_inner());
        p.voicemails[self.index].stops += 1;
    }
}

impl Drop for FakeRecording {
    fn drop(&mut self) {
        let mut p = self.plane.lock().unwrap_or_else(|e| e.into_inner());
        p.voicemails[self.index].dropped = true;
    }
}

impl CallMedia for FakeMedia {
    fn allocate_relay(&self, call_id: &str) -> Result<Box<dyn MediaRelay>, RelayUnavailable> {
        let mut p = self.plane();
        p.allocated.push(call_id.to_owned());
        p.live_relays += 1;
        Ok(Box::new(FakeRelay { plane: self.0.clone() }))
    }

    fn start_voicemail(
        &self,
        call_id: &str,
        offer: &[u8],
        greeting: Option<String>,
    ) -> Result<(Bytes, Box<dyn VoicemailRecording>), String> {
        let mut p = self.plane();
        if p.refuse_voicemail {
            return Err("fake media: voicemail refused".into());
        }
        let answer = Bytes::from(Self::voicemail_answer(call_id));
        p.voicemails.push(VoicemailStart {
            call_id: call_id.to_owned(),
            offer: Bytes::copy_from_slice(offer),
            greeting,
            answer: answer.clone(),
            stops: 0,
            dropped: false,
        });
        let index = p.voicemails.len() - 1;
        Ok((
            answer,
            Box::new(FakeRecording {
                plane: self.0.clone(),
                index,
            }),
        ))
    }

    fn stored_path(&self, path: &Path) -> String {
        path.strip_prefix(DATA_DIR)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}
