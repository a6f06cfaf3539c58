//! Resolution failures, split by what the caller does next (retry later vs. bad config).

/// Why a host could not be turned into targets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid host name {0:?}")]
    InvalidHost(String),
    #[error("{0} does not exist (NXDOMAIN)")]
    NxDomain(String),
    #[error("no SIP server address found for {0}")]
    NotFound(String),
    #[error("DNS lookup for {0} timed out")]
    Timeout(String),
    #[error("DNS failure for {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("resolver configuration: {0}")]
    Config(String),
}
