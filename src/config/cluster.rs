//! `[cluster]`: what the nodes of one deployment count together (issue 21). Off by default: a single node
//! counts every limit itself.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    redis_url: Option<Spanned<String>>,
    key_prefix: Spanned<String>,
    lease_ttl_ms: Spanned<u64>,
    redis_timeout_ms: Spanned<u64>,
}

impl Default for RawCluster {
    fn default() -> Self {
        RawCluster {
            redis_url: None,
            key_prefix: Spanned::new(0..0, "oneinbox:".into()),
            lease_ttl_ms: Spanned::new(0..0, 3_000),
            redis_timeout_ms: Spanned::new(0..0, 50),
        }
    }
}

/// The validated `[cluster]` table.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `redis://host:port[/db]`: agent concurrency and trunk calls per second counted across every node
    /// that names the same Redis (and prefix). `None`: each node counts alone.
    pub redis_url: Option<String>,
    /// Put before every key, so that several deployments (or tests) can share one Redis.
    pub key_prefix: String,
    /// How long a node's slots outlive its last heartbeat (it beats every third of this): a crashed
    /// node's calls stop counting against agents after at most this.
    pub lease_ttl: Duration,
    /// The longest a call waits for Redis before the per-node fallback decides for it.
    pub redis_timeout: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            redis_url: None,
            key_prefix: "oneinbox:".into(),
            lease_ttl: Duration::from_secs(3),
            redis_timeout: Duration::from_millis(50),
        }
    }
}

impl Validator<'_> {
    pub(super) fn cluster(&self, c: &RawCluster) -> Result<ClusterSettings, ConfigError> {
        let redis_url = match &c.redis_url {
            None => None,
            Some(v) => {
                let url = v.get_ref().trim();
                if !url.starts_with("redis://") {
                    return self.err(
                        "cluster.redis_url",
                        v.span(),
                        format!("`{url}`: expected redis://host:port"),
                    );
                }
                if let Err(e) = redis::Client::open(url) {
                    return self.err("cluster.redis_url", v.span(), format!("`{url}`: {e}"));
                }
                Some(url.to_owned())
            }
        };
        let prefix = c.key_prefix.get_ref();
        if prefix.len() > 64 || prefix.bytes().any(|b| !b.is_ascii_graphic()) {
            return self.err(
                "cluster.key_prefix",
                c.key_prefix.span(),
                "expected at most 64 printable ASCII characters, no spaces",
            );
        }
        Ok(ClusterSettings {
            redis_url,
            key_prefix: prefix.clone(),
            lease_ttl: Duration::from_millis(self.range("cluster.lease_ttl_ms", &c.lease_ttl_ms, 300, 600_000)?),
            redis_timeout: Duration::from_millis(self.range(
                "cluster.redis_timeout_ms",
                &c.redis_timeout_ms,
                1,
                10_000,
            )?),
        })
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
    fn off_by_default_and_checked_when_set() {
        let c = parse("").unwrap();
        assert!(c.cluster.redis_url.is_none());
        let c = parse("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nlease_ttl_ms = 2000\n").unwrap();
        assert_eq!(c.cluster.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.cluster.lease_ttl.as_millis(), 2000);
        let e = parse("[cluster]\nredis_url = \"http://x\"\n").unwrap_err();
        assert!(e.contains("cluster.redis_url") && e.contains(":2:"), "{e}");
        let e = parse("[cluster]\nlease_ttl_ms = 10\n").unwrap_err();
        assert!(e.contains("cluster.lease_ttl_ms"), "{e}");
    }
}
