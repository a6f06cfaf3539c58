//! Keeps a node's routing index current when several nodes share one PostgreSQL database (issue 21).
//!
//! Triggers on the tables the index is built from (`agents`, `phone_numbers`, `integrations`) NOTIFY a
//! channel with what changed (the table, the operation and the row's key, never its content); each node
//! LISTENs and re-reads only those rows, so a write through any node's API reaches every node's index in
//! milliseconds whatever the number of numbers. Notifications are lost while the listener is disconnected,
//! so a reconnect is followed by a full reload; and a periodic check compares cheap summaries of the tables
//! (row counts and newest `updated_at`) with what the index holds, reloading only on a difference (a write
//! made with triggers off, a notification lost some other way).
//!
//! Payloads are tab-separated: `a <op> <agent id>`, `n <op> <number id> <phone number>`,
//! `i <op> <account id> <provider>`, with `<op>` one of `I`, `U`, `D`. A key's current state is always read
//! from the database, so applying a notification twice, late or out of order converges on the same index.

use crate::error::Result;
use crate::model::{NumberStatus, Provider};
use crate::store::{Backend, Store};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Default period of the consistency check: a count and a max over each table (0.17 s of database time
/// at a million numbers, see `benches/README.md`).
pub const INDEX_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Changes applied row by row in one go at most; a bigger burst (a bulk import) is one full reload instead.
const BATCH_MAX: usize = 1024;
/// Notifications waiting between the listener and the applier; past it the listener waits (PostgreSQL
/// queues them meanwhile).
const QUEUE: usize = 8192;
/// After a check finds a difference, how long changes already committed get to arrive before it counts.
const SETTLE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The channel the triggers of one schema notify: NOTIFY channels are per database, not per schema, so
/// nodes of other deployments (or tests) in other schemas of the same database must not hear them.
pub(crate) fn channel_name(schema: Option<&str>) -> String {
    match schema {
        None => "edge_index".to_owned(),
        // 11 + 52 = 63, PostgreSQL's identifier limit.
        Some(s) if s.len() <= 52 => format!("edge_index_{s}"),
        Some(s) => {
            let digest = Sha256::digest(s.as_bytes());
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("edge_index_{hex}")
        }
    }
}

/// What the triggers send, per table: the row's key columns.
const TRIGGERS: [(&str, &str); 3] = [
    (
        "agents",
        "IF TG_OP = 'DELETE' THEN PERFORM pg_notify('{ch}', concat_ws(chr(9), 'a', 'D', OLD.id)); \
         ELSE PERFORM pg_notify('{ch}', concat_ws(chr(9), 'a', left(TG_OP, 1), NEW.id)); END IF;",
    ),
    (
        "phone_numbers",
        "IF TG_OP <> 'INSERT' THEN \
           PERFORM pg_notify('{ch}', concat_ws(chr(9), 'n', left(TG_OP, 1), OLD.id, OLD.phone_number)); END IF; \
         IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.phone_number IS DISTINCT FROM OLD.phone_number) THEN \
           PERFORM pg_notify('{ch}', concat_ws(chr(9), 'n', left(TG_OP, 1), NEW.id, NEW.phone_number)); END IF;",
    ),
    (
        "integrations",
        "IF TG_OP <> 'INSERT' THEN \
           PERFORM pg_notify('{ch}', concat_ws(chr(9), 'i', left(TG_OP, 1), OLD.account_id, OLD.provider)); END IF; \
         IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW.account_id, NEW.provider) IS DISTINCT FROM \
           (OLD.account_id, OLD.provider)) THEN \
           PERFORM pg_notify('{ch}', concat_ws(chr(9), 'i', left(TG_OP, 1), NEW.account_id, NEW.provider)); END IF;",
    ),
];

/// Creates (or refreshes) the trigger functions and creates the triggers that are missing, on the set-up
/// connection (its `search_path` is the store's schema; the caller holds the set-up lock). In code rather
/// than a migration: the channel depends on the schema. Existing triggers are left alone, since
/// re-creating one locks its table against every other node's reads.
pub(crate) async fn install_triggers(conn: &mut AnyConnection, channel: &str) -> Result<()> {
    for (table, body) in TRIGGERS {
        // `channel` is `edge_index_` + [a-z0-9_]: safe inside a literal; `table` is ours.
        let body = body.replace("{ch}", channel);
        sqlx::query(AssertSqlSafe(format!(
            "CREATE OR REPLACE FUNCTION edge_index_notify_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN {body} RETURN NULL; END $$"
        )))
        .execute(&mut *conn)
        .await?;
        let present: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = 'edge_index_notify'",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
        if present == 0 {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE TRIGGER edge_index_notify AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION edge_index_notify_{table}()"
            )))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Cheap summaries of the tables the index is built from, as the consistency check compares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Watermarks {
    /// Active numbers (the routed ones).
    numbers: i64,
    /// Newest `updated_at` of any number, routed or not.
    numbers_max: i64,
    agents: i64,
    agents_max: i64,
    integrations: i64,
    integrations_max: i64,
}

impl Watermarks {
    pub(crate) async fn read(pool: &AnyPool) -> Result<Watermarks> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM phone_numbers WHERE status = 'active') AS numbers, \
             (SELECT COALESCE(MAX(updated_at), 0) FROM phone_numbers) AS numbers_max, \
             (SELECT COUNT(*) FROM agents) AS agents, \
             (SELECT COALESCE(MAX(updated_at), 0) FROM agents) AS agents_max, \
             (SELECT COUNT(*) FROM integrations) AS integrations, \
             (SELECT COALESCE(MAX(updated_at), 0) FROM integrations) AS integrations_max",
        )
        .fetch_one(pool)
        .await?;
        Ok(Watermarks {
            numbers: row.try_get("numbers")?,
            numbers_max: row.try_get("numbers_max")?,
            agents: row.try_get("agents")?,
            agents_max: row.try_get("agents_max")?,
            integrations: row.try_get("integrations")?,
            integrations_max: row.try_get("integrations_max")?,
        })
    }
}

/// What the index is known to reflect (the marks of its last full load, raised by every change applied
/// since), and counters for tests, benches and logs.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    expected: Mutex<Watermarks>,
    changes: AtomicU64,
    reloads: AtomicU64,
    repairs: AtomicU64,
    reconnects: AtomicU64,
    checks: AtomicU64,
}

impl SyncState {
    fn expected(&self) -> std::sync::MutexGuard<'_, Watermarks> {
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a full load read with these marks.
    pub(crate) fn reset(&self, marks: Watermarks) {
        *self.expected() = marks;
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a node's index sync has gone so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSyncStats {
    /// Notifications applied row by row.
    pub changes: u64,
    /// Full loads of the index (the one at start included).
    pub full_reloads: u64,
    /// Full reloads because the consistency check found the index behind the database.
    pub repairs: u64,
    /// Times the listener lost its connection and listened again.
    pub reconnects: u64,
    /// Consistency checks run.
    pub checks: u64,
}

enum Event {
    /// The listener is (again) listening; `first`: since the sync started, else after a lost connection.
    Listening {
        first: bool,
    },
    Change(String),
}

/// Events drained from the queue at once.
#[derive(Default)]
struct Batch {
    changes: Vec<String>,
    reload: bool,
    check: bool,
}

impl Batch {
    fn add(&mut self, ev: Event, reconnects: &AtomicU64) {
        match ev {
            Event::Change(_) if self.reload => {}
            Event::Change(_) if self.changes.len() >= BATCH_MAX => {
                self.reload = true;
                self.changes.clear();
            }
            Event::Change(p) => self.changes.push(p),
            Event::Listening { first: true } => self.check = true,
            Event::Listening { first: false } => {
                reconnects.fetch_add(1, Ordering::Relaxed);
                self.reload = true;
                self.changes.clear();
            }
        }
    }
}

/// One change as parsed from a payload.
enum Change<'a> {
    Agent(&'a str),
    Number {
        id: &'a str,
        phone: &'a str,
    },
    Integration {
        account: &'a str,
        provider: &'a str,
        op: &'a str,
    },
}

fn parse(payload: &str) -> Option<Change<'_>> {
    let mut f = payload.split('\t');
    let change = match (f.next()?, f.next()?) {
        ("a", _) => Change::Agent(f.next()?),
        ("n", _) => Change::Number {
            id: f.next()?,
            phone: f.next()?,
        },
        ("i", op) => Change::Integration {
            account: f.next()?,
            provider: f.next()?,
            op,
        },
        _ => return None,
    };
    f.next().is_none().then_some(change)
}

impl Store {
    /// Starts keeping this node's routing index current from the other nodes' writes (PostgreSQL; on
    /// SQLite, which one edge uses alone, the task ends at once). `check_every`: period of the
    /// consistency check ([`INDEX_CHECK_EVERY`] in production).
    pub fn spawn_index_sync(self: &Arc<Self>, check_every: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            if store.backend() == Backend::Postgres {
                store.sync_loop(check_every).await;
            }
        })
    }

    /// How the index sync has gone so far (all zero on SQLite).
    pub fn index_sync_stats(&self) -> IndexSyncStats {
        let s = &self.sync;
        IndexSyncStats {
            changes: s.changes.load(Ordering::Relaxed),
            full_reloads: s.reloads.load(Ordering::Relaxed),
            repairs: s.repairs.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            checks: s.checks.load(Ordering::Relaxed),
        }
    }

    /// The PostgreSQL channel this store's index triggers notify (`edge_index`, or `edge_index_<schema>`).
    pub fn index_channel(&self) -> &str {
        &self.channel
    }

    async fn sync_loop(self: Arc<Self>, check_every: Duration) {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        // Ends when `rx` is dropped, i.e. when this task is aborted.
        tokio::spawn(listen(self.url.clone(), self.channel.clone(), tx));
        let mut tick = tokio::time::interval(check_every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { return };
                    let batch = self.drain(Some(ev), &mut rx);
                    let check = batch.check;
                    self.apply_batch(batch).await;
                    if check {
                        self.check_and_repair(&mut rx).await;
                    }
                }
                _ = tick.tick() => self.check_and_repair(&mut rx).await,
            }
        }
    }

    /// `first` and whatever else is queued right now (at most a queue's worth: the listener keeps adding).
    fn drain(&self, first: Option<Event>, rx: &mut mpsc::Receiver<Event>) -> Batch {
        let mut batch = Batch::default();
        let mut next = first.or_else(|| rx.try_recv().ok());
        let mut taken = 0;
        while let Some(ev) = next {
            batch.add(ev, &self.sync.reconnects);
            taken += 1;
            next = if taken < QUEUE { rx.try_recv().ok() } else { None };
        }
        batch
    }

    async fn apply_batch(&self, batch: Batch) {
        if batch.reload {
            self.reload_logged("routing index reloaded: listener reconnected or a burst of changes")
                .await;
        } else if !batch.changes.is_empty() {
            if let Err(e) = self.apply_changes(&batch.changes).await {
                tracing::warn!(error = %e, "routing index change could not be applied; reloading");
                self.reload_logged("routing index reloaded after a failed change").await;
            }
        }
    }

    async fn reload_logged(&self, why: &'static str) {
        match self.reload_index().await {
            Ok(()) => tracing::info!(
                numbers = self.index.number_count(),
                agents = self.index.agent_count(),
                "{why}"
            ),
            // The next check (or change) tries again.
            Err(e) => tracing::warn!(error = %e, "routing index reload failed"),
        }
    }

    /// Re-reads the rows the notifications name and updates their entries. Under the write lock, like
    /// this node's own writes, so the two never interleave.
    async fn apply_changes(&self, payloads: &[String]) -> Result<()> {
        let mut agents = BTreeSet::new();
        let mut numbers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut integrations = HashSet::new();
        let mut integration_rows = 0i64;
        for p in payloads {
            match parse(p) {
                Some(Change::Agent(id)) => {
                    agents.insert(id);
                }
                Some(Change::Number { id, phone }) => {
                    numbers.entry(id).or_default().insert(phone);
                }
                Some(Change::Integration { account, provider, op }) => {
                    integration_rows += match op {
                        "I" => 1,
                        "D" => -1,
                        _ => 0,
                    };
                    if let Some(provider) = Provider::parse(provider) {
                        integrations.insert((account, provider));
                    }
                }
                None => tracing::warn!(payload = %p, "unknown routing index notification ignored"),
            }
        }
        let _w = self.write_lock.lock().await;
        let mut raised = Watermarks::default();
        for id in agents {
            let row = sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            match row {
                Some(row) => {
                    let rec = crate::agents::agent_from_row(&row, &self.secrets)?;
                    raised.agents_max = raised.agents_max.max(rec.updated_at);
                    self.index.put_agent(rec);
                }
                None => self.index.remove_agent(id),
            }
        }
        for (id, phones) in numbers {
            let row = sqlx::query(concat!("SELECT ", number_cols!(), " FROM phone_numbers WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            let current = match row {
                Some(row) => {
                    let (rec, sealed) = crate::numbers::number_from_row(&row)?;
                    raised.numbers_max = raised.numbers_max.max(rec.updated_at);
                    if rec.status == NumberStatus::Active {
                        self.index.put_number(self.route_for(&rec, &sealed)?);
                    } else {
                        self.index.remove_number_if(&rec.phone_number, id);
                    }
                    Some(rec.phone_number)
                }
                None => None,
            };
            for phone in phones.into_iter().filter(|p| Some(*p) != current.as_deref()) {
                self.index.remove_number_if(phone, id);
            }
        }
        for (account, provider) in integrations {
            self.refresh_integration_trunk(account, provider).await?;
            let newest: i64 = sqlx::query(
                "SELECT COALESCE(MAX(updated_at), 0) AS m FROM integrations WHERE account_id = $1 AND provider = $2",
            )
            .bind(account)
            .bind(provider.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get("m")?;
            raised.integrations_max = raised.integrations_max.max(newest);
        }
        {
            let mut e = self.sync.expected();
            e.agents_max = e.agents_max.max(raised.agents_max);
            e.numbers_max = e.numbers_max.max(raised.numbers_max);
            e.integrations_max = e.integrations_max.max(raised.integrations_max);
            e.integrations += integration_rows;
        }
        self.sync.changes.fetch_add(payloads.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the database's summaries are what the index holds (PostgreSQL): the same counts, and nothing
    /// written after the newest change the index has seen (deleting the newest row lowers a max: not a
    /// difference). The periodic check of [`Store::spawn_index_sync`]; a change whose notification has not
    /// arrived yet also counts as a difference.
    pub async fn index_consistent(&self) -> Result<bool> {
        self.sync.checks.fetch_add(1, Ordering::Relaxed);
        let db = Watermarks::read(&self.pool).await?;
        let e = *self.sync.expected();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let same = db.numbers == count(self.index.number_count())
            && db.agents == count(self.index.agent_count())
            && db.integrations == e.integrations
            && db.numbers_max <= e.numbers_max
            && db.agents_max <= e.agents_max
            && db.integrations_max <= e.integrations_max;
        if !same {
            tracing::debug!(?db, expected = ?e, "routing index check: differs");
        }
        Ok(same)
    }

    /// The consistency check; on a difference, first lets changes in flight arrive, then reloads if the
    /// difference is still there.
    async fn check_and_repair(&self, rx: &mut mpsc::Receiver<Event>) {
        match self.index_consistent().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "routing index check failed");
                return;
            }
        }
        tokio::time::sleep(SETTLE).await;
        let batch = self.drain(None, rx);
        let reloaded = batch.reload;
        self.apply_batch(batch).await;
        if reloaded || matches!(self.index_consistent().await, Ok(true)) {
            return;
        }
        self.sync.repairs.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("routing index differed from the database (a change without notification); reloading");
        self.reload_logged("routing index reloaded after the consistency check")
            .await;
    }
}

/// Listens on `channel`, forwarding notifications and (re)connections to `tx`, reconnecting with backoff
/// for as long as anyone receives.
async fn listen(url: String, channel: String, tx: mpsc::Sender<Event>) {
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    loop {
        let opened = tokio::select! {
            _ = tx.closed() => return,
            r = open_listener(&url, &channel) => r,
        };
        let mut listener = match opened {
            Ok(l) => l,
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "routing index listener cannot connect; retrying");
                    down = true;
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if down {
            tracing::info!("routing index listener connected again");
            down = false;
        }
        backoff = Duration::from_millis(100);
        if tx.send(Event::Listening { first }).await.is_err() {
            return;
        }
        first = false;
        loop {
            let got = tokio::select! {
                _ = tx.closed() => return,
                r = listener.try_recv() => r,
            };
            let ev = match got {
                Ok(Some(n)) => Event::Change(n.payload().to_owned()),
                // Lost and already listening again (sqlx reconnects): what was sent meanwhile is gone.
                Ok(None) => {
                    tracing::warn!("routing index listener lost its connection; listening again");
                    Event::Listening { first: false }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "routing index listener lost its connection");
                    break;
                }
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

async fn open_listener(url: &str, channel: &str) -> std::result::Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_postgres_identifiers() {
        assert_eq!(channel_name(None), "edge_index");
        assert_eq!(channel_name(Some("edge_test_1")), "edge_index_edge_test_1");
        let long = "a".repeat(63);
        let ch = channel_name(Some(&long));
        assert!(ch.len() <= 63 && ch.starts_with("edge_index_"), "{ch}");
        assert_ne!(ch, channel_name(Some(&"b".repeat(63))));
    }

    #[test]
    fn payloads_parse_or_are_refused() {
        assert!(matches!(parse("a\tU\tagt_1"), Some(Change::Agent("agt_1"))));
        assert!(matches!(
            parse("n\tD\tnum_1\t+14155550100"),
            Some(Change::Number {
                id: "num_1",
                phone: "+14155550100"
            })
        ));
        assert!(matches!(
            parse("i\tI\tacc_1\ttwilio"),
            Some(Change::Integration { op: "I", .. })
        ));
        for bad in ["", "a", "x\tU\t1", "n\tU\tnum_1", "a\tU\tagt_1\textra"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
