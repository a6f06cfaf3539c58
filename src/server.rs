//! Wiring: binds the sockets, starts the transports, the SIP engine task and the REST API, and stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, UnknownSource};
use crate::sip::endpoint::{
    Decision, Endpoint, EndpointConfig, EndpointStats, InviteHandler, SourcePolicy,
};
use crate::transport::{self, Inbound, Outbound, TransportStats};
use sip_core::message::Message;
use sip_core::transaction::{AutoTrying, TimerConfig, TxConfig};

/// Messages queued between the transports and the engine; past this, UDP datagrams are dropped (and
/// counted) and TCP readers wait.
const ENGINE_QUEUE: usize = 16_384;

/// A running edge.
pub struct Edge {
    pub sip_udp: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub endpoint_stats: Arc<EndpointStats>,
    pub transport_stats: Arc<TransportStats>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Edge {
    /// Waits for SIGINT or SIGTERM.
    pub async fn wait_for_shutdown_signal(&self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }

    /// Stops every task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Source check from the `[[carriers]]` allow lists.
struct CarrierPolicy {
    cfg: Arc<Config>,
}

impl SourcePolicy for CarrierPolicy {
    fn carrier_for(&self, source: SocketAddr) -> Option<Arc<str>> {
        self.cfg
            .carrier_for(source.ip())
            .map(|c| Arc::from(c.name.as_str()))
    }
    fn reject_unknown(&self) -> bool {
        self.cfg.unknown_source == UnknownSource::Reject
    }
}

/// Until numbers are wired to agents, every dialed number is unknown here.
struct NoRoutes;

impl InviteHandler for NoRoutes {
    fn on_invite(&mut self, _now: Instant, _carrier: &str, _invite: &Message) -> Decision {
        Decision {
            code: 404,
            reason: "Not Found",
            headers: vec![],
        }
    }
}

/// Binds everything in `cfg` and starts serving.
pub async fn start(cfg: Config) -> anyhow::Result<Edge> {
    let cfg = Arc::new(cfg);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let transport_stats = Arc::new(TransportStats::default());
    let mut tasks = Vec::new();

    let udp = match cfg.sip.udp {
        Some(addr) => {
            Some(Arc::new(UdpSocket::bind(addr).await.with_context(
                || format!("binding SIP UDP on {addr} (sip.udp)"),
            )?))
        }
        None => None,
    };
    let tcp = match cfg.sip.tcp {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding SIP TCP on {addr} (sip.tcp)"))?,
        ),
        None => None,
    };
    let sip_udp = udp.as_ref().map(|s| s.local_addr()).transpose()?;
    let sip_tcp = tcp.as_ref().map(|s| s.local_addr()).transpose()?;
    let out = Outbound::new(udp.clone(), transport_stats.clone());
    let (engine_tx, engine_rx) = mpsc::channel::<Inbound>(ENGINE_QUEUE);

    let warn_agent = cfg
        .sip
        .advertised_host
        .clone()
        .or_else(|| sip_udp.or(sip_tcp).map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "oneinbox-edge".into());
    let endpoint = Endpoint::new(
        EndpointConfig {
            server_name: cfg.sip.server_name.clone(),
            warn_agent,
            tx: TxConfig {
                timers: TimerConfig {
                    t1: cfg.sip.t1,
                    t2: cfg.sip.t2,
                    t4: cfg.sip.t4,
                    ..TimerConfig::default()
                },
                max_transactions: cfg.sip.max_transactions,
                auto_trying: AutoTrying::Immediate,
            },
        },
        Box::new(CarrierPolicy { cfg: cfg.clone() }),
        Box::new(NoRoutes),
    );
    let endpoint_stats = endpoint.stats.clone();
    tasks.push(tokio::spawn(run_engine(
        endpoint,
        engine_rx,
        out.clone(),
        shutdown_rx.clone(),
    )));

    if let Some(sock) = udp {
        tasks.push(tokio::spawn(transport::udp::run(
            sock,
            engine_tx.clone(),
            transport_stats.clone(),
        )));
    }
    if let Some(listener) = tcp {
        let limits = transport::tcp::TcpLimits {
            max_message_size: cfg.sip.max_message_size,
            idle_timeout: cfg.sip.tcp_idle_timeout,
            max_connections: cfg.sip.tcp_max_connections,
            max_per_ip: cfg.sip.tcp_max_connections_per_ip,
        };
        tasks.push(tokio::spawn(transport::tcp::run(
            listener,
            engine_tx.clone(),
            out.clone(),
            limits,
        )));
    }
    tracing::info!(?sip_udp, ?sip_tcp, "SIP listening");

    Ok(Edge {
        sip_udp,
        sip_tcp,
        api: None,
        endpoint_stats,
        transport_stats,
        shutdown,
        tasks,
    })
}

/// The engine task: the only owner of the endpoint, so SIP state needs no locks. It sleeps until the next
/// message or the next transaction timer, whichever is first.
async fn run_engine(
    mut ep: Endpoint,
    mut rx: mpsc::Receiver<Inbound>,
    out: Outbound,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let deadline = ep.poll_timeout();
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            m = rx.recv() => {
                let Some(m) = m else { return };
                let now = Instant::now();
                ep.handle(now, m.source, m.link, m.data);
                // Drain what is already queued before flushing: amortises the wake-up under load.
                for _ in 0..64 {
                    match rx.try_recv() {
                        Ok(m) => ep.handle(now, m.source, m.link, m.data),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                ep.handle_timeout(Instant::now());
            }
        }
        while let Some(t) = ep.poll_transmit() {
            out.send(t.link, t.to, t.bytes);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
    }
}

/// `oneinbox-edge keys create`: a new API key (and account when none is named).
pub async fn create_api_key(
    _cfg: &Config,
    _account: Option<&str>,
    _name: &str,
) -> anyhow::Result<(String, String)> {
    anyhow::bail!("the key store is not wired in yet")
}
