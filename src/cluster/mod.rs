//! Cluster-wide limits, driver side (`[cluster] redis_url`, issue 21): the engines' [`LimitJob`]s are run
//! here, off the engine, against Redis, and answered back on each engine's channel.
//!
//! One driver task per node takes the jobs in order on one multiplexed connection, so this node's writes
//! reach Redis in the order its counts changed. Every Redis step is bounded by `redis_timeout_ms`; a
//! failure or time-out marks Redis down (logged once), and from then on every job is answered at once by
//! the [`Fallback`] (each limit divided by the live nodes) until a heartbeat reconnects (logged once too),
//! re-publishes this node's counts and takes over again. Calls are never refused for want of Redis.
//!
//! Leases: this node's calls on an agent are a field of the agent's hash, kept only while the node's
//! `live:` key exists; the heartbeat renews that key every third of `lease_ttl_ms` and re-publishes every
//! count (which corrects any drift), so a node that dies stops holding agents' slots within the lease.

pub mod fallback;
mod scripts;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call::{AgentSlots, LimitAnswer, LimitJob};
use crate::config::ClusterSettings;
pub use fallback::Fallback;
use scripts::Scripts;

/// Where an engine gets its answers.
pub type Answers = mpsc::UnboundedSender<(LimitJob, LimitAnswer)>;

/// Jobs waiting for the driver; past this the engines answer from the fallback themselves.
const QUEUE: usize = 16_384;

struct Request {
    job: LimitJob,
    reply: Option<Answers>,
}

/// What `/metrics` and tests read.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// 1 while limits are counted in Redis, 0 while each node counts alone.
    pub redis_up: AtomicU64,
    /// Answers given by the per-node fallback (Redis down, slow, or the driver's queue full).
    pub fallback_answers: AtomicU64,
    /// Answers given by Redis.
    pub redis_answers: AtomicU64,
}

/// The engines' handle on the driver.
#[derive(Clone)]
pub struct ClusterLimits {
    tx: mpsc::Sender<Request>,
    fallback: Arc<Fallback>,
    pub stats: Arc<ClusterStats>,
}

impl ClusterLimits {
    /// Starts the driver for `url`; it connects on its first heartbeat (at once) and answers from the
    /// fallback until then.
    pub fn start(
        cfg: &ClusterSettings,
        url: &str,
        node_id: &str,
        slots: AgentSlots,
        max_pacing_wait: Duration,
        live_nodes: Arc<AtomicU32>,
    ) -> anyhow::Result<(ClusterLimits, JoinHandle<()>)> {
        let client = redis::Client::open(url)?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness for the node's lease id: {e}"))?;
        let me = format!("{node_id}:{:016x}", u64::from_le_bytes(nonce));
        let fallback = Arc::new(Fallback::new(slots.clone(), max_pacing_wait, live_nodes.clone()));
        let stats = Arc::new(ClusterStats::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let driver = Driver {
            client,
            conn: None,
            down_logged: false,
            connected_once: false,
            live_key: format!("{}live:{me}", cfg.key_prefix),
            live_prefix: format!("{}live:", cfg.key_prefix),
            prefix: cfg.key_prefix.clone(),
            me,
            lease_ttl: cfg.lease_ttl,
            timeout: cfg.redis_timeout,
            slots,
            fallback: fallback.clone(),
            scripts: Scripts::new(),
            max_wait: max_pacing_wait,
            resync_all: true,
            stats: stats.clone(),
            live_nodes,
        };
        let task = tokio::spawn(driver.run(rx));
        Ok((ClusterLimits { tx, fallback, stats }, task))
    }

    /// Hands a job to the driver. When its queue is full the fallback answers at once (returned here);
    /// `Sync` jobs are then dropped: the next heartbeat publishes the counts anyway.
    pub fn submit(&self, job: LimitJob, reply: &Answers) -> Option<(LimitJob, LimitAnswer)> {
        let reply = (!matches!(job, LimitJob::Sync { .. })).then(|| reply.clone());
        match self.tx.try_send(Request { job, reply }) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => {
                let answer = local_answer(&self.fallback, &r.job)?;
                self.stats.fallback_answers.fetch_add(1, Ordering::Relaxed);
                Some((r.job, answer))
            }
        }
    }
}

/// The fallback's answer to a job (`None` for `Sync`, which has none).
fn local_answer(fallback: &Fallback, job: &LimitJob) -> Option<LimitAnswer> {
    match job {
        LimitJob::Agent(ask) => Some(fallback.agent(&ask.agent.id, ask.agent.max_concurrent_calls)),
        LimitJob::Outbound(ask) => Some(fallback.agent(&ask.agent.id, ask.agent.max_concurrent_calls)),
        LimitJob::Pace(ask) => Some(fallback.pace(Instant::now(), &ask.trunk, ask.cps)),
        LimitJob::Sync { .. } => None,
    }
}

/// Keeps the live-node count of the fallback current: nodes whose heartbeat (every 5 s) is at most
/// `window` old.
pub async fn count_live_nodes(store: Arc<edge_store::Store>, live: Arc<AtomicU32>, every: Duration, window: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let since = edge_store::now_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        match store.live_nodes(since).await {
            Ok(n) => live.store(u32::try_from(n).unwrap_or(u32::MAX).max(1), Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "live nodes not counted; the last count stays"),
        }
    }
}

struct Driver {
    client: redis::Client,
    /// `None` while Redis is down (or not reached yet): the fallback answers.
    conn: Option<MultiplexedConnection>,
    down_logged: bool,
    connected_once: bool,
    prefix: String,
    /// This node's incarnation: its field in agents' hashes.
    me: String,
    live_key: String,
    live_prefix: String,
    lease_ttl: Duration,
    timeout: Duration,
    slots: AgentSlots,
    fallback: Arc<Fallback>,
    scripts: Scripts,
    max_wait: Duration,
    /// Publish every agent's count, zeros included (after a reconnection: Redis may have lost or kept
    /// anything meanwhile).
    resync_all: bool,
    stats: Arc<ClusterStats>,
    live_nodes: Arc<AtomicU32>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut beat = tokio::time::interval(self.lease_ttl / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = beat.tick() => self.heartbeat().await,
                r = rx.recv() => {
                    let Some(r) = r else { return };
                    let answer = self.answer(&r.job).await;
                    if let (Some(reply), Some(answer)) = (r.reply, answer) {
                        let _ = reply.send((r.job, answer));
                    }
                }
            }
        }
    }

    fn agent_key(&self, agent_id: &str) -> String {
        format!("{}agent:{agent_id}", self.prefix)
    }

    /// Hash lifetime: renewed by every holder's heartbeat, so it goes with the last holder.
    fn hash_ttl_ms(&self) -> u64 {
        u64::try_from(self.lease_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(2)
    }

    fn went_down(&mut self, why: &str) {
        self.conn = None;
        self.stats.redis_up.store(0, Ordering::Relaxed);
        if !self.down_logged {
            self.down_logged = true;
            tracing::warn!(
                error = why,
                live_nodes = self.live_nodes.load(Ordering::Relaxed).max(1),
                "cluster limits: Redis unreachable; this node counts alone, each agent's max_concurrent_calls \
                 and trunk's calls per second divided by the live nodes (logged once; retried every heartbeat)"
            );
        }
    }

    async fn answer(&mut self, job: &LimitJob) -> Option<LimitAnswer> {
        let answer = match job {
            LimitJob::Sync { agent_id } => {
                self.publish(std::slice::from_ref(agent_id), false).await;
                return None;
            }
            LimitJob::Agent(ask) => self.acquire(&ask.agent.id, ask.agent.max_concurrent_calls).await,
            LimitJob::Outbound(ask) => self.acquire(&ask.agent.id, ask.agent.max_concurrent_calls).await,
            LimitJob::Pace(ask) => self.pace(&ask.trunk, ask.cps).await,
        };
        match answer {
            Some(a) => {
                self.stats.redis_answers.fetch_add(1, Ordering::Relaxed);
                Some(a)
            }
            None => {
                self.stats.fallback_answers.fetch_add(1, Ordering::Relaxed);
                local_answer(&self.fallback, job)
            }
        }
    }

    /// Redis's answer for one more call on the agent; `None` when Redis did not give one.
    async fn acquire(&mut self, agent_id: &str, limit: u32) -> Option<LimitAnswer> {
        let key = self.agent_key(agent_id);
        let ttl = self.hash_ttl_ms();
        let conn = self.conn.as_mut()?;
        // Counted here first, so that this node's field says how many calls it has with this one.
        self.slots.add(agent_id);
        let mine = self.slots.load(agent_id);
        let mut inv = self.scripts.acquire.key(&key);
        inv.arg(&self.me).arg(mine).arg(limit).arg(&self.live_prefix).arg(ttl);
        match tokio::time::timeout(self.timeout, inv.invoke_async::<i64>(conn)).await {
            Ok(Ok(1)) => Some(LimitAnswer::Granted),
            Ok(Ok(_)) => {
                self.slots.release(agent_id);
                Some(LimitAnswer::AtLimit)
            }
            Ok(Err(e)) => {
                self.slots.release(agent_id);
                self.went_down(&e.to_string());
                None
            }
            Err(_) => {
                self.slots.release(agent_id);
                self.went_down("no answer within cluster.redis_timeout_ms");
                None
            }
        }
    }

    /// Redis's slot on the trunk's shared line; `None` when Redis did not give one.
    async fn pace(&mut self, trunk: &str, cps: f64) -> Option<LimitAnswer> {
        let key = format!("{}pace:{trunk}", self.prefix);
        let interval_us = (1e6 / cps.max(0.001)).round() as u64;
        let max_wait_us = u64::try_from(self.max_wait.as_micros()).unwrap_or(u64::MAX);
        let conn = self.conn.as_mut()?;
        let mut inv = self.scripts.pace.key(&key);
        inv.arg(interval_us).arg(max_wait_us);
        match tokio::time::timeout(self.timeout, inv.invoke_async::<Vec<i64>>(conn)).await {
            Ok(Ok(v)) if v.len() == 2 => {
                let wait = Duration::from_micros(u64::try_from(v[1]).unwrap_or(0));
                Some(match v[0] {
                    1 => LimitAnswer::PaceIn(wait),
                    _ => LimitAnswer::PaceRefused(wait),
                })
            }
            Ok(Ok(v)) => {
                self.went_down(&format!("unexpected answer from the pacing script: {v:?}"));
                None
            }
            Ok(Err(e)) => {
                self.went_down(&e.to_string());
                None
            }
            Err(_) => {
                self.went_down("no answer within cluster.redis_timeout_ms");
                None
            }
        }
    }

    /// Writes this node's count for each agent (a field, or none at 0); with `live`, renews the node's
    /// lease in the same round trip.
    async fn publish(&mut self, agents: &[String], live: bool) -> bool {
        let ttl = self.hash_ttl_ms();
        let lease_ms = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        if live {
            pipe.cmd("SET")
                .arg(&self.live_key)
                .arg(1)
                .arg("PX")
                .arg(lease_ms)
                .ignore();
        }
        for agent_id in agents {
            let key = self.agent_key(agent_id);
            match self.slots.load(agent_id) {
                0 => pipe.cmd("HDEL").arg(&key).arg(&self.me).ignore(),
                n => pipe
                    .cmd("HSET")
                    .arg(&key)
                    .arg(&self.me)
                    .arg(n)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .ignore(),
            };
        }
        let Some(conn) = self.conn.as_mut() else { return false };
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(conn)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.went_down(&e.to_string());
                false
            }
            Err(_) => {
                self.went_down("no answer within cluster.redis_timeout_ms");
                false
            }
        }
    }

    /// Reconnects when down, renews the lease and re-publishes every count this node holds.
    async fn heartbeat(&mut self) {
        if self.conn.is_none() {
            // A refused connection fails at once; a silent host is given a few time-outs' worth.
            let wait = (self.timeout * 4).max(Duration::from_millis(200));
            match tokio::time::timeout(wait, self.client.get_multiplexed_async_connection()).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => return self.went_down(&e.to_string()),
                Err(_) => return self.went_down("no connection within the time-out"),
            }
            self.resync_all = true;
        }
        let agents: Vec<String> = self
            .slots
            .gauge()
            .iter()
            .filter(|e| self.resync_all || *e.value() > 0)
            .map(|e| e.key().clone())
            .collect();
        if !self.publish(&agents, true).await {
            return;
        }
        self.resync_all = false;
        self.stats.redis_up.store(1, Ordering::Relaxed);
        if self.down_logged {
            self.down_logged = false;
            tracing::info!("cluster limits: Redis reachable again; limits are counted across the cluster");
        } else if !self.connected_once {
            tracing::info!(node = %self.me, "cluster limits: counting agents' calls and trunks' pacing in Redis");
        }
        self.connected_once = true;
    }
}
