//! The operator's view on the API listener: `GET /healthz` and Prometheus `GET /metrics`.
//!
//! Call control records through the `metrics` facade (counters by carrier and answer code, outcomes, a
//! setup-latency histogram); the transport and endpoint counters, kept as atomics on their hot paths, are
//! copied in at scrape time so a packet never pays for a label lookup.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::call::CallStats;
use crate::sip::endpoint::EndpointStats;
use crate::transport::TransportStats;

/// Buckets for call setup (carrier INVITE to the answer relayed), seconds.
const SETUP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder (the `metrics` facade allows one per process).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("edge_call_setup_seconds".into()),
                SETUP_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; the handle still renders ours.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// What /healthz and /metrics read.
#[derive(Clone)]
pub struct OpsState {
    pub started: Instant,
    pub endpoint: Arc<EndpointStats>,
    pub transport: Arc<TransportStats>,
    pub calls: Arc<CallStats>,
    /// SIP trace and HEP counters.
    pub trace: Arc<crate::trace::TraceStats>,
    pub agent_gauge: Arc<dashmap::DashMap<String, u32>>,
    /// Read at scrape time for the port and socket gauges (`None`: media off).
    pub media: Option<edge_media::MediaEngine>,
    pub security: SecurityStats,
    /// `[api] metrics_token`: when set, `/metrics` needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<Arc<str>>,
    /// `[api] metrics_agent_labels`: per-agent series, which name accounts' agents.
    pub agent_labels: bool,
    /// Draining, and the configuration generation running.
    pub lifecycle: Arc<crate::server::lifecycle::Lifecycle>,
}

/// What the edge did with outsiders and agents' digest: admission drops, digest checks and the guard.
#[derive(Clone)]
pub struct SecurityStats {
    pub admission: Arc<crate::sip::admission::AdmissionStats>,
    /// `None`: `outbound.agent_digest = false`.
    pub digest: Option<(
        Arc<crate::sip::agent_auth::AgentAuthStats>,
        Arc<crate::sip::digest_guard::GuardStats>,
    )>,
}

/// `/healthz`, and `/metrics` when `with_metrics` (a listener of its own, or a token is set).
pub fn router(state: OpsState, with_metrics: bool) -> Router {
    prometheus();
    let r = Router::new().route("/healthz", get(healthz));
    let r = if with_metrics {
        r.route("/metrics", get(metrics_text))
    } else {
        r
    };
    r.with_state(state)
}

/// Constant-time comparison of the presented bearer token with the configured one.
fn token_ok(headers: &axum::http::HeaderMap, want: &str) -> bool {
    let Some(got) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (got.trim().as_bytes(), want.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ x);
    }
    diff == 0
}

async fn healthz(State(s): State<OpsState>) -> impl IntoResponse {
    let draining = s.lifecycle.draining();
    let body = serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "draining": draining,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
        "active_calls": s.calls.active_calls.load(Ordering::Relaxed),
        "config_generation": s.lifecycle.generation(),
        "config_loaded_at": edge_store::time::rfc3339(s.lifecycle.loaded_at_ms()),
    });
    // A load balancer's health check takes a draining node out of rotation.
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body))
}

/// Admission, outsiders' answers, transactions by who opened them, and agent digest.
fn security_metrics(s: &OpsState) {
    let get = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let e = &s.endpoint;
    metrics::gauge!("edge_sip_transactions").set(get(&e.transactions_live) as f64);
    for (class, v) in [("carrier", &e.transactions_carrier), ("other", &e.transactions_other)] {
        metrics::counter!("edge_sip_transactions_created_total", "class" => class).absolute(get(v));
    }
    metrics::counter!("edge_sip_reserved_for_carriers_total").absolute(get(&e.reserved_for_carriers));
    for (what, v) in [
        ("answered", &e.outsider_answered),
        ("silenced", &e.outsider_silenced),
        ("too_large", &e.outsider_too_large),
    ] {
        metrics::counter!("edge_sip_outsider_requests_total", "outcome" => what).absolute(get(v));
    }
    metrics::counter!("edge_sip_outsider_bytes_total", "direction" => "in").absolute(get(&e.outsider_bytes_in));
    metrics::counter!("edge_sip_outsider_bytes_total", "direction" => "out").absolute(get(&e.outsider_bytes_out));
    let a = &s.security.admission;
    for (limit, v) in [
        ("stranger", &a.dropped_stranger),
        ("strangers_total", &a.dropped_strangers_total),
        ("agent", &a.dropped_agent),
    ] {
        metrics::counter!("edge_admission_dropped_total", "limit" => limit).absolute(get(v));
    }
    metrics::gauge!("edge_admission_tracked_sources").set(get(&a.tracked) as f64);
    metrics::gauge!("edge_admission_vouched_sources").set(get(&a.vouched) as f64);
    if let Some((d, g)) = &s.security.digest {
        metrics::counter!("edge_digest_challenges_total").absolute(get(&d.challenges));
        metrics::counter!("edge_digest_authorized_total").absolute(get(&d.authorized));
        metrics::counter!("edge_digest_replays_total").absolute(get(&d.replays));
        for (reason, v) in [
            ("unknown_user", &d.failed_unknown_user),
            ("wrong_password", &d.failed_wrong_password),
            ("not_offered", &d.failed_not_offered),
            ("uri_mismatch", &d.failed_uri_mismatch),
            ("agent_disabled", &d.failed_disabled),
        ] {
            metrics::counter!("edge_digest_failures_total", "reason" => reason).absolute(get(v));
        }
        metrics::counter!("edge_digest_throttled_total").absolute(get(&g.throttled));
        metrics::counter!("edge_digest_lockouts_total").absolute(get(&g.lockouts));
        metrics::gauge!("edge_digest_locked", "what" => "source").set(get(&g.locked_sources) as f64);
        metrics::gauge!("edge_digest_locked", "what" => "username").set(get(&g.locked_usernames) as f64);
    }
}

/// The TCP budgets (`sip.tcp_*`): refusals by the cap that was full, accepted and open connections by
/// class of source, and connections closed for saying nothing in SIP in time or for going idle.
fn tcp_budget_metrics(t: &TransportStats) {
    use crate::transport::tcp_budget::{PeerClass, Refusal};
    let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    for why in [
        Refusal::Total,
        Refusal::PerIp,
        Refusal::StrangerTotal,
        Refusal::StrangerPerIp,
    ] {
        metrics::counter!("edge_tcp_connections_refused_by_reason_total", "reason" => why.as_str())
            .absolute(load(t.tcp_refused(why)));
    }
    for class in [PeerClass::Carrier, PeerClass::Agent, PeerClass::Stranger] {
        metrics::counter!("edge_tcp_connections_accepted_by_class_total", "class" => class.as_str())
            .absolute(load(t.tcp_accepted(class)));
        metrics::gauge!("edge_tcp_connections_open", "class" => class.as_str()).set(load(t.tcp_open(class)) as f64);
    }
    metrics::gauge!("edge_tcp_connections_open", "class" => "outbound").set(load(&t.tcp_open_outbound) as f64);
    metrics::counter!("edge_tcp_first_message_timeouts_total").absolute(load(&t.tcp_first_message_timeouts));
    metrics::counter!("edge_tcp_idle_closed_total").absolute(load(&t.tcp_idle_closed));
}

async fn metrics_text(State(s): State<OpsState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if let Some(want) = &s.metrics_token {
        if !token_ok(&headers, want) {
            return edge_api::ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid metrics token (use `Authorization: Bearer <[api] metrics_token>`)",
            )
            .into_response();
        }
    }
    let c = |name: &'static str, v: &std::sync::atomic::AtomicU64| {
        metrics::counter!(name).absolute(v.load(Ordering::Relaxed))
    };
    c("edge_sip_requests_total", &s.endpoint.requests);
    c("edge_sip_responses_received_total", &s.endpoint.responses_in);
    c("edge_sip_malformed_answered_total", &s.endpoint.malformed_answered);
    c("edge_sip_malformed_dropped_total", &s.endpoint.malformed_dropped);
    c("edge_sip_unknown_source_total", &s.endpoint.unknown_source);
    c(
        "edge_sip_retransmissions_absorbed_total",
        &s.endpoint.retransmissions_absorbed,
    );
    c("edge_sip_stray_dropped_total", &s.endpoint.stray_dropped);
    c("edge_sip_overload_rejected_total", &s.endpoint.overload_rejected);
    security_metrics(&s);
    c("edge_udp_datagrams_total", &s.transport.udp_datagrams_in);
    // Datagrams the kernel dropped on the SIP socket (receive queue full: the engine fell behind).
    let inode = s.transport.udp_socket_inode.load(Ordering::Relaxed);
    let drops = (inode != 0)
        .then(|| crate::transport::udp::kernel_drops(inode))
        .flatten();
    metrics::counter!("edge_udp_dropped_overload_total").absolute(drops.unwrap_or(0));
    c(
        "edge_tcp_connections_accepted_total",
        &s.transport.tcp_connections_accepted,
    );
    c(
        "edge_tcp_connections_refused_total",
        &s.transport.tcp_connections_refused,
    );
    c("edge_tcp_connections_opened_total", &s.transport.tcp_connections_opened);
    c("edge_tcp_framing_errors_total", &s.transport.tcp_framing_errors);
    c("edge_tls_handshakes_total", &s.transport.tls_handshakes);
    c("edge_tls_handshake_failures_total", &s.transport.tls_handshake_failures);
    tcp_budget_metrics(&s.transport);
    c("edge_send_errors_total", &s.transport.send_errors);
    c("edge_failovers_total", &s.calls.failovers);
    c("edge_call_records_dropped_total", &s.calls.records_dropped);
    c("edge_trace_dropped_total", &s.trace.dropped);
    c("edge_traces_stored_total", &s.trace.stored);
    c("edge_hep_sent_total", &s.trace.hep_sent);
    c("edge_media_unavailable_total", &s.calls.media_unavailable);
    c("edge_refusals_recorded_total", &s.calls.refusals_recorded);
    c("edge_refusals_unrecorded_total", &s.calls.refusals_unrecorded);
    for (outcome, v) in [
        ("primary", &s.calls.answered_primary),
        ("fallback", &s.calls.answered_fallback),
        ("voicemail", &s.calls.voicemail),
        ("rejected", &s.calls.rejected),
    ] {
        metrics::counter!("edge_calls_total", "outcome" => outcome).absolute(v.load(Ordering::Relaxed));
    }
    metrics::gauge!("edge_active_calls").set(s.calls.active_calls.load(Ordering::Relaxed) as f64);
    if let Some(m) = &s.media {
        // How close media is to its limits: free and quarantined port pairs, sockets open and the ceiling.
        let (free, quarantined) = m.port_pairs();
        metrics::gauge!("edge_media_port_pairs", "state" => "free").set(free as f64);
        metrics::gauge!("edge_media_port_pairs", "state" => "quarantined").set(quarantined as f64);
        let (open, max) = m.sockets();
        metrics::gauge!("edge_media_sockets_open").set(open as f64);
        if max != usize::MAX {
            metrics::gauge!("edge_media_sockets_max").set(max as f64);
        }
        metrics::gauge!("edge_media_workers_up").set(m.workers_alive() as f64);
        // SRTP/SRTCP packets the relays and voicemail dropped, by why (counts only: no key, no address).
        for (reason, v) in edge_media::srtp_dropped() {
            metrics::counter!("edge_srtp_dropped_total", "reason" => reason).absolute(v);
        }
    }
    if s.agent_labels {
        for e in s.agent_gauge.iter() {
            metrics::gauge!("edge_agent_active_calls", "agent_id" => e.key().clone()).set(*e.value() as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}
