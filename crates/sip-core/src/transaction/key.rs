//! Transaction keys (RFC 3261 17.1.3, 17.2.3) and their derivation from messages.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use crate::message::{Message, Method, Transport};

use super::TxError;

/// RFC 3261 branch prefix marking a globally unique branch.
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identity of one transaction. Cheap to clone (shared). Its content is hashed once, at
/// construction, with a per-process randomly keyed SipHash (so peers cannot force
/// collisions); maps and equality checks then use that cached value.
#[derive(Debug, Clone)]
pub struct TxKey(Arc<KeyInner>);

#[derive(Debug)]
struct KeyInner {
    hash: u64,
    kind: TxKeyKind,
}

impl PartialEq for TxKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0.hash == other.0.hash && self.0.kind == other.0.kind)
    }
}
impl Eq for TxKey {}

impl Hash for TxKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

/// Hasher for maps keyed by [`TxKey`]: passes the cached keyed hash through unchanged.
#[derive(Debug, Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `TxKey`; fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// `BuildHasher` for [`PreHashed`].
pub(crate) type PreHashedState = std::hash::BuildHasherDefault<PreHashed>;

fn key_hasher() -> &'static RandomState {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new)
}

/// The matching rule a key encodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKeyKind {
    /// Client transaction (17.1.3): our branch plus the CSeq method, so a CANCEL
    /// (same branch as its INVITE) is a distinct transaction.
    Client {
        /// Branch of our top Via.
        branch: Box<str>,
        /// Request method (never ACK).
        method: Method,
    },
    /// Server transaction from an RFC 3261 client (17.2.3): branch + sent-by + method,
    /// ACK folded onto INVITE.
    Server {
        /// Branch of the top Via (with magic cookie).
        branch: Box<str>,
        /// Lower-cased sent-by host of the top Via.
        host: Box<str>,
        /// Sent-by port, defaulted from the transport (5060, 5061 for TLS/WSS).
        port: u16,
        /// Request method, ACK mapped to INVITE.
        method: Method,
    },
    /// Server transaction from an RFC 2543 client (branch without magic cookie).
    Server2543(Box<Rfc2543Key>),
}

/// RFC 2543 matching fields (17.2.3 last paragraphs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc2543Key {
    /// Request-URI as sent.
    pub request_uri: Box<str>,
    /// From tag.
    pub from_tag: Option<Box<str>>,
    /// To tag of the request that created the transaction (none for an initial INVITE).
    pub to_tag: Option<Box<str>>,
    /// Call-ID.
    pub call_id: Box<str>,
    /// CSeq number.
    pub cseq: u32,
    /// Top Via value as sent (trimmed).
    pub top_via: Box<str>,
    /// Request method, ACK mapped to INVITE.
    pub method: Method,
}

impl TxKey {
    pub(crate) fn new(kind: TxKeyKind) -> Self {
        let hash = key_hasher().hash_one(&kind);
        Self(Arc::new(KeyInner { hash, kind }))
    }

    /// The key's cached hash (keyed per process), for tables that shard on it.
    pub(crate) fn prehash(&self) -> u64 {
        self.0.hash
    }

    /// The matching rule and its fields.
    pub fn kind(&self) -> &TxKeyKind {
        &self.0.kind
    }

    /// True for client transactions.
    pub fn is_client(&self) -> bool {
        matches!(self.0.kind, TxKeyKind::Client { .. })
    }

    /// Method of the transaction (INVITE for an INVITE transaction and its ACK).
    pub fn method(&self) -> &Method {
        match &self.0.kind {
            TxKeyKind::Client { method, .. } | TxKeyKind::Server { method, .. } => method,
            TxKeyKind::Server2543(k) => &k.method,
        }
    }

    /// Same transaction identity with another method: used to find the INVITE a CANCEL
    /// targets (RFC 3261 9.2).
    pub(crate) fn with_method(&self, m: Method) -> Self {
        let kind = match &self.0.kind {
            TxKeyKind::Client { branch, .. } => TxKeyKind::Client {
                branch: branch.clone(),
                method: m,
            },
            TxKeyKind::Server { branch, host, port, .. } => TxKeyKind::Server {
                branch: branch.clone(),
                host: host.clone(),
                port: *port,
                method: m,
            },
            TxKeyKind::Server2543(k) => {
                let mut k = k.clone();
                k.method = m;
                TxKeyKind::Server2543(k)
            }
        };
        Self::new(kind)
    }

    /// Same 2543 identity with another To tag (ACK lookup by the response's To tag).
    pub(crate) fn with_to_tag(&self, tag: Option<&str>) -> Option<Self> {
        match &self.0.kind {
            TxKeyKind::Server2543(k) => {
                let mut k = k.clone();
                k.to_tag = tag.map(Box::from);
                Some(Self::new(TxKeyKind::Server2543(k)))
            }
            TxKeyKind::Client { .. } | TxKeyKind::Server { .. } => None,
        }
    }
}

/// Key fields derived from an incoming request, plus the ACK's own To tag for 2543 matching.
pub(crate) struct ServerMatch {
    pub key: TxKey,
    /// To tag of the request itself (used for 2543 ACK matching against the response tag).
    pub to_tag: Option<Box<str>>,
    pub is_2543: bool,
}

fn transport_default_port(t: Transport) -> u16 {
    match t {
        Transport::Tls | Transport::Wss => 5061,
        Transport::Udp | Transport::Tcp | Transport::Sctp | Transport::Ws | Transport::Other => 5060,
    }
}

fn key_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

/// Derives the server-transaction key of an incoming request (17.2.3).
pub(crate) fn server_key(msg: &Message) -> Result<ServerMatch, TxError> {
    let method = msg.method().ok_or(TxError::NotATransactionRequest("not a request"))?;
    let via = msg.top_via()?;
    let method = key_method(method);
    if let Some(branch) = via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
        let key = TxKey::new(TxKeyKind::Server {
            branch: Box::from(branch),
            host: via.host.to_ascii_lowercase().into_boxed_str(),
            port: via.port.unwrap_or_else(|| transport_default_port(via.transport)),
            method,
        });
        return Ok(ServerMatch {
            key,
            to_tag: None,
            is_2543: false,
        });
    }
    let to = msg.to()?;
    let to_tag: Option<Box<str>> = to.tag().map(Box::from);
    let from = msg.from()?;
    let key = Rfc2543Key {
        request_uri: Box::from(msg.request_uri_raw().unwrap_or("")),
        from_tag: from.tag().map(Box::from),
        to_tag: to_tag.clone(),
        call_id: Box::from(msg.call_id()?),
        cseq: msg.cseq()?.seq,
        top_via: Box::from(msg.top_via_raw()?.trim()),
        method,
    };
    Ok(ServerMatch {
        key: TxKey::new(TxKeyKind::Server2543(Box::new(key))),
        to_tag,
        is_2543: true,
    })
}

/// Key of the client transaction a request creates; requires an RFC 3261 branch.
pub(crate) fn client_key_for_request(msg: &Message) -> Result<TxKey, TxError> {
    let method = msg.method().ok_or(TxError::NotATransactionRequest("not a request"))?;
    if *method == Method::Ack {
        return Err(TxError::NotATransactionRequest(
            "ACK does not create a client transaction",
        ));
    }
    let via = msg.top_via()?;
    let branch = via
        .branch()
        .filter(|b| b.starts_with(MAGIC_COOKIE))
        .ok_or(TxError::NoMagicCookie)?;
    Ok(TxKey::new(TxKeyKind::Client {
        branch: Box::from(branch),
        method: method.clone(),
    }))
}

/// Key of the client transaction a response belongs to (17.1.3): top Via branch + CSeq method.
pub(crate) fn client_key_for_response(msg: &Message) -> Result<TxKey, TxError> {
    let via = msg.top_via()?;
    let branch = via
        .branch()
        .filter(|b| b.starts_with(MAGIC_COOKIE))
        .ok_or(TxError::NoMagicCookie)?;
    let method = msg.cseq()?.method;
    Ok(TxKey::new(TxKeyKind::Client {
        branch: Box::from(branch),
        method,
    }))
}

/// Status code from a serialized response's status line (`SIP/2.0 NNN ...`).
pub(crate) fn status_of(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.get(3).is_some_and(|b| *b != b' ' && *b != b'\r') {
        return None;
    }
    let n = code.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    (100..=699).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn status_line_parsing_is_strict() {
        assert_eq!(status_of(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"SIP/2.0 487\r\n"), Some(487));
        assert_eq!(status_of(b"SIP/2.0 099 Low\r\n"), None);
        assert_eq!(status_of(b"SIP/2.0 700 High\r\n"), None);
        assert_eq!(status_of(b"SIP/2.0 2000 OK\r\n"), None);
        assert_eq!(status_of(b"SIP/2.0 2x0 OK\r\n"), None);
        assert_eq!(status_of(b"INVITE sip:a@b SIP/2.0\r\n"), None);
        assert_eq!(status_of(b"SIP/2.0 20"), None);
        assert_eq!(status_of(b""), None);
    }
}
