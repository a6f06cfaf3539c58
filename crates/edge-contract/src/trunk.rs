//! Trunk addresses as customers and operators write them: `host`, `host:port`, `IPv4[:port]`,
//! `[IPv6][:port]`, a bare IPv6, with an optional leading `sip:`/`sips:` (people paste the Termination
//! SIP URI). The one parser for the API's validation (`provider_config.trunk_address`,
//! `metadata.sip_trunk`), the operator's `[[outbound.trunks]]` and call control, so an address one of
//! them accepts is never refused by another.

use std::net::{IpAddr, Ipv6Addr};

/// Longest address accepted (after the scheme): a 253-character name and a port.
pub const MAX_TRUNK_ADDRESS_LEN: usize = 260;

/// Transport toward a trunk, from the address's `transport=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkTransport {
    Udp,
    Tcp,
    /// `transport=tls` (as `sips:` does): TLS over TCP, the trunk's certificate checked against its host.
    Tls,
}

/// Which URI parameters an address may carry where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkParams {
    /// `;transport=udp|tcp|tls` (the operator's config and stored addresses).
    Transport,
    /// None: the API takes `host[:port]` only.
    None,
}

/// A parsed trunk address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkAddress {
    /// Host as written, an IPv6 in brackets (goes in the Request-URI: Twilio accepts only its own
    /// `*.pstn.twilio.com` there).
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<TrunkTransport>,
    /// `sips:`: TLS only.
    pub secure: bool,
}

impl TrunkAddress {
    /// Reached over TLS: `sips:` or `;transport=tls`.
    pub fn tls(&self) -> bool {
        self.secure || self.transport == Some(TrunkTransport::Tls)
    }
}

/// Why a text is not a trunk address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrunkAddressError {
    #[error("expected a trunk host such as \"yourtrunk.pstn.twilio.com\" (1-{MAX_TRUNK_ADDRESS_LEN} characters)")]
    Length,
    #[error("only sip: or sips: may precede the trunk host")]
    Scheme,
    #[error("give the trunk host only, without a user part")]
    UserPart,
    #[error("a trunk address has no path, URI headers or spaces")]
    NotHostPort,
    #[error("give host[:port] only, without parameters")]
    Parameters,
    #[error("transport={0} is not supported (udp, tcp or tls)")]
    UnsupportedTransport(String),
    #[error("parameter `{0}` is not supported (only transport=udp, tcp or tls)")]
    UnsupportedParameter(String),
    #[error("not host, host:port, [IPv6] or [IPv6]:port")]
    HostPort,
    #[error("port must be 1-65535")]
    Port,
    #[error("host must be a DNS name or IP address")]
    Host,
}

impl TrunkAddress {
    /// Parses an address, with `;transport=` allowed or not.
    pub fn parse(input: &str, params: TrunkParams) -> Result<TrunkAddress, TrunkAddressError> {
        let s = input.trim();
        let (secure, rest) = if has_prefix(s, "sips:") {
            (true, &s[5..])
        } else if has_prefix(s, "sip:") {
            (false, &s[4..])
        } else {
            (false, s)
        };
        if rest.is_empty() || rest.len() > MAX_TRUNK_ADDRESS_LEN {
            return Err(TrunkAddressError::Length);
        }
        if rest.contains("://") {
            return Err(TrunkAddressError::Scheme);
        }
        if rest.contains('@') {
            return Err(TrunkAddressError::UserPart);
        }
        if rest.contains(['/', '?', ' ']) {
            return Err(TrunkAddressError::NotHostPort);
        }
        let (main, param_text) = match rest.split_once(';') {
            Some((m, p)) => (m, Some(p)),
            None => (rest, None),
        };
        let mut transport = None;
        if let Some(p) = param_text {
            if params == TrunkParams::None {
                return Err(TrunkAddressError::Parameters);
            }
            for item in p.split(';') {
                let (name, value) = item.split_once('=').unwrap_or((item, ""));
                if !name.trim().eq_ignore_ascii_case("transport") {
                    return Err(TrunkAddressError::UnsupportedParameter(bounded(name)));
                }
                let value = value.trim();
                transport = Some(if value.eq_ignore_ascii_case("udp") {
                    TrunkTransport::Udp
                } else if value.eq_ignore_ascii_case("tcp") {
                    TrunkTransport::Tcp
                } else if value.eq_ignore_ascii_case("tls") {
                    TrunkTransport::Tls
                } else {
                    return Err(TrunkAddressError::UnsupportedTransport(bounded(value)));
                });
            }
        }
        let (host, port) = split_host_port(main).ok_or(TrunkAddressError::HostPort)?;
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(TrunkAddressError::Port),
            },
        };
        if !valid_host(host) {
            return Err(TrunkAddressError::Host);
        }
        // A bare IPv6 (`2001:db8::1`) is bracketed for the Request-URI, as `[2001:db8::1]` is.
        let host = if !host.starts_with('[') && host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(TrunkAddress {
            host,
            port,
            transport,
            secure,
        })
    }

    /// `host[:port]` for the Request-URI and To.
    pub fn hostport(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

fn has_prefix(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// At most 32 characters of what was written, for an error message.
fn bounded(s: &str) -> String {
    s.trim().chars().take(32).collect()
}

/// Splits `host[:port]` / `[v6][:port]`; a bare IPv6 (several colons) is a host alone.
pub fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
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

/// An IP address, or a DNS name: labels of 1-63 letters, digits and inner hyphens, 253 characters
/// at most, not all labels numeric (`999.1.1.1` is a mistyped address, not a name).
pub fn valid_host(h: &str) -> bool {
    if h.starts_with('[') {
        return h
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok());
    }
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    if h.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = h.trim_end_matches('.').split('.').collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use TrunkAddressError as E;

    fn p(s: &str) -> Result<TrunkAddress, TrunkAddressError> {
        TrunkAddress::parse(s, TrunkParams::Transport)
    }

    #[test]
    fn addresses_as_customers_write_them() {
        let a = p("yourtrunk.pstn.twilio.com").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.transport, a.secure),
            ("yourtrunk.pstn.twilio.com", None, None, false)
        );
        let a = p("sip:10.0.0.1:5080;transport=udp").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", Some(5080)));
        assert_eq!(a.transport, Some(TrunkTransport::Udp));
        assert_eq!(a.hostport(), "10.0.0.1:5080");
        let a = p("SIP:Trunk.Example.com:5061;Transport=TCP").unwrap();
        assert_eq!(a.hostport(), "Trunk.Example.com:5061", "host kept as written");
        assert_eq!(a.transport, Some(TrunkTransport::Tcp));
        let a = p("[2001:db8::1]:5060").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("[2001:db8::1]", Some(5060)));
        let a = p("sips:trunk.example.com").unwrap();
        assert!(a.secure && a.tls());
        let a = p("trunk.example.com:5061;transport=TLS").unwrap();
        assert!(!a.secure && a.tls());
        assert_eq!(a.transport, Some(TrunkTransport::Tls));
        assert!(!p("trunk.example.com;transport=tcp").unwrap().tls());
        let a = p(" 192.0.2.1 ").unwrap();
        assert_eq!(a.hostport(), "192.0.2.1");
    }

    /// The API accepted a bare IPv6 that call control could not parse (`sip:2001:db8::1` reads as
    /// host `2001`, port `db8::1`): the call failed with `invalid_trunk`. Now it is bracketed.
    #[test]
    fn bare_ipv6_is_bracketed() {
        let a = TrunkAddress::parse("2001:db8::1", TrunkParams::None).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("[2001:db8::1]", None));
        assert_eq!(a.hostport(), "[2001:db8::1]");
    }

    #[test]
    fn each_refusal_is_typed() {
        for (input, want) in [
            ("", E::Length),
            ("   ", E::Length),
            ("sip:", E::Length),
            ("https://x.com", E::Scheme),
            ("user@host", E::UserPart),
            ("sip:user@host", E::UserPart),
            ("x.com/path", E::NotHostPort),
            ("x.com?a=b", E::NotHostPort),
            ("x .com", E::NotHostPort),
            ("host;transport=sctp", E::UnsupportedTransport("sctp".into())),
            ("host;lr", E::UnsupportedParameter("lr".into())),
            ("host;maddr=10.0.0.1", E::UnsupportedParameter("maddr".into())),
            ("a:b:c", E::HostPort),
            ("[2001:db8::1]5060", E::HostPort),
            ("[zz::1]", E::HostPort),
            ("x.com:0", E::Port),
            ("x.com:99999", E::Port),
            ("x.com:", E::Port),
            ("x.com:+5", E::Port),
            ("-x.com", E::Host),
            ("x..com", E::Host),
            ("999.1.1.1", E::Host),
            ("x_y.com", E::Host),
        ] {
            assert_eq!(p(input), Err(want), "{input:?}");
        }
        assert_eq!(p(&"a".repeat(261)), Err(E::Length));
        assert_eq!(p(&format!("{}.com", "a".repeat(64))), Err(E::Host));
    }

    #[test]
    fn the_api_takes_no_parameters() {
        assert_eq!(
            TrunkAddress::parse("x.com;transport=tcp", TrunkParams::None),
            Err(E::Parameters)
        );
        assert!(TrunkAddress::parse("x.com:5060", TrunkParams::None).is_ok());
    }

    #[test]
    fn split_text() {
        assert_eq!(
            split_host_port("trunk.example.com:5061"),
            Some(("trunk.example.com", Some("5061")))
        );
        assert_eq!(split_host_port("[::1]:5060"), Some(("[::1]", Some("5060"))));
        assert_eq!(split_host_port("2001:db8::1"), Some(("2001:db8::1", None)));
    }
}
