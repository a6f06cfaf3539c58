//! Input validation. Every failure names the field so clients can fix the request.

use crate::error::ApiError;
use edge_contract::trunk::{split_host_port, valid_host};
use edge_contract::{TargetPolicy, TrunkAddress, TrunkAddressError, TrunkParams, TrunkTransport};
use edge_store::IdKind;
use sip_core::e164::{self, E164Error};

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_MESSAGE_LEN: usize = 1000;
pub const MAX_SECRET_LEN: usize = 512;
pub const MAX_SIP_URI_LEN: usize = 512;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
pub const MAX_SIP_USERNAME_LEN: usize = 64;
pub const MIN_SIP_PASSWORD_LEN: usize = 8;
pub const MAX_SIP_PASSWORD_LEN: usize = 128;

/// ISO 3166 alpha-2 countries the API accepts. NANP members get NANP area-code rules.
pub const SUPPORTED_COUNTRIES: &[&str] = &[
    "US", "CA", "GB", "IE", "AU", "NZ", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "FI", "PL",
    "PT", "MX", "BR", "IN", "JP", "SG", "AE", "ZA", "IL", "PR",
];

const NANP: &[&str] = &["US", "CA", "PR"];

/// E.164 as [`e164::check`] has it (`+`, then 8..=15 digits, the first not 0; `+1` numbers follow
/// the North American plan), each refusal in words a client can act on.
pub fn e164(field: &str, v: &str) -> Result<String, ApiError> {
    match e164::check(v) {
        Ok(()) => Ok(v.to_owned()),
        Err(E164Error::NanpLength(_)) => Err(ApiError::field(
            field,
            "a +1 (North American) number has 10 digits after +1: 3-digit area code, 3-digit exchange, 4-digit line",
        )),
        Err(E164Error::NotNanp) => Err(ApiError::field(
            field,
            "not a North American number: its area code and exchange must not start with 0 or 1",
        )),
        Err(_) => Err(ApiError::field(
            field,
            "must be E.164: '+' followed by 8 to 15 digits, first digit not 0",
        )),
    }
}

/// Upper-cases and checks against [`SUPPORTED_COUNTRIES`].
pub fn country(field: &str, v: &str) -> Result<String, ApiError> {
    let up = v.trim().to_ascii_uppercase();
    if SUPPORTED_COUNTRIES.contains(&up.as_str()) {
        Ok(up)
    } else {
        Err(ApiError::field(
            field,
            format!(
                "unsupported country; expected ISO 3166 alpha-2, one of {}",
                SUPPORTED_COUNTRIES.join(",")
            ),
        ))
    }
}

/// NANP: exactly 3 digits, first 2-9. Elsewhere: 1 to 5 digits.
pub fn area_code(field: &str, country: &str, v: &str) -> Result<String, ApiError> {
    let digits = v.bytes().all(|b| b.is_ascii_digit());
    if NANP.contains(&country) {
        if digits && v.len() == 3 && !v.starts_with(['0', '1']) {
            return Ok(v.to_owned());
        }
        return Err(ApiError::field(
            field,
            "NANP area code must be 3 digits, first digit 2-9",
        ));
    }
    if digits && (1..=5).contains(&v.len()) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::field(field, "area code must be 1 to 5 digits"))
    }
}

pub fn agent_id(field: &str, v: &str) -> Result<String, ApiError> {
    if IdKind::Agent.is_valid(v) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::field(field, "must be an agent id (agt_…)"))
    }
}

/// Trimmed, non-empty, at most `max` characters, no control characters and no bidirectional
/// overrides, embeddings or isolates (which make a name display as something else). Names (`max`
/// of [`MAX_NAME_LEN`] or less) are single-line; longer texts (messages) may contain newlines.
pub fn text(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    // Counted before trimming, as the OpenAPI `maxLength` counts what the client sent.
    if v.chars().count() > max {
        return Err(ApiError::field(field, format!("must be at most {max} characters")));
    }
    let multiline = max > MAX_NAME_LEN;
    if t.chars().any(|c| c.is_control() && !(multiline && c == '\n')) {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    if t.chars().any(is_bidi_control) {
        return Err(ApiError::field(
            field,
            "must not contain bidirectional override, embedding or isolate characters",
        ));
    }
    Ok(t.to_owned())
}

/// U+202A..U+202E (embeddings, overrides), U+2066..U+2069 (isolates), U+200E/U+200F/U+061C (marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

pub fn opt_text(field: &str, v: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    v.map(|s| text(field, s, max)).transpose()
}

/// A secret: non-empty, bounded, not trimmed (whitespace may be significant).
pub fn secret(field: &str, v: &str) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > MAX_SECRET_LEN {
        return Err(ApiError::field(field, format!("must be 1 to {MAX_SECRET_LEN} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

/// A trunk's tech prefix: 1 to 16 digits (Telnyx assigns 4), put before the dialled number.
pub fn tech_prefix(field: &str, v: &str) -> Result<String, ApiError> {
    if (1..=16).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::field(
            field,
            "must be 1 to 16 digits (the tech prefix Telnyx shows on the IP connection, e.g. 1234)",
        ))
    }
}

/// A Telnyx IP authentication token (`X-Telnyx-Token`): as Telnyx requires, 12 to 48 letters, digits and
/// hyphens.
pub fn ip_auth_token(field: &str, v: &str) -> Result<String, ApiError> {
    if (12..=48).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(v.to_owned())
    } else {
        Err(ApiError::field(
            field,
            "must be 12 to 48 letters, digits or hyphens (the token set on the Telnyx IP connection)",
        ))
    }
}

/// Agent digest username: 1 to 64 of `[A-Za-z0-9._-]`, safe unquoted in SIP headers.
pub fn sip_username(field: &str, v: &str) -> Result<String, ApiError> {
    let ok = (1..=MAX_SIP_USERNAME_LEN).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::field(
            field,
            format!("must be 1 to {MAX_SIP_USERNAME_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-'"),
        ))
    }
}

/// Agent digest password: 8 to 128 characters, no control characters, not trimmed.
pub fn sip_password(field: &str, v: &str) -> Result<String, ApiError> {
    if !(MIN_SIP_PASSWORD_LEN..=MAX_SIP_PASSWORD_LEN).contains(&v.chars().count()) {
        return Err(ApiError::field(
            field,
            format!("must be {MIN_SIP_PASSWORD_LEN} to {MAX_SIP_PASSWORD_LEN} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

/// Trunk address: `host`, `host:port`, `IPv4[:port]`, `[IPv6][:port]`, with an optional leading `sip:` or
/// `sips:` and `;transport=udp|tcp|tls`, parsed by [`TrunkAddress::parse`] (the parser call control uses).
/// A leading `sip:` says nothing and is stripped (people paste the Termination SIP URI); `sips:` and
/// `;transport=` choose how the trunk is reached and are kept (stripping `sips:` would dial a TLS trunk in
/// the clear). Any other scheme, user part, path or URI parameter is rejected. Returned lower-cased, the
/// transport parameter written once as `;transport=udp|tcp|tls`.
pub fn trunk_address(field: &str, v: &str) -> Result<String, ApiError> {
    let parsed = TrunkAddress::parse(v, TrunkParams::Transport).map_err(|e| {
        let m = match e {
            TrunkAddressError::Length => "must be a hostname or IP with optional :port".to_owned(),
            TrunkAddressError::Scheme
            | TrunkAddressError::UserPart
            | TrunkAddressError::NotHostPort
            | TrunkAddressError::Parameters => {
                "must be host[:port] only (no scheme other than sip: or sips:, user, path or parameters other \
                 than transport=)"
                    .to_owned()
            }
            TrunkAddressError::UnsupportedTransport(_) | TrunkAddressError::UnsupportedParameter(_) => e.to_string(),
            TrunkAddressError::HostPort => "invalid host[:port]".to_owned(),
            TrunkAddressError::Port => "port must be 1-65535".to_owned(),
            TrunkAddressError::Host => "host must be a DNS name or IP address".to_owned(),
        };
        ApiError::field(field, m)
    })?;
    let lower = v.trim().to_ascii_lowercase();
    let main = lower.split(';').next().unwrap_or(&lower).trim_end();
    let main = main.strip_prefix("sip:").unwrap_or(main);
    Ok(match parsed.transport {
        None => main.to_owned(),
        Some(t) => format!(
            "{main};transport={}",
            match t {
                TrunkTransport::Udp => "udp",
                TrunkTransport::Tcp => "tcp",
                TrunkTransport::Tls => "tls",
            }
        ),
    })
}

/// `sip:` / `sips:` URI with optional `user@`, a valid host, optional `:port` and
/// `;params`. Scheme compared case-insensitively; returned as given (trimmed).
pub fn sip_uri(field: &str, v: &str) -> Result<String, ApiError> {
    let bad = || ApiError::field(field, "must be a sip: or sips: URI, e.g. sip:agent@host:5060");
    let s = v.trim();
    if s.is_empty() || s.len() > MAX_SIP_URI_LEN || s.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad());
    }
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sips:")
        .or_else(|| lower.strip_prefix("sip:"))
        .ok_or_else(bad)?;
    let rest = rest.split(['?']).next().unwrap_or("");
    let main = rest.split(';').next().unwrap_or("");
    let hostport = match main.rsplit_once('@') {
        Some((user, hp)) => {
            let user_ok = !user.is_empty()
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%:".contains(&b));
            if !user_ok {
                return Err(bad());
            }
            hp
        }
        None => main,
    };
    let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(bad());
        }
    }
    if host.is_empty() || !valid_host(host) {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// [`trunk_address`], then refused (400 `internal_target`) when it names an address the edge
/// must not call.
pub fn trunk_target(field: &str, v: &str, policy: &TargetPolicy) -> Result<String, ApiError> {
    let t = trunk_address(field, v)?;
    let parsed = TrunkAddress::parse(&t, TrunkParams::Transport).map_err(|e| ApiError::field(field, e.to_string()))?;
    allowed_target(field, &parsed.host, policy)?;
    Ok(t)
}

/// [`sip_uri`], then refused (400 `internal_target`) when its host names an address the edge
/// must not call.
pub fn sip_uri_target(field: &str, v: &str, policy: &TargetPolicy) -> Result<String, ApiError> {
    let uri = sip_uri(field, v)?;
    let lower = uri.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sips:")
        .or_else(|| lower.strip_prefix("sip:"))
        .unwrap_or(&lower);
    let main = rest.split(['?', ';']).next().unwrap_or("");
    let hostport = main.rsplit_once('@').map_or(main, |(_, hp)| hp);
    let host = split_host_port(hostport).map_or(hostport, |(h, _)| h);
    allowed_target(field, host, policy)?;
    Ok(uri)
}

fn allowed_target(field: &str, host: &str, policy: &TargetPolicy) -> Result<(), ApiError> {
    match policy.host_refusal(host) {
        None => Ok(()),
        Some(kind) => Err(ApiError {
            status: axum::http::StatusCode::BAD_REQUEST,
            code: "internal_target",
            message: format!(
                "points at a {kind} address; the edge does not send calls into internal networks \
                 (an operator can allow ranges with [security] internal_targets)"
            ),
            field: Some(field.to_owned()),
        }),
    }
}

/// `limit` query parameter: 1..=100, `default` when absent.
pub fn limit(v: Option<&str>, default: u32) -> Result<u32, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::field("limit", "must be an integer from 1 to 100")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_rules() {
        assert!(e164("f", "+14155551234").is_ok());
        assert!(e164("f", "+44123456").is_ok());
        // +1 is the North American plan: 10 digits after it.
        assert!(e164("f", "+12345678").is_err());
        for bad in [
            "14155551234",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+1415a551234",
            "",
        ] {
            assert_eq!(e164("f", bad).unwrap_err().field.as_deref(), Some("f"), "{bad}");
        }
    }

    #[test]
    fn country_and_area_code() {
        assert_eq!(country("c", "us").unwrap(), "US");
        assert!(country("c", "XX").is_err());
        assert!(area_code("a", "US", "415").is_ok());
        assert!(area_code("a", "US", "115").is_err());
        assert!(area_code("a", "US", "4155").is_err());
        assert!(area_code("a", "GB", "20").is_ok());
        assert!(area_code("a", "GB", "2x").is_err());
    }

    #[test]
    fn trunk_addresses() {
        assert_eq!(
            trunk_address("t", "yourtrunk.pstn.twilio.com").unwrap(),
            "yourtrunk.pstn.twilio.com"
        );
        assert_eq!(
            trunk_address("t", "sip:Trunk.example.com:5061").unwrap(),
            "trunk.example.com:5061"
        );
        assert!(trunk_address("t", "192.0.2.1:5060").is_ok());
        assert!(trunk_address("t", "[2001:db8::1]:5060").is_ok());
        assert!(trunk_address("t", "2001:db8::1").is_ok());
        // TLS (and TCP) trunks: sips: and ;transport= are what make them so, and are kept.
        assert_eq!(
            trunk_address("t", "SIPS:Trunk.example.com:5061").unwrap(),
            "sips:trunk.example.com:5061"
        );
        assert_eq!(
            trunk_address("t", "sip:10.0.0.1:5061;Transport=TLS").unwrap(),
            "10.0.0.1:5061;transport=tls"
        );
        assert_eq!(
            trunk_address("t", "x.com;transport=tcp").unwrap(),
            "x.com;transport=tcp"
        );
        assert_eq!(
            trunk_address("t", "sips:x.com;transport=tls").unwrap(),
            "sips:x.com;transport=tls"
        );
        for stored in ["sips:trunk.example.com:5061", "10.0.0.1:5061;transport=tls"] {
            let a = TrunkAddress::parse(stored, TrunkParams::Transport).unwrap();
            assert!(a.tls(), "{stored}");
        }
        assert!(trunk_address("t", "x.com;transport=sctp")
            .unwrap_err()
            .message
            .contains("transport=sctp is not supported"));
        for bad in [
            "https://x.com",
            "user@x.com",
            "x.com:0",
            "x.com:99999",
            "-x.com",
            "x..com",
            "999.1.1.1",
            "x.com;maddr=10.0.0.1",
            "x.com;transport=sctp",
            "",
        ] {
            assert!(trunk_address("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sip_uris() {
        for good in [
            "sip:agent@10.0.0.5:5060",
            "sips:bot@agents.example.com",
            "sip:agents.example.com;transport=tcp",
            "SIP:a@[2001:db8::1]:5070",
        ] {
            assert!(sip_uri("s", good).is_ok(), "{good}");
        }
        for bad in [
            "http://x",
            "sip:",
            "sip:@host",
            "sip:a@",
            "sip:a@host:0",
            "sip:a b@host",
            "agent@host",
        ] {
            assert!(sip_uri("s", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_targets_refused_with_their_field() {
        let none = TargetPolicy::default();
        for bad in [
            "sip:a@127.0.0.1:38080",
            "sip:a@169.254.169.254",
            "sip:localhost:22;transport=tcp",
            "sip:a@[::1]:5060",
            "sips:a@10.0.0.5",
        ] {
            let e = sip_uri_target("sip_uri", bad, &none).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("internal_target", Some("sip_uri")),
                "{bad}"
            );
        }
        assert!(sip_uri_target("sip_uri", "sip:a@agents.example.com;transport=tcp", &none).is_ok());
        for bad in ["127.0.0.1:5060", "[fe80::1]:5060", "localhost", "sip:192.168.0.1"] {
            let e = trunk_target("t", bad, &none).unwrap_err();
            assert_eq!(e.code, "internal_target", "{bad}");
        }
        assert!(trunk_target("t", "[2001:db8::1]:5060", &none).is_ok());
        let lo = TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(trunk_target("t", "127.0.0.1:5060", &lo).is_ok());
        assert!(sip_uri_target("s", "sip:a@localhost", &lo).is_ok());
    }

    #[test]
    fn nanp_numbers() {
        assert!(e164("p", "+14155551234").is_ok());
        assert!(e164("p", "+15005550006").is_ok());
        assert!(e164("p", "+442071838750").is_ok());
        for bad in [
            "+10115550100",
            "+11155550100",
            "+14150550100",
            "+14151550100",
            "+1415555010",
            "+141555501000",
        ] {
            assert_eq!(e164("p", bad).unwrap_err().field.as_deref(), Some("p"), "{bad}");
        }
    }

    #[test]
    fn names_refuse_controls_and_bidi() {
        assert_eq!(text("n", " Sales bot ", MAX_NAME_LEN).unwrap(), "Sales bot");
        // The limit is the schema's `maxLength`: what was sent, spaces included.
        let padded = format!("\u{2006}{}", "*".repeat(MAX_NAME_LEN));
        assert!(text("n", &padded, MAX_NAME_LEN).is_err());
        assert!(text("n", &"*".repeat(MAX_NAME_LEN), MAX_NAME_LEN).is_ok());
        assert!(text("n", "Zoë – 客服", MAX_NAME_LEN).is_ok());
        for bad in ["a\u{202E}gpj.exe", "a\u{2066}b", "a\nb", "a\u{7}b", "a\u{200F}"] {
            assert!(text("n", bad, MAX_NAME_LEN).is_err(), "{bad:?}");
        }
        assert!(text("m", "line one\nline two", MAX_MESSAGE_LEN).is_ok());
        assert!(text("m", "x\u{202D}y", MAX_MESSAGE_LEN).is_err());
    }

    #[test]
    fn sip_credentials() {
        assert!(sip_username("u", "agent-1.sales_bot").is_ok());
        assert!(sip_username("u", &"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a@b", "ä", "a:b", &"a".repeat(65)] {
            assert_eq!(sip_username("u", bad).unwrap_err().field.as_deref(), Some("u"), "{bad}");
        }
        assert!(sip_password("p", "12345678").is_ok());
        assert!(sip_password("p", " spaces and ünïcode ").is_ok());
        assert!(sip_password("p", &"x".repeat(128)).is_ok());
        for bad in ["1234567", "1234567\n", &"x".repeat(129)] {
            assert_eq!(sip_password("p", bad).unwrap_err().field.as_deref(), Some("p"), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None, 10).unwrap(), 10);
        assert_eq!(limit(Some("100"), 10).unwrap(), 100);
        assert!(limit(Some("0"), 10).is_err());
        assert!(limit(Some("101"), 10).is_err());
        assert!(limit(Some("x"), 10).is_err());
    }
}
