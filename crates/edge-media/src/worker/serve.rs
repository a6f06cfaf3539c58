//! The worker's side: a small process that receives relays' sockets from the edge and runs the very
//! same relay as in-process calls (`crate::relay`), so a worker's call behaves like any other.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::channel::Control;
use super::wire::{FromWorker, ToWorker, START_FDS};
use crate::budget::SocketBudget;
use crate::event::MediaEvent;
use crate::ports::BoundPair;
use crate::relay::{RelayHandle, RelayIo, RelayParams, RelayStats};
use crate::socket::ReadableUdp;
use crate::MediaError;

/// Runs a media worker on the control socket that is this process's standard input, until the edge
/// closes it. The binary's `media-worker` subcommand; not for people.
pub fn run_media_worker() -> Result<(), MediaError> {
    raise_open_files_limit();
    let control = std::io::stdin().as_fd().try_clone_to_owned()?;
    // Relays spread over the cores like the edge's own; the control loop is one task among them.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("media-worker")
        .enable_all()
        .build()?;
    rt.block_on(serve(control))
}

/// The point of a worker is its own open-files limit: take all of it.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "media worker: open-files limit could not be raised");
        }
    }
}

async fn serve(control: OwnedFd) -> Result<(), MediaError> {
    let control = Control::new(control)?;
    // Ctrl-C reaches the whole process group and systemd signals every process of the unit: the
    // worker outlives those signals and exits when the edge, done with its graceful shutdown, closes
    // the control socket (which also covers the edge being killed).
    use tokio::signal::unix::{signal, SignalKind};
    let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let (events, mut timeouts) = mpsc::unbounded_channel();
    // The edge keeps the count against this worker's ceiling; here every socket it sends is taken.
    let budget = SocketBudget::new(usize::MAX);
    let mut relays: HashMap<u64, RelayHandle> = HashMap::new();
    loop {
        tokio::select! {
            got = control.recv() => {
                let Some(msg) = got? else {
                    tracing::debug!(relays = relays.len(), "media worker: the edge closed the control socket");
                    return Ok(());
                };
                let reply = match ToWorker::decode(&msg.frame) {
                    Ok(ToWorker::Start { id, relatch, media_timeout }) => {
                        let params = RelayParams {
                            call_id: Arc::from(id.to_string()),
                            relatch,
                            media_timeout,
                            events: events.clone(),
                        };
                        match start(msg.fds, &budget, params) {
                            Ok(relay) => {
                                relays.insert(id, relay);
                                None
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, id, "media worker: relay not started");
                                Some(FromWorker::Timeout { id })
                            }
                        }
                    }
                    Ok(ToWorker::Remote { id, side, declared }) => {
                        if let Some(relay) = relays.get(&id) {
                            relay.set_declared(side, declared);
                        }
                        None
                    }
                    Ok(ToWorker::Ringback { id, side, codec }) => {
                        if let Some(relay) = relays.get(&id) {
                            relay.set_ringback(side, codec);
                        }
                        None
                    }
                    Ok(ToWorker::Law { id, side, rule }) => {
                        if let Some(relay) = relays.get(&id) {
                            relay.set_law(side, rule);
                        }
                        None
                    }
                    Ok(ToWorker::Keys { id, side, update }) => {
                        if let Some(relay) = relays.get(&id) {
                            relay.set_keys(side, update);
                        }
                        None
                    }
                    Ok(ToWorker::Stop { id }) => {
                        let stats = match relays.remove(&id) {
                            Some(relay) => relay.release().await,
                            None => RelayStats::default(),
                        };
                        Some(FromWorker::Stopped { id, stats })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "media worker: message dropped");
                        None
                    }
                };
                if let Some(reply) = reply {
                    control.send(&reply.encode(), &[]).await?;
                }
            }
            _ = interrupt.recv() => tracing::debug!("media worker: SIGINT ignored, the edge decides"),
            _ = terminate.recv() => tracing::debug!("media worker: SIGTERM ignored, the edge decides"),
            Some(event) = timeouts.recv() => {
                if let MediaEvent::Timeout { call_id } = event {
                    if let Ok(id) = call_id.parse() {
                        control.send(&FromWorker::Timeout { id }.encode(), &[]).await?;
                    }
                }
            }
        }
    }
}

/// A relay on the four sockets of a `Start` (A's RTP, A's RTCP, B's RTP, B's RTCP).
fn start(fds: Vec<OwnedFd>, budget: &Arc<SocketBudget>, params: RelayParams) -> Result<RelayHandle, MediaError> {
    let Ok([a_rtp, a_rtcp, b_rtp, b_rtcp]) = <[OwnedFd; START_FDS]>::try_from(fds) else {
        return Err(MediaError::Config("a relay needs four sockets"));
    };
    let a = pair(a_rtp, a_rtcp, budget)?;
    let b = pair(b_rtp, b_rtcp, budget)?;
    let ports = [a.port, b.port];
    // The address is only written into SDP, which the edge does: any value serves here.
    let sdp_ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    Ok(RelayHandle::spawn(RelayIo::new([a, b], None), ports, sdp_ip, params))
}

fn pair(rtp: OwnedFd, rtcp: OwnedFd, budget: &Arc<SocketBudget>) -> Result<BoundPair, MediaError> {
    let (rtp, rtcp) = (std::net::UdpSocket::from(rtp), std::net::UdpSocket::from(rtcp));
    let port = rtp.local_addr()?.port();
    Ok(BoundPair {
        port,
        sockets: [ReadableUdp::new(rtp)?, ReadableUdp::new(rtcp)?],
        _ticket: budget.reserve(2).ok_or(MediaError::SocketLimit(budget.open()))?,
    })
}
