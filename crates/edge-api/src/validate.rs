//! Input validation. Every failure names the field so clients can fix the request.

use crate::error::ApiError;
use edge_store::IdKind;
use std::net::{IpAddr, Ipv6Addr};

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

/// E.164: `+`, then 8..=15 digits, the first not 0.
pub fn e164(field: &str, v: &str) -> Result<String, ApiError> {
    let digits = v.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::field(
            field,
            "must be E.164: '+' followed by 8 to 15 digits, first digit not 0",
        ))
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

/// Trimmed, non-empty, at most `max` characters, no control characters.
pub fn text(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ApiError::field(field, format!("must be at most {max} characters")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    Ok(t.to_owned())
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

/// Trunk address: `host`, `host:port`, `IPv4[:port]`, `[IPv6][:port]`. A leading `sip:` or
/// `sips:` is accepted and stripped (people paste the Termination SIP URI); any other scheme,
/// user part, path or URI parameter is rejected. Returned lower-cased.
pub fn trunk_address(field: &str, v: &str) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::field(field, m.to_owned());
    let s = v.trim();
    let lower = s.to_ascii_lowercase();
    let s = lower
        .strip_prefix("sips:")
        .or_else(|| lower.strip_prefix("sip:"))
        .unwrap_or(&lower);
    if s.is_empty() || s.len() > 260 {
        return Err(bad("must be a hostname or IP with optional :port"));
    }
    if s.contains("://") || s.contains(['@', '/', ';', '?', ' ']) {
        return Err(bad(
            "must be host[:port] only (no scheme other than sip:, user, path or parameters)",
        ));
    }
    let (host, port) = split_host_port(s).ok_or_else(|| bad("invalid host[:port]"))?;
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(bad("port must be 1-65535")),
        }
    }
    if !valid_host(host) {
        return Err(bad("host must be a DNS name or IP address"));
    }
    Ok(s.to_owned())
}

/// Splits `host[:port]` / `[v6][:port]`; a bare IPv6 (several colons) is a host alone.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some((s.get(..v6.len() + 2)?, None)),
            p => Some((s.get(..v6.len() + 2)?, Some(p.strip_prefix(':')?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => s.split_once(':').map(|(h, p)| (h, Some(p))),
        _ => s.parse::<Ipv6Addr>().ok().map(|_| (s, None)),
    }
}

fn valid_host(h: &str) -> bool {
    if h.starts_with('[') {
        return true; // already parsed as IPv6 by split_host_port
    }
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    if h.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = h.trim_end_matches('.').split('.').collect();
    // All-numeric dotted names that failed IP parsing (e.g. 999.1.1.1) are rejected.
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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
        assert!(e164("f", "+12345678").is_ok());
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
        for bad in [
            "https://x.com",
            "user@x.com",
            "x.com:0",
            "x.com:99999",
            "-x.com",
            "x..com",
            "999.1.1.1",
            "x.com;transport=tcp",
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
