//! SIP/SIPS (RFC 3261 19.1), tel (RFC 3966) and opaque URIs, borrowed from the message.
//!
//! An unknown scheme is not a syntax error: it parses as [`Uri::Other`] so the application
//! can answer 416 (RFC 3261 8.2.2.1) instead of 400.

use std::borrow::Cow;

use crate::headers::lex::{char_table, find, host_len, is_escape, percent_decode};
use crate::headers::params::{ParamKind, Params};
use crate::message::ParseError;

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Any other syntactically valid scheme; `rest` is everything after the colon.
    Other { scheme: &'a str, rest: &'a str },
}

/// A `sip:`/`sips:` URI. `user` and `password` are raw (still %-escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub secure: bool,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// Hostname, IPv4, or IPv6 reference with its brackets kept (`[::1]`).
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// Raw `hname=hvalue&...` after `?`, if any.
    pub headers: Option<&'a str>,
    raw: &'a str,
}

/// A `tel:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number as written, visual separators included (`+1-415-555-0100`).
    pub number: &'a str,
    pub params: Params<'a>,
    raw: &'a str,
}

impl<'a> Uri<'a> {
    /// Parses a URI; whitespace or control characters anywhere are errors.
    #[inline]
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ParseError> {
        parse_uri(s).map_err(ParseError::InvalidUri)
    }

    /// Lower-case scheme for the known schemes, the raw scheme otherwise.
    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// User part with escapes decoded (the number for `tel:`).
    pub fn user(&self) -> Option<Cow<'a, str>> {
        match self {
            Uri::Sip(u) => u.user_decoded(),
            Uri::Tel(t) => Some(Cow::Borrowed(t.number)),
            Uri::Other { .. } => None,
        }
    }

    /// Host of a SIP URI.
    pub fn host(&self) -> Option<&'a str> {
        match self {
            Uri::Sip(u) => Some(u.host),
            _ => None,
        }
    }
}

impl std::fmt::Display for Uri<'_> {
    /// Writes the URI as it was received.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uri::Sip(u) => f.write_str(u.raw),
            Uri::Tel(t) => f.write_str(t.raw),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl<'a> SipUri<'a> {
    /// User part with %-escapes decoded.
    pub fn user_decoded(&self) -> Option<Cow<'a, str>> {
        self.user.map(percent_decode)
    }

    /// URI parameter value (`Some("")` for a flag such as `;lr`).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.get(name)
    }

    /// The URI exactly as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

impl<'a> TelUri<'a> {
    /// `phone-context` parameter (RFC 3966 5.1.5).
    pub fn phone_context(&self) -> Option<&'a str> {
        self.params.get("phone-context")
    }

    /// The URI exactly as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

#[inline(always)]
pub(crate) fn parse_uri(s: &str) -> Result<Uri<'_>, &'static str> {
    // Fast dispatch for the schemes nearly every message carries; same result as the
    // general scheme scan below, which would find the colon at the same place.
    let b = s.as_bytes();
    if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"sip:") {
        return parse_sip(s, &s[4..], false).map(Uri::Sip);
    }
    if b.len() >= 5 && b[..5].eq_ignore_ascii_case(b"sips:") {
        return parse_sip(s, &s[5..], true).map(Uri::Sip);
    }
    if s.is_empty() {
        return Err("empty URI");
    }
    let colon = find(s.as_bytes(), b':').ok_or("missing scheme")?;
    let scheme = &s[..colon];
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err("invalid scheme");
    }
    let rest = &s[colon + 1..];
    if scheme.eq_ignore_ascii_case("sip") {
        parse_sip(s, rest, false).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("sips") {
        parse_sip(s, rest, true).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("tel") {
        parse_tel(s, rest).map(Uri::Tel)
    } else if rest.is_empty() {
        Err("empty URI after scheme")
    } else if rest.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        // The sip/tel grammars above refuse these character by character.
        Err("whitespace or control character in URI")
    } else {
        Ok(Uri::Other { scheme, rest })
    }
}

static USER: [bool; 256] = char_table(b"-_.!~*'()&=+$,;?/");
static PASSWORD: [bool; 256] = char_table(b"-_.!~*'()&=+$,");
static HNV: [bool; 256] = char_table(b"-_.!~*'()[]/?:+$");

/// Checks a URI component: characters in `allowed`, or `escaped`.
fn check_chars(s: &str, allowed: &[bool; 256]) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !is_escape(&b[i..]) {
                return Err("invalid %-escape in URI");
            }
            i += 3;
            continue;
        }
        if !allowed[c as usize] {
            return Err("invalid character in URI");
        }
        i += 1;
    }
    Ok(())
}

/// Parses a SIP URI: the fast path handles the common shape, anything it does not
/// recognise (or any error) is decided by the complete grammar in `parse_sip_full`, so
/// results, including error reasons, are those of the full parser.
#[inline(always)]
fn parse_sip<'a>(raw: &'a str, s: &'a str, secure: bool) -> Result<SipUri<'a>, &'static str> {
    match parse_sip_fast(raw, s, secure) {
        Some(u) => Ok(u),
        None => parse_sip_full(raw, s, secure),
    }
}

/// `[user "@"] host [":" port] *(";" param)` with an unescaped user part, no password and
/// no `?headers`, in one left-to-right scan. `None` means "not this shape or invalid".
#[inline(always)]
fn parse_sip_fast<'a>(raw: &'a str, s: &'a str, secure: bool) -> Option<SipUri<'a>> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && USER[b[i] as usize] {
        i += 1;
    }
    let (user, hs) = if b.get(i) == Some(&b'@') {
        if i == 0 {
            return None;
        }
        (Some(&s[..i]), i + 1)
    } else {
        // The full grammar takes any '@' as the userinfo separator: leave those to it.
        if b[i..].contains(&b'@') {
            return None;
        }
        (None, 0)
    };
    let hb = &b[hs..];
    let hl = host_len(hb).ok()?;
    let mut i = hl;
    let mut port = None;
    if hb.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        let mut v: u32 = 0;
        while i < hb.len() && hb[i].is_ascii_digit() {
            v = v * 10 + u32::from(hb[i] - b'0');
            if v > u32::from(u16::MAX) {
                return None;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        // v <= u16::MAX was checked at every digit.
        port = Some(v as u16);
    }
    let after = &s[hs + i..];
    if !after.is_empty() && !after.starts_with(';') {
        return None;
    }
    // A '?' cannot pass the URI parameter grammar, so success here means "no headers".
    let params = Params::parse(after, ParamKind::Uri).ok()?;
    Some(SipUri {
        secure,
        user,
        password: None,
        host: &s[hs..hs + hl],
        port,
        params,
        headers: None,
        raw,
    })
}

fn parse_sip_full<'a>(raw: &'a str, s: &'a str, secure: bool) -> Result<SipUri<'a>, &'static str> {
    let b = s.as_bytes();
    // '@' may not appear unescaped anywhere but as the userinfo separator.
    let (user, password, hp) = match find(b, b'@') {
        Some(at) => {
            let ui = &s[..at];
            let (u, p) = match find(ui.as_bytes(), b':') {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            if u.is_empty() {
                return Err("empty user part");
            }
            check_chars(u, &USER)?;
            if let Some(p) = p {
                check_chars(p, &PASSWORD)?;
            }
            (Some(u), p, &s[at + 1..])
        }
        None => (None, None, s),
    };
    let hb = hp.as_bytes();
    let hl = host_len(hb)?;
    let host = &hp[..hl];
    let mut i = hl;
    let mut port = None;
    if hb.get(i) == Some(&b':') {
        let start = i + 1;
        let mut end = start;
        while end < hb.len() && hb[end].is_ascii_digit() {
            end += 1;
        }
        port = Some(hp[start..end].parse::<u16>().map_err(|_| "invalid port")?);
        i = end;
    }
    let after = &hp[i..];
    let (params_raw, headers) = match find(after.as_bytes(), b'?') {
        Some(q) => (&after[..q], Some(&after[q + 1..])),
        None => (after, None),
    };
    if !params_raw.is_empty() && !params_raw.starts_with(';') {
        return Err("invalid character after host");
    }
    let params = Params::parse(params_raw, ParamKind::Uri)?;
    if let Some(h) = headers {
        for pair in h.split('&') {
            let (n, v) = pair.split_once('=').ok_or("URI header without '='")?;
            if n.is_empty() {
                return Err("empty URI header name");
            }
            check_chars(n, &HNV)?;
            check_chars(v, &HNV)?;
        }
    }
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
        raw,
    })
}

fn parse_tel<'a>(raw: &'a str, s: &'a str) -> Result<TelUri<'a>, &'static str> {
    let semi = find(s.as_bytes(), b';').unwrap_or(s.len());
    let number = &s[..semi];
    let digits = number.strip_prefix('+').unwrap_or(number);
    let global = number.starts_with('+');
    let mut any = false;
    for c in digits.bytes() {
        match c {
            b'0'..=b'9' => any = true,
            b'a'..=b'f' | b'A'..=b'F' | b'*' | b'#' if !global => any = true,
            b'-' | b'.' | b'(' | b')' => {}
            _ => return Err("invalid character in telephone number"),
        }
    }
    if !any {
        return Err("empty telephone number");
    }
    let params = Params::parse(&s[semi..], ParamKind::Uri)?;
    Ok(TelUri { number, params, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = sip("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x");
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("transport"), Some("tcp"));
        assert_eq!(u.param("lr"), Some(""));
        assert_eq!(u.headers, Some("subject=x"));
    }

    #[test]
    fn escaped_and_semicolon_user() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.user_decoded().unwrap(), "user;par=u@example.net");
        assert_eq!(u.host, "example.com");
        let u = sip("sip:%75se%72@example.com");
        assert_eq!(u.user_decoded().unwrap(), "user");
    }

    #[test]
    fn tel_and_other() {
        match Uri::parse("tel:+1-415-555-0100;phone-context=+1").unwrap() {
            Uri::Tel(t) => {
                assert_eq!(t.number, "+1-415-555-0100");
                assert_eq!(t.phone_context(), Some("+1"));
            }
            other => panic!("{other:?}"),
        }
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme(), "nobodyKnowsThisScheme");
        assert!(matches!(
            u,
            Uri::Other {
                rest: "totallyopaquecontent",
                ..
            }
        ));
    }

    #[test]
    fn shapes_outside_the_fast_path() {
        let u = sip("sip:alice:pw@host;lr?h=v");
        assert_eq!((u.user, u.password, u.host), (Some("alice"), Some("pw"), "host"));
        assert_eq!(u.param("lr"), Some(""));
        assert_eq!(u.headers, Some("h=v"));
        // Any '@' separates the userinfo, even one after characters legal in a parameter.
        let u = sip("sip:host;maddr=a@b");
        assert_eq!((u.user, u.host), (Some("host;maddr=a"), "b"));
        assert_eq!(sip("sip:h:0005060").port, Some(5060));
        assert_eq!(sip("SIPS:h").host, "h");
        assert!(Uri::parse("sip:host:5060x").is_err());
        assert!(Uri::parse("sip:host:65536").is_err());
        assert!(Uri::parse("sip:host;lr?").is_err());
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:us er@example.com",
            "sip:user@",
            "sip:@host",
            "sip:host:99999",
            "sip:u%4@host",
            "tel:abc+",
            "sip:[::1",
            "",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
