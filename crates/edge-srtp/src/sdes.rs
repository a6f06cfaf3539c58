//! SDES `a=crypto` attributes (RFC 4568 §9.1 grammar), parsed from a peer's SDP and formatted for
//! the edge's own.
//!
//! Everything here reads hostile input: lengths are bounded, numbers are checked, and every way a
//! line can be wrong is an [`SdesError`] variant, never a panic.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use zeroize::Zeroize;

use crate::error::SdesError;
use crate::key::MasterKey;
use crate::suite::{SrtpSuite, KEY_LEN, MAX_SALT_LEN};

/// Longest attribute value read; real lines are under 100 bytes.
const MAX_LINE: usize = 1024;
/// Longest name echoed back in an error.
const MAX_ECHO: usize = 64;

/// Base64 as RFC 4568 uses it: padding is emitted, and accepted with or without (peers differ).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Master key identifier (RFC 3711 §3.1): carried in every packet when the peer asks for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mki {
    value: u64,
    len: u8,
}

impl Mki {
    /// An MKI of `len` bytes (1 to 128) holding `value`.
    pub fn new(value: u64, len: u8) -> Option<Mki> {
        let needed = (u64::BITS - value.leading_zeros()).div_ceil(8) as u8;
        ((1..=128).contains(&len) && needed <= len).then_some(Mki { value, len })
    }

    /// The MKI value.
    pub fn value(self) -> u64 {
        self.value
    }

    /// Length of the MKI field in packets.
    pub fn len(self) -> usize {
        usize::from(self.len)
    }

    /// Always false (an MKI has 1 to 128 bytes); here for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }

    /// The MKI field as it appears in packets: the value big-endian, left-padded with zeros.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        let be = self.value.to_be_bytes();
        let n = self.len().min(8);
        out[self.len() - n..].copy_from_slice(&be[8 - n..]);
        out
    }
}

/// One `a=crypto` line: tag, suite and key (the suite is the key's, so they cannot disagree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag that ties an answer's line to the offer's (1 to 9 digits).
    pub tag: u32,
    /// Master key and salt; its `Debug` prints no key bytes.
    pub key: MasterKey,
    /// Key lifetime in packets, when given (`|2^31` or `|1000000`).
    pub lifetime: Option<u64>,
    /// The MKI the packets carry, when the line has one.
    pub mki: Option<Mki>,
}

impl CryptoAttribute {
    /// A line for the edge's own side with a fresh random key, no lifetime and no MKI.
    pub fn generate(tag: u32, suite: SrtpSuite) -> Result<CryptoAttribute, SdesError> {
        if tag > 999_999_999 {
            return Err(SdesError::Tag);
        }
        Ok(CryptoAttribute {
            tag,
            key: MasterKey::generate(suite)?,
            lifetime: None,
            mki: None,
        })
    }

    /// The edge's offer: one line per suite, strongest first (tags 1, 2, 3), each with its own
    /// fresh key; the answer's tag says which one the peer took.
    pub fn offer() -> Result<Vec<CryptoAttribute>, SdesError> {
        (1..)
            .zip(SrtpSuite::ALL)
            .map(|(tag, suite)| CryptoAttribute::generate(tag, suite))
            .collect()
    }

    /// The edge's answer to this (peer's) offered line: same tag and suite, a fresh key of the
    /// edge's own (RFC 4568 §7.1.2: each side sends with the key it declared), no lifetime or MKI.
    pub fn answer(&self) -> Result<CryptoAttribute, SdesError> {
        CryptoAttribute::generate(self.tag, self.suite())
    }

    /// The suite of the key.
    pub fn suite(&self) -> SrtpSuite {
        self.key.suite()
    }

    /// Parses the value of an `a=crypto` attribute; the `a=crypto:` prefix and surrounding
    /// whitespace are accepted too.
    pub fn parse(line: &str) -> Result<CryptoAttribute, SdesError> {
        if line.len() > MAX_LINE {
            return Err(SdesError::Syntax("attribute too long"));
        }
        let line = line.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let line = line.strip_prefix("crypto:").unwrap_or(line);
        let mut fields = line.split_ascii_whitespace();
        let tag = fields.next().ok_or(SdesError::Syntax("empty"))?;
        let suite = fields.next().ok_or(SdesError::Syntax("no crypto suite"))?;
        let key_params = fields.next().ok_or(SdesError::Syntax("no key parameters"))?;

        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SdesError::Tag);
        }
        let tag: u32 = tag.parse().map_err(|_| SdesError::Tag)?;
        let suite = SrtpSuite::from_sdes_name(suite).ok_or_else(|| SdesError::UnknownSuite(echo(suite)))?;

        for param in fields {
            // Window size hint (RFC 4568 §6.3.7): the edge keeps its 64-packet window whatever the
            // hint, as the RFC allows; any other parameter changes the transform and is refused.
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if !(name == "WSH" && !value.is_empty() && value.len() <= 9 && value.bytes().all(|b| b.is_ascii_digit())) {
                return Err(SdesError::SessionParam(echo(name)));
            }
        }

        if key_params.contains(';') {
            return Err(SdesError::MultipleKeys);
        }
        let info = key_params.strip_prefix("inline:").ok_or(SdesError::KeyMethod)?;
        let mut parts = info.split('|');
        let key_b64 = parts.next().unwrap_or("");
        let key = decode_key(suite, key_b64)?;
        let mut lifetime = None;
        let mut mki = None;
        for part in parts {
            if let Some((value, len)) = part.split_once(':') {
                if mki.is_some() {
                    return Err(SdesError::Mki);
                }
                mki = Some(parse_mki(value, len)?);
            } else if lifetime.is_none() && mki.is_none() {
                lifetime = Some(parse_lifetime(part)?);
            } else {
                return Err(SdesError::Lifetime);
            }
        }
        Ok(CryptoAttribute {
            tag,
            key,
            lifetime,
            mki,
        })
    }

    /// The attribute value for the edge's SDP (`<tag> <suite> inline:<key>[|lifetime][|mki]`),
    /// without `a=crypto:`. It contains the key: it goes into the SDP body and nowhere else.
    pub fn to_sdp_value(&self) -> String {
        let (mut key_salt, len) = self.key.key_salt();
        let mut out = format!("{} {} inline:", self.tag, self.suite());
        B64.encode_string(&key_salt[..len], &mut out);
        key_salt.zeroize();
        if let Some(lifetime) = self.lifetime {
            if lifetime.is_power_of_two() {
                out.push_str(&format!("|2^{}", lifetime.trailing_zeros()));
            } else {
                out.push_str(&format!("|{lifetime}"));
            }
        }
        if let Some(mki) = self.mki {
            out.push_str(&format!("|{}:{}", mki.value, mki.len));
        }
        out
    }
}

fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO).collect()
}

fn decode_key(suite: SrtpSuite, b64: &str) -> Result<MasterKey, SdesError> {
    // Room for any valid key plus slack, so a too-long key is a length error rather than a
    // base64 one; longer input is refused before decoding.
    if b64.len() > 64 {
        return Err(SdesError::Key(crate::error::KeyError::Length {
            suite,
            expected: suite.key_len() + suite.salt_len(),
            got: b64.len() * 3 / 4,
        }));
    }
    const { assert!(KEY_LEN + MAX_SALT_LEN <= 48) };
    let mut buf = [0u8; 48];
    let result = match B64.decode_slice(b64, &mut buf) {
        Ok(n) => MasterKey::from_bytes(suite, &buf[..n]).map_err(SdesError::from),
        Err(_) => Err(SdesError::Base64),
    };
    buf.zeroize();
    result
}

fn parse_decimal(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Lifetime in packets: `2^n` or decimal, at most 2^48 (the SRTP index space, RFC 3711 §9.2).
fn parse_lifetime(s: &str) -> Result<u64, SdesError> {
    let packets = match s.strip_prefix("2^") {
        Some(exp) => {
            let exp = parse_decimal(exp, 2).ok_or(SdesError::Lifetime)?;
            if exp > 48 {
                return Err(SdesError::Lifetime);
            }
            1u64 << exp
        }
        None => parse_decimal(s, 15).ok_or(SdesError::Lifetime)?,
    };
    if packets == 0 || packets > 1 << 48 {
        return Err(SdesError::Lifetime);
    }
    Ok(packets)
}

fn parse_mki(value: &str, len: &str) -> Result<Mki, SdesError> {
    let value = parse_decimal(value, 19).ok_or(SdesError::Mki)?;
    let len = parse_decimal(len, 3).ok_or(SdesError::Mki)?;
    let len = u8::try_from(len).map_err(|_| SdesError::Mki)?;
    Mki::new(value, len).ok_or(SdesError::Mki)
}
