//! HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 22.4), both sides.
//!
//! Client: outbound calls through customer trunks get a 401/407 challenge;
//! [`DigestChallenge::from_message`] picks the strongest supported challenge and [`authorize`]
//! computes the `Authorization`/`Proxy-Authorization` value. [`AuthSession`] wraps one request's
//! attempts so that a trunk rejecting the credentials ends in [`AuthStep::Rejected`], never a loop.
//!
//! Server: the edge challenges agents itself ([`DigestVerifier`], in `server`). Nonces are opaque and
//! stateless to check ([`NonceMinter`]: a random salt, the minting time hidden under a keyed mask,
//! an HMAC-SHA-256 binding both to the realm and the client's address), so any node holding the key
//! can check any nonce, and expiry yields `stale=true`. What a stateless nonce cannot stop, replay
//! within its lifetime, is stopped by a small [`NonceLedger`] of the nonces that authorized
//! something: each is tied to the one dialog attempt (Call-ID) that used it first, and its nonce
//! count must grow.
//!
//! Everything here is sans-IO and allocation-bounded by the input (a SIP message is at most 64 KiB).

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use crate::headers::lex::ListIter;
use crate::headers::{Challenge, Credentials, HeaderName};
use crate::Message;

mod ledger;
mod nonce;
mod server;

pub use ledger::{NonceLedger, NonceUse};
pub use nonce::{NonceMinter, NonceStatus};
pub use server::{ChallengeAnswer, DigestVerifier, RejectReason, Verdict};

/// Why a challenge could not be answered or a header value not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed authentication header: {0}")]
    Malformed(String),
    #[error("{0} response carries no challenge header")]
    MissingChallenge(u16),
    #[error("unsupported authentication scheme {0:?}")]
    UnsupportedScheme(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
    #[error("challenge lacks the {0} parameter")]
    MissingParam(&'static str),
    #[error("{0} contains characters that cannot be sent in a header")]
    InvalidInput(&'static str),
    #[error("nonce count must be at least 1")]
    ZeroNonceCount,
}

/// Digest hash algorithm; `*Sess` variants fold the nonces into HA1 (RFC 7616 3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// Case-insensitive parse of the `algorithm` token.
    pub fn parse(s: &str) -> Option<Algorithm> {
        const ALL: [Algorithm; 6] = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ];
        ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// Wire token.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    pub fn is_sess(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Preference when a response offers several challenges (RFC 7616 3.7: strongest first).
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// Lower-case hex digest of the concatenated parts.
    pub fn hex(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            to_hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => run::<Md5>(parts),
            Algorithm::Sha256 | Algorithm::Sha256Sess => run::<Sha256>(parts),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => run::<Sha512_256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection. `auth-int` also covers the message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    Auth,
    AuthInt,
}

impl Qop {
    pub fn parse(s: &str) -> Option<Qop> {
        if s.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if s.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// Which header answers the challenge: 401 -> `Authorization`, 407 -> `Proxy-Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthHeader {
    Authorization,
    ProxyAuthorization,
}

impl AuthHeader {
    /// The credentials header name.
    pub fn name(self) -> &'static str {
        match self {
            AuthHeader::Authorization => "Authorization",
            AuthHeader::ProxyAuthorization => "Proxy-Authorization",
        }
    }

    /// The challenge header that asks for it.
    pub fn challenge_name(self) -> &'static str {
        match self {
            AuthHeader::Authorization => "WWW-Authenticate",
            AuthHeader::ProxyAuthorization => "Proxy-Authenticate",
        }
    }

    /// The response status carrying that challenge (401 or 407).
    pub fn challenge_status(self) -> u16 {
        match self {
            AuthHeader::Authorization => 401,
            AuthHeader::ProxyAuthorization => 407,
        }
    }
}

/// SIP account credentials of a trunk. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub password: String,
}

impl DigestCredentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        DigestCredentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for DigestCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An owned, validated `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Offered qop values we understand, in offer order; empty = RFC 2069 mode (no qop).
    pub qop_options: Vec<Qop>,
    pub stale: bool,
    /// RFC 7616 3.4.4: the server wants `H(username:realm)` instead of the username.
    pub userhash: bool,
}

impl DigestChallenge {
    /// Parses one `WWW-Authenticate`/`Proxy-Authenticate` value. Empty list elements
    /// (`realm="x",, nonce="y",`), which RFC 7235 #rule allows and some trunks send, are
    /// tolerated.
    pub fn parse(value: &str) -> Result<DigestChallenge, DigestError> {
        match Challenge::parse(value) {
            Ok(ch) => DigestChallenge::from_view(&ch),
            Err(e) => {
                let cleaned = drop_empty_elements(value).ok_or(DigestError::Malformed(e.into()))?;
                let ch = Challenge::parse(&cleaned).map_err(|e| DigestError::Malformed(e.to_string()))?;
                DigestChallenge::from_view(&ch)
            }
        }
    }

    /// From the message layer's typed view.
    pub fn from_view(ch: &Challenge<'_>) -> Result<DigestChallenge, DigestError> {
        if !ch.scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::UnsupportedScheme(ch.scheme.to_string()));
        }
        let algorithm = match ch.param("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or_else(|| DigestError::UnsupportedAlgorithm(a.into_owned()))?,
        };
        let realm = ch.param("realm").ok_or(DigestError::MissingParam("realm"))?;
        let nonce = ch.param("nonce").ok_or(DigestError::MissingParam("nonce"))?;
        let qop_options = match ch.param("qop") {
            None => Vec::new(),
            Some(list) => {
                let mut v = Vec::new();
                for q in list.split(',').filter_map(|t| Qop::parse(t.trim())) {
                    if !v.contains(&q) {
                        v.push(q);
                    }
                }
                if v.is_empty() {
                    // qop offered but none we know: answering without qop would be refused.
                    return Err(DigestError::UnsupportedQop(list.into_owned()));
                }
                v
            }
        };
        let flag = |name| ch.param(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Ok(DigestChallenge {
            realm: realm.into_owned(),
            nonce: nonce.into_owned(),
            opaque: ch.param("opaque").map(|o| o.into_owned()),
            algorithm,
            qop_options,
            stale: flag("stale"),
            userhash: flag("userhash"),
        })
    }

    /// The challenge to answer in a 401/407 response: `Ok(None)` for any other status.
    /// With several challenge headers the strongest supported algorithm wins (first on ties);
    /// if none is usable the first error is returned.
    pub fn from_message(resp: &Message) -> Result<Option<(DigestChallenge, AuthHeader)>, DigestError> {
        let (status, hdr, answer) = match resp.status() {
            Some(401) => (401, "WWW-Authenticate", AuthHeader::Authorization),
            Some(407) => (407, "Proxy-Authenticate", AuthHeader::ProxyAuthorization),
            _ => return Ok(None),
        };
        let name = HeaderName::from(hdr);
        let mut best: Option<DigestChallenge> = None;
        let mut first_err = None;
        for value in resp.headers(&name) {
            match DigestChallenge::parse(value) {
                Ok(c) => {
                    if best
                        .as_ref()
                        .is_none_or(|b| c.algorithm.strength() > b.algorithm.strength())
                    {
                        best = Some(c);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (best, first_err) {
            (Some(c), _) => Ok(Some((c, answer))),
            (None, Some(e)) => Err(e),
            (None, None) => Err(DigestError::MissingChallenge(status)),
        }
    }

    /// The qop a client uses: `auth` when offered (no body hashing), else `auth-int`.
    pub fn chosen_qop(&self) -> Option<Qop> {
        if self.qop_options.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop_options.first().copied()
        }
    }
}

/// Computes the credentials header value answering `ch` (RFC 7616 3.4).
///
/// `nc` is the nonce count for this nonce (first use = 1), `cnonce` a fresh client nonce
/// (see [`new_cnonce`]), `body` the request body, hashed only for `qop=auth-int`.
pub fn authorize(
    ch: &DigestChallenge,
    creds: &DigestCredentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
    body: &[u8],
) -> Result<String, DigestError> {
    if nc == 0 {
        return Err(DigestError::ZeroNonceCount);
    }
    check_field(&creds.username, "username")?;
    check_field(&creds.password, "password")?;
    check_field(uri, "request URI")?;
    check_field(cnonce, "cnonce")?;
    check_field(&ch.realm, "realm")?;
    check_field(&ch.nonce, "nonce")?;
    check_field(ch.opaque.as_deref().unwrap_or(""), "opaque")?;
    if !method
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        || method.is_empty()
    {
        return Err(DigestError::InvalidInput("method"));
    }
    let qop = ch.chosen_qop();
    let nc_hex = format!("{nc:08x}");
    let response = compute_response(&ResponseInput {
        algorithm: ch.algorithm,
        username: &creds.username,
        realm: &ch.realm,
        ha1_or_password: Secret::Password(&creds.password),
        nonce: &ch.nonce,
        cnonce,
        nc: &nc_hex,
        qop,
        method,
        uri,
        body,
    });
    let username = if ch.userhash {
        ch.algorithm
            .hex(&[creds.username.as_bytes(), b":", ch.realm.as_bytes()])
    } else {
        creds.username.clone()
    };
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(&username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        ch.algorithm,
    );
    if qop.is_some() || ch.algorithm.is_sess() {
        out.push_str(", cnonce=");
        out.push_str(&quote(cnonce));
    }
    if let Some(o) = &ch.opaque {
        out.push_str(", opaque=");
        out.push_str(&quote(o));
    }
    if let Some(q) = qop {
        out.push_str(", qop=");
        out.push_str(q.as_str());
        out.push_str(", nc=");
        out.push_str(&nc_hex);
    }
    if ch.userhash {
        out.push_str(", userhash=true");
    }
    Ok(out)
}

/// What the caller holds for verification: the plain password, or the stored HA1
/// (`H(username:realm:password)` hex, for the algorithm in use) so passwords need not be kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secret<'a> {
    Password(&'a str),
    Ha1(&'a str),
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::Ha1(_) => f.write_str("Ha1(<redacted>)"),
        }
    }
}

struct ResponseInput<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    ha1_or_password: Secret<'a>,
    nonce: &'a str,
    cnonce: &'a str,
    nc: &'a str,
    qop: Option<Qop>,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
}

/// `request-digest` of RFC 7616 3.4.1 (and RFC 2069 when `qop` is absent).
fn compute_response(i: &ResponseInput<'_>) -> String {
    let h = |parts: &[&[u8]]| i.algorithm.hex(parts);
    let base_ha1 = match i.ha1_or_password {
        Secret::Password(p) => h(&[i.username.as_bytes(), b":", i.realm.as_bytes(), b":", p.as_bytes()]),
        Secret::Ha1(ha1) => ha1.to_ascii_lowercase(),
    };
    let ha1 = if i.algorithm.is_sess() {
        h(&[base_ha1.as_bytes(), b":", i.nonce.as_bytes(), b":", i.cnonce.as_bytes()])
    } else {
        base_ha1
    };
    let ha2 = match i.qop {
        Some(Qop::AuthInt) => {
            let hb = h(&[i.body]);
            h(&[i.method.as_bytes(), b":", i.uri.as_bytes(), b":", hb.as_bytes()])
        }
        _ => h(&[i.method.as_bytes(), b":", i.uri.as_bytes()]),
    };
    match i.qop {
        Some(q) => h(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            i.nc.as_bytes(),
            b":",
            i.cnonce.as_bytes(),
            b":",
            q.as_str().as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        None => h(&[ha1.as_bytes(), b":", i.nonce.as_bytes(), b":", ha2.as_bytes()]),
    }
}

/// Outcome of feeding a response to an [`AuthSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Resend the request (new branch, CSeq + 1) with this header added, plus `previous`:
    /// credentials for realms answered earlier in this request (a proxy's 407 then the UAS's
    /// 401 need both on the final resend, RFC 3261 22.3).
    Retry {
        header_name: &'static str,
        header_value: String,
        previous: Vec<(&'static str, String)>,
    },
    /// The peer refused these credentials: "trunk rejected the SIP credentials".
    Rejected,
    /// Not answerable (not a 401/407, malformed, unknown scheme/algorithm/qop).
    Unsupported(String),
}

/// Most challenges one request may answer: a proxy (407) plus the UAS (401), each with a
/// stale retry, is 4; anything beyond is a misbehaving peer.
const MAX_ATTEMPTS: u8 = 4;

/// One answered challenge and how often its nonce has been used.
#[derive(Debug, Clone)]
struct Answered {
    which: AuthHeader,
    challenge: DigestChallenge,
    nc: u32,
}

/// Tracks one outbound request's authentication attempts.
///
/// A second non-stale challenge for a realm already answered means the credentials were
/// refused; `stale=true` with a new nonce is retried (RFC 7616 3.3). The session keeps the
/// answered challenges so later requests in the dialog (BYE, re-INVITE) can be authorized
/// pre-emptively with incremented nonce counts ([`AuthSession::authorize_next`]).
#[derive(Debug, Clone)]
pub struct AuthSession {
    creds: DigestCredentials,
    /// One entry per (header, realm), at most `MAX_ATTEMPTS`.
    answered: Vec<Answered>,
    attempts: u8,
}

impl AuthSession {
    pub fn new(creds: DigestCredentials) -> Self {
        AuthSession {
            creds,
            answered: Vec::new(),
            attempts: 0,
        }
    }

    /// Handles a final response to the request. `method`/`uri`/`body` are those of the request
    /// that will be resent.
    pub fn on_challenge(&mut self, resp: &Message, method: &str, uri: &str, body: &[u8]) -> AuthStep {
        let (ch, which) = match DigestChallenge::from_message(resp) {
            Ok(Some(x)) => x,
            Ok(None) => {
                return AuthStep::Unsupported(format!(
                    "status {} is not a 401/407 challenge",
                    resp.status().unwrap_or(0)
                ))
            }
            Err(e) => return AuthStep::Unsupported(e.to_string()),
        };
        if self.attempts >= MAX_ATTEMPTS {
            return AuthStep::Rejected;
        }
        let same = |a: &Answered| a.which == which && a.challenge.realm == ch.realm;
        if let Some(prev) = self.answered.iter().find(|a| same(a)) {
            // Same realm again: only a stale nonce with a fresh value is worth another try.
            if !ch.stale || prev.challenge.nonce == ch.nonce {
                return AuthStep::Rejected;
            }
        }
        let header_value = match authorize(&ch, &self.creds, method, uri, 1, &new_cnonce(), body) {
            Ok(v) => v,
            Err(e) => return AuthStep::Unsupported(e.to_string()),
        };
        self.attempts += 1;
        self.answered.retain(|a| !same(a));
        let previous = match self.next_headers(method, uri, body) {
            Ok(v) => v,
            Err(e) => return AuthStep::Unsupported(e.to_string()),
        };
        self.answered.push(Answered {
            which,
            challenge: ch,
            nc: 1,
        });
        AuthStep::Retry {
            header_name: which.name(),
            header_value,
            previous,
        }
    }

    /// Pre-emptive credentials for a later request (e.g. BYE) through the same trunk: one
    /// header per answered challenge, reusing its nonce with the next nonce count. Empty
    /// before any challenge.
    pub fn authorize_next(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, DigestError> {
        self.next_headers(method, uri, body)
    }

    fn next_headers(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, DigestError> {
        let mut out = Vec::with_capacity(self.answered.len());
        for a in &mut self.answered {
            // 2^32 requests on one nonce is not reachable in a dialog; saturate rather than wrap.
            a.nc = a.nc.saturating_add(1);
            let v = authorize(&a.challenge, &self.creds, method, uri, a.nc, &new_cnonce(), body)?;
            out.push((a.which.name(), v));
        }
        Ok(out)
    }
}

/// A fresh 128-bit client nonce as 32 hex characters, from the CSPRNG of [`crate::build::random_u64`].
pub fn new_cnonce() -> String {
    let mut s = String::with_capacity(32);
    for _ in 0..2 {
        s.push_str(&format!("{:016x}", crate::build::random_u64()));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// Builds a `WWW-Authenticate`/`Proxy-Authenticate` value.
pub fn make_challenge(realm: &str, nonce: &str, algorithm: Algorithm, qop: Option<Qop>, stale: bool) -> String {
    let mut s = format!(
        "Digest realm={}, nonce={}, algorithm={algorithm}",
        quote(realm),
        quote(nonce)
    );
    if let Some(q) = qop {
        s.push_str(", qop=\"");
        s.push_str(q.as_str());
        s.push('"');
    }
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// Checks a request's credentials against the expected realm and secret (RFC 7616 3.4.1).
/// Only the response value is compared, in constant time; nonce freshness is a separate
/// question for [`NonceMinter::check`].
pub fn verify(cred: &Credentials<'_>, method: &str, realm: &str, secret: Secret<'_>, body: &[u8]) -> bool {
    if !cred.scheme.eq_ignore_ascii_case("Digest") {
        return false;
    }
    let p = |n: &str| cred.param(n);
    let (Some(username), Some(c_realm), Some(nonce), Some(uri), Some(response)) =
        (p("username"), p("realm"), p("nonce"), p("uri"), p("response"))
    else {
        return false;
    };
    if c_realm != realm || p("userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    let algorithm = match p("algorithm") {
        None => Algorithm::Md5,
        Some(a) => match Algorithm::parse(&a) {
            Some(a) => a,
            None => return false,
        },
    };
    let qop = match p("qop") {
        None => None,
        Some(q) => match Qop::parse(&q) {
            Some(q) => Some(q),
            None => return false,
        },
    };
    let cnonce = p("cnonce").unwrap_or_default();
    let nc = p("nc").unwrap_or_default();
    if (qop.is_some() || algorithm.is_sess()) && cnonce.is_empty() {
        return false;
    }
    if qop.is_some() && (nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit())) {
        return false;
    }
    let expected = compute_response(&ResponseInput {
        algorithm,
        username: &username,
        realm,
        ha1_or_password: secret,
        nonce: &nonce,
        cnonce: &cnonce,
        nc: &nc,
        qop,
        method,
        uri: &uri,
        body,
    });
    ct_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes())
}

/// HMAC-SHA-256 (RFC 2104), written out to avoid a dependency for ~10 lines.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const B: usize = 64;
    let mut k = [0u8; B];
    if key.len() > B {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// Constant-time equality for equal lengths (lengths are not secret: both are hex digests).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// `scheme a, , b,` -> `scheme a, b`; `None` when there was nothing to drop.
fn drop_empty_elements(value: &str) -> Option<String> {
    let v = value.trim();
    let split = v.find(|c: char| c.is_ascii_whitespace())?;
    let (scheme, rest) = v.split_at(split);
    let parts: Vec<&str> = ListIter::new(rest.trim()).filter(|p| !p.is_empty()).collect();
    let had_empty = ListIter::new(rest.trim()).any(|p| p.is_empty());
    had_empty.then(|| format!("{scheme} {}", parts.join(", ")))
}

/// Quoted-string with `\` and `"` escaped (RFC 3261 25.1 quoted-pair).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Caller-supplied values must not break the header line.
fn check_field(s: &str, what: &'static str) -> Result<(), DigestError> {
    if s.chars().any(|c| c.is_control()) {
        Err(DigestError::InvalidInput(what))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
