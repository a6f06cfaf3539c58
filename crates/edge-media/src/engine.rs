//! The media engine: port pool, relay allocation, voicemail sessions and
//! graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::budget::{SocketBudget, SocketTicket};
use crate::event::MediaEvent;
use crate::ports::{BoundPair, PortLease, PortPool};
use crate::relay::{RelayHandle, RelayIo, RelayParams};
use crate::socket::ReadableUdp;
use crate::tts::Tts;
use crate::worker::WorkerLink;
use crate::{MediaConfig, MediaError};

/// Receiver of [`MediaEvent`]s. Unbounded but bounded in practice: at most one
/// event per relay or voicemail session, and those are bounded by the port pool.
pub type MediaEvents = mpsc::UnboundedReceiver<MediaEvent>;

/// Bind attempts on "address in use" (ports taken by other processes) before giving up.
const BIND_ATTEMPTS: usize = 8;
/// `EMFILE`: the process is out of file descriptors.
const EMFILE: i32 = 24;
/// A worker that died is started again at most this often.
const WORKER_RESPAWN_AFTER: Duration = Duration::from_secs(1);
/// Cached pairs closed when binding hits the open-files limit or `max_sockets`: the cache gives way to live calls.
const EVICT_WHEN_OUT_OF_SOCKETS: usize = 64;

/// Media plane of the edge. Cheap to clone; all clones share one port pool.
#[derive(Clone, Debug)]
pub struct MediaEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: MediaConfig,
    pool: Arc<PortPool>,
    /// Every socket bound here holds a place (`MediaConfig::max_sockets`).
    budget: Arc<SocketBudget>,
    events: mpsc::UnboundedSender<MediaEvent>,
    tts: Arc<Tts>,
    shutdown: watch::Sender<bool>,
    /// Each live voicemail task holds a clone; `None` once shutting down.
    live: Mutex<Option<mpsc::Sender<()>>>,
    all_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    /// One slot per `MediaConfig::workers`.
    workers: Vec<Mutex<WorkerSlot>>,
}

/// A media worker process, once started.
#[derive(Debug, Default)]
struct WorkerSlot {
    link: Option<WorkerLink>,
    started_at: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain state without invariants across a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One bound RTP/RTCP port pair (used by voicemail). Dropping it returns the ports.
#[derive(Debug)]
pub struct MediaEndpoint {
    pub(crate) rtp: UdpSocket,
    /// Held so the RTCP port is ours; inbound RTCP is not needed for voicemail (so it is not registered).
    pub(crate) _rtcp: std::net::UdpSocket,
    pub(crate) port: u16,
    pub(crate) _lease: PortLease,
    pub(crate) _ticket: SocketTicket,
}

impl MediaEndpoint {
    /// Local RTP port (RTCP = +1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Freshly bound `[rtp, rtcp]` sockets with their lease.
struct BoundPairs {
    sockets: Vec<[std::net::UdpSocket; 2]>,
    ports: Vec<u16>,
    lease: PortLease,
    ticket: SocketTicket,
}

/// The process or the media budget has no socket left for a new pair.
fn out_of_sockets(e: &MediaError) -> bool {
    match e {
        MediaError::SocketLimit(_) => true,
        MediaError::Io(e) => e.raw_os_error() == Some(EMFILE),
        _ => false,
    }
}

/// Binds a non-blocking socket; the caller registers it with the reactor (or not: a held RTCP port).
fn bind(ip: IpAddr, port: u16) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

impl MediaEngine {
    /// Creates the engine and the channel on which it reports [`MediaEvent`]s.
    pub fn new(config: MediaConfig) -> Result<(MediaEngine, MediaEvents), MediaError> {
        config.validate()?;
        let (events, rx) = mpsc::unbounded_channel();
        let (live_tx, live_rx) = mpsc::channel(1);
        let pool = PortPool::new(
            config.port_range.0,
            config.port_range.1,
            config.quarantine,
            config.socket_cache_pairs,
        );
        let tts = Tts::new(&config.espeak_binary, &config.tts_cache_dir);
        let engine = MediaEngine {
            inner: Arc::new(Inner {
                pool: Arc::new(pool),
                budget: SocketBudget::new(config.max_sockets),
                events,
                tts: Arc::new(tts),
                shutdown: watch::channel(false).0,
                live: Mutex::new(Some(live_tx)),
                all_done: tokio::sync::Mutex::new(live_rx),
                workers: (0..config.workers).map(|_| Mutex::default()).collect(),
                config,
            }),
        };
        // Start the workers now, inside a runtime, so a worker that cannot run fails at startup.
        if tokio::runtime::Handle::try_current().is_ok() {
            for index in 0..engine.inner.workers.len() {
                engine.worker(index)?;
            }
        }
        Ok((engine, rx))
    }

    /// The configuration in use.
    pub fn config(&self) -> &MediaConfig {
        &self.inner.config
    }

    /// The shared speech synthesizer (e.g. to pre-warm greetings at startup).
    pub fn tts(&self) -> &Arc<Tts> {
        &self.inner.tts
    }

    /// Port pairs free now and pairs waiting in quarantine.
    pub fn port_pairs(&self) -> (usize, usize) {
        self.inner.pool.counts()
    }

    /// Media sockets open now (relays, voicemail, cache) and the ceiling (`MediaConfig::max_sockets`),
    /// media workers' included.
    pub fn sockets(&self) -> (usize, usize) {
        let (mut open, mut max) = (self.inner.budget.open(), self.inner.budget.max());
        for slot in &self.inner.workers {
            if let Some(link) = &lock(slot).link {
                open += link.budget().open();
                max = max.saturating_add(link.budget().max());
            }
        }
        (open, max)
    }

    /// Media worker processes running now.
    pub fn workers_alive(&self) -> usize {
        self.inner
            .workers
            .iter()
            .filter(|slot| lock(slot).link.as_ref().is_some_and(WorkerLink::is_alive))
            .count()
    }

    /// Worker `index`, started (again) if it is not running and was not started within
    /// [`WORKER_RESPAWN_AFTER`].
    fn worker(&self, index: usize) -> Result<WorkerLink, MediaError> {
        let Some(slot) = self.inner.workers.get(index) else {
            return Err(MediaError::Config("no such media worker"));
        };
        let mut slot = lock(slot);
        if let Some(link) = slot.link.as_ref().filter(|l| l.is_alive()) {
            return Ok(link.clone());
        }
        if slot.started_at.is_some_and(|t| t.elapsed() < WORKER_RESPAWN_AFTER) {
            return Err(MediaError::WorkerDown(index));
        }
        slot.started_at = Some(Instant::now());
        let c = &self.inner.config;
        let link = WorkerLink::spawn(index, &c.worker_command, c.worker_max_sockets, self.events())?;
        slot.link = Some(link.clone());
        Ok(link)
    }

    /// Takes `n` port pairs and binds RTP+RTCP sockets on each, all or nothing; the sockets take their
    /// places in `budget`.
    fn bind_pairs(&self, n: usize, budget: &Arc<SocketBudget>) -> Result<BoundPairs, MediaError> {
        let ip = self.inner.config.bind_ip;
        let ticket = budget.reserve(2 * n).ok_or(MediaError::SocketLimit(budget.open()))?;
        for _ in 0..BIND_ATTEMPTS {
            let ports = self.inner.pool.take(n).ok_or(MediaError::PortsExhausted)?;
            let lease = PortLease::new(self.inner.pool.clone(), ports.clone());
            let bound: std::io::Result<Vec<[std::net::UdpSocket; 2]>> =
                ports.iter().map(|&p| Ok([bind(ip, p)?, bind(ip, p + 1)?])).collect();
            match bound {
                Ok(sockets) => {
                    return Ok(BoundPairs {
                        sockets,
                        ports,
                        lease,
                        ticket,
                    })
                }
                // Someone else owns a port: the lease puts these pairs in quarantine; retry.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!(?ports, "media port in use by another process");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(MediaError::PortsExhausted)
    }

    /// One bound pair for a relay: a parked one when the cache has one, else freshly bound. Running out
    /// of file descriptors closes cached pairs and tries again.
    fn relay_pair(&self, reuse: &mut Vec<BoundPair>) -> Result<BoundPair, MediaError> {
        if let Some(pair) = reuse.pop() {
            return Ok(pair);
        }
        let mut evicted = false;
        loop {
            match self.bind_pairs(1, &self.inner.budget) {
                Ok(BoundPairs {
                    sockets,
                    ports,
                    lease,
                    ticket,
                }) => {
                    let (Some([rtp, rtcp]), Some(&port)) = (sockets.into_iter().next(), ports.first()) else {
                        return Err(MediaError::PortsExhausted);
                    };
                    let pair = BoundPair {
                        port,
                        sockets: [ReadableUdp::new(rtp)?, ReadableUdp::new(rtcp)?],
                        _ticket: ticket,
                    };
                    // The pair now owns the port: it goes back through `park`, not the lease.
                    lease.forget();
                    return Ok(pair);
                }
                // Out of descriptors or at the ceiling: the cache gives way to live calls.
                Err(e) if !evicted && out_of_sockets(&e) => {
                    evicted = true;
                    if self.inner.pool.evict(EVICT_WHEN_OUT_OF_SOCKETS) == 0 {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Allocates a relay for a bridged call: one port pair facing each leg, in this process or, once
    /// its sockets are at their ceiling, in a media worker. Must be called inside a Tokio runtime.
    /// [`MediaError::PortsExhausted`] or [`MediaError::SocketLimit`] means nothing was allocated
    /// (answer 503 with Retry-After).
    pub fn allocate_relay(&self, call_id: &str) -> Result<RelayHandle, MediaError> {
        tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        match self.allocate_in_process(call_id) {
            Err(e) if out_of_sockets(&e) && !self.inner.workers.is_empty() => {
                // Every worker full: the ceiling as without workers; else what stopped them.
                self.allocate_in_worker(call_id)
                    .map_err(|worker_error| match worker_error {
                        MediaError::SocketLimit(_) => e,
                        other => {
                            tracing::warn!(error = %other, "no media worker took the relay");
                            other
                        }
                    })
            }
            r => r,
        }
    }

    /// A relay in the first worker with room: ports from this engine's pool, sockets bound here (so
    /// a failure is known before the SDP goes out) and handed over.
    fn allocate_in_worker(&self, call_id: &str) -> Result<RelayHandle, MediaError> {
        let mut last = MediaError::SocketLimit(self.inner.budget.open());
        for index in 0..self.inner.workers.len() {
            let link = match self.worker(index) {
                Ok(link) => link,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let BoundPairs {
                sockets,
                ports,
                lease,
                ticket,
            } = match self.bind_pairs(2, link.budget()) {
                Ok(bound) => bound,
                Err(e @ MediaError::SocketLimit(_)) => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (Some(&a), Some(&b)) = (ports.first(), ports.get(1)) else {
                return Err(MediaError::PortsExhausted);
            };
            let fds: Vec<OwnedFd> = sockets
                .into_iter()
                .flat_map(|[rtp, rtcp]| [OwnedFd::from(rtp), OwnedFd::from(rtcp)])
                .collect();
            let call_id: Arc<str> = Arc::from(call_id);
            let c = &self.inner.config;
            match link.start_relay(call_id.clone(), fds, c.relatch, c.media_timeout, lease, ticket) {
                Ok(remote) => return Ok(RelayHandle::in_worker(remote, [a, b], c.public_ip, call_id)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn allocate_in_process(&self, call_id: &str) -> Result<RelayHandle, MediaError> {
        let mut reuse = self.inner.pool.take_bound(2);
        let a = match self.relay_pair(&mut reuse) {
            Ok(a) => a,
            Err(e) => {
                self.inner.pool.unpark(reuse);
                return Err(e);
            }
        };
        let b = match self.relay_pair(&mut reuse) {
            Ok(b) => b,
            Err(e) => {
                reuse.push(a);
                self.inner.pool.unpark(reuse);
                return Err(e);
            }
        };
        let ports = [a.port, b.port];
        let io = RelayIo::new([a, b], Some(self.inner.pool.clone()));
        let params = RelayParams {
            call_id: Arc::from(call_id),
            relatch: self.inner.config.relatch,
            media_timeout: self.inner.config.media_timeout,
            events: self.inner.events.clone(),
        };
        Ok(RelayHandle::spawn(io, ports, self.inner.config.public_ip, params))
    }

    /// Allocates a single RTP/RTCP port pair for media the edge terminates itself.
    pub fn allocate_endpoint(&self) -> Result<MediaEndpoint, MediaError> {
        tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let BoundPairs {
            sockets: pairs,
            ports,
            lease,
            ticket,
        } = self.bind_pairs(1, &self.inner.budget)?;
        let Some([rtp, rtcp]) = pairs.into_iter().next() else {
            return Err(MediaError::PortsExhausted);
        };
        Ok(MediaEndpoint {
            rtp: UdpSocket::from_std(rtp)?,
            _rtcp: rtcp,
            port: ports[0],
            _lease: lease,
            _ticket: ticket,
        })
    }

    pub(crate) fn events(&self) -> mpsc::UnboundedSender<MediaEvent> {
        self.inner.events.clone()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// A liveness token for a new session, or `ShuttingDown`.
    pub(crate) fn session_token(&self) -> Result<mpsc::Sender<()>, MediaError> {
        let live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clone().ok_or(MediaError::ShuttingDown)
    }

    /// Graceful shutdown: every voicemail session stops with
    /// [`crate::EndedBy::Shutdown`] and writes its WAV. Returns true when all
    /// finished within `grace`. New voicemail sessions are refused afterwards.
    /// Relays are owned by their handles and stop when those are dropped.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.shutdown.send_replace(true);
        drop(self.inner.live.lock().unwrap_or_else(|e| e.into_inner()).take());
        let mut done = self.inner.all_done.lock().await;
        matches!(tokio::time::timeout(grace, done.recv()).await, Ok(None))
    }
}
