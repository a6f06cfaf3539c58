//! An entry point for the fuzz targets (`fuzz/`): the SRTP SDP glue (`sdp::crypto_of`,
//! `sdp::rewrite_sdp_srtp`, `srtp::Negotiation`) is crate-private, so this drives it the way
//! [`crate::RelayHandle`] does, without sockets. Not an API: nothing else calls it.

use std::net::IpAddr;

use bytes::Bytes;

use crate::sdp::{crypto_of, rewrite_sdp_srtp, SdpError};
use crate::srtp::{MediaEncryption, Negotiation};

/// What the edge would send for one exchange.
#[derive(Debug)]
pub struct Exchange {
    /// The offer toward side B (made from A's offer; with `new_peer`, the offer to B's new peer).
    pub to_b: Bytes,
    /// The answer toward side A (made from B's answer).
    pub to_a: Bytes,
}

/// Side A offers `offer`, side B answers `answer`, each side under its policy, as a relay anchors them;
/// with `new_peer`, B's answer comes from a new peer offered on B ([`crate::RelayHandle::offer_new_peer`]).
/// The contexts the relay task would get are built too (key derivation on the peers' keys).
pub fn srtp_offer_answer(
    policies: [MediaEncryption; 2],
    offer: &[u8],
    answer: &[u8],
    new_peer: bool,
    addr: IpAddr,
    port: u16,
) -> Result<Exchange, SdpError> {
    let mut n = Negotiation::default();
    n.set_policy(0, policies[0]);
    n.set_policy(1, policies[1]);
    let from_a = crypto_of(offer)?;
    n.take_in(0, &from_a, true)?;
    let out = n.out_for(1, n.out_is_offer(1, true), &from_a.proto)?;
    let (mut to_b, _) = rewrite_sdp_srtp(offer, addr, port, None, &out)?;
    let _ = n.update(0);
    if new_peer {
        let ours = crypto_of(&to_b)?;
        let out = n.offer_new_peer(1, policies[1], &ours.proto)?;
        to_b = rewrite_sdp_srtp(&to_b, addr, port, None, &out)?.0;
    }
    let from_b = crypto_of(answer)?;
    n.take_new_peer_answer(1, &from_b)?;
    let out = n.out_for(0, n.out_is_offer(0, false), &from_b.proto)?;
    let (to_a, _) = rewrite_sdp_srtp(answer, addr, port, None, &out)?;
    let _ = n.update(0);
    let _ = n.update(1);
    Ok(Exchange { to_b, to_a })
}
