//! Media worker processes: relays beyond the edge's own open-files limit.
//!
//! Every anchored call holds four sockets, so a process whose hard limit on open files is 20,000
//! (a container that cannot raise it) anchors under 5,000 calls however much memory it has. With
//! `MediaConfig::workers` > 0 the engine keeps its in-process relays up to `max_sockets` and then
//! hands new ones to worker processes, each with an open-files limit of its own:
//!
//! 1. the edge takes the ports from its one pool and binds the four sockets itself, so a bind
//!    failure is still a 503 before anything is promised in SDP;
//! 2. it sends them to a worker over a `SOCK_SEQPACKET` socket as `SCM_RIGHTS` (the worker's
//!    standard input) and closes its own copies;
//! 3. the worker runs the same relay loop as in-process calls ([`crate::relay`]); SDP updates,
//!    stop and media timeouts travel as small messages ([`wire`]).
//!
//! A relay's ports go back to the pool only when the worker reports its sockets closed, so a port is
//! never bound twice. A worker is the edge's own binary (`oneinbox-edge media-worker`); it ignores
//! SIGINT/SIGTERM (a terminal's Ctrl-C or systemd reach every process of the group) and exits when the
//! edge closes the control socket, so it neither dies before the edge's graceful shutdown nor
//! outlives the edge. If one dies, or takes no message for 2 s (then it is killed), its calls end as
//! on a media timeout (BYE both legs) and the next call that needs it starts a new one. Each worker
//! runs a Tokio runtime with a thread per core, like the edge.

mod channel;
mod link;
mod serve;
mod wire;

pub(crate) use link::{RemoteRelay, WorkerLink};
pub use serve::run_media_worker;
