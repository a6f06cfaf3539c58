//! The edge's side of one media worker: the child process, its control socket, and the relays it runs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use super::channel::{self, Control};
use super::wire::{FromWorker, ToWorker};
use crate::budget::{SocketBudget, SocketTicket};
use crate::event::MediaEvent;
use crate::latch::RelatchRule;
use crate::ports::PortLease;
use crate::relay::{RelayStats, Side};
use crate::MediaError;

/// How long `release` waits for a worker's final counters before giving up on them.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// A worker that takes no message for this long is stalled: killed, and its calls ended.
const STALLED_AFTER: Duration = Duration::from_secs(2);
/// Sockets waiting in the queue to a worker at most (64 relays). They are the edge's own descriptors
/// until sent, so a worker that reads slowly must not make the edge hoard them: past this the worker
/// takes no new relay. A quarter of the 1,024 descriptors `media.max_sockets` leaves by default;
/// enough for a burst of calls set up before the writer task runs.
const MAX_QUEUED_FDS: usize = 256;

/// A running worker process. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WorkerLink {
    inner: Arc<LinkInner>,
}

#[derive(Debug)]
struct LinkInner {
    index: usize,
    out: mpsc::UnboundedSender<Outgoing>,
    alive: AtomicBool,
    /// Sockets held by this worker's relays against its ceiling.
    budget: Arc<SocketBudget>,
    /// Relays by id; `alive` changes under this lock too, so no relay is added to a dead worker.
    relays: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Descriptors in `out` not yet sent.
    queued_fds: AtomicUsize,
    events: mpsc::UnboundedSender<MediaEvent>,
    /// Tells the reaper to kill the process (stalled).
    kill: Arc<Notify>,
}

/// A relay in the worker, until the worker says it closed the sockets (or is gone).
#[derive(Debug)]
struct Entry {
    call_id: Arc<str>,
    finished: Arc<AtomicBool>,
    stopped: Option<oneshot::Sender<RelayStats>>,
    /// The ports go back to the pool, and the places to the worker's ceiling, only once the worker
    /// has closed the sockets: a port is never bound again while the worker still holds it.
    _lease: PortLease,
    _ticket: SocketTicket,
}

/// A message waiting for the control socket (with the sockets of a `Start`, closed here once sent).
#[derive(Debug)]
struct Outgoing {
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl LinkInner {
    fn relays(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // Entries are independent: a poisoned map is still consistent.
        self.relays.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message; false if the writer is gone.
    fn send(&self, msg: &ToWorker, fds: Vec<OwnedFd>) -> bool {
        let n = fds.len();
        self.queued_fds.fetch_add(n, Ordering::AcqRel);
        let sent = self.out.send(Outgoing {
            frame: msg.encode(),
            fds,
        });
        if sent.is_err() {
            self.queued_fds.fetch_sub(n, Ordering::AcqRel);
        }
        sent.is_ok()
    }

    /// The worker is gone (or stalled, and killed): its calls have no media any more, so each ends as
    /// on a media timeout.
    fn died(&self) {
        self.kill.notify_one();
        let gone: Vec<Entry> = {
            let mut relays = self.relays();
            self.alive.store(false, Ordering::Release);
            relays.drain().map(|(_, e)| e).collect()
        };
        if !gone.is_empty() {
            tracing::error!(
                worker = self.index,
                calls = gone.len(),
                "media worker gone: its calls are ended"
            );
        }
        for mut e in gone {
            e.finished.store(true, Ordering::Release);
            let _ = self.events.send(MediaEvent::Timeout { call_id: e.call_id });
            if let Some(tx) = e.stopped.take() {
                let _ = tx.send(RelayStats::default());
            }
        }
    }

    fn handle(&self, msg: FromWorker) {
        match msg {
            FromWorker::Stopped { id, stats } => {
                if let Some(tx) = self.relays().remove(&id).and_then(|mut e| e.stopped.take()) {
                    let _ = tx.send(stats);
                }
            }
            FromWorker::Timeout { id } => {
                let relays = self.relays();
                if let Some(e) = relays.get(&id) {
                    e.finished.store(true, Ordering::Release);
                    let _ = self.events.send(MediaEvent::Timeout {
                        call_id: e.call_id.clone(),
                    });
                }
            }
        }
    }
}

impl WorkerLink {
    /// Starts worker `index` by running `command` (program, then arguments) with the control socket as
    /// its standard input. `max_sockets` is its ceiling. Must be called inside a Tokio runtime.
    pub(crate) fn spawn(
        index: usize,
        command: &[OsString],
        max_sockets: usize,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<WorkerLink, MediaError> {
        let Some((program, args)) = command.split_first() else {
            return Err(MediaError::Config("media worker command is empty"));
        };
        let (ours, theirs) = channel::pair()?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let control = Arc::new(Control::new(ours)?);
        let (out, mut queue) = mpsc::unbounded_channel::<Outgoing>();
        let kill = Arc::new(Notify::new());
        let inner = Arc::new(LinkInner {
            index,
            out,
            alive: AtomicBool::new(true),
            budget: SocketBudget::new(max_sockets),
            relays: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queued_fds: AtomicUsize::new(0),
            events,
            kill: kill.clone(),
        });
        tracing::info!(worker = index, pid = ?child.id(), max_sockets, "media worker started");

        // Writer: ends when every handle is gone, and then tells the worker to finish.
        let writer = control.clone();
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(msg) = queue.recv().await {
                let fds: Vec<_> = msg.fds.iter().map(|fd| fd.as_fd()).collect();
                let sent = tokio::time::timeout(STALLED_AFTER, writer.send(&msg.frame, &fds)).await;
                drop(fds);
                if let Some(inner) = weak.upgrade() {
                    inner.queued_fds.fetch_sub(msg.fds.len(), Ordering::AcqRel);
                }
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(worker = index, error = %e, "media worker control socket");
                        break;
                    }
                    Err(_) => {
                        tracing::error!(worker = index, after = ?STALLED_AFTER, "media worker stalled: killed");
                        break;
                    }
                }
            }
            writer.shutdown_write();
            if let Some(inner) = weak.upgrade() {
                inner.died();
            }
        });
        // Reader: the worker's answers and timeouts, until it goes.
        let weak: Weak<LinkInner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let got = control.recv().await;
                let Some(inner) = weak.upgrade() else { return };
                match got {
                    Ok(Some(msg)) => match FromWorker::decode(&msg.frame) {
                        Ok(m) => inner.handle(m),
                        Err(e) => tracing::warn!(worker = index, error = %e, "media worker message dropped"),
                    },
                    Ok(None) | Err(_) => {
                        inner.died();
                        return;
                    }
                }
            }
        });
        // Reaper: the process's exit status, for the operator; kills it when told (stalled).
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = kill.notified() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            match status {
                Ok(status) if status.success() => tracing::info!(worker = index, "media worker exited"),
                Ok(status) => tracing::error!(worker = index, %status, "media worker exited"),
                Err(e) => tracing::error!(worker = index, error = %e, "media worker lost"),
            }
        });
        Ok(WorkerLink { inner })
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::Acquire)
    }

    pub(crate) fn budget(&self) -> &Arc<SocketBudget> {
        &self.inner.budget
    }

    /// Hands a relay's four sockets (A's RTP, RTCP, B's RTP, RTCP) to the worker; they are closed here
    /// once sent. `lease` and `ticket` are kept until the worker has closed them: its ports and its
    /// places in this worker's ceiling come back then. [`MediaError::WorkerDown`] (nothing started,
    /// the sockets closed) when the worker is gone or not keeping up.
    pub(crate) fn start_relay(
        &self,
        call_id: Arc<str>,
        sockets: Vec<OwnedFd>,
        relatch: RelatchRule,
        media_timeout: Duration,
        lease: PortLease,
        ticket: SocketTicket,
    ) -> Result<RemoteRelay, MediaError> {
        let inner = &self.inner;
        if inner.queued_fds.load(Ordering::Acquire) + sockets.len() > MAX_QUEUED_FDS {
            return Err(MediaError::WorkerDown(inner.index));
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let finished = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel();
        {
            let mut relays = inner.relays();
            if !self.is_alive() {
                return Err(MediaError::WorkerDown(inner.index));
            }
            relays.insert(
                id,
                Entry {
                    call_id,
                    finished: finished.clone(),
                    stopped: Some(tx),
                    _lease: lease,
                    _ticket: ticket,
                },
            );
        }
        let start = ToWorker::Start {
            id,
            relatch,
            media_timeout,
        };
        if !inner.send(&start, sockets) {
            inner.relays().remove(&id);
            return Err(MediaError::WorkerDown(inner.index));
        }
        Ok(RemoteRelay {
            link: self.clone(),
            id,
            finished,
            stopped: Some(rx),
        })
    }
}

/// A relay running in a worker, seen from the edge.
#[derive(Debug)]
pub(crate) struct RemoteRelay {
    link: WorkerLink,
    id: u64,
    finished: Arc<AtomicBool>,
    /// `None` once `Stop` is sent.
    stopped: Option<oneshot::Receiver<RelayStats>>,
}

impl RemoteRelay {
    pub(crate) fn set_declared(&self, side: Side, declared: Option<(std::net::SocketAddr, std::net::SocketAddr)>) {
        let msg = ToWorker::Remote {
            id: self.id,
            side,
            declared,
        };
        let _ = self.link.inner.send(&msg, Vec::new());
    }

    pub(crate) fn set_ringback(&self, side: Side, codec: Option<crate::ringback::RingbackCodec>) {
        let msg = ToWorker::Ringback {
            id: self.id,
            side,
            codec,
        };
        let _ = self.link.inner.send(&msg, Vec::new());
    }

    pub(crate) fn set_law(&self, side: Side, rule: Option<crate::transcode::LawRule>) {
        let _ = self.link.inner.send(
            &ToWorker::Law {
                id: self.id,
                side,
                rule,
            },
            Vec::new(),
        );
    }

    /// New SRTP keys for `side`: the worker makes the contexts (`KeyUpdate::contexts`).
    pub(crate) fn set_keys(&self, side: Side, update: crate::srtp::KeyUpdate) {
        let _ = self.link.inner.send(
            &ToWorker::Keys {
                id: self.id,
                side,
                update,
            },
            Vec::new(),
        );
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Stops the relay; its final counters, or zeros if the worker does not answer in time.
    pub(crate) async fn release(&mut self) -> RelayStats {
        let Some(rx) = self.stop() else {
            return RelayStats::default();
        };
        tokio::time::timeout(STOP_WAIT, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    fn stop(&mut self) -> Option<oneshot::Receiver<RelayStats>> {
        let rx = self.stopped.take()?;
        let _ = self.link.inner.send(&ToWorker::Stop { id: self.id }, Vec::new());
        Some(rx)
    }
}

impl Drop for RemoteRelay {
    fn drop(&mut self) {
        self.stop();
    }
}
