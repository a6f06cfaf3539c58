//! Wiring: binds the sockets, starts the transports, the SIP engine task and the REST API, and stops them.
//! The engine loop is in [`engine`], the call-record writer in [`records`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::call::leg::Local;
use crate::call::pacing::TrunkPacer;
use crate::call::{AgentSlots, CallConfig, CallController, CallMedia, CallStats};
use crate::config::{Config, UnknownSource};
use crate::media_ctl::MediaCtl;
use crate::shard::limits::{SharedAdmission, SharedAgentAuth};
use crate::shard::{CallShard, Dispatch, ShardIds, ShardMap};
use crate::sip::admission::Admission;
use crate::sip::agent_auth::AgentAuth;
use crate::sip::endpoint::{Endpoint, EndpointConfig, EndpointStats, SourcePolicy};
use crate::transport::{self, Input, Outbound, TransportStats};
use edge_store::{RoutingIndex, SecretBox, Store, StoreConfig};
use sip_core::transaction::{AutoTrying, TimerConfig, TxConfig};

mod drain;
mod engine;
pub mod lifecycle;
mod records;
pub mod reload;

pub use drain::StopSignals;
use drain::{Control, Idle};
use lifecycle::Lifecycle;
use reload::{ReloadReport, Reloader};

use engine::{run_engine, EngineInputs};
use records::{spawn_record_writer, RECORD_QUEUE};

/// TCP frames queued between the TCP readers and the engine; past this, the readers wait. (UDP needs no
/// queue of ours: the engine reads the socket itself and the kernel's receive queue is the buffer.)
const ENGINE_QUEUE: usize = 16_384;

/// A running edge.
pub struct Edge {
    pub sip_udp: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    /// The SIP-over-TLS listener (`sip.tls`).
    pub sip_tls: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub endpoint_stats: Arc<EndpointStats>,
    /// Admission and agent digest counters.
    pub security: crate::ops::SecurityStats,
    pub transport_stats: Arc<TransportStats>,
    pub call_stats: Arc<CallStats>,
    /// SIP trace and HEP counters.
    pub trace_stats: Arc<crate::trace::TraceStats>,
    /// Calls in progress per agent, as the engine counts them.
    pub agent_gauge: Arc<dashmap::DashMap<String, u32>>,
    pub store: Arc<Store>,
    pub index: Arc<RoutingIndex>,
    /// `[cluster]`: whether Redis answers, and how many limits it and the fallback decided.
    pub cluster: Option<Arc<crate::cluster::ClusterStats>>,
    /// The TLS listener's certificate and key in use.
    tls: Option<Arc<transport::tls::TlsCerts>>,
    shutdown: watch::Sender<bool>,
    /// Drain and its end, to the engine shards ([`Self::drain`]).
    control: watch::Sender<Control>,
    /// Per shard: nothing left to wait for (published while draining).
    idle: Vec<Idle>,
    /// Draining, and the configuration generation, for /healthz.
    lifecycle: Arc<Lifecycle>,
    reloader: Arc<Reloader>,
    /// How long the BYEs that end a drain may take to be answered: Timer F (64*T1) and a margin.
    bye_bound: std::time::Duration,
    data_dir: std::path::PathBuf,
    /// One task per engine shard.
    engines: Vec<JoinHandle<()>>,
    /// Which shard owns a Call-ID or public call id.
    shard_map: ShardMap,
    /// Fires when the record writer's thread has stored what was queued and ended.
    records: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Fires when the trace writer has stored what it held and ended.
    traces: Option<tokio::sync::oneshot::Receiver<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Edge {
    /// Calls the agent is on now, on every shard.
    pub fn agent_load(&self, agent_id: &str) -> u32 {
        self.agent_gauge.get(agent_id).map(|v| *v).unwrap_or(0)
    }

    /// Engine shards running.
    pub fn shards(&self) -> usize {
        self.shard_map.count()
    }

    /// The shard owning a SIP Call-ID or a public call id (tests pick Call-IDs for a shard with it).
    pub fn shard_of(&self, id: &str) -> usize {
        self.shard_map.of(id.as_bytes())
    }

    /// Re-reads the TLS listener's certificate and key, as SIGHUP does (`None`: no `sip.tls`). A pair that
    /// does not load is refused, with the reason logged and returned, and the one in use stays.
    pub fn reload_tls(&self) -> Option<Result<(), transport::tls::TlsError>> {
        self.tls.as_ref().map(|c| c.reload())
    }

    /// Re-reads the config file, as SIGHUP does, and says what was applied.
    pub async fn reload(&self) -> ReloadReport {
        self.reloader.reload().await
    }

    /// The configuration generation running (1 at start, one more per reload applied).
    pub fn config_generation(&self) -> u64 {
        self.lifecycle.generation()
    }

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

    /// Stops every task at once, as a killed process would: no call is ended, hung up or recorded as
    /// ended, and the heartbeat stops (what the record writer already holds is still stored). For tests of
    /// what a node's next start does with the records it left live.
    #[doc(hidden)]
    pub async fn abort(mut self) {
        for t in self.engines.drain(..).chain(self.tasks.drain(..)) {
            t.abort();
            let _ = t.await;
        }
        if let Some(records) = self.records.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), records).await;
        }
    }

    /// Stops every task: the engine first ends its calls (BYE, 503) and flushes, then the sockets close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // Every shard ends its calls at once; together they get the grace one had.
        let engines = std::mem::take(&mut self.engines);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), futures_join_all(engines)).await;
        // The engine is gone, so the record queue is closed: wait for the writer to store what is left.
        if let Some(records) = self.records.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), records).await;
        }
        if let Some(traces) = self.traces.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), traces).await;
        }
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
        reload::remove_pid_file(&self.data_dir);
    }
}

/// Waits for every task (no `futures` dependency for one join).
async fn futures_join_all(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Source check from the `[[carriers]]` allow lists and `[[agent_networks]]` (public so the fake-clock
/// tests build their endpoint with the server's own policy).
pub struct CarrierPolicy {
    cfg: Arc<Config>,
}

impl CarrierPolicy {
    pub fn new(cfg: Arc<Config>) -> Self {
        CarrierPolicy { cfg }
    }
}

impl SourcePolicy for CarrierPolicy {
    fn carrier_for(&self, source: SocketAddr) -> Option<Arc<str>> {
        self.cfg.carrier_for(source.ip()).map(|c| Arc::from(c.name.as_str()))
    }
    fn agent_network_for(&self, source: SocketAddr) -> Option<Arc<str>> {
        self.cfg
            .agent_network_for(source.ip())
            .map(|c| Arc::from(c.name.as_str()))
    }
    fn reject_unknown(&self) -> bool {
        self.cfg.unknown_source == UnknownSource::Reject
    }
    fn digest_offered_to(&self, source: SocketAddr) -> bool {
        match &self.cfg.outbound.agent_digest_from {
            Some(nets) => nets.iter().any(|n| n.contains(&source.ip())),
            None => self.reject_unknown(),
        }
    }
    fn carrier_media_encryption(&self, carrier: &str) -> edge_media::MediaEncryption {
        self.cfg
            .carriers
            .iter()
            .find(|c| c.name == carrier)
            .map_or(edge_media::MediaEncryption::None, |c| c.media_encryption)
    }
}

/// The number providers of `[inventory]`: the default one serves search and purchase; the others release
/// the numbers they sold.
fn providers(cfg: &Config) -> anyhow::Result<edge_api::ProviderSet> {
    use edge_providers::{LocalInventory, NumberProvider, ProviderKind, TelnyxProvider, TwilioProvider};
    let inv = &cfg.inventory;
    let local: Arc<dyn NumberProvider> = Arc::new(LocalInventory::new(inv.ranges.clone()));
    let twilio: Option<Arc<dyn NumberProvider>> = match &inv.twilio {
        Some(t) => Some(Arc::new(TwilioProvider::new(t.clone()).context("[inventory.twilio]")?)),
        None => None,
    };
    let telnyx: Option<Arc<dyn NumberProvider>> = match &inv.telnyx {
        Some(t) => Some(Arc::new(TelnyxProvider::new(t.clone()).context("[inventory.telnyx]")?)),
        None => None,
    };
    let default = match inv.default {
        ProviderKind::Twilio => twilio.clone(),
        ProviderKind::Telnyx => telnyx.clone(),
        ProviderKind::Local => None,
    }
    .unwrap_or_else(|| local.clone());
    let mut set = edge_api::ProviderSet::new(default).with(local);
    for p in [twilio, telnyx].into_iter().flatten() {
        set = set.with(p);
    }
    Ok(set)
}

/// Opens the store named by the config (embedded SQLite under `data_dir`, or PostgreSQL) with the secrets key.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let secrets = SecretBox::load_or_create(cfg.secret_key.as_deref(), &cfg.data_dir)
        .context("loading the secrets key ([secrets] key, ONEINBOX_SECRET_KEY or data_dir/secret.key)")?;
    let mut store_cfg =
        StoreConfig::new(cfg.database_url.as_deref(), &cfg.data_dir, secrets).context("store configuration")?;
    store_cfg.public_api_url = cfg.public_api_url.clone();
    Store::connect(store_cfg).await.context("opening the store")
}

/// How often a node tells the store it is alive: the `ended_at` of the records it leaves live when killed
/// is at most this much before the kill.
const NODE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// At a node's start: closes the records it left live ([`Store::close_left_live`], as of the last time it
/// was seen alive) and records its start. On SQLite, which one edge uses alone, every live record is a
/// leftover whatever its node ([`Store::close_every_left_live`]: records stored before nodes were named,
/// or under a host name that has changed since); on PostgreSQL only this node's are.
async fn close_left_live(store: &Store, node: &str) -> anyhow::Result<()> {
    let seen = store
        .node(node)
        .await
        .context("reading this node's last heartbeat ([node] id)")?;
    let closed = match store.backend() {
        edge_store::Backend::Sqlite => store.close_every_left_live().await,
        edge_store::Backend::Postgres => store.close_left_live(node, seen.map(|s| s.last_seen_at_ms)).await,
    }
    .context("closing the call records this node left live")?;
    if closed > 0 {
        tracing::warn!(
            node,
            closed,
            last_seen_ms = seen.map(|s| s.last_seen_at_ms),
            "closed the call records this node left live when it last stopped (end_reason \"{}\")",
            edge_store::EDGE_RESTARTED
        );
    } else {
        tracing::info!(node, "no call records left live by this node");
    }
    store
        .node_started(node, edge_store::now_ms())
        .await
        .context("recording this node's start")?;
    Ok(())
}

/// `[cluster] redis_url`: the driver of the cluster-wide limits, and the live-node count its fallback
/// divides by (nodes whose heartbeat is at most three beats old).
async fn start_cluster_limits(
    cfg: &Config,
    store: &Arc<Store>,
    agents: &AgentSlots,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<crate::cluster::ClusterLimits>> {
    let Some(url) = &cfg.cluster.redis_url else {
        return Ok(None);
    };
    // Counted before the first call: a node starting while Redis is down would otherwise think itself
    // alone (until the count's next tick) and give each agent its whole limit on this node.
    let window = NODE_HEARTBEAT * 3;
    let since = edge_store::now_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let first = match store.live_nodes(since).await {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX).max(1),
        Err(e) => {
            tracing::warn!(error = %e, "live nodes not counted at start: this node counts as alone until the next count");
            1
        }
    };
    let live = Arc::new(std::sync::atomic::AtomicU32::new(first));
    let (limits, driver) = crate::cluster::ClusterLimits::start(
        &cfg.cluster,
        url,
        &cfg.node_id,
        agents.clone(),
        cfg.outbound.max_pacing_wait,
        live.clone(),
    )
    .context("[cluster] redis_url")?;
    tasks.push(driver);
    tasks.push(tokio::spawn(crate::cluster::count_live_nodes(
        store.clone(),
        live,
        NODE_HEARTBEAT,
        window,
    )));
    Ok(Some(limits))
}

/// The node's heartbeat, off the engine: `nodes.last_seen_at` every [`NODE_HEARTBEAT`].
async fn node_heartbeat(store: Arc<Store>, node: String) {
    let mut every = tokio::time::interval(NODE_HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        match store.node_seen(&node, edge_store::now_ms()).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(node, "node heartbeat stored again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(node, error = %e, "node heartbeat not stored (logged once until it is again)");
            }
            Err(_) => {}
        }
    }
}

/// Binds everything in `cfg` and starts serving.
pub async fn start(cfg: Config) -> anyhow::Result<Edge> {
    // The metrics recorder first: the engine keeps counter handles, which must be the recorder's.
    crate::ops::prometheus();
    let cfg = Arc::new(cfg);
    let store = Arc::new(open_store(&cfg).await?);
    let index = store.index();
    let mut tasks = Vec::new();
    // Before any call: what this node left live when it last stopped without ending its calls is closed,
    // and from now on it says every few seconds that it is alive.
    close_left_live(&store, &cfg.node_id).await?;
    // Several edges share one PostgreSQL: a write through another node's API reaches this node's routing
    // index by LISTEN/NOTIFY within milliseconds (a node's own writes apply at once). Nothing on SQLite.
    tasks.push(store.spawn_index_sync(edge_store::INDEX_CHECK_EVERY));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let transport_stats = Arc::new(TransportStats::default());

    let udp = match cfg.sip.udp {
        Some(addr) => Some(Arc::new(
            transport::udp::SipUdp::bind(addr).with_context(|| format!("binding SIP UDP on {addr} (sip.udp)"))?,
        )),
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
    if let Some(inode) = udp.as_ref().and_then(|s| s.inode()) {
        transport_stats
            .udp_socket_inode
            .store(inode, std::sync::atomic::Ordering::Relaxed);
    }
    let sip_tcp = tcp.as_ref().map(|s| s.local_addr()).transpose()?;
    let tls = match (cfg.sip.tls, &cfg.sip.tls_certificate, &cfg.sip.tls_private_key) {
        (Some(addr), Some(certificate), Some(private_key)) => {
            let files = transport::tls::TlsFiles {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            };
            let certs =
                transport::tls::TlsCerts::load(files).context("loading sip.tls_certificate and sip.tls_private_key")?;
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding SIP TLS on {addr} (sip.tls)"))?;
            Some((listener, certs))
        }
        (Some(_), _, _) => anyhow::bail!("sip.tls is on without sip.tls_certificate and sip.tls_private_key"),
        (None, _, _) => None,
    };
    let sip_tls = tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let tls_certs = tls.as_ref().map(|(_, c)| c.clone());
    let out = Outbound::new(udp.clone(), transport_stats.clone());
    // Engine shards: each owns the calls whose Call-ID hashes to it; what they count together is shared.
    let shard_map = ShardMap::new(cfg.engine_shards);
    let shards = shard_map.count();
    let (engine_txs, engine_rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel::<Input>(ENGINE_QUEUE)).unzip();
    let dispatch = Dispatch::new(shard_map.clone(), engine_txs);

    let sip_addr = sip_udp.or(sip_tcp).or(sip_tls).context("no SIP listener")?;
    // Where agents and carriers reach us: the advertised host, else the listener's address (loopback when
    // bound to every interface, which suits local trials; production sets advertised_host).
    let host = match &cfg.sip.advertised_host {
        Some(h) => h.clone(),
        None if sip_addr.ip().is_unspecified() => {
            tracing::warn!("sip.advertised_host is not set: Via/Contact toward agents say 127.0.0.1");
            "127.0.0.1".into()
        }
        None => sip_addr.ip().to_string(),
    };
    let hostport = |port: u16| {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let sent_by = hostport(sip_addr.port());
    let tls_sent_by = sip_tls.map(|a| hostport(a.port()));
    let warn_agent = host.clone();
    // Call records leave the engine over a bounded queue; one writer persists them in order.
    let (records_tx, records_rx) = mpsc::channel(RECORD_QUEUE);
    let records = spawn_record_writer(store.clone(), records_rx)?;
    // SIP traces and HEP: the engine taps, a writer of its own does the rest.
    let trace_stats = Arc::new(crate::trace::TraceStats::default());
    let tracing_on = crate::trace::start(
        &cfg,
        store.clone(),
        trace_stats.clone(),
        [sip_udp, sip_tcp, sip_tls],
        &host,
    )
    .await?;
    let (trace_tap, traces) = match tracing_on {
        Some(t) => (Some(t.tap), Some(t.done)),
        None => (None, None),
    };
    let (media, media_events) = start_media(&cfg, &host)?;
    let ops_media = media.clone();
    let call_cfg = CallConfig {
        agent_setup_timeout: cfg.agent_setup_timeout,
        agent_ring_timeout: cfg.agent_ring_timeout,
        default_country_code: cfg.default_country_code.clone(),
        local: Arc::new(Local {
            contact: format!("<sip:edge@{sent_by}>"),
            sent_by,
            server_name: cfg.sip.server_name.clone(),
            tls_sent_by,
        }),
        t1: cfg.sip.t1,
        t2: cfg.sip.t2,
        warn_agent: warn_agent.clone(),
        outbound: cfg.outbound.clone(),
        targets: edge_contract::TargetPolicy::new(cfg.security.internal_targets.clone()),
        node: Arc::from(cfg.node_id.as_str()),
        tls: out.tls_routes().clone(),
    };
    let media_ctl = || {
        media.clone().map(|engine| -> Box<dyn CallMedia> {
            Box::new(MediaCtl {
                engine,
                codecs: cfg.media.codecs.clone().map(Into::into),
                voicemail: edge_media::VoicemailConfig {
                    greeting_text: String::new(),
                    recordings_dir: cfg.data_dir.join("voicemail"),
                    max_length: cfg.media.voicemail_max_length,
                    silence_limit: cfg.media.voicemail_silence_limit,
                    ..edge_media::VoicemailConfig::default()
                },
                default_greeting: cfg.default_voicemail_message.clone(),
                data_dir: cfg.data_dir.clone(),
            })
        })
    };
    let call_stats = Arc::new(CallStats::default());
    let endpoint_stats = Arc::new(EndpointStats::default());
    let agents = AgentSlots::default();
    let agent_gauge = agents.gauge();
    let pacer = TrunkPacer::new(cfg.outbound.max_pacing_wait);
    let cluster = start_cluster_limits(&cfg, &store, &agents, &mut tasks).await?;
    let admission = SharedAdmission::new(Admission::new(cfg.admission.clone(), Instant::now()));
    // Reload: the engine shards and the TCP classifier read the running config from one shared handle.
    let lifecycle = Arc::new(Lifecycle::new(edge_store::now_ms()));
    let (reloader, config_rx) = Reloader::new(cfg.clone(), lifecycle.clone(), admission.clone(), tls_certs.clone());
    let reloader = Arc::new(reloader);
    let (control, control_rx) = watch::channel(Control::Serve);
    let idle: Vec<Idle> = (0..shards).map(|_| Idle::default()).collect();
    let agent_auth = agent_verifier(&cfg, &host).map(|v| {
        SharedAgentAuth::new(AgentAuth::new(
            v,
            cfg.outbound.agent_digest_guard.clone(),
            index.clone(),
        ))
    });
    if cfg.outbound.agent_digest
        && cfg.outbound.agent_digest_from.is_none()
        && cfg.unknown_source == UnknownSource::Drop
    {
        tracing::warn!(
            "routing.unknown_source = \"drop\" and no outbound.agent_digest_from: agents outside [[agent_networks]] \
             get no digest challenge and cannot place calls; list their addresses in outbound.agent_digest_from"
        );
    }
    let endpoint_cfg = EndpointConfig {
        server_name: cfg.sip.server_name.clone(),
        admission: cfg.admission.clone(),
        warn_agent,
        tx: TxConfig {
            timers: TimerConfig {
                t1: cfg.sip.t1,
                t2: cfg.sip.t2,
                t4: cfg.sip.t4,
                ..TimerConfig::default()
            },
            // The table bound is for the edge: each shard holds its share of it.
            max_transactions: cfg.sip.max_transactions.div_ceil(shards),
            auto_trying: AutoTrying::Immediate,
        },
    };
    let security = crate::ops::SecurityStats {
        admission: admission.stats.clone(),
        digest: agent_auth.as_ref().map(|a| (a.stats.clone(), a.guard_stats())),
    };
    let resolver = Arc::new(
        edge_resolver::Resolver::new(edge_resolver::ResolverConfig {
            nameservers: cfg.outbound.nameservers.clone(),
            timeout: cfg.outbound.dns_timeout,
        })
        .context("DNS resolver for trunk hosts ([outbound] nameservers)")?,
    );
    let (commands_tx, commands_rx) = mpsc::channel::<edge_contract::CallCommand>(1024);
    // One shard takes the API's commands and the media events itself; several get them routed by call id.
    let (shard_commands, shard_media): (Vec<_>, Vec<Option<edge_media::MediaEvents>>) = if shards == 1 {
        (vec![commands_rx], vec![media_events])
    } else {
        let (cmd_txs, cmd_rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel(1024)).unzip();
        tasks.push(tokio::spawn(engine::route_commands(
            commands_rx,
            cmd_txs,
            shard_map.clone(),
        )));
        let media_rxs = match media_events {
            Some(events) => {
                let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
                tasks.push(tokio::spawn(engine::route_media(events, txs, shard_map.clone())));
                rxs.into_iter().map(Some).collect()
            }
            None => (0..shards).map(|_| None).collect(),
        };
        (cmd_rxs, media_rxs)
    };
    let mut engines = Vec::with_capacity(shards);
    let inputs = engine_rxs.into_iter().zip(shard_commands).zip(shard_media);
    for (i, ((rx, commands), media_events)) in inputs.enumerate() {
        let mut calls = CallController::new(
            call_cfg.clone(),
            index.clone(),
            media_ctl(),
            CallShard {
                ids: ShardIds::new(shard_map.clone(), i),
                agents: agents.clone(),
                pacer: pacer.clone(),
            },
        );
        calls.stats = call_stats.clone();
        calls.set_tracing(trace_tap.is_some());
        if cluster.is_some() {
            calls.use_cluster_limits();
        }
        let mut endpoint = Endpoint::new(
            endpoint_cfg.clone(),
            Box::new(CarrierPolicy { cfg: cfg.clone() }),
            calls,
            admission.clone(),
            agent_auth.clone(),
            Instant::now(),
        );
        endpoint.stats = endpoint_stats.clone();
        engines.push(tokio::spawn(run_engine(
            endpoint,
            EngineInputs {
                rx,
                media_events,
                commands,
                resolver: resolver.clone(),
                udp: udp.clone(),
                transport_stats: transport_stats.clone(),
                shard: i,
                dispatch: (shards > 1).then(|| dispatch.clone()),
                records: records_tx.clone(),
                call_stats: call_stats.clone(),
                trace: trace_tap.clone(),
                limits: cluster.clone(),
                config: config_rx.clone(),
                control: control_rx.clone(),
                idle: idle[i].clone(),
            },
            media.clone(),
            out.clone(),
            shutdown_rx.clone(),
        )));
    }
    // The writers end once every shard's sender is gone.
    drop(records_tx);
    drop(trace_tap);
    tracing::info!(shards, "SIP engine shards started");

    let limits = transport::tcp::TcpLimits {
        max_message_size: cfg.sip.max_message_size,
        idle_timeout: cfg.sip.tcp_idle_timeout,
        first_message_timeout: cfg.sip.tcp_first_message_timeout,
        budget: transport::tcp_budget::TcpBudget {
            max_connections: cfg.sip.tcp_max_connections,
            max_per_ip: cfg.sip.tcp_max_connections_per_ip,
            carrier_reserved: cfg.sip.tcp_carrier_reserved_connections,
            stranger_max: cfg.sip.tcp_stranger_max_connections,
            stranger_max_per_ip: cfg.sip.tcp_stranger_max_connections_per_ip,
        },
    };
    // Trunks reached over TCP get connections the edge opens itself, read like accepted ones.
    out.enable_connect(dispatch.clone(), limits.clone());
    // Trunks and agents over TLS: the bundled roots, `outbound.tls_extra_roots`, client certificates.
    out.enable_tls(
        transport::tls_client::ClientTls::load(&cfg.outbound.tls)
            .context("loading outbound.tls_extra_roots and the TLS client certificates")?,
    );
    // One budget for both listeners: a source's TCP and TLS connections count together.
    let slots = transport::tcp_budget::TcpSlots::new(limits.budget.clone(), transport_stats.clone());
    if let Some(listener) = tcp {
        tasks.push(tokio::spawn(transport::tcp::run(
            listener,
            dispatch.clone(),
            out.clone(),
            limits.clone(),
            tcp_classifier(config_rx.clone()),
            slots.clone(),
            None,
        )));
    }
    if let Some((listener, certs)) = tls {
        tasks.push(tokio::spawn(transport::tcp::run(
            listener,
            dispatch.clone(),
            out.clone(),
            limits,
            tcp_classifier(config_rx.clone()),
            slots,
            Some(certs.clone()),
        )));
        tasks.push(tokio::spawn(transport::tls::watch(certs, transport::tls::WATCH_EVERY)));
    }
    tasks.extend(on_sighup(reloader.clone()));
    tracing::info!(?sip_udp, ?sip_tcp, ?sip_tls, "SIP listening");

    let api = match cfg.api_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the API on {addr} (api.listen)"))?;
            let local = listener.local_addr()?;
            let providers = providers(&cfg)?;
            let api_cfg = edge_api::ApiConfig {
                data_dir: cfg.data_dir.clone(),
                verify_number_ownership: cfg.security.verify_number_ownership,
                public_sip_uri: cfg.public_sip_uri.clone(),
                twilio_base_url: cfg.inventory.twilio_base_url.clone(),
                telnyx_base_url: cfg.inventory.telnyx_base_url.clone(),
                max_purchased_numbers: cfg.inventory.max_purchased_numbers_per_account,
                targets: edge_contract::TargetPolicy::new(cfg.security.internal_targets.clone()),
                ..edge_api::ApiConfig::default()
            };
            let state = edge_api::ApiState::new(store.clone(), providers, api_cfg).with_call_control(commands_tx);
            // Purchases a crash left pending would otherwise hold their numbers forever.
            edge_api::spawn_reconciler(state.clone());
            let ops = crate::ops::OpsState {
                started: Instant::now(),
                endpoint: endpoint_stats.clone(),
                transport: transport_stats.clone(),
                calls: call_stats.clone(),
                trace: trace_stats.clone(),
                agent_gauge: agent_gauge.clone(),
                media: ops_media,
                security: security.clone(),
                metrics_token: cfg.metrics.token.as_deref().map(Arc::from),
                agent_labels: cfg.metrics.agent_labels,
                lifecycle: lifecycle.clone(),
            };
            // /metrics names accounts' agents: on the API listener only behind a token.
            if let Some(maddr) = cfg.metrics.listen {
                let mlistener = TcpListener::bind(maddr)
                    .await
                    .with_context(|| format!("binding metrics on {maddr} (api.metrics_listen)"))?;
                let mapp = crate::ops::router(ops.clone(), true);
                let mut stop = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move {
                    let stop = async move {
                        let _ = stop.changed().await;
                    };
                    if let Err(e) = edge_api::serve(mlistener, mapp, edge_api::ServeConfig::default(), stop).await {
                        tracing::error!(error = %e, "metrics server stopped");
                    }
                }));
                tracing::info!(metrics = %maddr, "metrics listening");
            }
            let metrics_on_api = cfg.metrics.token.is_some();
            let app = edge_api::router(state).merge(crate::ops::router(ops, metrics_on_api));
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = edge_api::serve(listener, app, edge_api::ServeConfig::default(), stop).await {
                    tracing::error!(error = %e, "API server stopped");
                }
            }));
            tracing::info!(api = %local, "REST API listening");
            Some(local)
        }
        None => None,
    };
    tasks.push(tokio::spawn(node_heartbeat(store.clone(), cfg.node_id.clone())));
    reload::write_pid_file(&cfg.data_dir);
    // A report left by an earlier process would confuse `oneinbox-edge reload` (attempts count from 0).
    let _ = std::fs::remove_file(reload::status_file(&cfg.data_dir));
    if cfg.webhooks.enabled {
        let policy = edge_contract::TargetPolicy::new(cfg.security.internal_targets.clone());
        tasks.push(crate::webhooks::spawn_worker(
            store.clone(),
            cfg.webhooks.clone(),
            policy,
            shutdown_rx.clone(),
        )?);
    }

    Ok(Edge {
        sip_udp,
        sip_tcp,
        sip_tls,
        api,
        endpoint_stats,
        security,
        transport_stats,
        call_stats,
        trace_stats,
        agent_gauge,
        store,
        index,
        cluster: cluster.as_ref().map(|c| c.stats.clone()),
        tls: tls_certs,
        shutdown,
        control,
        idle,
        lifecycle,
        reloader,
        bye_bound: cfg.sip.t1 * 64 + std::time::Duration::from_secs(2),
        data_dir: cfg.data_dir.clone(),
        engines,
        shard_map,
        records: Some(records),
        traces,
        tasks,
    })
}

/// SIGHUP reloads the configuration ([`Reloader::reload`], which logs what it did). Without a handler
/// SIGHUP would end the process.
fn on_sighup(reloader: Arc<Reloader>) -> Option<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: the configuration cannot be reloaded");
                return None;
            }
        };
        Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                reloader.reload().await;
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        None
    }
}

/// Classes a TCP connection's source for its budgets: a carrier's `allow` list, an agent network, else
/// a stranger.
fn tcp_classifier(cfg: watch::Receiver<Arc<Config>>) -> transport::tcp_budget::Classifier {
    use transport::tcp_budget::PeerClass;
    Arc::new(move |ip| {
        let cfg = cfg.borrow();
        if cfg.carrier_for(ip).is_some() {
            PeerClass::Carrier
        } else if cfg.agent_network_for(ip).is_some() {
            PeerClass::Agent
        } else {
            PeerClass::Stranger
        }
    })
}

/// The digest verifier for agents' INVITEs, or `None` when `[outbound] agent_digest = false`. Nonces are
/// keyed by the secrets key when the operator set one, so every node of a cluster accepts the others'.
fn agent_verifier(cfg: &Config, host: &str) -> Option<sip_core::digest::DigestVerifier> {
    use sip_core::digest::{Algorithm, AuthHeader, DigestVerifier, Qop};
    if !cfg.outbound.agent_digest {
        return None;
    }
    let realm = cfg.outbound.auth_realm.clone().unwrap_or_else(|| host.to_owned());
    let secret: Vec<u8> = match &cfg.secret_key {
        Some(k) => format!("oneinbox-edge digest nonces:{k}").into_bytes(),
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).ok()?;
            k.to_vec()
        }
    };
    // SHA-256 first, MD5 for the clients that know nothing else (RFC 8760).
    Some(DigestVerifier::new(
        realm,
        &secret,
        cfg.outbound.agent_digest_nonce_ttl.as_secs(),
        &[Algorithm::Sha256, Algorithm::Md5],
        Some(Qop::Auth),
        AuthHeader::ProxyAuthorization,
    ))
}

/// The media engine from `[media]`; `None` when disabled (SDP then passes through and there is no voicemail).
fn start_media(
    cfg: &Config,
    sip_host: &str,
) -> anyhow::Result<(Option<edge_media::MediaEngine>, Option<edge_media::MediaEvents>)> {
    let m = &cfg.media;
    if !m.enabled {
        return Ok((None, None));
    }
    let public_ip = m
        .public_ip
        .or_else(|| sip_host.trim_matches(['[', ']']).parse().ok())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let limits = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let worker_program = match &m.worker_program {
        Some(p) => p.clone(),
        None if m.workers > 0 => std::env::current_exe().context("media.workers: locating this executable")?,
        None => Default::default(),
    };
    let media_cfg = edge_media::MediaConfig {
        public_ip,
        bind_ip: m.bind_ip,
        port_range: m.rtp_ports,
        quarantine: m.port_quarantine,
        socket_cache_pairs: m.socket_cache_pairs,
        max_sockets: m.socket_ceiling(limits.current),
        workers: m.workers,
        worker_command: vec![worker_program.into_os_string(), "media-worker".into()],
        worker_max_sockets: crate::config::MediaSettings::worker_socket_ceiling(limits.maximum),
        media_timeout: m.media_timeout,
        espeak_binary: m.espeak.clone().into(),
        tts_cache_dir: cfg.data_dir.join("tts-cache"),
        ..edge_media::MediaConfig::default()
    };
    let (engine, events) = edge_media::MediaEngine::new(media_cfg).context("starting the media engine ([media])")?;
    tracing::info!(%public_ip, ports = ?m.rtp_ports, max_sockets = engine.sockets().1, workers = m.workers, "media anchoring on");
    Ok((Some(engine), Some(events)))
}

/// `oneinbox-edge keys create`: a new API key (and account when none is named).
pub async fn create_api_key(cfg: &Config, account: Option<&str>, name: &str) -> anyhow::Result<(String, String)> {
    let store = open_store(cfg).await?;
    let r = store.create_api_key(account, name).await.context("creating the key")?;
    store.close().await;
    Ok(r)
}

/// `oneinbox-edge keys list`: keys of `account` (all accounts when `None`), newest first, prefixes only.
pub async fn list_api_keys(cfg: &Config, account: Option<&str>) -> anyhow::Result<Vec<edge_store::ApiKeyRecord>> {
    let store = open_store(cfg).await?;
    let mut out = Vec::new();
    let mut cursor = None;
    // Bounded: 10,000 pages of 100 is far beyond any real key count.
    for _ in 0..10_000 {
        let page = store
            .list_api_keys(account, 100, cursor.as_ref())
            .await
            .context("listing keys")?;
        out.extend(page.items);
        match page.next_cursor.as_deref().and_then(edge_store::Cursor::decode) {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    store.close().await;
    Ok(out)
}

/// `oneinbox-edge keys revoke`: deletes key `id` (of `account` when given); it stops working at once.
pub async fn revoke_api_key(cfg: &Config, account: Option<&str>, id: &str) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    let r = store.revoke_api_key(account, id).await;
    store.close().await;
    match r {
        Ok(()) => Ok(()),
        Err(edge_store::StoreError::NotFound) => anyhow::bail!("no API key {id}"),
        Err(e) => Err(e).context("revoking the key"),
    }
}
