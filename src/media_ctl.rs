//! The real media plane behind [`crate::call::CallMedia`]: relays and voicemail on `edge_media`'s engine,
//! which binds sockets and runs tasks (so it lives here, with the driver, not in call control).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use edge_media::{MediaEngine, RelayHandle, VoicemailConfig, VoicemailSession};

use crate::call::media::{CallMedia, MediaRelay, RelayUnavailable, SdpRefused, Side, VoicemailRecording};

/// Media anchoring and voicemail for calls.
pub struct MediaCtl {
    pub engine: MediaEngine,
    /// Codec names allowed through; `None` passes every offered codec.
    pub codecs: Option<Arc<[String]>>,
    /// Voicemail settings; the greeting is filled in per call.
    pub voicemail: VoicemailConfig,
    pub default_greeting: String,
    /// Recording paths are stored relative to this.
    pub data_dir: PathBuf,
}

struct Relay {
    handle: RelayHandle,
    codecs: Option<Arc<[String]>>,
}

fn media_side(s: Side) -> edge_media::Side {
    match s {
        Side::A => edge_media::Side::A,
        Side::B => edge_media::Side::B,
    }
}

/// The relay's refusal as call control sees it: the status to answer with and the words.
fn refused(e: edge_media::SdpError) -> SdpRefused {
    SdpRefused {
        status: e.sip_status(),
        detail: e.to_string(),
    }
}

impl MediaRelay for Relay {
    fn anchor_sdp(&self, from: Side, sdp: &[u8], offer: bool) -> Result<Bytes, SdpRefused> {
        self.handle
            .anchor(media_side(from), sdp, self.codecs.as_deref(), offer)
            .map(|(sdp, _)| sdp)
            .map_err(refused)
    }

    fn keep_answer(&self, from: Side, sdp: &[u8]) -> Result<(), SdpRefused> {
        self.handle
            .keep_answer(media_side(from), sdp, self.codecs.as_deref())
            .map(drop)
            .map_err(refused)
    }

    fn offer_new_peer(
        &self,
        to: Side,
        policy: crate::call::media::MediaEncryption,
        sdp: &[u8],
    ) -> Result<Bytes, SdpRefused> {
        self.handle
            .offer_new_peer(media_side(to), policy, sdp, self.codecs.as_deref())
            .map_err(refused)
    }

    fn early_media(&self, from: Side, sdp: &[u8]) -> Result<bool, SdpRefused> {
        self.handle
            .early_media(media_side(from), sdp, self.codecs.as_deref())
            .map_err(refused)
    }

    fn forget_new_peer(&self, side: Side) {
        self.handle.forget_new_peer(media_side(side));
    }

    fn set_encryption(&self, side: Side, policy: crate::call::media::MediaEncryption, new_peer: bool) {
        self.handle.set_encryption(media_side(side), policy, new_peer);
    }

    fn offer_sdp(&self, to: Side) -> Bytes {
        self.handle.offer_sdp(media_side(to), self.codecs.as_deref())
    }

    fn ringback(&self, to: Side, on: bool) {
        self.handle.ringback(media_side(to), on);
    }
}

struct Recording(VoicemailSession);

impl VoicemailRecording for Recording {
    fn stop(&self) {
        self.0.stop();
    }
}

impl CallMedia for MediaCtl {
    fn allocate_relay(&self, call_id: &str) -> Result<Box<dyn MediaRelay>, RelayUnavailable> {
        let handle = self.engine.allocate_relay(call_id).map_err(|e| RelayUnavailable {
            warning: e.sip_warning(),
            detail: e.to_string(),
        })?;
        Ok(Box::new(Relay {
            handle,
            codecs: self.codecs.clone(),
        }))
    }

    fn start_voicemail(
        &self,
        call_id: &str,
        offer: &[u8],
        greeting: Option<String>,
    ) -> Result<(Bytes, Box<dyn VoicemailRecording>), String> {
        let cfg = Arc::new(VoicemailConfig {
            greeting_text: greeting.unwrap_or_else(|| self.default_greeting.clone()),
            ..self.voicemail.clone()
        });
        let (answer, session) = self
            .engine
            .start_voicemail(call_id, offer, cfg)
            .map_err(|e| e.to_string())?;
        Ok((answer, Box::new(Recording(session))))
    }

    fn stored_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.data_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}
