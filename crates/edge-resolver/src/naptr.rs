//! NAPTR rule selection (RFC 3263 4.1, RFC 3403): which SRV names to query, in which order.

use crate::target::Transport;

/// A NAPTR record reduced to what SIP location needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRule {
    pub order: u16,
    pub preference: u16,
    /// Raw flags; only "S" (go to SRV) is usable for SIP.
    pub flags: String,
    /// Raw services, e.g. "SIP+D2U".
    pub services: String,
    /// SRV owner name to query next.
    pub replacement: String,
}

/// Most NAPTR rules followed: a zone answering hundreds must not fan out into hundreds of
/// SRV queries.
pub const MAX_NAPTR: usize = 8;

/// Usable rules as `(transport, srv name)`, ordered by order then preference (stable for
/// ties). `secure` (sips: URI) keeps only SIPS+D2T; `want` restricts to one transport.
pub fn select_naptr(rules: &[NaptrRule], secure: bool, want: Option<Transport>) -> Vec<(Transport, String)> {
    let mut usable: Vec<(u16, u16, Transport, &str)> = rules
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter(|r| !r.replacement.is_empty() && r.replacement != ".")
        .filter_map(|r| {
            let t = service_transport(&r.services)?;
            let ok = if secure { t == Transport::Tls } else { true };
            (ok && want.is_none_or(|w| w == t)).then_some((r.order, r.preference, t, r.replacement.as_str()))
        })
        .collect();
    usable.sort_by_key(|&(o, p, _, _)| (o, p));
    usable
        .into_iter()
        .take(MAX_NAPTR)
        .map(|(_, _, t, name)| (t, name.to_string()))
        .collect()
}

/// RFC 3263 service fields (SCTP and WebSocket variants are not supported by the edge).
fn service_transport(s: &str) -> Option<Transport> {
    if s.eq_ignore_ascii_case("SIP+D2U") {
        Some(Transport::Udp)
    } else if s.eq_ignore_ascii_case("SIP+D2T") {
        Some(Transport::Tcp)
    } else if s.eq_ignore_ascii_case("SIPS+D2T") {
        Some(Transport::Tls)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(order: u16, pref: u16, flags: &str, services: &str, repl: &str) -> NaptrRule {
        NaptrRule {
            order,
            preference: pref,
            flags: flags.into(),
            services: services.into(),
            replacement: repl.into(),
        }
    }

    #[test]
    fn orders_filters_and_maps_services() {
        let rules = [
            rule(90, 50, "s", "SIP+D2T", "_sip._tcp.x."),
            rule(50, 50, "s", "SIPS+D2T", "_sips._tcp.x."),
            rule(90, 40, "S", "SIP+D2U", "_sip._udp.x."),
            rule(10, 10, "u", "SIP+D2U", "!regexp!"),
            rule(20, 10, "s", "SIP+D2S", "_sip._sctp.x."),
        ];
        assert_eq!(
            select_naptr(&rules, false, None),
            vec![
                (Transport::Tls, "_sips._tcp.x.".into()),
                (Transport::Udp, "_sip._udp.x.".into()),
                (Transport::Tcp, "_sip._tcp.x.".into()),
            ]
        );
        assert_eq!(
            select_naptr(&rules, true, None),
            vec![(Transport::Tls, "_sips._tcp.x.".into())]
        );
        assert_eq!(
            select_naptr(&rules, false, Some(Transport::Tcp)),
            vec![(Transport::Tcp, "_sip._tcp.x.".into())]
        );
    }
}
