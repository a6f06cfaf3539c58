//! name-addr / addr-spec with header parameters (From, To, Contact, Route, Record-Route).

use std::borrow::Cow;

use super::lex::{eq_letters, find, is_token_char, is_ws, quoted_end, skip_ws, trim_lws, unquote};
use super::params::{ParamKind, Params};
use crate::uri::{parse_uri, Uri};

/// `[display-name] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Unquoted, unescaped display name.
    pub display_name: Option<Cow<'a, str>>,
    pub uri: Uri<'a>,
    pub params: Params<'a>,
    /// The URI text as written (between `<` and `>` when bracketed).
    pub uri_raw: &'a str,
    tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (already split from a comma list where the header allows lists).
    #[inline]
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, &'static str> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        if b.is_empty() {
            return Err("empty value");
        }
        let (display_name, uri_raw, rest) = if b[0] == b'"' {
            let end = quoted_end(b)?;
            let i = skip_ws(b, end);
            if b.get(i) != Some(&b'<') {
                return Err("expected '<' after display name");
            }
            let (u, r) = bracketed(s, i)?;
            (Some(unquote(&s[..end])), u, r)
        } else {
            // Tokens separated by LWS, then '<'; otherwise this is an addr-spec.
            let mut i = 0;
            while i < b.len() && (is_token_char(b[i]) || is_ws(b[i])) {
                i += 1;
            }
            if b.get(i) == Some(&b'<') {
                let name = trim_lws(&s[..i]);
                let (u, r) = bracketed(s, i)?;
                ((!name.is_empty()).then_some(Cow::Borrowed(name)), u, r)
            } else {
                // RFC 3261 20.10: an addr-spec may not contain ',', '?' or ';' in its URI,
                // so the first ';' starts the header parameters.
                let end = find(b, b';').unwrap_or(b.len());
                let u = trim_lws(&s[..end]);
                if u.bytes().any(|c| c == b'?' || c == b',') {
                    return Err("URI with '?' or ',' must be enclosed in <>");
                }
                (None, u, &s[end..])
            }
        };
        let uri = parse_uri(uri_raw).map_err(|_| "invalid URI")?;
        let mut tag = None;
        let params = Params::parse_with(rest, ParamKind::Header, |p| {
            if tag.is_none() && eq_letters(p.name(), b"tag") {
                tag = Some(p.value().unwrap_or(""));
            }
        })?;
        Ok(NameAddr {
            display_name,
            uri,
            params,
            uri_raw,
            tag,
        })
    }

    /// `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// Any header parameter (`Some("")` for a flag).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.get(name)
    }
}

/// Given `s[lt] == '<'`, returns (uri inside, text after '>').
fn bracketed(s: &str, lt: usize) -> Result<(&str, &str), &'static str> {
    let b = s.as_bytes();
    let gt = memchr::memchr(b'>', &b[lt..]).ok_or("missing '>'")? + lt;
    Ok((&s[lt + 1..gt], &s[gt + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n = NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8")
            .unwrap();
        assert_eq!(n.display_name.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:+1415@gw;user=phone;tag=a").unwrap();
        assert_eq!(n.display_name, None);
        assert_eq!(n.param("user"), Some("phone"));
        assert_eq!(n.uri.user().as_deref(), Some("+1415"));
    }

    #[test]
    fn malformed() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:x@y",
            "",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
