//! Wiring: binds the sockets, starts the transports, the SIP engine task and the REST API, and stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::call::leg::Local;
use crate::call::{CallConfig, CallController, CallStats, MediaCtl, Persist};
use crate::config::{Config, UnknownSource};
use crate::sip::agent_auth::AgentAuth;
use crate::sip::endpoint::{Endpoint, EndpointConfig, EndpointStats, SourcePolicy};
use crate::transport::{self, Input, Outbound, TransportStats};
use edge_store::{RoutingIndex, SecretBox, Store, StoreConfig};
use sip_core::transaction::{AutoTrying, TimerConfig, TxConfig};

/// TCP frames queued between the TCP readers and the engine; past this, the readers wait. (UDP needs no
/// queue of ours: the engine reads the socket itself and the kernel's receive queue is the buffer.)
const ENGINE_QUEUE: usize = 16_384;
/// Call records waiting for the store; past this the engine counts them as dropped rather than block.
const RECORD_QUEUE: usize = 65_536;

/// A running edge.
pub struct Edge {
    pub sip_udp: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub endpoint_stats: Arc<EndpointStats>,
    /// Admission and agent digest counters.
    pub security: crate::ops::SecurityStats,
    pub transport_stats: Arc<TransportStats>,
    pub call_stats: Arc<CallStats>,
    /// Calls in progress per agent, as the engine counts them.
    pub agent_gauge: Arc<dashmap::DashMap<String, u32>>,
    pub store: Arc<Store>,
    pub index: Arc<RoutingIndex>,
    shutdown: watch::Sender<bool>,
    engine: Option<JoinHandle<()>>,
    /// Fires when the record writer's thread has stored what was queued and ended.
    records: Option<tokio::sync::oneshot::Receiver<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Edge {
    /// Calls the agent is on now.
    pub fn agent_load(&self, agent_id: &str) -> u32 {
        self.agent_gauge.get(agent_id).map(|v| *v).unwrap_or(0)
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

    /// Stops every task: the engine first ends its calls (BYE, 503) and flushes, then the sockets close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(engine) = self.engine.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), engine).await;
        }
        // The engine is gone, so the record queue is closed: wait for the writer to store what is left.
        if let Some(records) = self.records.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), records).await;
        }
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
    let store_cfg =
        StoreConfig::new(cfg.database_url.as_deref(), &cfg.data_dir, secrets).context("store configuration")?;
    Store::connect(store_cfg).await.context("opening the store")
}

/// Binds everything in `cfg` and starts serving.
pub async fn start(cfg: Config) -> anyhow::Result<Edge> {
    // The metrics recorder first: the engine keeps counter handles, which must be the recorder's.
    crate::ops::prometheus();
    let cfg = Arc::new(cfg);
    let store = Arc::new(open_store(&cfg).await?);
    let index = store.index();
    let mut tasks = Vec::new();
    // Several edges share one PostgreSQL: each reloads the routing index so that a write through another
    // node's API reaches this node's INVITEs within a few seconds (a node's own writes apply at once).
    if cfg.database_url.as_deref().is_some_and(|u| u.starts_with("postgres")) {
        tasks.push(store.spawn_index_refresh(std::time::Duration::from_secs(2)));
    }
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
    let out = Outbound::new(udp.clone(), transport_stats.clone());
    let (engine_tx, engine_rx) = mpsc::channel::<Input>(ENGINE_QUEUE);

    let sip_addr = sip_udp.or(sip_tcp).context("no SIP listener")?;
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
    let sent_by = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", sip_addr.port())
    } else {
        format!("{host}:{}", sip_addr.port())
    };
    let warn_agent = host.clone();
    // Call records leave the engine over a bounded queue; one writer persists them in order.
    let (records_tx, records_rx) = mpsc::channel(RECORD_QUEUE);
    let records = spawn_record_writer(store.clone(), records_rx)?;
    let (media, media_events) = start_media(&cfg, &host)?;
    let ops_media = media.clone();
    let calls = CallController::new(
        CallConfig {
            agent_setup_timeout: cfg.agent_setup_timeout,
            agent_ring_timeout: cfg.agent_ring_timeout,
            default_country_code: cfg.default_country_code.clone(),
            local: Arc::new(Local {
                contact: format!("<sip:edge@{sent_by}>"),
                sent_by,
                server_name: cfg.sip.server_name.clone(),
            }),
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            warn_agent: warn_agent.clone(),
            outbound: cfg.outbound.clone(),
            targets: edge_api::TargetPolicy::new(cfg.security.internal_targets.clone()),
        },
        index.clone(),
        Some(records_tx),
        media.clone().map(|engine| MediaCtl {
            engine,
            codecs: cfg.media.codecs.clone(),
            voicemail: edge_media::VoicemailConfig {
                greeting_text: String::new(),
                recordings_dir: cfg.data_dir.join("voicemail"),
                max_length: cfg.media.voicemail_max_length,
                silence_limit: cfg.media.voicemail_silence_limit,
                ..edge_media::VoicemailConfig::default()
            },
            default_greeting: cfg.default_voicemail_message.clone(),
            data_dir: cfg.data_dir.clone(),
        }),
    );
    let call_stats = calls.stats.clone();
    let agent_gauge = calls.agent_gauge.clone();
    let agent_auth =
        agent_verifier(&cfg, &host).map(|v| AgentAuth::new(v, cfg.outbound.agent_digest_guard.clone(), index.clone()));
    if cfg.outbound.agent_digest
        && cfg.outbound.agent_digest_from.is_none()
        && cfg.unknown_source == UnknownSource::Drop
    {
        tracing::warn!(
            "routing.unknown_source = \"drop\" and no outbound.agent_digest_from: agents outside [[agent_networks]] \
             get no digest challenge and cannot place calls; list their addresses in outbound.agent_digest_from"
        );
    }
    let endpoint = Endpoint::new(
        EndpointConfig {
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
                max_transactions: cfg.sip.max_transactions,
                auto_trying: AutoTrying::Immediate,
            },
        },
        Box::new(CarrierPolicy { cfg: cfg.clone() }),
        calls,
        agent_auth,
        Instant::now(),
    );
    let endpoint_stats = endpoint.stats.clone();
    let security = crate::ops::SecurityStats {
        admission: endpoint.admission_stats(),
        digest: endpoint.agent_auth_stats(),
    };
    let resolver = Arc::new(
        edge_resolver::Resolver::new(edge_resolver::ResolverConfig {
            nameservers: cfg.outbound.nameservers.clone(),
            timeout: cfg.outbound.dns_timeout,
        })
        .context("DNS resolver for trunk hosts ([outbound] nameservers)")?,
    );
    let (commands_tx, commands_rx) = mpsc::channel::<edge_api::CallCommand>(1024);
    let engine = tokio::spawn(run_engine(
        endpoint,
        EngineInputs {
            rx: engine_rx,
            media_events,
            commands: commands_rx,
            resolver,
            udp: udp.clone(),
            transport_stats: transport_stats.clone(),
        },
        media,
        out.clone(),
        shutdown_rx.clone(),
    ));

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
    out.enable_connect(engine_tx.clone(), limits.clone());
    if let Some(listener) = tcp {
        tasks.push(tokio::spawn(transport::tcp::run(
            listener,
            engine_tx.clone(),
            out.clone(),
            limits,
            tcp_classifier(cfg.clone()),
        )));
    }
    tracing::info!(?sip_udp, ?sip_tcp, "SIP listening");

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
                targets: edge_api::TargetPolicy::new(cfg.security.internal_targets.clone()),
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
                agent_gauge: agent_gauge.clone(),
                media: ops_media,
                security: security.clone(),
                metrics_token: cfg.metrics.token.as_deref().map(Arc::from),
                agent_labels: cfg.metrics.agent_labels,
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

    Ok(Edge {
        sip_udp,
        sip_tcp,
        api,
        endpoint_stats,
        security,
        transport_stats,
        call_stats,
        agent_gauge,
        store,
        index,
        shutdown,
        engine: Some(engine),
        records: Some(records),
        tasks,
    })
}

/// Classes a TCP connection's source for its budgets: a carrier's `allow` list, an agent network, else
/// a stranger.
fn tcp_classifier(cfg: Arc<Config>) -> transport::tcp_budget::Classifier {
    use transport::tcp_budget::PeerClass;
    Arc::new(move |ip| {
        if cfg.carrier_for(ip).is_some() {
            PeerClass::Carrier
        } else if cfg.agent_network_for(ip).is_some() {
            PeerClass::Agent
        } else {
            PeerClass::Stranger
        }
    })
}

/// What the engine task listens to besides its timers.
struct EngineInputs {
    rx: mpsc::Receiver<Input>,
    media_events: Option<edge_media::MediaEvents>,
    /// `POST`/`DELETE /v1/calls` from the API.
    commands: mpsc::Receiver<edge_api::CallCommand>,
    resolver: Arc<edge_resolver::Resolver>,
    /// The SIP UDP socket, read by the engine itself.
    udp: Option<Arc<transport::udp::SipUdp>>,
    transport_stats: Arc<TransportStats>,
}

/// Resolved trunk hosts coming back to the engine.
type Resolved = (crate::call::ResolveJob, Result<Vec<crate::call::TrunkTarget>, String>);

/// The engine task: the only owner of the endpoint, so SIP state needs no locks. It sleeps until the next
/// message, API command, resolved trunk host or transaction timer, whichever is first.
async fn run_engine(
    mut ep: Endpoint,
    inputs: EngineInputs,
    media: Option<edge_media::MediaEngine>,
    out: Outbound,
    mut shutdown: watch::Receiver<bool>,
) {
    let EngineInputs {
        mut rx,
        mut media_events,
        mut commands,
        resolver,
        udp,
        transport_stats,
    } = inputs;
    let mut udp_buf = transport::udp::recv_buffer();
    let (resolved_tx, mut resolved_rx) = mpsc::channel::<Resolved>(1024);
    loop {
        let deadline = ep.poll_timeout();
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                ep.shutdown(Instant::now());
                flush(&mut ep, &out);
                // Recordings in progress are finished and their rows written before the engine goes.
                if let (Some(media), Some(events)) = (&media, media_events.as_mut()) {
                    media.shutdown(std::time::Duration::from_secs(5)).await;
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                    while ep.calls.pending_voicemails() > 0 {
                        match tokio::time::timeout_at(deadline, events.recv()).await {
                            Ok(Some(ev)) => ep.on_media_event(Instant::now(), ev),
                            _ => break,
                        }
                    }
                }
                return;
            }
            ev = recv_media(&mut media_events) => {
                match ev {
                    Some(ev) => ep.on_media_event(Instant::now(), ev),
                    None => media_events = None,
                }
            }
            Some(cmd) = commands.recv() => on_command(&mut ep, cmd),
            Some((job, result)) = resolved_rx.recv() => ep.on_resolved(Instant::now(), &job, result),
            ready = udp_readable(udp.as_deref()) => {
                match ready {
                    Ok(mut ready) => {
                        let now = Instant::now();
                        // Each message's answers leave before the next message is read: flushing once per
                        // burst held the first message's forwarded INVITE behind the other 63.
                        transport::udp::drain(&mut ready, &mut udp_buf, UDP_BURST, &transport_stats, |m| {
                            ep.handle(now, m.source, m.link, m.data);
                            flush(&mut ep, &out);
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIP UDP socket failed");
                        return;
                    }
                }
            }
            m = rx.recv() => {
                let Some(m) = m else { return };
                let now = Instant::now();
                on_input(&mut ep, now, m);
                flush(&mut ep, &out);
                // Drain what is already queued: amortises the wake-up under load.
                for _ in 0..64 {
                    match rx.try_recv() {
                        Ok(m) => {
                            on_input(&mut ep, now, m);
                            flush(&mut ep, &out);
                        }
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                ep.handle_timeout(Instant::now());
            }
        }
        // DNS is IO: each trunk host is resolved on its own task, bounded by the resolver's deadline.
        while let Some(job) = ep.calls.poll_resolve() {
            let resolver = resolver.clone();
            let tx = resolved_tx.clone();
            tokio::spawn(async move {
                use edge_resolver::Transport as T;
                use sip_core::message::Transport as S;
                let want = job.transport.map(|t| if t == S::Tcp { T::Tcp } else { T::Udp });
                let result = resolver
                    .resolve(&job.host, job.port, want, job.secure)
                    .await
                    .map(|targets| {
                        // TLS toward trunks is not built yet: such targets are skipped, not misused.
                        targets
                            .into_iter()
                            .filter_map(|t| match t.transport {
                                T::Udp => Some((t.addr, S::Udp)),
                                T::Tcp => Some((t.addr, S::Tcp)),
                                _ => None,
                            })
                            .collect()
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send((job, result)).await;
            });
        }
        flush(&mut ep, &out);
    }
}

/// One input from the transport tasks.
fn on_input(ep: &mut Endpoint, now: Instant, input: Input) {
    match input {
        Input::Message(m) => ep.handle(now, m.source, m.link, m.data),
        Input::SendFailed(f) => ep.on_send_failure(now, &f),
    }
}

/// Puts the endpoint's pending transmits on the wire. A send that fails at once goes back to the endpoint,
/// which ends its transaction and may queue more (the call's next hop): those leave in the same loop.
fn flush(ep: &mut Endpoint, out: &Outbound) {
    while let Some(t) = ep.poll_transmit() {
        if let Err(failure) = out.send(t) {
            ep.on_send_failure(Instant::now(), &failure);
        }
    }
}

/// One API command, answered on its oneshot (a caller that gave up is simply not answered).
fn on_command(ep: &mut Endpoint, cmd: edge_api::CallCommand) {
    match cmd {
        edge_api::CallCommand::Originate { req, reply } => {
            // The API already told its client it timed out: placing the call now would surprise everyone.
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(ep.originate(Instant::now(), req));
        }
        edge_api::CallCommand::HangUp {
            account_id,
            call_id,
            reply,
        } => {
            let _ = reply.send(ep.hang_up(Instant::now(), &account_id, &call_id));
        }
    }
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

/// Call records stored per transaction by the writer, at most.
const RECORD_BATCH: usize = 256;
/// How long the writer gathers records after the first one before it writes them: a call's start, answer
/// and end (and the calls around it) then share one transaction; a record is stored this much later.
const RECORD_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// Starts [`write_records`] on a thread of its own with a single-threaded runtime and a one-connection
/// pool of its own (opened there, so its PostgreSQL socket is served by that runtime). On the engine's
/// worker the writer competed with the engine: building a batch of records held the SIP messages behind
/// it, and near the edge's top rate the writer fell behind and the record queue overflowed.
fn spawn_record_writer(
    store: Arc<Store>,
    rx: mpsc::Receiver<Persist>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("record-writer")
        .build()
        .context("starting the call-record writer's runtime")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("record-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                match store.with_own_pool(1).await {
                    Ok(own) => {
                        let own = Arc::new(own);
                        write_records(own.clone(), rx).await;
                        own.close().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "call-record writer: no pool of its own, sharing the API's");
                        write_records(store, rx).await;
                    }
                }
            });
            let _ = done_tx.send(());
        })
        .context("starting the call-record writer's thread")?;
    Ok(done_rx)
}

/// Persists call records (start, answer, end) and voicemail rows in the order the engine produced them.
/// After the first record the writer sleeps [`RECORD_LINGER`] and then takes what has queued (up to
/// [`RECORD_BATCH`] per transaction, [`Store::upsert_calls`]: successive versions of a call folded into one
/// row, multi-row statements, one commit): one wake-up per batch, not one per record. A writer that is
/// behind keeps writing without lingering again. When the engine goes (the queue closes), what is queued
/// is written before returning.
async fn write_records(store: Arc<Store>, mut rx: mpsc::Receiver<Persist>) {
    let mut calls: Vec<edge_store::CallRecord> = Vec::with_capacity(RECORD_BATCH);
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(RECORD_LINGER).await;
        let mut next = Some(first);
        loop {
            while let Some(p) = next.take() {
                match p {
                    Persist::Call(rec) => calls.push(rec),
                    Persist::Voicemail(vm) => {
                        // Keep the order: the calls gathered before this row go first.
                        store_calls(&store, &mut calls).await;
                        if let Err(e) = store.insert_voicemail(&vm).await {
                            tracing::error!(voicemail = %vm.id, error = %e, "voicemail row not stored");
                        }
                    }
                }
                if calls.len() < RECORD_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            store_calls(&store, &mut calls).await;
            match rx.try_recv() {
                Ok(p) => next = Some(p),
                Err(_) => break,
            }
        }
    }
}

/// Stores and empties `calls`: one transaction; if that fails as a whole, record by record so one bad
/// record cannot cost the others.
async fn store_calls(store: &Store, calls: &mut Vec<edge_store::CallRecord>) {
    if calls.is_empty() {
        return;
    }
    match store.upsert_calls(calls).await {
        Ok(refused) => {
            for (i, e) in refused {
                let id = calls.get(i).map_or("?", |c| c.id.as_str());
                tracing::error!(call = %id, error = %e, "call record not stored");
            }
        }
        Err(e) => {
            tracing::warn!(records = calls.len(), error = %e, "batch of call records failed; storing one by one");
            for rec in calls.iter() {
                if let Err(e) = store.upsert_call(rec).await {
                    tracing::error!(call = %rec.id, error = %e, "call record not stored");
                }
            }
        }
    }
    calls.clear();
}

/// Datagrams the engine reads in one go before it looks at timers and its other inputs.
const UDP_BURST: usize = 64;

async fn udp_readable(udp: Option<&transport::udp::SipUdp>) -> std::io::Result<transport::udp::Ready<'_>> {
    match udp {
        Some(u) => u.readable().await,
        None => std::future::pending().await,
    }
}

async fn recv_media(events: &mut Option<edge_media::MediaEvents>) -> Option<edge_media::MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
    }
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
