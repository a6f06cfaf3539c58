//! The call controller as a registry: every live call by id, the indexes that find a call from a message
//! (server INVITE key, client transaction key, dialog Call-ID, public id), the timer heap, agent load,
//! and the records waiting for the store. Events are dispatched to the per-call code in the direction
//! modules; what they produce (transmits, records) is drained by polling.

use edge_store::{CallRecord, CallStatus, RoutingIndex};
use sip_core::message::HeaderName;
use sip_core::transaction::TxKey;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::agents::AgentSlots;
use crate::call::context::{CallConfig, CallStats, Ctx, MetricUpdate, Persist};
use crate::call::entropy::{Entropy, OsEntropy};
use crate::call::media::{CallMedia, Side};
use crate::call::outbound::ResolveJob;
use crate::call::outcome::{Abandon, Ending, HopOutcome};
use crate::call::pacing::TrunkPacer;
use crate::call::phase::Phase;
use crate::call::state::{BLeg, Call, CallId, ClientRef, LegTarget, Orphan, TimerKind};
use crate::call::voicemail::VoicemailMeta;

/// How long a live call's changed record waits before it is queued for the store (see
/// `CallController::persist`). `GET /v1/calls/{id}` sees a live call's progress this much (plus the
/// writer's own gathering) later; an ended call's record is queued at once.
pub(super) const RECORD_FLUSH: Duration = Duration::from_millis(20);

/// The call controller: every call's state, keyed by id, and the indexes into it.
pub struct CallController {
    pub(super) cfg: CallConfig,
    pub(super) index: Arc<RoutingIndex>,
    /// Boxed: growing the map then moves pointers, not whole calls (a stall at 10,000 live calls).
    pub(super) calls: HashMap<CallId, Box<Call>>,
    pub(super) by_server_invite: HashMap<TxKey, CallId>,
    pub(super) by_client: HashMap<TxKey, ClientRef>,
    pub(super) by_dialog: HashMap<String, (CallId, Side)>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, CallId, TimerKind, u32)>>,
    pub(super) next_id: CallId,
    /// Records for the store, drained by the driver with [`Self::poll_record`].
    pub(super) records: VecDeque<Persist>,
    pub(super) media: Option<Box<dyn CallMedia>>,
    pub(super) by_public: HashMap<String, CallId>,
    pub(super) voicemail_meta: HashMap<String, VoicemailMeta>,
    pub stats: Arc<CallStats>,
    /// Calls in progress per agent; shared with /metrics (and, later, with the other engine shards).
    pub(super) agent_slots: AgentSlots,
    /// Calls-per-second lines per trunk; shareable the same way.
    pub(super) pacer: TrunkPacer,
    /// Which engine shard this is: the Call-IDs and public ids it mints hash back to it.
    pub(super) ids: crate::shard::ShardIds,
    /// Trunk hosts waiting to be resolved by the driver (DNS is IO).
    pub(super) resolve_jobs: VecDeque<ResolveJob>,
    /// Questions for the cluster's limits, run by the driver (`[cluster]`; Redis is IO).
    pub(super) limit_jobs: VecDeque<crate::call::cluster_gate::LimitJob>,
    /// `[cluster]`: limits are counted across nodes ([`crate::call::cluster_gate`]).
    pub(super) cluster_limits: bool,
    /// Live calls whose record changed and is not queued yet; queued at `flush_at`.
    pub(super) dirty: Vec<CallId>,
    pub(super) flush_at: Option<Instant>,
    /// Agent legs whose INVITE transaction ended without a final answer (Timer B, transport error), by
    /// their Call-ID: a 2xx that still comes is a stray to the transaction layer, yet it opens a dialog
    /// we must ACK and BYE (RFC 3261 13.2.2.4). Kept [`LATE_ANSWER_WINDOW`], oldest first in `late_order`.
    pub(super) late_legs: HashMap<String, (Instant, Orphan)>,
    pub(super) late_order: VecDeque<(Instant, String)>,
    /// Metric updates for the driver to apply ([`Self::poll_metric`]), oldest first.
    pub(super) metrics: VecDeque<MetricUpdate>,
    /// Where tags, Call-IDs, branches and record ids come from (`entropy.rs`): the OS-seeded CSPRNG, or
    /// a seeded source in tests.
    pub(super) rng: Box<dyn Entropy>,
    /// How many refused carriers' INVITEs may still be recorded (`inbound::record_refusal`).
    pub(super) refusal_budget: crate::call::inbound::RefusalBudget,
    /// The key of refusal record ids, drawn from `rng` at the first refusal.
    pub(super) refusal_key: Option<[u64; 2]>,
    /// Each leg's SIP Call-ID and what it is, for the per-call SIP trace (`crate::trace`), drained with
    /// [`Self::poll_trace_leg`]; filled only when tracing is on ([`Self::set_tracing`]).
    pub(super) trace_legs: Option<VecDeque<TraceLeg>>,
}

/// A leg of a call as the SIP trace names it: its SIP Call-ID belongs to the public call id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLeg {
    pub sip_call_id: String,
    pub call_id: String,
    /// `carrier`, `agent agt_... (primary)`, `trunk (transfer)`...
    pub leg: String,
}

/// Queues a trace leg when tracing is on; past [`RECORDS_PENDING_MAX`] the oldest goes (a driver that
/// stopped polling must not make memory grow).
pub(super) fn note_trace_leg(q: &mut Option<VecDeque<TraceLeg>>, sip_call_id: &str, call_id: &str, leg: String) {
    if let Some(q) = q {
        if q.len() >= RECORDS_PENDING_MAX {
            q.pop_front();
        }
        q.push_back(TraceLeg {
            sip_call_id: sip_call_id.to_owned(),
            call_id: call_id.to_owned(),
            leg,
        });
    }
}

/// The `Reason` of the BYEs an edge shutting down sends.
const SHUTTING_DOWN: &str = "SIP;cause=503;text=\"edge shutting down\"";
/// The `Reason` of the BYEs that end the calls left at the end of a drain.
const DRAINED: &str = "SIP;cause=503;text=\"edge drained\"";

/// How long after its INVITE transaction ended an agent leg's late 2xx is still ACKed and hung up: the
/// common 180 s limit of a ringing UAS (a later answer is left to the agent's own 64*T1 ACK time-out).
pub(super) const LATE_ANSWER_WINDOW: Duration = Duration::from_secs(180);

/// At most this many such legs are remembered (the oldest goes first): a flood of silent agents must not
/// make the map grow without bound.
pub(super) const LATE_LEGS_MAX: usize = 16_384;

/// Records waiting for the driver past this are counted as dropped: a driver that stopped polling must not
/// make the engine's memory grow without bound.
pub(super) const RECORDS_PENDING_MAX: usize = 65_536;

/// [`CallController::metric`] where the controller is partly borrowed.
pub(super) fn queue_metric(q: &mut VecDeque<MetricUpdate>, m: MetricUpdate) {
    if q.len() >= RECORDS_PENDING_MAX {
        q.pop_front();
    }
    q.push_back(m);
}

/// Queues `p` for the driver; a full queue counts it as dropped rather than grow.
pub(super) fn send_record(records: &mut VecDeque<Persist>, stats: &CallStats, p: Persist) {
    if records.len() >= RECORDS_PENDING_MAX {
        stats.records_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    records.push_back(p);
}

impl CallController {
    /// A controller for one engine shard: `shard` says which one (the ids it mints hash back to it) and
    /// carries the agent counts and trunk pacing every shard shares.
    pub fn new(
        cfg: CallConfig,
        index: Arc<RoutingIndex>,
        media: Option<Box<dyn CallMedia>>,
        shard: crate::shard::CallShard,
    ) -> Self {
        CallController {
            cfg,
            index,
            calls: HashMap::new(),
            by_server_invite: HashMap::new(),
            by_client: HashMap::new(),
            by_dialog: HashMap::new(),
            timers: BinaryHeap::new(),
            next_id: 1,
            records: VecDeque::new(),
            media,
            by_public: HashMap::new(),
            voicemail_meta: HashMap::new(),
            stats: Arc::new(CallStats::default()),
            agent_slots: shard.agents,
            pacer: shard.pacer,
            ids: shard.ids,
            resolve_jobs: VecDeque::new(),
            limit_jobs: VecDeque::new(),
            cluster_limits: false,
            dirty: Vec::new(),
            flush_at: None,
            late_legs: HashMap::new(),
            late_order: VecDeque::new(),
            rng: Box::new(OsEntropy),
            metrics: VecDeque::new(),
            refusal_budget: Default::default(),
            refusal_key: None,
            trace_legs: None,
        }
    }

    /// Turns on noting each leg's SIP Call-ID for the SIP trace ([`Self::poll_trace_leg`]).
    pub fn set_tracing(&mut self, on: bool) {
        self.trace_legs = on.then(VecDeque::new);
    }

    /// The next leg opened since the last poll (tracing on only).
    pub fn poll_trace_leg(&mut self) -> Option<TraceLeg> {
        self.trace_legs.as_mut()?.pop_front()
    }

    /// Replaces the source of tags, Call-IDs and branches (a seeded one makes a test's ids repeatable).
    pub fn set_entropy(&mut self, rng: Box<dyn Entropy>) {
        self.rng = rng;
    }

    /// Calls in progress.
    pub fn active(&self) -> usize {
        self.calls.len()
    }

    /// Calls the agent is on now.
    pub fn agent_load(&self, agent_id: &str) -> u32 {
        self.agent_slots.load(agent_id)
    }

    /// Calls in progress per agent, for /metrics.
    pub fn agent_gauge(&self) -> Arc<dashmap::DashMap<String, u32>> {
        self.agent_slots.gauge()
    }

    /// A new public call id (`call_...`) that hashes to this shard, so API commands and media events
    /// naming it reach this controller.
    pub(super) fn new_record_id(&mut self, wall_ms: i64) -> String {
        let rng = &mut self.rng;
        self.ids.mint(|| super::leg::call_record_id(wall_ms, &rng.token()))
    }

    /// A new Call-ID for a leg the edge places, hashing to this shard so that the far end's answers and
    /// in-dialog requests reach this controller.
    pub(super) fn new_leg_call_id(&mut self) -> String {
        let rng = &mut self.rng;
        self.ids.mint(|| format!("{}@oneinbox-edge", rng.token()))
    }

    pub(super) fn warning(&self, text: &str) -> String {
        sip_core::build::warning(&self.cfg.warn_agent, text)
    }

    /// Registers a new call under a fresh id.
    pub(super) fn new_call(&mut self, call: Call) -> CallId {
        let id = self.next_id;
        self.next_id += 1;
        self.by_public.insert(call.record.id.clone(), id);
        self.stats.calls_started.fetch_add(1, Ordering::Relaxed);
        self.stats.active_calls.fetch_add(1, Ordering::Relaxed);
        self.calls.insert(id, Box::new(call));
        id
    }

    /// A transaction ended; drop our index entry so maps do not grow.
    pub fn on_tx_terminated(&mut self, key: &TxKey) {
        if let Some(ClientRef::Invite(id)) = self.by_client.get(key) {
            let live = self.calls.get(id).is_some_and(|c| c.phase.has_leg_key(key));
            if live {
                return;
            }
        }
        self.by_client.remove(key);
        self.by_server_invite.remove(key);
    }

    /// A leg that is over while its call goes on (the next hop rings): its Call-ID no longer reaches the call,
    /// else a late BYE on the dead leg would hang up the next agent, and each failover would leave an entry
    /// in the index for good. A late answer on it still finds its client transaction (see `orphan`).
    pub(super) fn forget_leg(&mut self, leg_call_id: Option<String>) {
        if let Some(c) = leg_call_id {
            self.by_dialog.remove(&c);
        }
    }

    /// Keeps an agent leg we gave up on reachable by its client transaction: a late 1xx gets a CANCEL,
    /// a late 2xx an ACK and a BYE.
    pub(super) fn orphan(&mut self, b: BLeg) {
        let key = b.key.clone();
        self.by_client
            .insert(key, ClientRef::Orphan(Box::new(Self::orphan_of(b))));
    }

    /// What a late answer on a leg we gave up on needs: its INVITE, where it went, our From.
    pub(super) fn orphan_of(b: BLeg) -> Orphan {
        let local = b.invite.header(&HeaderName::From).unwrap_or("").to_owned();
        Orphan {
            invite: b.invite,
            peer: b.peer,
            provisional: b.provisional,
            local,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, ..))| *t);
        match (timer, self.flush_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.flush_at.is_some_and(|t| t <= ctx.now) {
            self.flush_records();
        }
        while let Some(Reverse((at, id, kind, gen))) = self.timers.peek().copied() {
            if at > ctx.now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if call.generation != gen {
                continue;
            }
            // Setup and ring timers only matter while a leg rings; the others only before A's ACK.
            let ringing = call
                .phase
                .ringing()
                .map(|b| (matches!(b.target, LegTarget::Trunk), b.provisional));
            match (kind, ringing) {
                (TimerKind::Pace, _) => self.pacing_slot(ctx, id),
                (TimerKind::Setup, Some((true, false))) => self.trunk_target_dead(ctx, id),
                (TimerKind::Ring, Some((true, _))) => self.trunk_no_answer(ctx, id),
                (TimerKind::Setup, Some((false, false))) => {
                    let within = self.cfg.agent_setup_timeout;
                    self.abandon_agent_leg(ctx, id, HopOutcome::NoProvisional { within });
                    self.next_hop(ctx, id);
                }
                (TimerKind::Ring, Some((false, _))) => {
                    let within = self.cfg.agent_ring_timeout;
                    self.abandon_agent_leg(ctx, id, HopOutcome::NoAnswer { within });
                    self.next_hop(ctx, id);
                }
                (TimerKind::Setup | TimerKind::Ring, _) => {}
                (TimerKind::AckTimeout, _) => {
                    if !call.phase.awaits_ack() {
                        continue;
                    }
                    // RFC 3261 13.3.1.4: no ACK: the dialog is confirmed and then ended with BYE.
                    let reason = Some("SIP;cause=408;text=\"no ACK\"");
                    self.hang_up_other(ctx, id, Side::A, reason);
                    self.send_bye_a(ctx, id, reason);
                    self.finish(ctx, id, CallStatus::Failed, Ending::NoAck);
                }
                (TimerKind::Retransmit2xx, _) => {
                    // Re-send the last 2xx through the transaction (it stays in Accepted).
                    let Some((answer, interval)) = call.phase.retransmission(self.cfg.t2) else {
                        continue;
                    };
                    self.timers
                        .push(Reverse((ctx.now + interval, id, TimerKind::Retransmit2xx, gen)));
                    if let Some(a_key) = &call.a.key {
                        ctx.respond(a_key, Ok(answer), "2xx retransmission");
                    }
                }
            }
        }
    }

    /// After our 2xx to leg A: give up at 64*T1 without its ACK, whatever the transport (RFC 3261
    /// 13.3.1.4: a TCP carrier that never ACKs must not hold the call and its agent for good), and over
    /// UDP re-send the 2xx from T1 on until the ACK.
    pub(super) fn arm_answer_timers(&mut self, now: Instant, id: CallId, gen: u32, unreliable: bool) {
        if unreliable {
            self.timers
                .push(Reverse((now + self.cfg.t1, id, TimerKind::Retransmit2xx, gen)));
        }
        self.timers
            .push(Reverse((now + self.cfg.t1 * 64, id, TimerKind::AckTimeout, gen)));
    }

    /// One fewer call on the agent.
    pub(super) fn release_agent(&mut self, agent_id: &str) {
        self.agent_slots.release(agent_id);
        self.sync_agent(agent_id);
    }

    /// Ends a call: final status, agent released, indexes cleared, record written.
    pub(super) fn finish(&mut self, ctx: &Ctx<'_>, id: CallId, status: CallStatus, ending: Ending) {
        self.finish_keeping(ctx, id, status, ending, false);
    }

    /// [`Self::finish`], also returning the final record when `keep` (an API caller waits for it).
    pub(super) fn finish_keeping(
        &mut self,
        ctx: &Ctx<'_>,
        id: CallId,
        status: CallStatus,
        ending: Ending,
        keep: bool,
    ) -> Option<CallRecord> {
        let mut call = self.calls.remove(&id)?;
        let phase = std::mem::replace(&mut call.phase, Phase::Hunting(None));
        let left = phase.into_parts();
        for b in left.ringing.iter().chain(left.answered.iter()) {
            if let Some(c) = b.invite_call_id() {
                self.by_dialog.remove(&c);
            }
            if let Some(agent_id) = b.agent_id() {
                let agent_id = agent_id.to_owned();
                self.release_agent(&agent_id);
            }
        }
        if let Some(b) = left.ringing {
            // Still ringing: its client transaction may yet answer; treat it as abandoned.
            self.orphan(b);
        }
        if let Some(agent_id) = call.held_agent.take() {
            self.release_agent(&agent_id);
        }
        self.by_dialog.remove(&call.a.dialog.call_id);
        if let Some(plan) = &call.out {
            self.by_dialog.remove(&plan.call_id);
        }
        if let Some(a_key) = &call.a.key {
            self.by_server_invite.remove(a_key);
        }
        self.by_public.remove(&call.record.id);
        // Dropping the relay returns its ports (after the quarantine); a voicemail session keeps recording
        // until told to stop, and reports its file by event.
        call.relay = None;
        if let Some(vm) = left.recording {
            vm.stop();
        }
        let now = ctx.wall_ms;
        for h in call.record.hops.iter_mut().filter(|h| h.ended_at_ms.is_none()) {
            h.ended_at_ms = Some(now);
        }
        let reason = ending.to_string();
        call.record.status = status;
        call.record.hangup_by = ending.hangup_by();
        call.record.end_reason = Some(reason);
        call.record.ended_at_ms = Some(now);
        self.stats.active_calls.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(call = %call.record.id, status = status.as_str(), reason = call.record.end_reason.as_deref(), "call ended");
        let kept = keep.then(|| call.record.clone());
        self.write_record(call.record);
        kept
    }

    /// Marks a live call's record as changed: it is queued for the store [`RECORD_FLUSH`] later, as it is
    /// then. A call's first moments (taken, ringing, answered, often ended) thus make one record, not one
    /// per step; an ended call's record is queued at once by [`Self::finish_keeping`].
    pub(super) fn persist(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !call.dirty {
            call.dirty = true;
            self.dirty.push(id);
        }
        self.flush_at.get_or_insert(now + RECORD_FLUSH);
    }

    /// Queues the records of the live calls marked by [`Self::persist`].
    pub(super) fn flush_records(&mut self) {
        self.flush_at = None;
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            if let Some(call) = self.calls.get_mut(&id) {
                call.dirty = false;
                send_record(&mut self.records, &self.stats, Persist::Call(call.record.clone()));
            }
        }
        self.dirty = dirty;
    }

    pub(super) fn write_record(&mut self, r: CallRecord) {
        self.write(Persist::Call(r));
    }

    pub(super) fn write(&mut self, p: Persist) {
        send_record(&mut self.records, &self.stats, p);
    }

    /// Queues a metric update; past [`RECORDS_PENDING_MAX`] waiting (a driver that stopped polling) the
    /// oldest goes, so memory stays bounded.
    pub(super) fn metric(&mut self, m: MetricUpdate) {
        queue_metric(&mut self.metrics, m);
    }

    /// The next metric update, for the driver to apply to the recorder.
    pub fn poll_metric(&mut self) -> Option<MetricUpdate> {
        self.metrics.pop_front()
    }

    /// The next record for the store, in the order produced (the driver hands it to the record writer).
    pub fn poll_record(&mut self) -> Option<Persist> {
        self.records.pop_front()
    }

    /// Edge shutdown: every call ended cleanly (BYE for answered ones, 503 for ringing ones) so that agent
    /// counts and records are right and carriers retry elsewhere.
    pub fn shutdown_all(&mut self, ctx: &mut Ctx<'_>) {
        self.end_all(ctx, Abandon::EdgeShuttingDown);
    }

    /// The end of a drain: every call still up is ended as [`Self::shutdown_all`] does, recorded as
    /// "edge drained". The BYEs go through client transactions, retransmitted while the engine runs.
    pub fn end_drained(&mut self, ctx: &mut Ctx<'_>) {
        self.end_all(ctx, Abandon::EdgeDrained);
    }

    fn end_all(&mut self, ctx: &mut Ctx<'_>, why: Abandon) {
        let (ending, reason) = match why {
            Abandon::EdgeDrained => (Ending::EdgeDrained, DRAINED),
            _ => (Ending::EdgeShuttingDown, SHUTTING_DOWN),
        };
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(call) = self.calls.get(&id) else { continue };
            let ending = ending.clone();
            match &call.phase {
                Phase::Hunting(_) => {
                    self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(why));
                    self.fail_a(ctx, id, 503, "Service Unavailable", &[("Retry-After", "5")]);
                    self.finish(ctx, id, CallStatus::Failed, ending);
                }
                Phase::Connecting(_) => {
                    self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(why));
                    self.send_bye_a(ctx, id, Some(reason));
                    self.finish(ctx, id, CallStatus::Failed, ending);
                }
                Phase::Transferring { .. } | Phase::AwaitingAck { .. } | Phase::Confirmed { .. } => {
                    if call.phase.is_transferring() {
                        self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(why));
                    }
                    self.hang_up_other(ctx, id, Side::A, Some(reason));
                    self.send_bye_a(ctx, id, Some(reason));
                    self.finish(ctx, id, CallStatus::Completed, ending);
                }
            }
        }
    }

    /// Our BYEs and CANCELs still waiting for a final answer (retransmitted meanwhile): a draining edge
    /// stays up for them, bounded by Timer F.
    pub fn requests_in_flight(&self, tx: &sip_core::transaction::TransactionLayer) -> usize {
        use sip_core::transaction::{NonInviteClientState as S, TxState};
        self.by_client
            .iter()
            .filter(|(k, r)| {
                matches!(r, ClientRef::Fire)
                    && matches!(tx.state(k), Some(TxState::NonInviteClient(S::Trying | S::Proceeding)))
            })
            .count()
    }

    /// Applies a reloaded configuration's routing and outbound settings; calls in progress keep the
    /// timers they already armed.
    pub fn reload(&mut self, cfg: &crate::config::Config) {
        self.cfg.agent_setup_timeout = cfg.agent_setup_timeout;
        self.cfg.agent_ring_timeout = cfg.agent_ring_timeout;
        self.cfg.default_country_code = cfg.default_country_code.clone();
        self.cfg.outbound = cfg.outbound.clone();
    }
}
