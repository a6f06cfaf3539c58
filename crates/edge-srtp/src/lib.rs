//! SRTP for the edge's media legs: RFC 3711 (AES-CM + HMAC-SHA1) and RFC 7714 (AES-128-GCM),
//! keyed by SDES (RFC 4568).
//!
//! Sans-IO on purpose: the media relay owns sockets and timing; this crate only turns byte
//! buffers into other byte buffers, so every rule (ROC estimation, replay window, SSRC cap,
//! typed refusals) is testable without a network and the relay decides what a refusal costs.
//!
//! The edge terminates SRTP per leg: for each leg it keeps an inbound [`SrtpContext`] from the
//! peer's `a=crypto` key and an outbound one from a fresh key of its own ([`CryptoAttribute::generate`]),
//! so a peer's key never reaches the other leg.
//!
//! ```
//! use edge_srtp::{CryptoAttribute, SrtpContext, SrtpSuite};
//!
//! let ours = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
//! // The peer learns the key from our SDP...
//! let theirs = CryptoAttribute::parse(&ours.to_sdp_value()).unwrap();
//! let (mut tx, mut rx) = (SrtpContext::from_crypto(&ours), SrtpContext::from_crypto(&theirs));
//!
//! let rtp = [&[0x80, 0, 0, 1, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78][..], &[0xd5; 160]].concat();
//! let mut packet = Vec::with_capacity(rtp.len() + tx.max_overhead());
//! packet.extend_from_slice(&rtp);
//! tx.protect_rtp(&mut packet).unwrap();
//! assert_eq!(packet.len(), rtp.len() + 10);
//! rx.unprotect_rtp(&mut packet).unwrap();
//! assert_eq!(packet, rtp);
//! ```
//!
//! Keys are wiped on drop and print as `<redacted>`; nothing in this crate logs.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod error;
mod kdf;
mod key;
mod sdes;
mod suite;
#[cfg(test)]
mod vectors;

pub use context::{SrtpContext, DEFAULT_MAX_SSRCS};
pub use error::{KeyError, SdesError, SrtpError};
pub use key::MasterKey;
pub use sdes::{CryptoAttribute, Mki};
pub use suite::SrtpSuite;
