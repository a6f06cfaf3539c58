//! CSeq (RFC 3261 20.16): sequence number and method.

use super::lex::{parse_u64, skip_ws};
use crate::message::Method;

/// A parsed CSeq.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub(crate) fn parse(s: &str) -> Result<CSeq, &'static str> {
        let b = s.as_bytes();
        let start = skip_ws(b, 0);
        let mut i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let seq = parse_u64(&s[start..i]).ok_or("invalid sequence number")?;
        // RFC 3261 8.1.1.5: must fit in 32 bits.
        let seq = u32::try_from(seq).map_err(|_| "sequence number out of range")?;
        if i >= b.len() || !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            return Err("missing method");
        }
        let m = super::lex::trim_lws(&s[i..]);
        let method = Method::parse(m.as_bytes()).map_err(|_| "invalid method")?;
        Ok(CSeq { seq, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_forms() {
        let c = CSeq::parse("0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("4294967296 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1 IN VITE").is_err());
    }
}
