//! Where the worker may connect: a webhook's host is judged by the same rules as agents' and trunks'
//! (`[security] internal_targets`) after DNS, so a name cannot be pointed at the operator's network after
//! the API accepted it.

use edge_contract::TargetPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A resolver that drops the addresses the policy refuses (and fails when none is left).
#[derive(Debug, Clone)]
pub(super) struct PolicyResolver {
    pub policy: Arc<TargetPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.refusal(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let why = found
                    .first()
                    .and_then(|a| policy.refusal(a.ip()))
                    .unwrap_or("unresolvable");
                return Err(format!("{host} resolves to a {why} address only (internal_target)").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Literal addresses never reach the resolver: judged here.
pub(super) fn literal_refusal(policy: &TargetPolicy, host: &str) -> Option<&'static str> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().ok().and_then(|ip| policy.refusal(ip))
}
