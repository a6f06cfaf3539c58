//! SIP over TLS toward trunks and agents (the edge as the TLS client): which roots a server certificate must
//! chain to, which client certificate (mutual TLS) goes to whom, which host name each connection checks,
//! and what a failed handshake means in words a user can act on.
//!
//! Roots: Mozilla's bundle (webpki-roots, compiled in, so a container without /etc/ssl still works) plus
//! the operator's `[outbound] tls_extra_roots` (a private CA of a carrier, a test CA). The server's
//! certificate is checked against the host name of the trunk or agent (sent as SNI), never against an
//! address DNS gave for it; an address-literal trunk is checked against that address.
//!
//! Connections: a destination (address, host name, client identity) gets a connection id from
//! [`TlsRoutes::route`] when call control dials it; the id goes in the SIP core's `Peer` like an accepted
//! connection's, and the transport opens the connection on the first send to it
//! ([`tcp::Connector::send_tls`](super::tcp::Connector::send_tls)). Later calls to the same destination
//! get the same id, so an open connection is reused as TCP ones are; one that closed is opened again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use dashmap::DashMap;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::tls::{read_pair, TlsError, TlsFiles, VERSIONS};

/// Identity name of the agents' client certificate (`[outbound] agent_tls_client_certificate`).
pub const AGENTS: &str = "agents";

/// What the TLS client is given by the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientSettings {
    /// PEM files of roots trusted besides the bundled ones (`outbound.tls_extra_roots`).
    pub extra_roots: Vec<PathBuf>,
    /// Client certificates by identity name: [`AGENTS`], and `trunk:<provider>` for an operator trunk's
    /// (`[[outbound.trunks]] tls_client_certificate`).
    pub identities: Vec<(String, TlsFiles)>,
}

/// The identity name of the operator trunk of `provider` (`trunk:twilio`).
pub fn trunk_identity(provider: &str) -> String {
    format!("trunk:{provider}")
}

/// Why the TLS client cannot be set up (at start, and by `check`).
#[derive(Debug, thiserror::Error)]
pub enum TlsClientError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid PEM: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path}: a certificate cannot be a root: {source}")]
    BadRoot { path: PathBuf, source: rustls::Error },
    #[error("client certificate `{identity}`: {source}")]
    Identity { identity: String, source: TlsError },
    #[error("client certificate `{identity}`: {source}")]
    Config { identity: String, source: rustls::Error },
}

/// The client configurations: one without a client certificate, one per identity of the config, and one
/// per customer trunk certificate in use (built on its first connection).
pub struct ClientTls {
    roots: Arc<RootCertStore>,
    plain: Arc<ClientConfig>,
    by_identity: HashMap<String, Arc<ClientConfig>>,
    by_pem: DashMap<String, Arc<ClientConfig>>,
}

/// Customer certificates' configurations kept at most; beyond, the cache starts again (rebuilding one is a
/// PEM parse, done only when a connection is opened).
const MAX_PEM_CONFIGS: usize = 1024;

impl ClientTls {
    /// Reads the extra roots and every client certificate and key.
    pub fn load(s: &TlsClientSettings) -> Result<ClientTls, TlsClientError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &s.extra_roots {
            let pem = std::fs::read(path).map_err(|source| TlsClientError::Read {
                path: path.clone(),
                source,
            })?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsClientError::BadPem {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsClientError::NoCertificate { path: path.clone() });
            }
            for c in certs {
                roots.add(c).map_err(|source| TlsClientError::BadRoot {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        let roots = Arc::new(roots);
        let builder = || {
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(VERSIONS)
                .map(|b| b.with_root_certificates(roots.clone()))
        };
        let plain = builder()
            .map_err(|source| TlsClientError::Config {
                identity: "none".into(),
                source,
            })?
            .with_no_client_auth();
        let mut by_identity = HashMap::new();
        for (name, files) in &s.identities {
            let (chain, key) = read_pair(files).map_err(|source| TlsClientError::Identity {
                identity: name.clone(),
                source,
            })?;
            let config = builder()
                .and_then(|b| b.with_client_auth_cert(chain, key))
                .map_err(|source| TlsClientError::Config {
                    identity: name.clone(),
                    source,
                })?;
            by_identity.insert(name.clone(), Arc::new(config));
        }
        Ok(ClientTls {
            roots,
            plain: Arc::new(plain),
            by_identity,
            by_pem: DashMap::new(),
        })
    }

    /// The configuration for a connection presenting `identity` (none: no client certificate; a name the
    /// config does not have: none either, which the server then refuses in words [`describe`] gives).
    pub fn config(&self, identity: Option<&str>) -> Arc<ClientConfig> {
        identity
            .and_then(|i| self.by_identity.get(i))
            .unwrap_or(&self.plain)
            .clone()
    }

    /// The configuration for a connection to `dest`: its customer certificate's when it has one, else its
    /// identity's. A customer pair rustls cannot use (the API checked it, so only a corrupt row) is an
    /// error naming the field, rather than a connection without the certificate the trunk asks for.
    pub fn config_for(&self, dest: &TlsDest) -> Result<Arc<ClientConfig>, String> {
        let Some(pem) = &dest.pem else {
            return Ok(self.config(dest.identity.as_deref()));
        };
        if let Some(c) = self.by_pem.get(&pem.0.fingerprint) {
            return Ok(c.clone());
        }
        let unusable =
            |what: &str| format!("provider_config.tls_client_certificate of this trunk cannot be used: {what}");
        let chain = CertificateDer::pem_slice_iter(pem.0.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unusable(&e.to_string()))?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.0.key.expose().as_bytes())
            .map_err(|e| unusable(&e.to_string()))?;
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(VERSIONS)
            .map(|b| b.with_root_certificates(self.roots.clone()))
            .and_then(|b| b.with_client_auth_cert(chain, key))
            .map_err(|e| unusable(&e.to_string()))?;
        let config = Arc::new(config);
        if self.by_pem.len() >= MAX_PEM_CONFIGS {
            self.by_pem.clear();
        }
        self.by_pem.insert(pem.0.fingerprint.clone(), config.clone());
        Ok(config)
    }
}

/// A client certificate given as PEM text (a customer trunk's `provider_config`), carried with its
/// destination since the config does not know it. Its fingerprint alone decides equality, so calls showing
/// the same pair share connections and a new pair opens its own.
#[derive(Clone)]
pub struct PemIdentity(pub Arc<edge_store::TrunkClientCert>);

impl PartialEq for PemIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.0.fingerprint == other.0.fingerprint
    }
}

impl Eq for PemIdentity {}

impl std::hash::Hash for PemIdentity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.fingerprint.hash(state);
    }
}

impl std::fmt::Debug for PemIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemIdentity({})", &self.0.fingerprint)
    }
}

/// Where a TLS connection goes, beyond its address: the name its certificate must carry, and the client
/// certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsDest {
    /// Host name (or address literal) as written in the trunk's or agent's URI; sent as SNI.
    pub name: Arc<str>,
    /// Client certificate's identity name; `None`: no client certificate.
    pub identity: Option<Arc<str>>,
    /// A customer trunk's own client certificate (then `identity` is `None`).
    pub pem: Option<PemIdentity>,
}

impl TlsDest {
    /// The name to verify and send as SNI; an IPv6 literal loses its brackets.
    pub fn server_name(&self) -> Option<ServerName<'static>> {
        let n = self.name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(n.to_owned()).ok()
    }
}

/// Destinations kept at most: beyond, the table starts again (open connections keep working: their
/// writers are found by id; a closed one's calls then fail their next request instead of reconnecting).
const MAX_ROUTES: usize = 4096;

/// Connection ids of TLS destinations, shared by call control (which asks) and the transport (which opens).
#[derive(Clone, Default)]
pub struct TlsRoutes(Arc<RoutesInner>);

impl std::fmt::Debug for TlsRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRoutes")
            .field("routes", &self.0.by_id.len())
            .finish()
    }
}

#[derive(Default)]
struct RoutesInner {
    by_id: DashMap<u64, (SocketAddr, TlsDest)>,
    by_dest: DashMap<(SocketAddr, TlsDest), u64>,
}

impl TlsRoutes {
    /// The connection id for `dest` at `addr`: the one it had, else a new one.
    pub fn route(&self, addr: SocketAddr, dest: TlsDest) -> u64 {
        let key = (addr, dest);
        if let Some(id) = self.0.by_dest.get(&key) {
            return *id;
        }
        if self.0.by_id.len() >= MAX_ROUTES {
            tracing::warn!(max = MAX_ROUTES, "tls destinations table full; starting it again");
            self.0.by_dest.clear();
            self.0.by_id.clear();
        }
        let id = *self
            .0
            .by_dest
            .entry(key.clone())
            .or_insert_with(super::tcp::next_conn_id);
        self.0.by_id.insert(id, key);
        id
    }

    /// Where connection `id` goes, if call control routed it (accepted connections have none).
    pub fn dest(&self, id: u64) -> Option<(SocketAddr, TlsDest)> {
        self.0.by_id.get(&id).map(|e| e.value().clone())
    }
}

/// A failed handshake with `name` in words a user can act on: which certificate, what is wrong with it.
pub fn describe(e: &std::io::Error, name: &str) -> String {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return format!("tls handshake with {name} failed: {e}");
    };
    let time = |t: &rustls_pki_types::UnixTime| {
        let ms = i64::try_from(t.as_secs())
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        edge_store::time::rfc3339(ms)
    };
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::ExpiredContext { time: now, not_after } => format!(
                "certificate for {name} expired at {} (now {})",
                time(not_after),
                time(now)
            ),
            CertificateError::Expired => format!("certificate for {name} expired"),
            CertificateError::NotValidYetContext { time: now, not_before } => format!(
                "certificate for {name} is not valid before {} (now {})",
                time(not_before),
                time(now)
            ),
            CertificateError::NotValidYet => format!("certificate for {name} is not valid yet"),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "certificate presented for {name} is not valid for name {name} (it names {})",
                presented_names(presented)
            ),
            CertificateError::NotValidForName => {
                format!("certificate presented for {name} is not valid for name {name}")
            }
            CertificateError::UnknownIssuer => format!(
                "certificate for {name} has an unknown issuer (not among the bundled roots nor outbound.tls_extra_roots)"
            ),
            CertificateError::Revoked => format!("certificate for {name} is revoked"),
            CertificateError::BadSignature => format!("certificate for {name} has a bad signature"),
            other => format!("certificate for {name} refused: {other:?}"),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            format!("{name} requires a client certificate and none is configured for it")
        }
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::AccessDenied
            | A::CertificateExpired
            | A::CertificateRevoked),
        ) => {
            format!("{name} refused our client certificate ({a:?})")
        }
        other => format!("tls handshake with {name} failed: {other}"),
    }
}

/// The names a refused certificate carries, bounded (the peer chose them): four at most, each cut at 64
/// characters.
fn presented_names(presented: &[String]) -> String {
    let mut names: Vec<String> = presented
        .iter()
        .take(4)
        .map(|p| bare_name(p).chars().take(64).collect())
        .collect();
    if presented.len() > 4 {
        names.push(format!("and {} more", presented.len() - 4));
    }
    names.join(", ")
}

/// A name as rustls reports it (`DnsName("x.example")`, `IpAddress(..)`), without the wrapping.
fn bare_name(p: &str) -> &str {
    p.split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(name: &str, identity: Option<&str>) -> TlsDest {
        TlsDest {
            name: name.into(),
            identity: identity.map(Into::into),
            pem: None,
        }
    }

    #[test]
    fn a_destination_keeps_its_id_and_others_get_their_own() {
        let routes = TlsRoutes::default();
        let a: SocketAddr = "192.0.2.1:5061".parse().unwrap();
        let first = routes.route(a, dest("x.example", None));
        assert_eq!(routes.route(a, dest("x.example", None)), first);
        // The same address under another name or with another client certificate is another connection.
        assert_ne!(routes.route(a, dest("y.example", None)), first);
        assert_ne!(routes.route(a, dest("x.example", Some(AGENTS))), first);
        assert_eq!(routes.dest(first), Some((a, dest("x.example", None))));
        assert_eq!(routes.dest(u64::MAX), None);
    }

    #[test]
    fn presented_names_lose_their_wrapping() {
        assert_eq!(bare_name("DnsName(\"other.test\")"), "other.test");
        assert_eq!(bare_name("plain"), "plain");
        let many: Vec<String> = (0..6).map(|i| format!("DnsName(\"n{i}.test\")")).collect();
        assert_eq!(presented_names(&many), "n0.test, n1.test, n2.test, n3.test, and 2 more");
    }

    #[test]
    fn server_names_of_hosts_and_literals() {
        assert!(dest("trunk.example.com", None).server_name().is_some());
        assert!(matches!(
            dest("[2001:db8::1]", None).server_name(),
            Some(ServerName::IpAddress(_))
        ));
    }

    #[test]
    fn bundled_roots_load_and_bad_extra_roots_say_which_file() {
        assert!(ClientTls::load(&TlsClientSettings::default()).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roots.pem");
        std::fs::write(&p, "nothing here\n").unwrap();
        let e = ClientTls::load(&TlsClientSettings {
            extra_roots: vec![p],
            identities: vec![],
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("roots.pem"), "{e}");
    }

    fn customer_pem(cert: &str, key: &str) -> PemIdentity {
        PemIdentity(Arc::new(edge_store::TrunkClientCert::new(
            cert.to_owned(),
            edge_store::Secret::new(key),
        )))
    }

    #[test]
    fn a_customer_pair_is_its_own_destination_and_config() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["edge.customer.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert, key) = (cert.pem(), key.serialize_pem());
        let routes = TlsRoutes::default();
        let addr: SocketAddr = "192.0.2.1:5061".parse().unwrap();
        let with = |pem: Option<PemIdentity>| TlsDest {
            pem,
            ..dest("trunk.example", None)
        };
        let a = routes.route(addr, with(Some(customer_pem(&cert, &key))));
        // The same pair (another copy of it) shares the connection; no pair, or another, does not.
        assert_eq!(a, routes.route(addr, with(Some(customer_pem(&cert, &key)))));
        assert_ne!(a, routes.route(addr, with(None)));
        let other = customer_pem(&cert, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert_ne!(a, routes.route(addr, with(Some(other.clone()))));

        let client = ClientTls::load(&TlsClientSettings::default()).unwrap();
        let good = with(Some(customer_pem(&cert, &key)));
        let c = client.config_for(&good).unwrap();
        assert!(c.client_auth_cert_resolver.has_certs());
        assert!(Arc::ptr_eq(&c, &client.config_for(&good).unwrap()), "built once");
        assert!(!client
            .config_for(&with(None))
            .unwrap()
            .client_auth_cert_resolver
            .has_certs());
        let e = client.config_for(&with(Some(other))).unwrap_err();
        assert!(e.contains("provider_config.tls_client_certificate"), "{e}");
    }
}
