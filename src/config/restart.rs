//! Which keys a reload may apply (issue 21): a running edge takes a new file's carriers, agent networks,
//! routing and outbound settings, admission limits, log level and drain time-out; keys bound to what
//! was built at start (listeners, store, data directory, shards, media, the API's settings, the digest
//! verifier, the DNS resolver, trunk pacing, the TLS client, traces and HEP, the Redis limits, the webhook worker) keep their
//! running value until a restart, and are named.

use super::Config;

/// Puts back into `new` the running value of every key that needs a restart, and names those the file
/// changed (file key names, in file order). What is left in `new` is what a reload applies.
pub fn keep_restart_bound(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    // Debug text compares every field type the config has (several have no PartialEq), and a reload is
    // rare enough that its cost does not matter.
    macro_rules! keep {
        ($key:literal, $($field:tt).+) => {
            if format!("{:?}", running.$($field).+) != format!("{:?}", new.$($field).+) {
                changed.push($key);
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("sip.udp", sip.udp);
    keep!("sip.tcp", sip.tcp);
    keep!("sip.tls", sip.tls);
    keep!("sip.tls_certificate", sip.tls_certificate);
    keep!("sip.tls_private_key", sip.tls_private_key);
    keep!("sip.advertised_host", sip.advertised_host);
    keep!("sip.max_message_size", sip.max_message_size);
    keep!("sip.tcp_idle_timeout_s", sip.tcp_idle_timeout);
    keep!("sip.tcp_max_connections", sip.tcp_max_connections);
    keep!("sip.tcp_max_connections_per_ip", sip.tcp_max_connections_per_ip);
    keep!(
        "sip.tcp_carrier_reserved_connections",
        sip.tcp_carrier_reserved_connections
    );
    keep!("sip.tcp_stranger_max_connections", sip.tcp_stranger_max_connections);
    keep!(
        "sip.tcp_stranger_max_connections_per_ip",
        sip.tcp_stranger_max_connections_per_ip
    );
    keep!("sip.tcp_first_message_timeout_s", sip.tcp_first_message_timeout);
    keep!("sip.t1_ms", sip.t1);
    keep!("sip.t2_ms", sip.t2);
    keep!("sip.t4_ms", sip.t4);
    keep!("sip.max_transactions", sip.max_transactions);
    keep!("sip.server_name", sip.server_name);
    keep!("api.listen", api_listen);
    keep!("api.metrics_*", metrics);
    keep!("api.public_sip_uri", public_sip_uri);
    keep!("api.public_url", public_api_url);
    keep!("database.url", database_url);
    keep!("storage.data_dir", data_dir);
    keep!("secrets.key", secret_key);
    keep!("log.format", log_format);
    keep!("runtime.worker_threads", worker_threads);
    keep!("runtime.engine_shards", engine_shards);
    keep!("routing.default_voicemail_message", default_voicemail_message);
    keep!("media", media);
    keep!("inventory", inventory);
    keep!("security", security);
    keep!("node.id", node_id);
    keep!("outbound.agent_digest", outbound.agent_digest);
    keep!("outbound.agent_digest_nonce_ttl_s", outbound.agent_digest_nonce_ttl);
    keep!(
        "outbound.agent_digest_failures_before_backoff/max_backoff_s/lockout_after/lockout_s",
        outbound.agent_digest_guard
    );
    keep!("outbound.auth_realm", outbound.auth_realm);
    keep!("outbound.max_pacing_wait_ms", outbound.max_pacing_wait);
    keep!("outbound.nameservers", outbound.nameservers);
    keep!("outbound.dns_timeout_ms", outbound.dns_timeout);
    // Built at start: the TLS client's roots and client certificates, the trace writer and HEP sender,
    // the Redis limits driver.
    keep!(
        "outbound.tls_extra_roots/agent_tls_client_*/trunks.tls_client_*",
        outbound.tls
    );
    keep!("observability", observability);
    keep!("cluster", cluster);
    keep!("webhooks", webhooks);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("edge.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn carriers_and_limits_apply_listeners_are_kept_and_named() {
        let running = parse("[sip]\nudp = \"127.0.0.1:5060\"\n[[carriers]]\nname = \"a\"\nallow = [\"10.0.0.1\"]\n");
        let mut new = parse(
            "[sip]\nudp = \"127.0.0.1:5070\"\n[[carriers]]\nname = \"b\"\nallow = [\"10.0.0.2\"]\n\
             [routing]\nagent_ring_timeout_s = 9\n[shutdown]\ndrain_timeout_s = 7\n",
        );
        let changed = keep_restart_bound(&running, &mut new);
        assert_eq!(changed, vec!["sip.udp"]);
        assert_eq!(new.sip.udp, running.sip.udp, "a listener keeps its running address");
        assert_eq!(new.carriers[0].name, "b");
        assert_eq!(new.agent_ring_timeout.as_secs(), 9);
        assert_eq!(new.drain_timeout.as_secs(), 7);
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let text = "[sip]\nudp = \"127.0.0.1:5060\"\n[media]\nrtp_ports = \"30000-30099\"\n";
        let mut new = parse(text);
        assert!(keep_restart_bound(&parse(text), &mut new).is_empty());
    }
}
