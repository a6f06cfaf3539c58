//! One Via value (RFC 3261 20.42): `SIP/2.0/UDP host:port;params`.

use super::lex::{eq_letters, host_len, is_token_char, is_ws, skip_ws};
use super::params::{ParamKind, Params};

/// Transport named in a Via's sent-protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    Other,
}

impl Transport {
    /// Case-insensitive transport token to enum.
    pub fn from_token(t: &str) -> Transport {
        // Every name is letters only, and for a letter target `c & !0x20 == target` holds
        // exactly for its two cases, so this is a case-insensitive compare.
        let b = t.as_bytes();
        let up = |i: usize| b[i] & !0x20;
        match b.len() {
            2 if [up(0), up(1)] == *b"WS" => Transport::Ws,
            3 => match [up(0), up(1), up(2)] {
                [b'U', b'D', b'P'] => Transport::Udp,
                [b'T', b'C', b'P'] => Transport::Tcp,
                [b'T', b'L', b'S'] => Transport::Tls,
                [b'W', b'S', b'S'] => Transport::Wss,
                _ => Transport::Other,
            },
            4 if [up(0), up(1), up(2), up(3)] == *b"SCTP" => Transport::Sctp,
            _ => Transport::Other,
        }
    }

    /// Upper-case token for serializing; `Other` has none.
    pub fn as_str(&self) -> Option<&'static str> {
        Some(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other => return None,
        })
    }
}

/// A parsed Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: Transport,
    /// The transport token as sent (useful when `transport` is `Other`).
    pub transport_token: &'a str,
    /// Hostname, IPv4, or IPv6 reference with brackets kept.
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    // Indexed while validating the params, so the transaction layer's lookups are free.
    branch: Option<&'a str>,
    received: Option<&'a str>,
    rport: Option<&'a str>,
}

/// The RFC 3261 branch prefix that marks a globally unique transaction id.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl<'a> Via<'a> {
    /// Parses one Via value (already split from a comma list).
    pub(crate) fn parse(s: &'a str) -> Result<Via<'a>, &'static str> {
        let b = s.as_bytes();
        let (transport_token, n) =
            if b.len() > 8 && b[..3].eq_ignore_ascii_case(b"SIP") && &b[3..8] == b"/2.0/" && is_token_char(b[8]) {
                // Compact sent-protocol (no LWS around the slashes): what the general path below
                // would find, without its token and slash scans.
                token_at(s, 8)
            } else {
                let mut i = skip_ws(b, 0);
                let (name, n) = token_at(s, i);
                if !name.eq_ignore_ascii_case("SIP") {
                    return Err("unsupported protocol name");
                }
                i = expect_slash(b, n)?;
                // protocol-version = token
                let (version, n) = token_at(s, i);
                if version != "2.0" {
                    return Err("unsupported protocol version");
                }
                i = expect_slash(b, n)?;
                token_at(s, i)
            };
        if transport_token.is_empty() {
            return Err("missing transport");
        }
        if n >= b.len() || !is_ws(b[n]) {
            return Err("missing sent-by");
        }
        let mut i = skip_ws(b, n);
        let hl = host_len(&b[i..]).map_err(|_| "missing sent-by")?;
        let host = &s[i..i + hl];
        i = skip_ws(b, i + hl);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            i = skip_ws(b, i + 1);
            // Digits, valued as they are scanned: no digit or a value above 65535 is invalid.
            let start = i;
            let mut v: u32 = 0;
            while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
                v = v * 10 + u32::from(d - b'0');
                if v > u32::from(u16::MAX) {
                    return Err("invalid port");
                }
                i += 1;
            }
            port = Some(u16::try_from(v).ok().filter(|_| i > start).ok_or("invalid port")?);
        }
        let (mut branch, mut received, mut rport) = (None, None, None);
        let params = Params::parse_with(&s[i..], ParamKind::Header, |p| {
            let n = p.name();
            let slot = match n.len() {
                6 if eq_letters(n, b"branch") => &mut branch,
                8 if eq_letters(n, b"received") => &mut received,
                5 if eq_letters(n, b"rport") => &mut rport,
                _ => return,
            };
            if slot.is_none() {
                *slot = Some(p.value().unwrap_or(""));
            }
        })?;
        if let Some(r) = rport {
            if !r.is_empty() && r.parse::<u16>().is_err() {
                return Err("invalid rport");
            }
        }
        Ok(Via {
            transport: Transport::from_token(transport_token),
            transport_token,
            host,
            port,
            params,
            branch,
            received,
            rport,
        })
    }

    /// `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.branch
    }

    /// `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        self.received
    }

    /// `None`: no rport; `Some(None)`: `;rport` requested (RFC 3581); `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport.map(|v| v.parse().ok())
    }

    /// Any parameter (`Some("")` for a flag).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.get(name)
    }

    /// True when the branch starts with the RFC 3261 magic cookie.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
}

fn token_at(s: &str, i: usize) -> (&str, usize) {
    let b = s.as_bytes();
    let mut e = i;
    while e < b.len() && is_token_char(b[e]) {
        e += 1;
    }
    (&s[i.min(s.len())..e.max(i).min(s.len())], e)
}

/// SLASH = SWS "/" SWS
fn expect_slash(b: &[u8], i: usize) -> Result<usize, &'static str> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'/') {
        return Err("malformed sent-protocol");
    }
    Ok(skip_ws(b, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_spaced_via() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_magic_cookie());
    }

    #[test]
    fn ipv6_rport_received() {
        let v = Via::parse("SIP/2.0/TCP [::1]:5060;rport;branch=z9hG4bK1;received=::1").unwrap();
        assert_eq!(v.host, "[::1]");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("::1"));
        assert!(v.has_magic_cookie());
        let v = Via::parse("SIP/2.0/UDP h;rport=5062").unwrap();
        assert_eq!(v.rport(), Some(Some(5062)));
    }

    #[test]
    fn transport_tokens_fold_case_only() {
        for (t, want) in [
            ("udp", Transport::Udp),
            ("Tcp", Transport::Tcp),
            ("TLS", Transport::Tls),
            ("sctp", Transport::Sctp),
            ("ws", Transport::Ws),
            ("wSs", Transport::Wss),
            ("UD", Transport::Other),
            ("UDPX", Transport::Other),
            ("u\u{4}p", Transport::Other),
            ("", Transport::Other),
        ] {
            assert_eq!(Transport::from_token(t), want, "{t:?}");
        }
        // Bytes that differ from a letter only in bit 0x20 but are not its other case.
        assert_eq!(Transport::from_token("\u{15}DP"), Transport::Other);
    }

    #[test]
    fn bad_vias() {
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/7.0/UDP host",
            "HTTP/2.0/UDP host",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP host;rport=abc",
            "SIP/2.0/UDP [::1;branch=x",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Via::parse("SIP/2.0/UNKNOWN t4.example.com").unwrap().transport,
            Transport::Other
        );
    }
}
