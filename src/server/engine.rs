//! The engine loop: one task per engine shard owns its SIP endpoint (transactions and calls) and feeds it
//! messages, API commands, media events, resolved trunk hosts and timer ticks, then puts its transmits on
//! the wire. With several shards each reads the shared UDP socket and passes on, unparsed, the datagrams
//! whose Call-ID belongs to another shard; the API commands and media events are routed here by the
//! shard their call id names ([`route_commands`], [`route_media`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::drain::{Control, Idle};
use super::CarrierPolicy;
use crate::call::{CallStats, Persist};
use crate::config::Config;
use crate::shard::{Dispatch, ShardMap};
use crate::sip::endpoint::Endpoint;
use crate::trace::TraceTap;
use crate::transport::{self, Input, Outbound, TransportStats};

/// What the engine task listens to besides its timers.
pub(super) struct EngineInputs {
    pub(super) rx: mpsc::Receiver<Input>,
    pub(super) media_events: Option<edge_media::MediaEvents>,
    /// `POST`/`DELETE /v1/calls` from the API.
    pub(super) commands: mpsc::Receiver<edge_contract::CallCommand>,
    pub(super) resolver: Arc<edge_resolver::Resolver>,
    /// The SIP UDP socket, read by the engine itself.
    pub(super) udp: Option<Arc<transport::udp::SipUdp>>,
    pub(super) transport_stats: Arc<TransportStats>,
    /// Which shard this is, and (with more than one) where the others' datagrams go.
    pub(super) shard: usize,
    pub(super) dispatch: Option<Dispatch>,
    /// Call and voicemail records, polled from the endpoint, to the record writer.
    pub(super) records: mpsc::Sender<Persist>,
    pub(super) call_stats: Arc<CallStats>,
    /// Where every message, leg and call end goes for SIP traces and HEP (`None`: both off).
    pub(super) trace: Option<TraceTap>,
    /// `[cluster]`: the driver that runs the calls' limit jobs against Redis.
    pub(super) limits: Option<crate::cluster::ClusterLimits>,
    /// The running configuration; a reload sends a new one.
    pub(super) config: watch::Receiver<Arc<Config>>,
    /// Drain, and its end.
    pub(super) control: watch::Receiver<Control>,
    /// Set after each turn while draining: no call and no request of ours left unanswered.
    pub(super) idle: Idle,
}

/// Resolved trunk hosts coming back to the engine.
type Resolved = (crate::call::ResolveJob, Result<Vec<crate::call::TrunkTarget>, String>);

/// The engine task: the only owner of the endpoint, so SIP state needs no locks. It sleeps until the next
/// message, API command, resolved trunk host or transaction timer, whichever is first.
pub(super) async fn run_engine(
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
        shard,
        dispatch,
        records,
        call_stats,
        trace,
        limits,
        mut config,
        mut control,
        idle,
    } = inputs;
    let trace = trace.as_ref();
    // Closed channels (their sender dropped) are not polled again.
    let (mut config_open, mut control_open) = (true, true);
    let mut udp_buf = transport::udp::recv_buffer();
    let (resolved_tx, mut resolved_rx) = mpsc::channel::<Resolved>(1024);
    // Answers of the cluster's limits (bounded by the driver's queue: one answer per job taken).
    let (limit_tx, mut limit_rx) = mpsc::unbounded_channel::<(crate::call::LimitJob, crate::call::LimitAnswer)>();
    loop {
        let deadline = ep.poll_timeout();
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                ep.shutdown(Instant::now());
                flush(&mut ep, &out, trace);
                drain_records(&mut ep, &records, &call_stats, trace);
                // Recordings in progress are finished and their rows written before the engine goes.
                if let (Some(media), Some(events)) = (&media, media_events.as_mut()) {
                    media.shutdown(std::time::Duration::from_secs(5)).await;
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                    while ep.calls.pending_voicemails() > 0 {
                        match tokio::time::timeout_at(deadline, events.recv()).await {
                            Ok(Some(ev)) => ep.on_media_event(Instant::now(), ev),
                            _ => break,
                        }
                        drain_records(&mut ep, &records, &call_stats, trace);
                    }
                }
                return;
            }
            changed = config.changed(), if config_open => {
                match changed {
                    Ok(()) => {
                        let cfg = config.borrow_and_update().clone();
                        reconfigure(&mut ep, &cfg);
                    }
                    Err(_) => config_open = false,
                }
            }
            changed = control.changed(), if control_open => {
                match changed {
                    Ok(()) => {
                        let c = *control.borrow_and_update();
                        match c {
                            Control::Serve => ep.set_draining(false),
                            Control::Drain => ep.set_draining(true),
                            Control::EndCalls => {
                                ep.set_draining(true);
                                ep.end_drained(Instant::now());
                            }
                        }
                    }
                    Err(_) => control_open = false,
                }
            }
            ev = recv_media(&mut media_events) => {
                match ev {
                    Some(ev) => ep.on_media_event(Instant::now(), ev),
                    None => media_events = None,
                }
            }
            Some(cmd) = commands.recv() => on_command(&mut ep, cmd),
            Some((job, result)) = resolved_rx.recv() => ep.on_resolved(Instant::now(), &job, result),
            Some((job, answer)) = limit_rx.recv() => ep.on_limit(Instant::now(), job, answer),
            ready = udp_readable(udp.as_deref()) => {
                match ready {
                    Ok(mut ready) => {
                        let now = Instant::now();
                        // The answers of each batch read (a few messages) leave together before the next
                        // is read: flushing once per burst held the first message's forwarded INVITE
                        // behind the other 63.
                        transport::udp::drain(&mut ready, &mut udp_buf, UDP_BURST, &transport_stats, |m, last| {
                            let owner = dispatch.as_ref().map(|d| (d, d.shard_of(&m.data)));
                            match owner {
                                Some((d, owner)) if owner != shard => d.forward(owner, m),
                                _ => {
                                    if let Some(t) = trace {
                                        t.inbound(m.source, m.link, &m.data);
                                    }
                                    ep.handle(now, m.source, m.link, m.data)
                                }
                            }
                            if last {
                                flush(&mut ep, &out, trace);
                            }
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
                on_input(&mut ep, now, m, trace);
                flush(&mut ep, &out, trace);
                // Drain what is already queued: amortises the wake-up under load.
                for _ in 0..64 {
                    match rx.try_recv() {
                        Ok(m) => {
                            on_input(&mut ep, now, m, trace);
                            flush(&mut ep, &out, trace);
                        }
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                ep.handle_timeout(Instant::now());
            }
        }
        // Redis is IO: the cluster's limits are asked of the driver (a full queue is answered at once by the
        // per-node fallback, and that answer may queue more jobs).
        while let Some(job) = ep.calls.poll_limit() {
            if let Some((job, answer)) = limits.as_ref().and_then(|l| l.submit(job, &limit_tx)) {
                ep.on_limit(Instant::now(), job, answer);
            }
        }
        // DNS is IO: each trunk host is resolved on its own task, bounded by the resolver's deadline.
        while let Some(job) = ep.calls.poll_resolve() {
            let resolver = resolver.clone();
            let tx = resolved_tx.clone();
            tokio::spawn(async move {
                use edge_resolver::Transport as T;
                use sip_core::message::Transport as S;
                let want = job.transport.map(|t| match t {
                    S::Tcp => T::Tcp,
                    S::Tls => T::Tls,
                    _ => T::Udp,
                });
                let result = resolver
                    .resolve(&job.host, job.port, want, job.secure)
                    .await
                    .map(|targets| {
                        targets
                            .into_iter()
                            .map(|t| {
                                let transport = match t.transport {
                                    T::Udp => S::Udp,
                                    T::Tcp => S::Tcp,
                                    T::Tls => S::Tls,
                                };
                                (t.addr, transport)
                            })
                            .collect()
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send((job, result)).await;
            });
        }
        flush(&mut ep, &out, trace);
        drain_records(&mut ep, &records, &call_stats, trace);
        if ep.is_draining() {
            idle.store(ep.is_idle(), std::sync::atomic::Ordering::Release);
        }
    }
}

/// A reloaded configuration, applied between two inputs: who may send what, admission's carrier share,
/// routing and outbound settings. Transactions and calls in progress are untouched.
fn reconfigure(ep: &mut Endpoint, cfg: &Arc<Config>) {
    ep.reload(Box::new(CarrierPolicy::new(cfg.clone())), cfg.admission.clone());
    ep.calls.reload(cfg);
}

/// Hands the endpoint's records to the record writer and, when tracing, the legs opened and the calls
/// ended to the trace writer; a full queue counts them as dropped rather than block the engine.
fn drain_records(ep: &mut Endpoint, records: &mpsc::Sender<Persist>, stats: &CallStats, trace: Option<&TraceTap>) {
    if let Some(t) = trace {
        while let Some(leg) = ep.calls.poll_trace_leg() {
            t.leg(leg);
        }
    }
    while let Some(p) = ep.poll_record() {
        if let (Some(t), Persist::Call(rec)) = (trace, &p) {
            if rec.ended_at_ms.is_some() {
                t.end(rec.id.clone());
            }
        }
        if records.try_send(p).is_err() {
            stats.records_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    while let Some(m) = ep.poll_metric() {
        m.apply();
    }
}

/// Puts the endpoint's pending transmits on the wire (the UDP ones of a flush in one `sendmmsg`).
fn flush(ep: &mut Endpoint, out: &Outbound, trace: Option<&TraceTap>) {
    let mut failed = Vec::new();
    // A send that fails at once goes back to the endpoint, which ends its transaction and may queue more
    // (the call's next hop): those leave in the same loop. Bounded: each failure ends a transaction.
    loop {
        out.send_all(
            std::iter::from_fn(|| {
                let t = ep.poll_transmit()?;
                if let Some(tap) = trace {
                    tap.outbound(&t);
                }
                Some(t)
            }),
            &mut failed,
        );
        if failed.is_empty() {
            return;
        }
        let now = Instant::now();
        for f in failed.drain(..) {
            ep.on_send_failure(now, &f);
        }
    }
}

/// One input from the transport tasks (or another shard).
fn on_input(ep: &mut Endpoint, now: Instant, input: Input, trace: Option<&TraceTap>) {
    match input {
        Input::Message(m) => {
            if let Some(t) = trace {
                t.inbound(m.source, m.link, &m.data);
            }
            ep.handle(now, m.source, m.link, m.data)
        }
        Input::SendFailed(f) => ep.on_send_failure(now, &f),
    }
}

/// One API command, answered on its oneshot (a caller that gave up is simply not answered).
fn on_command(ep: &mut Endpoint, cmd: edge_contract::CallCommand) {
    match cmd {
        edge_contract::CallCommand::Originate { req, reply } => {
            // The API already told its client it timed out: placing the call now would surprise everyone.
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(ep.originate(Instant::now(), req));
        }
        edge_contract::CallCommand::HangUp {
            account_id,
            call_id,
            reply,
        } => {
            let _ = reply.send(ep.hang_up(Instant::now(), &account_id, &call_id));
        }
        edge_contract::CallCommand::Transfer {
            account_id,
            call_id,
            to,
            reply,
        } => {
            let _ = reply.send(ep.transfer(Instant::now(), &account_id, &call_id, &to));
        }
    }
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

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
    }
}

/// Routes the API's commands to the shards (more than one): a new call to the next shard in turn (it then
/// owns the call, and mints its ids to hash to itself), a hang-up to the shard its call id hashes to.
pub(super) async fn route_commands(
    mut rx: mpsc::Receiver<edge_contract::CallCommand>,
    shards: Vec<mpsc::Sender<edge_contract::CallCommand>>,
    map: ShardMap,
) {
    let mut turn = 0usize;
    while let Some(cmd) = rx.recv().await {
        let shard = match &cmd {
            edge_contract::CallCommand::Originate { .. } => {
                turn = (turn + 1) % shards.len().max(1);
                turn
            }
            edge_contract::CallCommand::HangUp { call_id, .. }
            | edge_contract::CallCommand::Transfer { call_id, .. } => map.of(call_id.as_bytes()),
        };
        let Some(q) = shards.get(shard) else { continue };
        if q.send(cmd).await.is_err() {
            return;
        }
    }
}

/// Routes media events to the shard owning the call they name (its public id, minted by that shard).
pub(super) async fn route_media(
    mut rx: edge_media::MediaEvents,
    shards: Vec<mpsc::UnboundedSender<edge_media::MediaEvent>>,
    map: ShardMap,
) {
    use edge_media::MediaEvent as E;
    while let Some(ev) = rx.recv().await {
        let shard = match &ev {
            E::Timeout { call_id } | E::VoicemailEnded { call_id, .. } => map.of(call_id.as_bytes()),
        };
        if let Some(q) = shards.get(shard) {
            let _ = q.send(ev);
        }
    }
}
