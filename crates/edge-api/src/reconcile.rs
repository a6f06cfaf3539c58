//! Settles purchases a crash left `pending`: such a row holds its number (409 to any other
//! purchase) forever unless someone asks the provider whether the purchase went through.
//!
//! A row is only looked at when no purchase in this process holds its number (the in-flight
//! set) and it was last touched longer ago than `ApiConfig::purchase_max_duration`, or, on the
//! embedded single-edge store (SQLite), before this process started. On PostgreSQL, which several
//! edges may share, a purchase run by another edge is left alone while it can still be running.

use crate::wire::provider_kind;
use crate::ApiState;
use edge_providers::PurchasedNumber;
use edge_store::{NumberRecord, StoreError};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// `failure_reason` of a pending purchase the provider never completed.
pub const INTERRUPTED_PURCHASE: &str = "purchase interrupted; the provider has no record of it";

/// Rows settled per pass, so one pass is bounded whatever the table holds.
const ROWS_PER_PASS: u32 = 100;
/// Longest wait before asking again about a row whose provider could not be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// The provider account holds the number: now `active` and routed.
    pub activated: usize,
    /// The provider has no record of it: now `failed`.
    pub failed: usize,
    /// Left `pending`: provider unreachable or not configured, or a purchase of it is running here.
    pub deferred: usize,
}

#[derive(Debug)]
struct Retry {
    attempts: u32,
    next: Instant,
}

/// Settles orphaned pending purchases, remembering per row when to ask its provider again.
#[derive(Debug)]
pub struct Reconciler {
    state: ApiState,
    /// Rows last touched before this are from an earlier process (ms since the epoch).
    started_ms: i64,
    retries: HashMap<String, Retry>,
}

impl Reconciler {
    pub fn new(state: ApiState) -> Self {
        Self {
            state,
            started_ms: edge_store::time::now_millis(),
            retries: HashMap::new(),
        }
    }

    /// One pass over the pending rows eligible now (see the module doc).
    pub async fn run_once(&mut self) -> ReconcileOutcome {
        let max_age = i64::try_from(self.state.config.purchase_max_duration.as_millis()).unwrap_or(i64::MAX);
        let stale = edge_store::time::now_millis().saturating_sub(max_age);
        // One edge per database (SQLite): whatever was pending before start-up is an orphan. Several edges on
        // one PostgreSQL: another live edge may be buying right now, so only the age bound proves an orphan.
        let before = match self.state.store.backend() {
            edge_store::Backend::Sqlite => self.started_ms.max(stale),
            edge_store::Backend::Postgres => stale,
        };
        let rows = match self.state.store.pending_numbers(before, ROWS_PER_PASS).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list pending purchases; retrying later");
                return ReconcileOutcome::default();
            }
        };
        let now = Instant::now();
        self.retries.retain(|id, _| rows.iter().any(|r| &r.id == id));
        let mut out = ReconcileOutcome::default();
        for rec in rows {
            if self.retries.get(&rec.id).is_some_and(|r| r.next > now) {
                out.deferred += 1;
                continue;
            }
            match settle(&self.state, &rec).await {
                Settled::Active => {
                    self.retries.remove(&rec.id);
                    out.activated += 1;
                }
                Settled::Failed => {
                    self.retries.remove(&rec.id);
                    out.failed += 1;
                }
                Settled::Busy => out.deferred += 1,
                Settled::Unknown(why) => {
                    out.deferred += 1;
                    let retry = self
                        .retries
                        .entry(rec.id.clone())
                        .or_insert(Retry { attempts: 0, next: now });
                    if retry.attempts == 0 {
                        // Once per row: the periodic pass would otherwise repeat it for as long as the outage lasts.
                        tracing::warn!(number_id = %rec.id, number = %rec.phone_number, reason = %why,
                            "cannot settle an interrupted purchase; it stays pending and is retried");
                    }
                    retry.attempts = retry.attempts.saturating_add(1);
                    let pause = Duration::from_secs(1u64 << retry.attempts.min(10)).min(MAX_BACKOFF);
                    retry.next = now + pause;
                }
            }
        }
        out
    }
}

/// One pass with no retry memory: what the edge does at start-up.
pub async fn reconcile_pending(state: &ApiState) -> ReconcileOutcome {
    Reconciler::new(state.clone()).run_once().await
}

/// Runs a pass now and then every `purchase_max_duration / 10` (1 s to 60 s) for as long as
/// the edge runs.
pub fn spawn_reconciler(state: ApiState) -> tokio::task::JoinHandle<()> {
    let every = (state.config.purchase_max_duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut reconciler = Reconciler::new(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let out = reconciler.run_once().await;
            if out.activated + out.failed > 0 {
                tracing::info!(
                    activated = out.activated,
                    failed = out.failed,
                    "settled interrupted purchases"
                );
            }
        }
    })
}

enum Settled {
    Active,
    Failed,
    /// A purchase of this number is running in this process.
    Busy,
    /// The provider could not tell; try later.
    Unknown(String),
}

async fn settle(state: &ApiState, rec: &NumberRecord) -> Settled {
    // Holding the number's purchase lock keeps a purchase in this process from starting (or
    // finishing) while we decide; one already holding it is running: leave its row alone.
    let Some(_reservation) = state.purchases.reserve(&rec.phone_number) else {
        return Settled::Busy;
    };
    let kind = provider_kind(rec.provider);
    let Some(provider) = state.providers.get(kind) else {
        return Settled::Unknown(format!("provider {kind} is not configured"));
    };
    let owned = match provider.find_owned(&rec.phone_number).await {
        Ok(o) => o,
        Err(e) => return Settled::Unknown(e.to_string()),
    };
    let Some(purchased) = owned else {
        return match state
            .store
            .fail_number(&rec.account_id, &rec.id, INTERRUPTED_PURCHASE)
            .await
        {
            Ok(()) => {
                tracing::info!(number_id = %rec.id, number = %rec.phone_number, "interrupted purchase marked failed");
                Settled::Failed
            }
            Err(e) => Settled::Unknown(e.to_string()),
        };
    };
    match state
        .store
        .activate_number(&rec.account_id, &rec.id, &purchased.provider_ref)
        .await
    {
        Ok(_) => {
            tracing::info!(number_id = %rec.id, number = %rec.phone_number, "interrupted purchase completed");
            Settled::Active
        }
        Err(StoreError::NotFound) => {
            release_if_gone(state, rec, &purchased, provider.as_ref()).await;
            Settled::Failed
        }
        Err(e) => Settled::Unknown(e.to_string()),
    }
}

/// The row was deleted while we asked: like the purchase task, do not keep paying for it.
/// Settled some other way (another edge): leave it.
async fn release_if_gone(
    state: &ApiState,
    rec: &NumberRecord,
    purchased: &PurchasedNumber,
    provider: &dyn edge_providers::NumberProvider,
) {
    match state.store.get_number(&rec.account_id, &rec.id).await {
        Ok(None) => {
            if let Err(e) = provider.release(purchased).await {
                tracing::error!(number = %rec.phone_number, error = %e,
                    "interrupted purchase was deleted meanwhile; releasing it also failed");
            }
        }
        Ok(Some(_)) => {}
        Err(e) => tracing::warn!(number_id = %rec.id, error = %e, "cannot check an interrupted purchase"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiConfig, ProviderSet};
    use edge_providers::{InventoryRange, LocalInventory};
    use edge_store::{
        AgentStatus, NewAgent, NewNumber, NumberSource, NumberStatus, Provider, SecretBox, Store, StoreConfig,
    };
    use std::sync::Arc;

    /// The in-flight set wins over any age: a row whose number a purchase here holds is left alone.
    #[tokio::test]
    async fn number_held_by_a_purchase_here_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::new(None, &dir.path().join("data"), SecretBox::new([3u8; 32])).unwrap();
        let store = Arc::new(Store::connect(cfg).await.unwrap());
        let (account, _) = store.create_api_key(None, "t").await.unwrap();
        let agent = store
            .create_agent(
                &account,
                NewAgent {
                    name: "a".into(),
                    sip_uri: "sip:a@b.example".into(),
                    max_concurrent_calls: 1,
                    voicemail_message: None,
                    status: AgentStatus::Active,
                    sip_username: None,
                    sip_password: None,
                    media_encryption: Default::default(),
                },
            )
            .await
            .unwrap();
        let number = "+14155551250";
        let new = NewNumber {
            phone_number: number.into(),
            friendly_name: None,
            agent_id: agent.id,
            provider: Provider::Local,
            source: NumberSource::Purchased,
            provider_ref: None,
            inbound_routing: None,
            provider_config: None,
        };
        let id = store.create_pending_number(&account, new).await.unwrap().id;
        let local = LocalInventory::new(vec![InventoryRange {
            country: "US".into(),
            area_code: "415".into(),
            first: "+14155551200".into(),
            last: "+14155551299".into(),
        }]);
        let config = ApiConfig {
            purchase_max_duration: Duration::ZERO,
            ..ApiConfig::default()
        };
        let state = ApiState::new(Arc::clone(&store), ProviderSet::new(Arc::new(local)), config);
        tokio::time::sleep(Duration::from_millis(5)).await;

        let held = state.purchases.reserve(number).unwrap();
        let out = reconcile_pending(&state).await;
        assert_eq!((out.activated, out.deferred), (0, 1), "{out:?}");
        let rec = store.get_number(&account, &id).await.unwrap().unwrap();
        assert_eq!(rec.status, NumberStatus::Pending);

        drop(held);
        let out = reconcile_pending(&state).await;
        assert_eq!(out.activated, 1, "{out:?}");
        let rec = store.get_number(&account, &id).await.unwrap().unwrap();
        assert_eq!(rec.status, NumberStatus::Active);
        assert_eq!(rec.provider_ref.as_deref(), Some("local:+14155551250"));
        assert!(store.index().lookup_number(number).is_some());
    }
}
