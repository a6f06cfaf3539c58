//! `[outbound]`, `[[outbound.trunks]]` and `[[agent_networks]]`: how agents' calls leave through trunks.
//!
//! Read top to bottom, an operator sees the policy: which sources are trusted agents, how others prove who
//! they are (digest), how fast each trunk may be fed (calls per second, and how long a call may wait for its
//! slot), and which trunk carries a purchased number's calls.

use std::net::SocketAddr;
use std::time::Duration;

use edge_contract::{TrunkAddress, TrunkParams};
use edge_store::Provider;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentNetwork {
    name: Spanned<String>,
    allow: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOutbound {
    agent_digest: bool,
    agent_digest_from: Option<Vec<Spanned<String>>>,
    agent_digest_nonce_ttl_s: Spanned<u64>,
    agent_digest_failures_before_backoff: Spanned<u64>,
    agent_digest_max_backoff_s: Spanned<u64>,
    agent_digest_lockout_after: Spanned<u64>,
    agent_digest_lockout_s: Spanned<u64>,
    auth_realm: Option<Spanned<String>>,
    trunk_setup_timeout_ms: Spanned<u64>,
    twilio_cps: Spanned<f64>,
    telnyx_cps: Spanned<f64>,
    default_cps: Spanned<f64>,
    max_pacing_wait_ms: Spanned<u64>,
    trunk_ring_timeout_s: Spanned<u64>,
    nameservers: Option<Vec<Spanned<String>>>,
    dns_timeout_ms: Spanned<u64>,
    tls_extra_roots: Vec<Spanned<String>>,
    agent_tls_client_certificate: Option<Spanned<String>>,
    agent_tls_client_key: Option<Spanned<String>>,
    trunks: Vec<RawTrunk>,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            agent_digest: true,
            agent_digest_from: None,
            agent_digest_nonce_ttl_s: Spanned::new(0..0, 30),
            agent_digest_failures_before_backoff: Spanned::new(0..0, 3),
            agent_digest_max_backoff_s: Spanned::new(0..0, 60),
            agent_digest_lockout_after: Spanned::new(0..0, 20),
            agent_digest_lockout_s: Spanned::new(0..0, 900),
            auth_realm: None,
            trunk_setup_timeout_ms: Spanned::new(0..0, 2_000),
            twilio_cps: Spanned::new(0..0, 1.0),
            telnyx_cps: Spanned::new(0..0, 20.0),
            default_cps: Spanned::new(0..0, 10.0),
            max_pacing_wait_ms: Spanned::new(0..0, 10_000),
            trunk_ring_timeout_s: Spanned::new(0..0, 60),
            nameservers: None,
            dns_timeout_ms: Spanned::new(0..0, 2_000),
            tls_extra_roots: Vec::new(),
            agent_tls_client_certificate: None,
            agent_tls_client_key: None,
            trunks: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    provider: Spanned<String>,
    address: Spanned<String>,
    username: Option<String>,
    password: Option<String>,
    cps: Option<Spanned<f64>>,
    tls_client_certificate: Option<Spanned<String>>,
    tls_client_key: Option<Spanned<String>>,
    media_encryption: Option<Spanned<String>>,
}

/// Sources whose INVITEs are agents placing outbound calls, trusted without a digest challenge.
#[derive(Debug, Clone)]
pub struct AgentNetwork {
    pub name: String,
    pub allow: Vec<IpNet>,
}

/// The operator's own trunk for one provider: carries purchased numbers' outbound calls.
#[derive(Clone)]
pub struct OperatorTrunk {
    pub provider: Provider,
    /// `host[:port][;transport=udp]`, as in a number's `provider_config.trunk_address`.
    pub address: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Overrides the provider's default calls per second.
    pub cps: Option<f64>,
    /// Name of the client certificate presented to it over TLS (mutual TLS), in
    /// [`OutboundSettings::tls`]; `None`: none.
    pub tls_identity: Option<String>,
    /// SRTP toward this trunk's leg (`media_encryption`, default `none`), as a customer trunk's
    /// `provider_config.media_encryption`.
    pub media_encryption: edge_media::MediaEncryption,
}

impl std::fmt::Debug for OperatorTrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorTrunk")
            .field("provider", &self.provider)
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cps", &self.cps)
            .field("tls_identity", &self.tls_identity)
            .field("media_encryption", &self.media_encryption)
            .finish()
    }
}

/// Validated `[outbound]`.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// Agents outside `[[agent_networks]]` may place calls by answering a digest challenge (407) with the
    /// `sip_username`/`sip_password` set on them through /v1/agents.
    pub agent_digest: bool,
    /// Outsiders digest is offered to (`agent_digest_from`); `None`: anyone, when
    /// `routing.unknown_source = "reject"`, and no outsider when it is `"drop"`.
    pub agent_digest_from: Option<Vec<IpNet>>,
    /// How long a challenge's nonce may be answered (`stale=true` after).
    pub agent_digest_nonce_ttl: Duration,
    /// Throttling of failed digest checks per source and per username.
    pub agent_digest_guard: crate::sip::digest_guard::GuardConfig,
    /// Realm of the digest challenge to agents; `None`: the advertised SIP host.
    pub auth_realm: Option<String>,
    pub twilio_cps: f64,
    pub telnyx_cps: f64,
    pub default_cps: f64,
    /// Longest a call waits for its trunk's next slot before it fails with a pacing error.
    pub max_pacing_wait: Duration,
    /// A trunk target that sends nothing (not even 100 Trying) within this is dead: the next one is tried.
    pub trunk_setup_timeout: Duration,
    /// An answer from the trunk must come within this.
    pub trunk_ring_timeout: Duration,
    /// DNS servers for trunk hosts; `None`: the system's resolv.conf.
    pub nameservers: Option<Vec<SocketAddr>>,
    pub dns_timeout: Duration,
    pub trunks: Vec<OperatorTrunk>,
    /// TLS toward trunks and agents: extra roots, client certificates (`tls_extra_roots`,
    /// `agent_tls_client_*`, `[[outbound.trunks]] tls_client_*`), checked at load.
    pub tls: crate::transport::tls_client::TlsClientSettings,
}

impl OutboundSettings {
    /// Whether agents reached over TLS are shown a client certificate (`agent_tls_client_certificate`).
    pub fn agent_tls_identity(&self) -> Option<&str> {
        use crate::transport::tls_client::AGENTS;
        self.tls.identities.iter().any(|(n, _)| n == AGENTS).then_some(AGENTS)
    }
}

impl OutboundSettings {
    /// Calls per second allowed on a trunk of `provider` without its own figure (Twilio: 1 CPS per
    /// trunk and region by default; Telnyx: 20 per source).
    pub fn default_cps_for(&self, provider: Provider) -> f64 {
        match provider {
            Provider::Twilio => self.twilio_cps,
            Provider::Telnyx => self.telnyx_cps,
            Provider::Local => self.default_cps,
        }
    }

    /// The operator's trunk for `provider`.
    pub fn operator_trunk(&self, provider: Provider) -> Option<&OperatorTrunk> {
        self.trunks.iter().find(|t| t.provider == provider)
    }
}

impl Validator<'_> {
    /// A list of CIDRs or bare IPs under `key`.
    pub(super) fn cidrs(&self, key: &str, list: &[Spanned<String>]) -> Result<Vec<IpNet>, ConfigError> {
        let mut out = Vec::with_capacity(list.len());
        for a in list {
            let v = a.get_ref().trim();
            let net = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from));
            match net {
                Ok(n) => out.push(n.trunc()),
                Err(_) => {
                    return self.err(
                        key,
                        a.span(),
                        format!("`{v}` is not a CIDR (e.g. \"54.172.60.0/30\") or an IP address"),
                    )
                }
            }
        }
        Ok(out)
    }

    /// A source is either a carrier or an agent: an agent network that overlaps a carrier's range would
    /// have that carrier's INVITEs taken for agents' outbound calls, or an agent's for inbound calls (the
    /// carrier lists are consulted first), depending on which address sent. Refused, naming both ranges.
    fn apart_from_carriers(
        &self,
        key: &str,
        raw: &[Spanned<String>],
        allow: &[IpNet],
        carriers: &[super::Carrier],
    ) -> Result<(), ConfigError> {
        for (net, text) in allow.iter().zip(raw) {
            for (ci, c) in carriers.iter().enumerate() {
                if let Some(range) = c.allow.iter().find(|r| r.contains(net) || net.contains(*r)) {
                    return self.err(
                        key,
                        text.span(),
                        format!(
                            "`{net}` overlaps `{range}` of carriers[{ci}] (`{}`): a source in both would be \
                             taken for the carrier; agent networks and carrier ranges must not overlap",
                            c.name
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    pub(super) fn agent_networks(
        &self,
        raw: &[RawAgentNetwork],
        carriers: &[super::Carrier],
    ) -> Result<Vec<AgentNetwork>, ConfigError> {
        let mut out: Vec<AgentNetwork> = Vec::with_capacity(raw.len());
        for (i, n) in raw.iter().enumerate() {
            let name = n.name.get_ref().trim();
            if name.is_empty() || name.len() > 64 {
                return self.err(
                    &format!("agent_networks[{i}].name"),
                    n.name.span(),
                    "must be 1-64 characters",
                );
            }
            let key = format!("agent_networks[{i}].allow");
            let allow = self.cidrs(&key, &n.allow)?;
            self.apart_from_carriers(&key, &n.allow, &allow, carriers)?;
            out.push(AgentNetwork {
                name: name.to_owned(),
                allow,
            });
        }
        Ok(out)
    }

    fn cps(&self, key: &str, v: &Spanned<f64>) -> Result<f64, ConfigError> {
        let n = *v.get_ref();
        if !(0.01..=10_000.0).contains(&n) {
            return self.err(
                key,
                v.span(),
                format!("{n} is out of range 0.01..=10000 calls per second"),
            );
        }
        Ok(n)
    }

    pub(super) fn outbound(&self, o: &RawOutbound) -> Result<OutboundSettings, ConfigError> {
        let nameservers = match &o.nameservers {
            None => None,
            Some(list) if list.is_empty() => {
                return self.err(
                    "outbound.nameservers",
                    0..0,
                    "an empty list resolves nothing; leave it out to use the system's resolver",
                )
            }
            Some(list) => {
                let mut v = Vec::with_capacity(list.len());
                for s in list {
                    let t = s.get_ref().trim();
                    let addr = t
                        .parse::<SocketAddr>()
                        .or_else(|_| t.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
                    match addr {
                        Ok(a) => v.push(a),
                        Err(_) => {
                            return self.err(
                                "outbound.nameservers",
                                s.span(),
                                format!("`{t}` is not an IP address or IP:port"),
                            )
                        }
                    }
                }
                Some(v)
            }
        };
        let mut identities = Vec::new();
        if let Some(f) = self.client_pair(
            "outbound.agent_tls_client",
            &o.agent_tls_client_certificate,
            &o.agent_tls_client_key,
            0..0,
        )? {
            identities.push((crate::transport::tls_client::AGENTS.to_owned(), f));
        }
        let mut trunks: Vec<OperatorTrunk> = Vec::with_capacity(o.trunks.len());
        for (i, t) in o.trunks.iter().enumerate() {
            let provider = match Provider::parse(t.provider.get_ref().trim()) {
                Some(p) => p,
                None => {
                    return self.err(
                        &format!("outbound.trunks[{i}].provider"),
                        t.provider.span(),
                        format!("`{}`: expected twilio, telnyx or local", t.provider.get_ref()),
                    )
                }
            };
            if trunks.iter().any(|k| k.provider == provider) {
                return self.err(
                    &format!("outbound.trunks[{i}].provider"),
                    t.provider.span(),
                    format!("a trunk for `{}` is declared twice", provider.as_str()),
                );
            }
            let address = t.address.get_ref().trim();
            if let Err(e) = TrunkAddress::parse(address, TrunkParams::Transport) {
                return self.err(
                    &format!("outbound.trunks[{i}].address"),
                    t.address.span(),
                    format!("`{address}`: {e}"),
                );
            }
            if t.username.is_some() != t.password.is_some() {
                return self.err(
                    &format!("outbound.trunks[{i}].password"),
                    t.address.span(),
                    "username and password go together (digest credentials of the trunk)",
                );
            }
            let cps = match &t.cps {
                Some(c) => Some(self.cps(&format!("outbound.trunks[{i}].cps"), c)?),
                None => None,
            };
            let files = self.client_pair(
                &format!("outbound.trunks[{i}].tls_client"),
                &t.tls_client_certificate,
                &t.tls_client_key,
                t.address.span(),
            )?;
            let tls_identity = files.map(|f| {
                let name = crate::transport::tls_client::trunk_identity(provider.as_str());
                identities.push((name.clone(), f));
                name
            });
            let media_encryption =
                self.media_encryption(&format!("outbound.trunks[{i}].media_encryption"), &t.media_encryption)?;
            trunks.push(OperatorTrunk {
                provider,
                address: address.to_owned(),
                username: t.username.clone(),
                password: t.password.clone(),
                cps,
                tls_identity,
                media_encryption,
            });
        }
        let agent_digest_from = match &o.agent_digest_from {
            Some(list) => Some(self.cidrs("outbound.agent_digest_from", list)?),
            None => None,
        };
        let before = self.range(
            "outbound.agent_digest_failures_before_backoff",
            &o.agent_digest_failures_before_backoff,
            1,
            1_000,
        )? as u32;
        let lockout_after = self.range(
            "outbound.agent_digest_lockout_after",
            &o.agent_digest_lockout_after,
            1,
            100_000,
        )? as u32;
        if lockout_after < before {
            return self.err(
                "outbound.agent_digest_lockout_after",
                o.agent_digest_lockout_after.span(),
                format!("{lockout_after} is less than outbound.agent_digest_failures_before_backoff ({before})"),
            );
        }
        let lockout =
            Duration::from_secs(self.range("outbound.agent_digest_lockout_s", &o.agent_digest_lockout_s, 1, 86_400)?);
        let agent_digest_guard = crate::sip::digest_guard::GuardConfig {
            failures_before_backoff: before,
            max_backoff: Duration::from_secs(self.range(
                "outbound.agent_digest_max_backoff_s",
                &o.agent_digest_max_backoff_s,
                1,
                3_600,
            )?),
            lockout_after,
            lockout,
            forget_after: lockout.max(Duration::from_secs(900)),
            ..crate::sip::digest_guard::GuardConfig::default()
        };
        Ok(OutboundSettings {
            agent_digest: o.agent_digest,
            agent_digest_from,
            agent_digest_nonce_ttl: Duration::from_secs(self.range(
                "outbound.agent_digest_nonce_ttl_s",
                &o.agent_digest_nonce_ttl_s,
                5,
                3_600,
            )?),
            agent_digest_guard,
            trunk_setup_timeout: Duration::from_millis(self.range(
                "outbound.trunk_setup_timeout_ms",
                &o.trunk_setup_timeout_ms,
                50,
                60_000,
            )?),
            auth_realm: o.auth_realm.as_ref().map(|r| r.get_ref().trim().to_owned()),
            twilio_cps: self.cps("outbound.twilio_cps", &o.twilio_cps)?,
            telnyx_cps: self.cps("outbound.telnyx_cps", &o.telnyx_cps)?,
            default_cps: self.cps("outbound.default_cps", &o.default_cps)?,
            max_pacing_wait: Duration::from_millis(self.range(
                "outbound.max_pacing_wait_ms",
                &o.max_pacing_wait_ms,
                0,
                600_000,
            )?),
            trunk_ring_timeout: Duration::from_secs(self.range(
                "outbound.trunk_ring_timeout_s",
                &o.trunk_ring_timeout_s,
                1,
                600,
            )?),
            nameservers,
            dns_timeout: Duration::from_millis(self.range("outbound.dns_timeout_ms", &o.dns_timeout_ms, 10, 30_000)?),
            trunks,
            tls: self.tls_client(&o.tls_extra_roots, identities)?,
        })
    }

    /// A client certificate and its key (`<key>_certificate`, `<key>_key`): both or neither.
    fn client_pair(
        &self,
        key: &str,
        cert: &Option<Spanned<String>>,
        private_key: &Option<Spanned<String>>,
        span: std::ops::Range<usize>,
    ) -> Result<Option<crate::transport::tls::TlsFiles>, ConfigError> {
        match (cert, private_key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => Ok(Some(crate::transport::tls::TlsFiles {
                certificate: c.get_ref().trim().into(),
                private_key: k.get_ref().trim().into(),
            })),
            (Some(c), None) => self.err(
                &format!("{key}_key"),
                c.span(),
                "a client certificate needs its private key (PEM path)",
            ),
            (None, Some(k)) => self.err(
                &format!("{key}_certificate"),
                if span.is_empty() { k.span() } else { span },
                "a client private key needs its certificate (PEM path)",
            ),
        }
    }

    /// Extra roots and client certificates, read now so that a bad file stops `check` and the start.
    fn tls_client(
        &self,
        roots: &[Spanned<String>],
        identities: Vec<(String, crate::transport::tls::TlsFiles)>,
    ) -> Result<crate::transport::tls_client::TlsClientSettings, ConfigError> {
        use crate::transport::tls_client::{ClientTls, TlsClientSettings};
        let settings = TlsClientSettings {
            extra_roots: roots.iter().map(|r| r.get_ref().trim().into()).collect(),
            identities,
        };
        if let Err(e) = ClientTls::load(&settings) {
            use crate::transport::tls_client::{TlsClientError as E, AGENTS};
            let key = match &e {
                E::Identity { identity, .. } | E::Config { identity, .. } if identity == AGENTS => {
                    "outbound.agent_tls_client_certificate"
                }
                E::Identity { .. } | E::Config { .. } => "outbound.trunks.tls_client_certificate",
                _ => "outbound.tls_extra_roots",
            };
            let span = roots.first().map(|r| r.span()).unwrap_or(0..0);
            return self.err(key, span, e.to_string());
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("edge.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn outbound_policy_reads_as_written() {
        let c = parse(
            "[outbound]\ntwilio_cps = 2.5\nnameservers = [\"127.0.0.1:5353\", \"10.0.0.2\"]\n\
             [[outbound.trunks]]\nprovider = \"telnyx\"\naddress = \"sip.telnyx.com;transport=tcp\"\n\
             username = \"u\"\npassword = \"p\"\n[[agent_networks]]\nname = \"vpc\"\nallow = [\"10.20.0.0/16\"]\n",
        )
        .unwrap();
        assert_eq!(c.outbound.twilio_cps, 2.5);
        assert_eq!(c.outbound.telnyx_cps, 20.0, "Telnyx's default");
        assert_eq!(
            c.outbound.nameservers,
            Some(vec!["127.0.0.1:5353".parse().unwrap(), "10.0.0.2:53".parse().unwrap()])
        );
        let t = c.outbound.operator_trunk(edge_store::Provider::Telnyx).unwrap();
        assert_eq!(t.address, "sip.telnyx.com;transport=tcp");
        assert!(!format!("{t:?}").contains("\"p\""), "password redacted in Debug");
        assert!(c.agent_network_for("10.20.3.4".parse().unwrap()).is_some());
        assert!(c.agent_network_for("10.21.0.1".parse().unwrap()).is_none());
    }

    /// Operator trunks go through the parser the API and call control use. Port 0, a mistyped IP
    /// (`999.1.1.1`) and parameters other than `transport` used to pass here and fail every call.
    #[test]
    fn trunk_addresses_use_the_one_parser() {
        let trunk = |a: &str| {
            parse(&format!(
                "[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"{a}\"\n"
            ))
        };
        for good in [
            "t.example",
            "sip:10.0.0.1:5080;transport=udp",
            "[2001:db8::1]:5060",
            "2001:db8::1",
        ] {
            assert!(trunk(good).is_ok(), "{good}: {:?}", trunk(good).err());
        }
        for (bad, why) in [
            ("t.example:0", "port must be 1-65535"),
            ("999.1.1.1", "host must be a DNS name or IP address"),
            ("t.example;lr", "parameter `lr` is not supported"),
            ("t.example;transport=sctp", "transport=sctp is not supported"),
            ("user@t.example", "without a user part"),
        ] {
            let e = trunk(bad).unwrap_err();
            assert!(
                e.contains(":3: key `outbound.trunks[0].address`") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn tls_client_files_are_checked_at_load() {
        let e = parse("[outbound]\ntls_extra_roots = [\"/nonexistent/ca.pem\"]\n").unwrap_err();
        assert!(
            e.contains(":2: key `outbound.tls_extra_roots`") && e.contains("ca.pem"),
            "{e}"
        );
        let e = parse("[outbound]\nagent_tls_client_certificate = \"/x.crt\"\n").unwrap_err();
        assert!(
            e.contains("outbound.agent_tls_client_key") && e.contains("private key"),
            "{e}"
        );
        let e = parse(
            "[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"sips:t.example\"\n\
             tls_client_certificate = \"/nonexistent/c.crt\"\ntls_client_key = \"/nonexistent/c.key\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("outbound.trunks.tls_client_certificate") && e.contains("c.crt"),
            "{e}"
        );
        let c =
            parse("[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"t.example:5061;transport=tls\"\n").unwrap();
        assert_eq!(c.outbound.trunks[0].tls_identity, None);
    }

    #[test]
    fn an_operator_trunks_media_encryption_is_read_and_a_bad_one_named_by_key_and_line() {
        let c = parse("[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"t.example\"\n").unwrap();
        assert_eq!(c.outbound.trunks[0].media_encryption, edge_media::MediaEncryption::None);
        let c = parse(
            "[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"t.example\"\nmedia_encryption = \"srtp_required\"\n",
        )
        .unwrap();
        assert_eq!(
            c.outbound.trunks[0].media_encryption,
            edge_media::MediaEncryption::SrtpRequired
        );
        let e =
            parse("[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"t.example\"\nmedia_encryption = \"zrtp\"\n")
                .unwrap_err();
        assert!(
            e.contains("edge.toml:4: key `outbound.trunks[0].media_encryption`") && e.contains("srtp_required"),
            "{e}"
        );
    }

    #[test]
    fn outbound_errors_name_key_and_line() {
        let e = parse("[outbound]\n\ndefault_cps = 0\n").unwrap_err();
        assert!(e.contains("edge.toml:3: key `outbound.default_cps`"), "{e}");
        let e = parse("[[outbound.trunks]]\nprovider = \"bandwidth\"\naddress = \"h\"\n").unwrap_err();
        assert!(e.contains(":2: key `outbound.trunks[0].provider`"), "{e}");
        let e = parse("[[outbound.trunks]]\nprovider = \"twilio\"\naddress = \"h\"\nusername = \"u\"\n").unwrap_err();
        assert!(
            e.contains("outbound.trunks[0].password") && e.contains("go together"),
            "{e}"
        );
        let e = parse("[[agent_networks]]\nname = \"a\"\nallow = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(e.contains(":3: key `agent_networks[0].allow`"), "{e}");
        let e = parse("[outbound]\nnameservers = [\"dns.example\"]\n").unwrap_err();
        assert!(e.contains("outbound.nameservers"), "{e}");
        let e = parse("[outbound]\nagent_digest_from = [\"203.0.113.0/33\"]\n").unwrap_err();
        assert!(e.contains(":2: key `outbound.agent_digest_from`"), "{e}");
        let e = parse("[outbound]\nagent_digest_nonce_ttl_s = 1\n").unwrap_err();
        assert!(e.contains("key `outbound.agent_digest_nonce_ttl_s`"), "{e}");
        let e = parse("[outbound]\nagent_digest_failures_before_backoff = 5\nagent_digest_lockout_after = 4\n")
            .unwrap_err();
        assert!(e.contains(":3: key `outbound.agent_digest_lockout_after`"), "{e}");
    }
}
