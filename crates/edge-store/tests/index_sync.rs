//! Several stores on one PostgreSQL database (issue 21, a cluster): each store's routing index follows the
//! others' writes by LISTEN/NOTIFY, recovers from a lost listener connection, and is repaired by the
//! consistency check after a change made without notifications; several stores opening a fresh schema at
//! once all succeed. PostgreSQL only (SQLite is one edge's own database).

mod common;

use common::Fixture;
use edge_store::{
    AgentPatch, AgentStatus, InboundRouting, NewAgent, NewIntegration, NewNumber, NumberPatch, NumberSource, Provider,
    Secret, Store, StoreConfig,
};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// Overall limit of a wait for a change to show; propagation takes milliseconds (see benches/README.md).
const PATIENCE: Duration = Duration::from_secs(20);
/// A check period long enough that only notifications can explain what a test sees.
const NO_CHECK: Duration = Duration::from_secs(3600);

/// `$name(&Fixture)` as a test on PostgreSQL (skipped when it is unreachable outside CI), in its own task
/// so the schema is dropped even when an assertion fails.
macro_rules! on_postgres {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(fx) = crate::common::postgres().await else {
                    return;
                };
                let fx = std::sync::Arc::new(fx);
                let inner = std::sync::Arc::clone(&fx);
                let res = tokio::spawn(async move { super::$name(&inner).await }).await;
                fx.cleanup().await;
                if let Err(e) = res {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    };
}

/// Waits until `$cond` holds, failing after [`PATIENCE`]. A macro rather than a function taking a closure:
/// the closure's borrows made the test futures fail rustc's `Send` check for `tokio::spawn`.
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !$cond {
            assert!(tokio::time::Instant::now() < deadline, "never happened: {}", $what);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }};
}

/// A second node's store on the fixture's schema, keeping its index current.
async fn second_node(fx: &Fixture, check_every: Duration) -> (Arc<Store>, tokio::task::JoinHandle<()>) {
    let store = Arc::new(Store::connect(fx.config.clone()).await.expect("second store"));
    let sync = store.spawn_index_sync(check_every);
    // Listening once its first check (run when the listener is up) is done.
    eventually!("the second node listens", store.index_sync_stats().checks >= 1);
    (store, sync)
}

fn new_agent(name: &str) -> NewAgent {
    NewAgent {
        name: name.into(),
        sip_uri: "sip:bot@10.0.0.5:5060".into(),
        max_concurrent_calls: 10,
        voicemail_message: None,
        status: AgentStatus::Active,
        sip_username: None,
        sip_password: None,
        media_encryption: Default::default(),
    }
}

fn new_number(phone: &str, agent_id: &str) -> NewNumber {
    NewNumber {
        phone_number: phone.into(),
        friendly_name: None,
        agent_id: agent_id.into(),
        provider: Provider::Twilio,
        source: NumberSource::Purchased,
        provider_ref: None,
        inbound_routing: Some(InboundRouting::default()),
        provider_config: None,
    }
}

fn routed_agent(store: &Store, phone: &str) -> Option<String> {
    store
        .index()
        .lookup_number(phone)
        .and_then(|r| r.inbound_routing.as_ref().map(|i| i.agent_id.clone()))
}

on_postgres!(writes_through_one_store_reach_the_others_index);
async fn writes_through_one_store_reach_the_others_index(fx: &Fixture) {
    let a = &fx.store;
    let (b, sync) = second_node(fx, NO_CHECK).await;
    let acc = a.create_api_key(None, "t").await.unwrap().0;
    let one = a.create_agent(&acc, new_agent("one")).await.unwrap().id;
    let two = a.create_agent(&acc, new_agent("two")).await.unwrap().id;
    eventually!(
        "agents on node b",
        b.index().agent(&one).is_some() && b.index().agent(&two).is_some()
    );

    let n = a.create_number(&acc, new_number("+14155550101", &one)).await.unwrap();
    eventually!("new number routed on node b", {
        routed_agent(&b, "+14155550101").as_deref() == Some(one.as_str())
    });
    let patch = NumberPatch {
        agent_id: Some(two.clone()),
        ..Default::default()
    };
    a.update_number(&acc, &n.id, patch).await.unwrap();
    eventually!("PATCHed number routed to its new agent on node b", {
        routed_agent(&b, "+14155550101").as_deref() == Some(two.as_str())
    });

    let disable = AgentPatch {
        status: Some(AgentStatus::Disabled),
        ..Default::default()
    };
    a.update_agent(&acc, &one, disable).await.unwrap();
    eventually!("disabled agent on node b", {
        b.index().agent(&one).is_some_and(|r| r.status == AgentStatus::Disabled)
    });

    a.create_integration(
        &acc,
        NewIntegration {
            name: "tw".into(),
            provider: Provider::Twilio,
            api_key: Secret::new("k"),
            metadata: serde_json::json!({"sip_trunk": "acme.pstn.twilio.com"}),
        },
    )
    .await
    .unwrap();
    eventually!("integration trunk on node b", {
        b.index().integration_trunk(&acc, Provider::Twilio).as_deref() == Some("acme.pstn.twilio.com")
    });

    // A pending purchase is never routed; once active it is.
    let p = a
        .create_pending_number(&acc, new_number("+14155550102", &two))
        .await
        .unwrap();
    a.activate_number(&acc, &p.id, "PN1").await.unwrap();
    eventually!(
        "activated number on node b",
        b.index().lookup_number("+14155550102").is_some()
    );

    a.delete_number(&acc, &n.id).await.unwrap();
    a.delete_agent(&acc, &one).await.unwrap();
    eventually!("deletions on node b", {
        b.index().lookup_number("+14155550101").is_none() && b.index().agent(&one).is_none()
    });
    // Node b changed nothing by itself; both indexes hold the same.
    assert_eq!(b.index().number_count(), a.index().number_count());
    assert_eq!(b.index().agent_count(), a.index().agent_count());
    assert!(b.index_sync_stats().changes >= 8, "{:?}", b.index_sync_stats());
    sync.abort();
    b.close().await;
}

on_postgres!(a_dropped_listener_connection_recovers_and_the_index_catches_up);
async fn a_dropped_listener_connection_recovers_and_the_index_catches_up(fx: &Fixture) {
    let a = &fx.store;
    let (b, sync) = second_node(fx, NO_CHECK).await;
    let acc = a.create_api_key(None, "t").await.unwrap().0;
    let one = a.create_agent(&acc, new_agent("one")).await.unwrap().id;
    a.create_number(&acc, new_number("+14155550201", &one)).await.unwrap();
    eventually!("number on node b", b.index().lookup_number("+14155550201").is_some());

    // Kill node b's listening connection, as a restarted database or a cut network would.
    let killed: i64 = sqlx::query(
        "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%' AND position($1 in query) > 0",
    )
    .bind(b.index_channel().to_owned())
    .fetch_one(a.pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap();
    assert!(killed >= 1, "no listening connection found for {}", b.index_channel());
    // Written while node b may not be listening: it must arrive anyway (reload after reconnecting).
    a.create_number(&acc, new_number("+14155550202", &one)).await.unwrap();
    eventually!("node b reconnected", b.index_sync_stats().reconnects >= 1);
    eventually!("number written during the outage on node b", {
        b.index().lookup_number("+14155550202").is_some()
    });
    // And live changes flow again.
    a.create_number(&acc, new_number("+14155550203", &one)).await.unwrap();
    eventually!("number written after the outage on node b", {
        b.index().lookup_number("+14155550203").is_some()
    });
    assert_eq!(b.index().number_count(), 3);
    assert_eq!(b.index().owned_numbers(), a.index().owned_numbers());
    sync.abort();
    b.close().await;
}

on_postgres!(the_consistency_check_repairs_changes_made_without_notifications);
async fn the_consistency_check_repairs_changes_made_without_notifications(fx: &Fixture) {
    let a = &fx.store;
    let (b, sync) = second_node(fx, Duration::from_millis(300)).await;
    let acc = a.create_api_key(None, "t").await.unwrap().0;
    let one = a.create_agent(&acc, new_agent("one")).await.unwrap().id;
    let two = a.create_agent(&acc, new_agent("two")).await.unwrap().id;
    let kept = a.create_number(&acc, new_number("+14155550301", &one)).await.unwrap();
    let gone = a.create_number(&acc, new_number("+14155550302", &one)).await.unwrap();
    eventually!("numbers on node b", b.index().number_count() == 2);
    let repairs_before = b.index_sync_stats().repairs;

    // Triggers off for this transaction (as a restore or a hand edit would do): no notification.
    let mut tx = a.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE phone_numbers SET inbound_agent_id = $1, updated_at = updated_at + 1000 WHERE id = $2")
        .bind(&two)
        .bind(&kept.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM phone_numbers WHERE id = $1")
        .bind(&gone.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    eventually!("node b repaired", {
        routed_agent(&b, "+14155550301").as_deref() == Some(two.as_str())
            && b.index().lookup_number("+14155550302").is_none()
    });
    assert!(
        b.index_sync_stats().repairs > repairs_before,
        "{:?}",
        b.index_sync_stats()
    );
    sync.abort();
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_stores_opening_a_fresh_schema_at_once_all_succeed() {
    let Some(fx) = common::postgres().await else { return };
    let mut config: StoreConfig = fx.config.clone();
    config.pg_schema = Some(common::unique_schema());
    let opened: Vec<_> = (0..6)
        .map(|_| {
            let c = config.clone();
            tokio::spawn(async move { Store::connect(c).await })
        })
        .collect();
    let mut stores = Vec::new();
    let mut failures = Vec::new();
    for h in opened {
        match h.await.expect("task") {
            Ok(s) => stores.push(s),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let schema = config.pg_schema.clone().unwrap_or_default();
    let applied = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM \"{schema}\"._sqlx_migrations WHERE success"
    )))
    .fetch_one(fx.store.pool())
    .await
    .map(|r| r.try_get::<i64, _>("n").unwrap_or(-1));
    let triggers = sqlx::query(
        "SELECT COUNT(*) AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND t.tgname = 'edge_index_notify'",
    )
    .bind(&schema)
    .fetch_one(fx.store.pool())
    .await
    .map(|r| r.try_get::<i64, _>("n").unwrap_or(-1));
    for s in &stores {
        s.close().await;
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(fx.store.pool())
    .await;
    fx.cleanup().await;
    assert!(failures.is_empty(), "stores failed to open: {failures:?}");
    assert_eq!(stores.len(), 6);
    assert!(applied.as_ref().is_ok_and(|n| *n >= 10), "migrations: {applied:?}");
    assert_eq!(triggers.ok(), Some(3), "one trigger per indexed table");
}
