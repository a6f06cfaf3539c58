//! WWW-/Proxy-Authenticate challenges and (Proxy-)Authorization credentials (RFC 3261 20.7, 20.44).

use std::borrow::Cow;

use super::lex::{is_token, is_token_char, quoted_end, skip_ws, trim_lws, unquote, ListIter};

/// `scheme param=value, ...` shared by challenges and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AuthParams<'a> {
    scheme: &'a str,
    raw: &'a str,
}

impl<'a> AuthParams<'a> {
    fn parse(s: &'a str) -> Result<AuthParams<'a>, &'static str> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if i == 0 {
            return Err("missing auth scheme");
        }
        let scheme = &s[..i];
        let raw = &s[i..];
        if !raw.is_empty() && skip_ws(b, i) == i {
            return Err("missing space after auth scheme");
        }
        let raw = trim_lws(raw);
        for p in ListIter::new(raw) {
            if p.is_empty() {
                if raw.is_empty() {
                    break;
                }
                return Err("empty auth parameter");
            }
            let (n, v) = p.split_once('=').ok_or("auth parameter without '='")?;
            if !is_token(trim_lws(n)) {
                return Err("invalid auth parameter name");
            }
            let v = trim_lws(v);
            let vb = v.as_bytes();
            if vb.first() == Some(&b'"') {
                if quoted_end(vb)? != vb.len() {
                    return Err("characters after quoted auth value");
                }
            } else if !is_token(v) {
                // token68-like opaque values (base64 with '/' and '=') are tolerated.
                if v.is_empty() || !vb.iter().all(|&c| is_token_char(c) || c == b'/' || c == b'=') {
                    return Err("invalid auth parameter value");
                }
            }
        }
        Ok(AuthParams { scheme, raw })
    }

    fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        ListIter::new(self.raw).find_map(|p| {
            let (n, v) = p.split_once('=')?;
            trim_lws(n).eq_ignore_ascii_case(name).then(|| unquote(trim_lws(v)))
        })
    }
}

/// A parsed challenge; `param("realm")` etc. return unquoted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub scheme: &'a str,
    params: AuthParams<'a>,
}

impl<'a> Challenge<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<Challenge<'a>, &'static str> {
        let params = AuthParams::parse(s)?;
        Ok(Challenge {
            scheme: params.scheme,
            params,
        })
    }

    /// Unquoted parameter value (realm, nonce, opaque, algorithm, qop, stale, ...).
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.params.param(name)
    }

    /// Raw parameter text after the scheme.
    pub fn params_raw(&self) -> &'a str {
        self.params.raw
    }
}

/// Parsed credentials; `param("response")` etc. return unquoted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub scheme: &'a str,
    params: AuthParams<'a>,
}

impl<'a> Credentials<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<Credentials<'a>, &'static str> {
        let params = AuthParams::parse(s)?;
        Ok(Credentials {
            scheme: params.scheme,
            params,
        })
    }

    /// Unquoted parameter value (username, realm, nonce, uri, response, ...).
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.params.param(name)
    }

    /// Raw parameter text after the scheme.
    pub fn params_raw(&self) -> &'a str {
        self.params.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_challenge() {
        let c = Challenge::parse(
            "Digest realm=\"atlanta.com\", qop=\"auth,auth-int\",\r\n nonce=\"84a4cc6f\", stale=FALSE, algorithm=MD5",
        )
        .unwrap();
        assert_eq!(c.scheme, "Digest");
        assert_eq!(c.param("realm").as_deref(), Some("atlanta.com"));
        assert_eq!(c.param("QOP").as_deref(), Some("auth,auth-int"));
        assert_eq!(c.param("stale").as_deref(), Some("FALSE"));
        assert_eq!(c.param("opaque"), None);
        let cr = Credentials::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(cr.scheme, "NoOneKnowsThisScheme");
        assert_eq!(cr.param("opaque-data").as_deref(), Some("here"));
        assert!(Challenge::parse("Digest realm=\"x").is_err());
        assert!(Challenge::parse("Digest realm").is_err());
        assert!(Challenge::parse("").is_err());
    }
}
