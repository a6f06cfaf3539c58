//! Agents that place calls from outside `[[agent_networks]]` prove who they are with digest
//! (`outbound.agent_digest`), and this is all of it: the stateless challenge, the check, the replay
//! ledger and the guard against guessing. The endpoint runs it *before* the transaction layer, so
//! an INVITE costs the edge a transaction only once its credentials are good.
//!
//! What an outsider can learn or do here, by design:
//! * the challenge is one datagram computed from the request (no retransmission timer, no state);
//! * a nonce only works from the address it was sent to, for `nonce_ttl` seconds, for one call
//!   attempt, with a growing nonce count (a captured `Proxy-Authorization` places nothing);
//! * an unknown user and a wrong password get the same answer after the same hashing;
//! * failures slow the source and the username down, then lock them out, in silence.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use edge_store::{AgentRecord, AgentStatus, RoutingIndex};
use sip_core::digest::{ChallengeAnswer, DigestVerifier, NonceLedger, NonceUse, RejectReason, Secret, Verdict};
use sip_core::message::Message;

use super::digest_guard::{DigestGuard, Escalation, GuardConfig, GuardStats};

/// Nonces remembered by the replay ledger at most.
const LEDGER_CAP: usize = 100_000;

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct AgentAuthStats {
    pub challenges: AtomicU64,
    pub authorized: AtomicU64,
    /// Credentials that verified but were used before (another call, or a nonce count not above
    /// the last one): challenged again, nothing placed.
    pub replays: AtomicU64,
    pub failed_unknown_user: AtomicU64,
    pub failed_wrong_password: AtomicU64,
    pub failed_not_offered: AtomicU64,
    pub failed_uri_mismatch: AtomicU64,
    /// Credentials for a disabled agent.
    pub failed_disabled: AtomicU64,
}

/// What the endpoint does with an agent's INVITE.
#[derive(Debug)]
pub enum AuthOutcome {
    /// Good credentials: the call goes on, as this agent.
    Authorized(Arc<AgentRecord>),
    /// Answer with this challenge, statelessly.
    Challenge(ChallengeAnswer),
    /// Answer 403, statelessly; the same answer whatever was wrong.
    Refused,
    /// Say nothing: the source or username is backing off or locked out.
    Ignored,
}

pub struct AgentAuth {
    verifier: DigestVerifier,
    ledger: NonceLedger,
    guard: DigestGuard,
    index: Arc<RoutingIndex>,
    pub stats: Arc<AgentAuthStats>,
}

impl AgentAuth {
    pub fn new(verifier: DigestVerifier, guard: GuardConfig, index: Arc<RoutingIndex>) -> Self {
        AgentAuth {
            ledger: NonceLedger::new(verifier.nonce_ttl_secs(), LEDGER_CAP),
            verifier,
            guard: DigestGuard::new(guard),
            index,
            stats: Arc::new(AgentAuthStats::default()),
        }
    }

    pub fn guard_stats(&self) -> Arc<GuardStats> {
        self.guard.stats.clone()
    }

    /// Judges a new INVITE from `source` at `now` (`unix_now`: the same instant in Unix seconds,
    /// the clock nonces are minted on so that every node reads them alike).
    pub fn check(&mut self, now: Instant, unix_now: u64, source: SocketAddr, req: &Message) -> AuthOutcome {
        let ip = source.ip();
        let username = self.verifier.username(req);
        if self.guard.check(now, ip, username.as_deref()).is_err() {
            return AuthOutcome::Ignored;
        }
        let agent = username.as_deref().and_then(|u| self.index.agent_by_sip_username(u));
        let password = agent
            .as_ref()
            .and_then(|a| a.sip_password.as_ref().map(|p| p.expose().to_owned()));
        let bind = bind_of(ip);
        let verdict = self
            .verifier
            .check(req, unix_now, &bind, |_| password.as_deref().map(Secret::Password));
        match verdict {
            Verdict::Challenge(c) => {
                self.stats.challenges.fetch_add(1, Ordering::Relaxed);
                AuthOutcome::Challenge(c)
            }
            Verdict::Rejected { username, reason } => {
                let counter = match reason {
                    RejectReason::UnknownUser => &self.stats.failed_unknown_user,
                    RejectReason::WrongPassword => &self.stats.failed_wrong_password,
                    RejectReason::NotOffered => &self.stats.failed_not_offered,
                    RejectReason::UriMismatch => &self.stats.failed_uri_mismatch,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.failed(now, ip, &username, reason.as_str());
                AuthOutcome::Refused
            }
            Verdict::Authorized { username, nonce, nc } => {
                let call_id = req.call_id().unwrap_or("");
                if self.ledger.record(unix_now, &nonce, call_id, nc) == NonceUse::Replay {
                    self.stats.replays.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%source, %username, "agent digest: replayed credentials challenged again");
                    self.stats.challenges.fetch_add(1, Ordering::Relaxed);
                    return AuthOutcome::Challenge(self.verifier.challenge(unix_now, &bind, false));
                }
                // `lookup` found a password, so the agent exists.
                let Some(agent) = agent else {
                    return AuthOutcome::Refused;
                };
                if agent.status != AgentStatus::Active {
                    self.stats.failed_disabled.fetch_add(1, Ordering::Relaxed);
                    self.failed(now, ip, &username, "agent_disabled");
                    return AuthOutcome::Refused;
                }
                self.guard.succeeded(now, ip, &username);
                self.stats.authorized.fetch_add(1, Ordering::Relaxed);
                AuthOutcome::Authorized(agent)
            }
        }
    }

    /// Counts a failure; logs only when the source or username starts backing off or is locked out
    /// (a guesser's every attempt would otherwise be a log line).
    fn failed(&mut self, now: Instant, ip: IpAddr, username: &str, why: &str) {
        tracing::debug!(%ip, username, why, "agent digest credentials rejected");
        match self.guard.failed(now, ip, Some(username)) {
            Escalation::None => {}
            Escalation::BackingOff => {
                tracing::info!(%ip, username, why, "agent digest: repeated failures, backing off");
            }
            Escalation::LockedOut => {
                tracing::warn!(%ip, username, why, "agent digest: too many failures, locked out");
            }
        }
    }
}

/// The bytes a nonce is bound to: the client's address.
fn bind_of(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}
