//! Typed errors. None of them carries key bytes, so any of them may be logged.

use crate::suite::SrtpSuite;

/// A master key that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Key || salt of the wrong length for the suite.
    #[error("{suite} needs {expected} bytes of key and salt, got {got}")]
    Length {
        /// The suite the key was for.
        suite: SrtpSuite,
        /// Key + salt length of that suite.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The OS random source failed (no key is better than a weak one).
    #[error("the OS random source failed")]
    Rng,
}

/// An `a=crypto` attribute the edge cannot use. The SDP layer skips the line (or answers 488 when
/// no line is usable); the variants say why for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    /// Not `<tag> <suite> <key-params> [<session-params>]`.
    #[error("malformed a=crypto attribute: {0}")]
    Syntax(&'static str),
    /// The tag is not 1 to 9 decimal digits.
    #[error("a=crypto tag is not 1*9DIGIT")]
    Tag,
    /// A suite the edge does not implement (for instance AES_256_CM_HMAC_SHA1_80); the name is
    /// truncated to 64 bytes.
    #[error("unsupported crypto suite {0:?}")]
    UnknownSuite(String),
    /// A key method other than `inline:`.
    #[error("unsupported key method (only inline:)")]
    KeyMethod,
    /// More than one `inline:` key: only meaningful with MKI-selected keys, which the edge does not do.
    #[error("more than one key parameter")]
    MultipleKeys,
    /// The key is not base64.
    #[error("key is not valid base64")]
    Base64,
    /// The key decodes to the wrong length for the suite.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A lifetime that is not a decimal or `2^n` number of packets within 2^48.
    #[error("invalid key lifetime")]
    Lifetime,
    /// An MKI that is not `<value>:<length>` with a length of 1 to 128 bytes holding the value.
    #[error("invalid MKI")]
    Mki,
    /// A session parameter the edge does not implement (KDR, UNENCRYPTED_SRTP, FEC_ORDER, ...);
    /// RFC 4568 §6.3 makes such a line unusable. The name is truncated to 64 bytes.
    #[error("unsupported session parameter {0:?}")]
    SessionParam(String),
}

/// A packet the context refused. The relay drops the packet and counts the variant; nothing here
/// is fatal for the call except [`SrtpError::KeyExhausted`] and [`SrtpError::TooManySsrcs`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Too short, not version 2, or a header (CSRCs, extension) longer than the packet.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The authentication tag did not verify (tampered, wrong key, or not our peer).
    #[error("authentication failed")]
    AuthFailed,
    /// This packet index was already accepted (or already used to protect).
    #[error("replayed packet (ssrc {ssrc:#010x}, index {index})")]
    Replayed {
        /// SSRC of the stream.
        ssrc: u32,
        /// Packet index (RTP: ROC * 65536 + SEQ; RTCP: SRTCP index).
        index: u64,
    },
    /// Older than the 64-packet replay window: cannot be told from a replay (RFC 3711 §3.3.2).
    #[error("packet too old for the replay window (ssrc {ssrc:#010x}, index {index})")]
    TooOld {
        /// SSRC of the stream.
        ssrc: u32,
        /// Packet index.
        index: u64,
    },
    /// The MKI in the packet is not the one of this context's key.
    #[error("unknown MKI")]
    UnknownMki,
    /// A new SSRC beyond the per-context cap: the state of a context is bounded whatever a peer sends.
    #[error("more than {0} SSRCs on one context")]
    TooManySsrcs(usize),
    /// The key's lifetime, or the 2^48 SRTP / 2^31 SRTCP index space, is used up: rekey.
    #[error("key exhausted, rekey needed")]
    KeyExhausted,
}
