//! Server side of digest authentication: challenge a request, check its answer (RFC 7616, RFC 8760
//! for SHA-256 in SIP).
//!
//! The verifier keeps no state of its own: everything it needs to judge a request is in the request
//! and in the nonce it minted (see `nonce`). Callers add the replay check with [`super::NonceLedger`]
//! on [`Verdict::Authorized`].

use crate::headers::{Credentials, HeaderName};
use crate::Message;

use super::nonce::{NonceMinter, NonceStatus};
use super::{make_challenge, verify, Algorithm, AuthHeader, Qop, Secret};

/// A challenge to send: status, header name and one header value per offered algorithm, the
/// preferred first (RFC 8760 4: a UAS offers SHA-256 before MD5 so that clients pick the strongest
/// they know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    pub status: u16,
    pub header_name: &'static str,
    pub header_values: Vec<String>,
    pub stale: bool,
}

/// Why credentials were refused. Callers log and count it; the answer on the wire must be the same
/// for every reason, so that a guesser learns nothing (not even whether the user exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No such user.
    UnknownUser,
    /// The response does not verify: a wrong password.
    WrongPassword,
    /// An algorithm or qop we did not offer (a downgrade), or a malformed field.
    NotOffered,
    /// The `uri` parameter is not this request's Request-URI (credentials computed for another request).
    UriMismatch,
}

impl RejectReason {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::WrongPassword => "wrong_password",
            RejectReason::NotOffered => "not_offered",
            RejectReason::UriMismatch => "uri_mismatch",
        }
    }
}

/// What to do with a request after [`DigestVerifier::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials for `username` on a fresh nonce; `nonce` and `nc` go to the ledger.
    Authorized { username: String, nonce: String, nc: u32 },
    /// No usable credentials (absent, other realm, nonce not ours or not for this client) or a
    /// right password on an expired nonce (`stale`): answer with this challenge.
    Challenge(ChallengeAnswer),
    /// Credentials for our realm on a nonce of ours that do not verify: refuse, do not loop.
    Rejected { username: String, reason: RejectReason },
}

/// Server side of digest auth for one realm.
#[derive(Debug, Clone)]
pub struct DigestVerifier {
    realm: String,
    minter: NonceMinter,
    /// Offered algorithms, preferred first; at least one.
    algorithms: Vec<Algorithm>,
    qop: Option<Qop>,
    header: AuthHeader,
}

/// Checked against when the user is unknown, so that an unknown user costs the same hashing as a
/// known one (no timing difference between "no such user" and "wrong password").
const DUMMY_PASSWORD: &str = "not a password: this user does not exist";

impl DigestVerifier {
    /// `header` picks the role: `Authorization` for a UAS/registrar (401), `ProxyAuthorization`
    /// for a proxy (407). `secret` is shared by all nodes that must accept each other's nonces.
    /// `algorithms` are offered in this order (empty: MD5).
    pub fn new(
        realm: impl Into<String>,
        secret: &[u8],
        nonce_ttl_secs: u64,
        algorithms: &[Algorithm],
        qop: Option<Qop>,
        header: AuthHeader,
    ) -> Self {
        let algorithms = if algorithms.is_empty() {
            vec![Algorithm::Md5]
        } else {
            algorithms.to_vec()
        };
        DigestVerifier {
            realm: realm.into(),
            minter: NonceMinter::new(secret, nonce_ttl_secs),
            algorithms,
            qop,
            header,
        }
    }

    /// The realm challenged.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Nonce lifetime, seconds.
    pub fn nonce_ttl_secs(&self) -> u64 {
        self.minter.ttl_secs()
    }

    /// A fresh challenge at `now` (Unix seconds) for the client `bind` names: one nonce, offered
    /// with every algorithm.
    pub fn challenge(&self, now: u64, bind: &[u8], stale: bool) -> ChallengeAnswer {
        let nonce = self.minter.mint(&self.realm, now, bind);
        ChallengeAnswer {
            status: self.header.challenge_status(),
            header_name: self.header.challenge_name(),
            header_values: self
                .algorithms
                .iter()
                .map(|a| make_challenge(&self.realm, &nonce, *a, self.qop, stale))
                .collect(),
            stale,
        }
    }

    /// The username of our realm's credentials in `req`, if any (for throttling before checking).
    pub fn username(&self, req: &Message) -> Option<String> {
        self.credentials(req)
            .and_then(|c| c.param("username").map(|u| u.into_owned()))
    }

    fn credentials<'m>(&self, req: &'m Message) -> Option<Credentials<'m>> {
        // Several credentials may be present (one per realm); ours is the one that counts.
        let name = HeaderName::from(self.header.name());
        req.header_entries()
            .filter(|(n, _, _)| *n == name)
            .find_map(|(_, _, v)| {
                Credentials::parse(v)
                    .ok()
                    .filter(|c| c.scheme.eq_ignore_ascii_case("Digest"))
                    .filter(|c| c.param("realm").as_deref() == Some(self.realm.as_str()))
            })
    }

    /// Checks `req` from the client `bind` at `now`. `lookup(username)` returns that user's secret,
    /// `None` if unknown.
    pub fn check<'s>(
        &self,
        req: &Message,
        now: u64,
        bind: &[u8],
        lookup: impl FnOnce(&str) -> Option<Secret<'s>>,
    ) -> Verdict {
        let challenge = |stale| Verdict::Challenge(self.challenge(now, bind, stale));
        let (Some(method), Some(req_uri)) = (req.method(), req.request_uri_raw()) else {
            return challenge(false);
        };
        let Some(cred) = self.credentials(req) else {
            return challenge(false);
        };
        let Some(nonce) = cred.param("nonce") else {
            return challenge(false);
        };
        let fresh = match self.minter.check(&nonce, &self.realm, now, bind) {
            NonceStatus::Invalid => return challenge(false),
            NonceStatus::Stale => false,
            NonceStatus::Valid => true,
        };
        let username = cred.param("username").unwrap_or_default().into_owned();
        let rejected = |reason| Verdict::Rejected {
            username: username.clone(),
            reason,
        };
        let algorithm = cred
            .param("algorithm")
            .map_or(Some(Algorithm::Md5), |a| Algorithm::parse(&a));
        let qop = cred.param("qop").map(|q| Qop::parse(&q));
        let offered = algorithm.is_some_and(|a| self.algorithms.contains(&a));
        if !offered || qop.flatten() != self.qop || qop.is_some_and(|q| q.is_none()) {
            return rejected(RejectReason::NotOffered);
        }
        if cred.param("uri").as_deref() != Some(req_uri) {
            return rejected(RejectReason::UriMismatch);
        }
        let nc = match cred.param("nc") {
            Some(nc) => match u32::from_str_radix(&nc, 16) {
                Ok(n) if nc.len() == 8 => n,
                _ => return rejected(RejectReason::NotOffered),
            },
            None => 0,
        };
        let (secret, known) = match lookup(&username) {
            Some(s) => (s, true),
            None => (Secret::Password(DUMMY_PASSWORD), false),
        };
        let ok = verify(&cred, method.as_str(), &self.realm, secret, req.body());
        if !known {
            return rejected(RejectReason::UnknownUser);
        }
        if !ok {
            return rejected(RejectReason::WrongPassword);
        }
        if fresh {
            Verdict::Authorized {
                username,
                nonce: nonce.into_owned(),
                nc,
            }
        } else {
            challenge(true)
        }
    }
}
