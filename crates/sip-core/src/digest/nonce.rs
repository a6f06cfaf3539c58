//! Server nonces that are opaque to the client and checkable without state.
//!
//! Layout (32 bytes, sent as 64 hex digits): `salt(8) || masked_time(8) || mac(16)` where
//! `masked_time = time XOR HMAC(key, "mask" || salt)[..8]` and
//! `mac = HMAC(key, "nonce" || salt || time || realm || bind)[..16]`.
//!
//! * Opaque: the minting time is hidden under a mask only the key holder can remove, so a nonce
//!   tells an outsider nothing about the server's clock.
//! * Bound: `bind` (the client's address, in practice) is part of the MAC, so a nonce handed to one
//!   address is worthless from another.
//! * Stateless: any node holding the key checks any nonce, and expiry needs no table.

use std::fmt;

use super::{ct_eq, hmac_sha256, to_hex};

/// Outcome of [`NonceMinter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    Valid,
    /// Ours but expired: challenge again with `stale=true` (the password was right).
    Stale,
    /// Not minted by us, for another realm or for another client address: treat the request as
    /// unauthenticated and challenge it afresh.
    Invalid,
}

/// Mints and checks nonces for one key and lifetime.
#[derive(Clone)]
pub struct NonceMinter {
    key: Vec<u8>,
    ttl_secs: u64,
}

impl fmt::Debug for NonceMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceMinter")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// Length of a nonce in hex digits.
const NONCE_HEX: usize = 64;

impl NonceMinter {
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        NonceMinter {
            key: secret.to_vec(),
            ttl_secs,
        }
    }

    /// How long a nonce stays valid, seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A nonce minted at `now` (Unix seconds) for `realm`, usable only by the client `bind` names.
    pub fn mint(&self, realm: &str, now: u64, bind: &[u8]) -> String {
        let salt = crate::build::random_u64().to_be_bytes();
        let masked = now ^ self.mask(&salt);
        let mac = self.mac(&salt, now, realm, bind);
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&salt);
        raw[8..16].copy_from_slice(&masked.to_be_bytes());
        raw[16..].copy_from_slice(&mac);
        to_hex(&raw)
    }

    /// Is `nonce` ours, for `realm` and `bind`, and younger than the lifetime at `now`?
    pub fn check(&self, nonce: &str, realm: &str, now: u64, bind: &[u8]) -> NonceStatus {
        let Some(raw) = from_hex32(nonce) else {
            return NonceStatus::Invalid;
        };
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&raw[..8]);
        let mut masked = [0u8; 8];
        masked.copy_from_slice(&raw[8..16]);
        let minted = u64::from_be_bytes(masked) ^ self.mask(&salt);
        if !ct_eq(&self.mac(&salt, minted, realm, bind), &raw[16..]) {
            return NonceStatus::Invalid;
        }
        // A nonce from the future (clock skew between nodes) is fine up to the lifetime.
        if now.abs_diff(minted) > self.ttl_secs {
            NonceStatus::Stale
        } else {
            NonceStatus::Valid
        }
    }

    fn mask(&self, salt: &[u8; 8]) -> u64 {
        let h = hmac_sha256(&self.key, &[b"mask", salt]);
        let mut m = [0u8; 8];
        m.copy_from_slice(&h[..8]);
        u64::from_be_bytes(m)
    }

    fn mac(&self, salt: &[u8; 8], time: u64, realm: &str, bind: &[u8]) -> [u8; 16] {
        // Lengths are fixed or last, except the realm's, which is length-prefixed so that
        // realm/bind boundaries cannot be shifted.
        let realm_len = (realm.len() as u64).to_be_bytes();
        let h = hmac_sha256(
            &self.key,
            &[b"nonce", salt, &time.to_be_bytes(), &realm_len, realm.as_bytes(), bind],
        );
        let mut out = [0u8; 16];
        out.copy_from_slice(&h[..16]);
        out
    }
}

/// 64 hex digits to 32 bytes; `None` for anything else.
fn from_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != NONCE_HEX {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_hide_the_time_and_differ_each_time() {
        let m = NonceMinter::new(b"k", 30);
        let a = m.mint("r", 1_000, b"1.2.3.4");
        let b = m.mint("r", 1_000, b"1.2.3.4");
        assert_ne!(a, b, "salted");
        assert_eq!(a.len(), NONCE_HEX);
        // The time is nowhere in clear: not as hex, not as decimal.
        assert!(!a.contains(&format!("{:016x}", 1_000u64)) && !a.contains("1000"), "{a}");
    }
}
