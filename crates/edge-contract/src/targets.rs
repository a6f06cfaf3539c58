//! Which addresses the edge may send SIP to on a customer's behalf. An agent's `sip_uri` or a
//! trunk address naming loopback, link-local (cloud metadata), multicast, unspecified or private
//! space would let any customer make the edge write INVITEs into the operator's own network, so
//! those are refused unless the operator lists them in `[security] internal_targets`. The API
//! checks what it can see at write time (IP literals, `localhost`); the call core checks again
//! after DNS, so a name cannot be re-pointed later.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The operator's exceptions (`[security] internal_targets`). Empty: nothing internal allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    pub internal_targets: Vec<IpNet>,
}

impl TargetPolicy {
    pub fn new(internal_targets: Vec<IpNet>) -> Self {
        Self { internal_targets }
    }

    /// `None` when the edge may send to `ip`; otherwise what kind of address it is, in words.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = canonical(ip);
        let kind = internal_kind(ip)?;
        if self.internal_targets.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        Some(kind)
    }

    /// Write-time check of a host as written (`[v6]`, an IP, or a name). Names other than
    /// `localhost` pass here; the call core checks what they resolve to.
    pub fn host_refusal(&self, host: &str) -> Option<&'static str> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if h == "localhost" || h.ends_with(".localhost") {
            return self.refusal(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        match h.parse::<IpAddr>() {
            Ok(ip) => self.refusal(ip),
            Err(_) => None,
        }
    }
}

/// IPv4-mapped/compatible IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if ip.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
        // RFC 1918 and carrier-grade NAT (RFC 6598).
        Some("private")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique local (and deprecated site-local).
        Some("private")
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 of an embedded IPv4 address: judge that address.
        v4_kind(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_listed() {
        let none = TargetPolicy::default();
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("10.1.2.3", "private"),
            ("192.168.1.1", "private"),
            ("172.16.0.1", "private"),
            ("100.64.0.1", "private"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast or reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "private"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ] {
            assert_eq!(none.refusal(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["8.8.8.8", "54.172.60.1", "2001:4860::8888"] {
            assert_eq!(none.refusal(ip.parse().unwrap()), None, "{ip}");
        }
        let lo = TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        assert_eq!(lo.refusal("127.0.0.1".parse().unwrap()), None);
        assert_eq!(lo.refusal("::ffff:127.0.0.1".parse().unwrap()), None);
        assert_eq!(lo.refusal("10.0.0.1".parse().unwrap()), Some("private"));
        assert_eq!(none.host_refusal("LocalHost"), Some("loopback"));
        assert_eq!(none.host_refusal("[::1]"), Some("loopback"));
        assert_eq!(none.host_refusal("a.localhost."), Some("loopback"));
        assert_eq!(none.host_refusal("trunk.example.com"), None);
        assert_eq!(lo.host_refusal("localhost"), None);
    }
}
