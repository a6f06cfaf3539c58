//! Drain (issue 21): what SIGTERM does. New INVITEs and OPTIONS get 503 + `Retry-After` (carriers'
//! health checks move traffic to the other nodes), `/healthz` says `draining`, and calls in progress may
//! finish for `[shutdown] drain_timeout_s`; the edge stops as soon as none is left. At the time-out (or a
//! second SIGTERM or SIGINT) the calls left get BYE on both legs through client transactions, which the
//! engine keeps retransmitting (RFC 3261 Timer E) until each is answered or Timer F ends it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Edge;

/// What the engine shards are told to do, on top of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    Serve,
    /// Refuse new calls; let the others finish.
    Drain,
    /// End the calls left (BYE through client transactions) and keep retransmitting.
    EndCalls,
}

/// Each shard's answer to "is anything left?", published after each turn while draining.
pub(super) type Idle = Arc<AtomicBool>;

/// How often the drain looks at the shards' idle flags.
const IDLE_POLL: Duration = Duration::from_millis(20);

impl Edge {
    /// Drains and stops: see the module doc. `timeout` is how long calls may go on.
    pub async fn drain(self, timeout: Duration) {
        self.drain_until(timeout, std::future::pending()).await
    }

    /// [`Self::drain`], ended early (the calls left hung up at once) when `hurry` completes: the signal
    /// path passes a second SIGTERM or SIGINT.
    pub async fn drain_until(self, timeout: Duration, hurry: impl Future<Output = ()>) {
        self.lifecycle.set_draining();
        let _ = self.control.send(Control::Drain);
        let calls = self.call_stats.active_calls.load(Ordering::Relaxed);
        tracing::info!(
            calls,
            timeout_s = timeout.as_secs(),
            "draining: new calls and OPTIONS get 503; calls in progress may finish"
        );
        tokio::pin!(hurry);
        let ended_by_itself = tokio::select! {
            _ = self.wait_idle() => true,
            _ = tokio::time::sleep(timeout) => {
                tracing::warn!(
                    calls = self.call_stats.active_calls.load(Ordering::Relaxed),
                    "drain time-out: ending the calls left (BYE on both legs)"
                );
                false
            }
            _ = &mut hurry => {
                tracing::warn!(
                    calls = self.call_stats.active_calls.load(Ordering::Relaxed),
                    "second stop signal: ending the calls left now (BYE on both legs)"
                );
                false
            }
        };
        if !ended_by_itself {
            let _ = self.control.send(Control::EndCalls);
            // Every BYE is answered or ended by Timer F (64*T1) by then.
            if tokio::time::timeout(self.bye_bound, self.wait_idle()).await.is_err() {
                tracing::warn!("some BYEs were still unanswered when the edge stopped");
            }
        }
        tracing::info!("drained: no call left");
        self.shutdown().await
    }

    /// Until every shard has no call and no BYE or CANCEL waiting for its answer.
    async fn wait_idle(&self) {
        loop {
            if self.idle.iter().all(|i| i.load(Ordering::Acquire)) {
                return;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    /// True once SIGTERM (or [`Self::drain`]) started the drain.
    pub fn is_draining(&self) -> bool {
        self.lifecycle.draining()
    }

    /// `[shutdown] drain_timeout_s` of the running configuration (a reload may have changed it).
    pub fn drain_timeout(&self) -> Duration {
        self.reloader.current().drain_timeout
    }
}

/// SIGTERM and SIGINT, registered once at start so that none is missed between the first and the second.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await
                        }
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = one(&mut self.term) => {}
                _ = one(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Default for StopSignals {
    fn default() -> Self {
        Self::new()
    }
}
