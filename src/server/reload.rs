//! Config reload (issue 21): SIGHUP, or `oneinbox-edge reload`, re-reads the file the edge started with.
//!
//! A file that fails validation changes nothing (the error, with key and line, is logged and reported).
//! Otherwise what may change while calls are up is applied ([`crate::config::restart`]): the engine
//! shards get the new config as an input and swap their source policy, routing and outbound settings;
//! the TCP classifier reads the same shared handle; admission limits are shared and set once; the log
//! level and the TLS files are re-read. Keys that need a restart keep their running value and are named.
//!
//! The running edge writes its pid to `data_dir/oneinbox-edge.pid` and the outcome of every reload to
//! `data_dir/oneinbox-edge.reload.json`, which the `reload` subcommand reads to say what happened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::lifecycle::Lifecycle;
use crate::config::Config;
use crate::shard::limits::SharedAdmission;
use crate::transport::tls::TlsCerts;

/// The running edge's process id, under `data_dir`.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("oneinbox-edge.pid")
}

/// The outcome of the latest reload, under `data_dir`.
pub fn status_file(data_dir: &Path) -> PathBuf {
    data_dir.join("oneinbox-edge.reload.json")
}

/// What a reload did, as logged and written to [`status_file`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Reloads tried since start (applied or not).
    pub attempt: u64,
    /// The configuration generation running after it (1: the file read at start).
    pub generation: u64,
    pub applied: bool,
    /// Why the file was refused (`file:line: key ...`).
    pub error: Option<String>,
    /// Keys the file changed that need a restart; their running value stays.
    pub needs_restart: Vec<String>,
    /// The TLS listener's certificate or key could not be re-read (the pair in use stays).
    pub tls_error: Option<String>,
    pub at_ms: i64,
}

/// Re-reads the config on demand; one reload at a time.
pub struct Reloader {
    state: tokio::sync::Mutex<(Arc<Config>, u64)>,
    config_tx: watch::Sender<Arc<Config>>,
    lifecycle: Arc<Lifecycle>,
    admission: SharedAdmission,
    tls: Option<Arc<TlsCerts>>,
}

impl Reloader {
    pub(super) fn new(
        running: Arc<Config>,
        lifecycle: Arc<Lifecycle>,
        admission: SharedAdmission,
        tls: Option<Arc<TlsCerts>>,
    ) -> (Self, watch::Receiver<Arc<Config>>) {
        let (config_tx, rx) = watch::channel(running.clone());
        let r = Reloader {
            state: tokio::sync::Mutex::new((running, 0)),
            config_tx,
            lifecycle,
            admission,
            tls,
        };
        (r, rx)
    }

    /// The configuration running now (with what a reload applied).
    pub fn current(&self) -> Arc<Config> {
        self.config_tx.borrow().clone()
    }

    /// Re-reads the file the edge runs from and applies what may change without a restart.
    pub async fn reload(&self) -> ReloadReport {
        let mut state = self.state.lock().await;
        let (running, attempts) = &mut *state;
        *attempts += 1;
        let mut report = ReloadReport {
            attempt: *attempts,
            generation: self.lifecycle.generation(),
            at_ms: edge_store::now_ms(),
            ..ReloadReport::default()
        };
        // The TLS files first, whatever the config file says: a renewed certificate (its hook sends SIGHUP)
        // must not wait on an unrelated mistake in the file.
        if let Some(certs) = &self.tls {
            let c = certs.clone();
            // The outcome is logged by reload itself.
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.reload()).await {
                report.tls_error = Some(e.to_string());
            }
        }
        let path = running.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let mut new = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "config reload refused: the running configuration stays");
                report.error = Some(e.to_string());
                write_status(&running.data_dir, &report);
                return report;
            }
            Err(e) => {
                report.error = Some(format!("reading the config failed: {e}"));
                write_status(&running.data_dir, &report);
                return report;
            }
        };
        let kept = crate::config::restart::keep_restart_bound(running, &mut new);
        if !kept.is_empty() {
            tracing::warn!(
                keys = %kept.join(", "),
                "config reload: these keys changed and need a restart; their running values stay"
            );
        }
        if new.log_level != running.log_level {
            match crate::logging::set_level(&new.log_level) {
                Ok(true) => tracing::info!(level = %new.log_level, "log level changed"),
                Ok(false) => tracing::info!("log.level not applied: RUST_LOG sets the level"),
                Err(e) => tracing::warn!(error = %e, "log.level not applied"),
            }
        }
        self.admission.set_config(new.admission.clone());
        let new = Arc::new(new);
        *running = new.clone();
        // Every engine shard and the TCP classifier see it on their next turn.
        self.config_tx.send_replace(new.clone());
        report.applied = true;
        report.needs_restart = kept.iter().map(|k| (*k).to_owned()).collect();
        report.generation = self.lifecycle.reloaded(report.at_ms);
        tracing::info!(
            generation = report.generation,
            carriers = new.carriers.len(),
            agent_networks = new.agent_networks.len(),
            needs_restart = kept.len(),
            "configuration reloaded; calls in progress untouched"
        );
        write_status(&new.data_dir, &report);
        report
    }
}

/// Writes the report where `oneinbox-edge reload` looks (write then rename: never read half written).
fn write_status(data_dir: &Path, report: &ReloadReport) {
    let path = status_file(data_dir);
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec_pretty(report)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "reload outcome not written");
    }
}

/// Writes this process's id for `oneinbox-edge reload`.
pub(super) fn write_pid_file(data_dir: &Path) {
    let path = pid_file(data_dir);
    if let Err(e) = std::fs::write(&path, format!("{}\n", std::process::id())) {
        tracing::warn!(error = %e, path = %path.display(), "pid file not written: `oneinbox-edge reload` cannot find this edge");
    }
}

/// Removes the pid file at a clean stop, when it is still ours.
pub(super) fn remove_pid_file(data_dir: &Path) {
    let path = pid_file(data_dir);
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// `oneinbox-edge reload`: signals the edge running on `cfg.data_dir` (SIGHUP) and waits up to `wait` for
/// its report. The caller has validated the file already.
pub fn signal_running_edge(cfg: &Config, wait: Duration) -> anyhow::Result<ReloadReport> {
    let pid_path = pid_file(&cfg.data_dir);
    let text = std::fs::read_to_string(&pid_path)
        .with_context(|| format!("no running edge found: cannot read {}", pid_path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", pid_path.display()))?;
    let pid = rustix::process::Pid::from_raw(pid)
        .with_context(|| format!("{} does not hold a process id", pid_path.display()))?;
    let status = status_file(&cfg.data_dir);
    let before = read_status(&status).map_or(0, |r| r.attempt);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .with_context(|| format!("signalling edge process {} (SIGHUP)", pid.as_raw_nonzero()))?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Some(r) = read_status(&status).filter(|r| r.attempt > before) {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!(
        "edge process {} was signalled but reported no reload within {} s (see its log)",
        pid.as_raw_nonzero(),
        wait.as_secs()
    )
}

fn read_status(path: &Path) -> Option<ReloadReport> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
