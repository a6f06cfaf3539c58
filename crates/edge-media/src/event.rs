//! Events the media plane reports to call control.

use std::sync::Arc;

use crate::voicemail::{VoicemailError, VoicemailOutcome};

/// Asynchronous notifications for the SIP side (see [`crate::MediaEvents`]).
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// Neither leg sent RTP/RTCP for `media_timeout`: BYE both legs. The relay
    /// has already stopped and its ports are in quarantine.
    Timeout {
        /// Call-ID given to [`crate::MediaEngine::allocate_relay`].
        call_id: Arc<str>,
    },
    /// A voicemail session finished (any reason). If it ended by itself
    /// (silence, max length, `#`) the SIP side should BYE the caller.
    VoicemailEnded {
        /// Call-ID given to [`crate::MediaEngine::start_voicemail`].
        call_id: Arc<str>,
        /// Where the recording went, or why it could not be stored.
        outcome: Result<VoicemailOutcome, Arc<VoicemailError>>,
    },
}
