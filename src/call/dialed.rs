//! The dialed number of an inbound INVITE, as E.164: carriers differ in where and how they write it.

use sip_core::e164;
use sip_core::message::{Message, Uri};

/// Why no number could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialedError {
    #[error("no user part in the Request-URI or To header")]
    Missing,
    #[error("dialed number `{0}` is not a phone number: {1}")]
    NotANumber(String, e164::E164Error),
}

fn user_of(uri: &Uri<'_>) -> Option<String> {
    match uri {
        Uri::Sip(s) => {
            let user = uri
                .user()
                .map(|u| u.into_owned())
                .or_else(|| s.user.map(str::to_owned))?;
            // `;phone-context=` travels as a user parameter in sip: URIs (RFC 3966 via RFC 3261 19.1.6).
            let ctx = s
                .param("phone-context")
                .or_else(|| user.split(";phone-context=").nth(1).map(|_| ""));
            match ctx {
                Some(c) if !c.is_empty() && !user.contains(";phone-context=") => {
                    Some(format!("tel:{user};phone-context={c}"))
                }
                Some(_) => Some(format!("tel:{user}")),
                None => Some(user),
            }
        }
        Uri::Tel(t) => Some(format!("tel:{}", t.as_str().trim_start_matches("tel:"))),
        Uri::Other { .. } => None,
    }
}

/// From the Request-URI user, else the To user; normalised with the operator's default country code.
pub fn dialed_number(invite: &Message, default_cc: Option<&str>) -> Result<String, DialedError> {
    let from_ruri = invite.request_uri().ok().as_ref().and_then(user_of);
    let raw = match from_ruri {
        Some(u) => u,
        None => invite
            .to()
            .ok()
            .and_then(|t| user_of(&t.uri))
            .ok_or(DialedError::Missing)?,
    };
    e164::normalize(&raw, default_cc).map_err(|e| DialedError::NotANumber(raw.chars().take(64).collect(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn invite(ruri: &str, to: &str) -> Message {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             From: <sip:+12125550000@192.0.2.1>;tag=1\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(raw)).unwrap()
    }

    #[test]
    fn forms_carriers_send() {
        let cases = [
            ("sip:+14155550100@edge", "<sip:x@edge>"),
            ("sip:14155550100@edge;user=phone", "<sip:x@edge>"),
            ("sip:4155550100@edge", "<sip:x@edge>"),
            ("tel:+1-415-555-0100", "<sip:x@edge>"),
            ("sip:+1%20(415)%20555-0100@edge", "<sip:x@edge>"),
            ("sip:edge", "<sip:+14155550100@edge>"),
        ];
        for (ruri, to) in cases {
            assert_eq!(
                dialed_number(&invite(ruri, to), Some("1")).unwrap(),
                "+14155550100",
                "{ruri} / {to}"
            );
        }
    }

    #[test]
    fn phone_context() {
        let m = invite("sip:5550100;phone-context=+1-415@edge;user=phone", "<sip:x@edge>");
        assert_eq!(dialed_number(&m, None).unwrap(), "+14155550100");
    }

    #[test]
    fn not_a_number() {
        let m = invite("sip:alice@edge", "<sip:bob@edge>");
        assert!(matches!(dialed_number(&m, Some("1")), Err(DialedError::NotANumber(..))));
    }
}
