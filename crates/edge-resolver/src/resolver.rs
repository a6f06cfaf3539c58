//! RFC 3263 4.1/4.2 over `hickory-resolver`: IP literal -> as is; explicit port -> A/AAAA;
//! otherwise NAPTR -> SRV -> A/AAAA, then SRV without NAPTR, then A/AAAA on the default port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig as HickoryConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::error::ResolveError;
use crate::naptr::{select_naptr, NaptrRule};
use crate::srv::{order_srv, Rng, SrvRecord};
use crate::target::{Target, Transport};

/// Most targets returned: enough for any real trunk, bounded against hostile zones.
const MAX_TARGETS: usize = 32;
/// Longest host name accepted (RFC 1035 limit on the presentation form).
const MAX_HOST_LEN: usize = 253;

/// Where to send DNS queries and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// `None`: the system's resolv.conf.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Per DNS query; a whole [`Resolver::resolve`] is bounded by 8 times this.
    pub timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// RFC 3263 resolver. Cheap to share behind an `Arc`; hickory caches answers by TTL.
pub struct Resolver {
    inner: TokioResolver,
    deadline: Duration,
    rng: Mutex<Rng>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Outcome of one record lookup, with "nothing there" separated from real failures.
enum Found<T> {
    Records(Vec<T>),
    NoRecords,
    NxDomain,
}

impl Resolver {
    /// Builds the resolver. Must be called inside a tokio runtime only when lookups run;
    /// construction itself does no I/O except reading resolv.conf when `nameservers` is `None`.
    pub fn new(config: ResolverConfig) -> Result<Resolver, ResolveError> {
        let timeout = config.timeout.max(Duration::from_millis(10));
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        // Trunk carriers publish A records first and many edges lack IPv6 egress.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.ndots = 0;
        let builder = match &config.nameservers {
            Some(list) if list.is_empty() => return Err(ResolveError::Config("empty nameserver list".into())),
            Some(list) => {
                let servers = list
                    .iter()
                    .map(|sa| {
                        let mut ns = NameServerConfig::udp_and_tcp(sa.ip());
                        for c in &mut ns.connections {
                            c.port = sa.port();
                        }
                        ns
                    })
                    .collect();
                TokioResolver::builder_with_config(
                    HickoryConfig::from_name_servers(servers),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| ResolveError::Config(format!("system resolver config: {e}")))?,
        };
        let inner = builder
            .with_options(opts)
            .build()
            .map_err(|e| ResolveError::Config(e.to_string()))?;
        Ok(Resolver {
            inner,
            deadline: timeout.saturating_mul(8),
            rng: Mutex::new(Rng::new()),
        })
    }

    /// Targets for a SIP URI host in the order to try them (RFC 3263 4).
    ///
    /// `port`/`transport` are the URI's explicit port and `transport=` parameter; `secure` is
    /// true for `sips:` URIs (TLS only).
    pub async fn resolve(
        &self,
        uri_host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Result<Vec<Target>, ResolveError> {
        let host = normalize_host(uri_host)?;
        let transport = match (secure, transport) {
            // sips: always means TLS over TCP; a contradictory transport param is ignored.
            (true, _) => Some(Transport::Tls),
            (false, t) => t,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            let t = transport.unwrap_or(Transport::Udp);
            let port = port.unwrap_or(t.default_port());
            return Ok(vec![Target {
                addr: SocketAddr::new(ip, port),
                transport: t,
            }]);
        }
        match tokio::time::timeout(self.deadline, self.resolve_name(&host, port, transport)).await {
            Ok(r) => r,
            Err(_) => Err(ResolveError::Timeout(host)),
        }
    }

    async fn resolve_name(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
    ) -> Result<Vec<Target>, ResolveError> {
        let fqdn = to_name(host)?;
        // 4.2: an explicit port means no NAPTR/SRV.
        if let Some(port) = port {
            let t = transport.unwrap_or(Transport::Udp);
            return self.addresses(host, &fqdn, port, t).await;
        }

        let secure = transport == Some(Transport::Tls);
        // 4.1: NAPTR only when the transport is not already fixed.
        let mut srv_names: Vec<(Transport, String)> = Vec::new();
        if transport.is_none() {
            match self.naptr(host, &fqdn).await? {
                Found::Records(rules) => srv_names = select_naptr(&rules, secure, None),
                Found::NxDomain => return Err(ResolveError::NxDomain(host.to_string())),
                Found::NoRecords => {}
            }
        }
        let mut targets = Vec::new();
        for (t, name) in &srv_names {
            self.srv_targets(host, name, *t, &mut targets).await?;
        }
        if targets.is_empty() {
            // No (usable) NAPTR: SRV for the transports we support, in our preference order.
            let candidates: &[Transport] = match transport {
                Some(t) => &[t][..],
                None => &[Transport::Udp, Transport::Tcp][..],
            };
            for &t in candidates {
                let name = format!("{}{}", t.srv_prefix(), fqdn.to_ascii());
                self.srv_targets(host, &name, t, &mut targets).await?;
            }
        }
        if !targets.is_empty() {
            return Ok(targets);
        }
        // 4.2: no SRV either: A/AAAA of the host on the default port.
        let t = transport.unwrap_or(Transport::Udp);
        self.addresses(host, &fqdn, t.default_port(), t).await
    }

    async fn naptr(&self, host: &str, fqdn: &Name) -> Result<Found<NaptrRule>, ResolveError> {
        let lookup = self.inner.lookup(fqdn.clone(), RecordType::NAPTR).await;
        classify(host, lookup, |data| match data {
            RData::NAPTR(n) => Some(NaptrRule {
                order: n.order,
                preference: n.preference,
                flags: String::from_utf8_lossy(&n.flags).into_owned(),
                services: String::from_utf8_lossy(&n.services).into_owned(),
                replacement: n.replacement.to_ascii(),
            }),
            _ => None,
        })
    }

    /// Appends the SRV targets of `name`, each resolved to its addresses, in RFC 2782 order.
    async fn srv_targets(
        &self,
        host: &str,
        name: &str,
        transport: Transport,
        out: &mut Vec<Target>,
    ) -> Result<(), ResolveError> {
        let Ok(srv_name) = Name::from_ascii(name) else {
            return Ok(()); // an unusable NAPTR replacement is skipped, not fatal
        };
        let lookup = self.inner.lookup(srv_name, RecordType::SRV).await;
        let records = match classify(host, lookup, |data| match data {
            RData::SRV(s) => Some(SrvRecord {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: s.target.to_ascii(),
            }),
            _ => None,
        })? {
            Found::Records(r) => r,
            Found::NoRecords | Found::NxDomain => return Ok(()),
        };
        let ordered = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            order_srv(records, &mut |n| rng.upto(n))
        };
        for r in ordered {
            if out.len() >= MAX_TARGETS {
                break;
            }
            let Ok(target_name) = Name::from_ascii(&r.target) else {
                continue;
            };
            // A dead SRV target host must not hide the others.
            match self.addresses(host, &target_name, r.port, transport).await {
                Ok(addrs) => push_unique(out, addrs),
                Err(ResolveError::Timeout(h)) => return Err(ResolveError::Timeout(h)),
                Err(e) => {
                    tracing::debug!(target = %r.target, error = %e, "SRV target has no address")
                }
            }
        }
        Ok(())
    }

    async fn addresses(
        &self,
        host: &str,
        name: &Name,
        port: u16,
        transport: Transport,
    ) -> Result<Vec<Target>, ResolveError> {
        match self.inner.lookup_ip(name.clone()).await {
            Ok(ips) => {
                let v: Vec<Target> = ips
                    .iter()
                    .take(MAX_TARGETS)
                    .map(|ip| Target {
                        addr: SocketAddr::new(ip, port),
                        transport,
                    })
                    .collect();
                if v.is_empty() {
                    Err(ResolveError::NotFound(host.to_string()))
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_nx_domain() => Err(ResolveError::NxDomain(name.to_ascii())),
            Err(e) if e.is_no_records_found() => Err(ResolveError::NotFound(host.to_string())),
            Err(e) => Err(net_error(host, &e)),
        }
    }
}

fn classify<T>(
    host: &str,
    lookup: Result<hickory_resolver::lookup::Lookup, NetError>,
    map: impl Fn(&RData) -> Option<T>,
) -> Result<Found<T>, ResolveError> {
    match lookup {
        Ok(l) => {
            let v: Vec<T> = l.answers().iter().filter_map(|r| map(&r.data)).collect();
            Ok(if v.is_empty() {
                Found::NoRecords
            } else {
                Found::Records(v)
            })
        }
        Err(e) if e.is_nx_domain() => Ok(Found::NxDomain),
        Err(e) if e.is_no_records_found() => Ok(Found::NoRecords),
        Err(NetError::Timeout) => Err(ResolveError::Timeout(host.to_string())),
        // SERVFAIL and friends on NAPTR/SRV: RFC 3263 falls through to the next step.
        Err(e) => {
            tracing::debug!(host, error = %e, "NAPTR/SRV lookup failed, falling back");
            Ok(Found::NoRecords)
        }
    }
}

fn net_error(host: &str, e: &NetError) -> ResolveError {
    if matches!(e, NetError::Timeout) {
        ResolveError::Timeout(host.to_string())
    } else {
        ResolveError::Dns {
            host: host.to_string(),
            reason: e.to_string(),
        }
    }
}

fn push_unique(out: &mut Vec<Target>, addrs: Vec<Target>) {
    for a in addrs {
        if out.len() >= MAX_TARGETS {
            break;
        }
        if !out.contains(&a) {
            out.push(a);
        }
    }
}

/// Strips IPv6 brackets and a trailing dot; refuses empty or overlong hosts.
fn normalize_host(h: &str) -> Result<String, ResolveError> {
    let h = h.trim();
    let h = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(h);
    if h.is_empty() || h.len() > MAX_HOST_LEN + 1 {
        return Err(ResolveError::InvalidHost(h.chars().take(64).collect()));
    }
    Ok(h.to_ascii_lowercase())
}

/// Absolute DNS name, so search domains never rewrite a carrier's host.
fn to_name(host: &str) -> Result<Name, ResolveError> {
    let fq = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let valid = fq
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid || fq.contains("..") {
        return Err(ResolveError::InvalidHost(host.chars().take(64).collect()));
    }
    Name::from_ascii(&fq).map_err(|_| ResolveError::InvalidHost(host.chars().take(64).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("[::1]").unwrap(), "::1");
        assert_eq!(normalize_host("SIP.Telnyx.com").unwrap(), "sip.telnyx.com");
        assert!(normalize_host("").is_err());
        assert!(to_name("bad host").is_err());
        assert!(to_name("a..b").is_err());
        assert_eq!(to_name("a.b").unwrap().to_ascii(), "a.b.");
    }
}
