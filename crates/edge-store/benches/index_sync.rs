//! Routing index across nodes on PostgreSQL (issue 21): change propagation from one store to another's
//! index by LISTEN/NOTIFY, and the index's memory and start time at 100,000 and 1,000,000 numbers on SQLite
//! and PostgreSQL, next to the cost of the full reload every node used to do every 2 s (the baseline) and of
//! the consistency check that replaced it.
//!
//! `cargo bench -p edge-store --bench index_sync` (PostgreSQL from `EDGE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `INDEX_BENCH_SIZES=100000,1000000` and
//! `INDEX_BENCH_CHANGES=500` bound the run). Start time and memory are measured in a child process per
//! case (this binary run with `child ...`), so one case's heap does not count in the next.

use edge_store::{
    AgentStatus, InboundRouting, NewAgent, NewNumber, NumberPatch, NumberSource, Provider, SecretBox, Store,
    StoreConfig,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pg_url() -> String {
    std::env::var("EDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into())
}

fn config(backend: &str, place: &str) -> StoreConfig {
    let secrets = SecretBox::new([7u8; 32]);
    match backend {
        "pg" => {
            let mut c = StoreConfig::new(Some(&pg_url()), Path::new("/nonexistent"), secrets).expect("pg config");
            c.pg_schema = Some(place.to_owned());
            c.max_connections = 4;
            c
        }
        _ => StoreConfig::new(None, Path::new(place), secrets).expect("sqlite config"),
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// `n` active numbers of one agent, written in one statement (no notifications: triggers off, as for a
/// restore).
async fn populate(store: &Store, n: u64) -> String {
    let acc = store.create_api_key(None, "bench").await.expect("account").0;
    let agent = store.create_agent(&acc, new_agent("bench")).await.expect("agent").id;
    let mut tx = store.pool().begin().await.expect("tx");
    if store.backend() == edge_store::Backend::Postgres {
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await
            .expect("triggers off");
    }
    sqlx::query(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $1) \
         INSERT INTO phone_numbers (id, account_id, phone_number, agent_id, status, provider, source, \
         inbound_enabled, created_at, updated_at) \
         SELECT 'num_bench' || x, $2, '+1' || (2000000000 + x), $3, 'active', 'twilio', 'purchased', 1, x, x FROM g",
    )
    .bind(n as i64)
    .bind(&acc)
    .bind(&agent)
    .execute(&mut *tx)
    .await
    .expect("bulk insert");
    tx.commit().await.expect("commit");
    acc
}

/// Child: open the store (migrations are done: this is a node's start) and report time and memory.
async fn child(backend: &str, place: &str) {
    let before = status_kb("VmRSS:");
    let t = Instant::now();
    let store = Store::connect(config(backend, place)).await.expect("store");
    let start = t.elapsed();
    let after = status_kb("VmRSS:");
    let peak = status_kb("VmHWM:");
    println!(
        "{} {} {} {} {}",
        start.as_micros(),
        before,
        after,
        peak,
        store.index().number_count()
    );
    store.close().await;
}

struct StartFigures {
    start: Duration,
    index_kb: u64,
    peak_kb: u64,
    numbers: u64,
}

fn run_child(backend: &str, place: &str) -> Option<StartFigures> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["child", backend, place])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("child failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text
        .lines()
        .last()?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    (f.len() == 5).then(|| StartFigures {
        start: Duration::from_micros(f[0]),
        index_kb: f[2].saturating_sub(f[1]),
        peak_kb: f[3].saturating_sub(f[1]),
        numbers: f[4],
    })
}

async fn sizes_case(backend: &str, n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let place = match backend {
        "pg" => unique("edge_bench"),
        _ => dir.path().join("data").to_string_lossy().into_owned(),
    };
    let store = match Store::connect(config(backend, &place)).await {
        Ok(s) => s,
        Err(e) => {
            println!("{backend:>6} {n:>9}: store unavailable ({e})");
            return;
        }
    };
    let t = Instant::now();
    populate(&store, n).await;
    let fill = t.elapsed();
    let fig = run_child(backend, &place);
    // Baseline: the full reload each node ran every 2 s before (and still runs after a reconnect).
    let t = Instant::now();
    store.reload_index().await.expect("reload");
    let reload = t.elapsed();
    let check = if backend == "pg" {
        let t = Instant::now();
        let ok = store.index_consistent().await.expect("check");
        assert!(ok, "index consistent after a reload");
        Some(t.elapsed())
    } else {
        None
    };
    match fig {
        Some(f) => {
            println!(
                "{backend:>6} {n:>9} numbers: start {:>8.1} ms, index RSS {:>7.1} MiB ({:>4} B/number), peak +{:>7.1} MiB; \
                 full reload {:>8.1} ms{} (fill {:.1} s, {} loaded)",
                ms(f.start),
                f.index_kb as f64 / 1024.0,
                f.index_kb * 1024 / n.max(1),
                f.peak_kb as f64 / 1024.0,
                ms(reload),
                check.map_or(String::new(), |c| format!(
                    ", consistency check {:.1} ms ({:.0}x cheaper; old reload every 2 s = {:.1}% of a core, check every 10 s = {:.2}%)",
                    ms(c),
                    reload.as_secs_f64() / c.as_secs_f64().max(1e-9),
                    reload.as_secs_f64() / 2.0 * 100.0,
                    c.as_secs_f64() / 10.0 * 100.0
                )),
                fill.as_secs_f64(),
                f.numbers
            );
        }
        None => println!("{backend:>6} {n:>9}: child failed"),
    }
    if backend == "pg" {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{place}\" CASCADE"
        )))
        .execute(store.pool())
        .await;
    }
    store.close().await;
}

/// PATCHes a number through store A, `changes` times, and times until store B's index routes it to the
/// new agent: from A's write returning, and from the write's start.
async fn propagation(changes: usize) {
    let schema = unique("edge_bench_prop");
    let a = match Store::connect(config("pg", &schema)).await {
        Ok(s) => s,
        Err(e) => {
            println!("propagation: PostgreSQL unavailable ({e})");
            return;
        }
    };
    let b = Arc::new(Store::connect(config("pg", &schema)).await.expect("store b"));
    let sync = b.spawn_index_sync(edge_store::INDEX_CHECK_EVERY);
    while b.index_sync_stats().checks == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acc = a.create_api_key(None, "bench").await.expect("account").0;
    let agents = [
        a.create_agent(&acc, new_agent("one")).await.expect("agent").id,
        a.create_agent(&acc, new_agent("two")).await.expect("agent").id,
    ];
    let num = a
        .create_number(
            &acc,
            NewNumber {
                phone_number: "+14155550999".into(),
                friendly_name: None,
                agent_id: agents[0].clone(),
                provider: Provider::Twilio,
                source: NumberSource::Purchased,
                provider_ref: None,
                inbound_routing: Some(InboundRouting::default()),
                provider_config: None,
            },
        )
        .await
        .expect("number");
    let index = b.index();
    let mut after_write = Vec::with_capacity(changes);
    let mut whole = Vec::with_capacity(changes);
    let mut write = Vec::with_capacity(changes);
    for i in 0..changes {
        let want = &agents[(i + 1) % 2];
        let t0 = Instant::now();
        a.update_number(
            &acc,
            &num.id,
            NumberPatch {
                agent_id: Some(want.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("patch");
        let t1 = Instant::now();
        let deadline = t1 + Duration::from_secs(10);
        while index
            .lookup_number("+14155550999")
            .and_then(|r| r.inbound_routing.as_ref().map(|ib| ib.agent_id != *want))
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "change {i} never reached store b");
            tokio::task::yield_now().await;
        }
        let t2 = Instant::now();
        write.push(t1 - t0);
        after_write.push(t2 - t1);
        whole.push(t2 - t0);
    }
    for v in [&mut write, &mut after_write, &mut whole] {
        v.sort();
    }
    println!(
        "propagation over {changes} PATCHes, store A -> store B's index: after A's write returned p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms; write start to B p50 {:.2} ms, p99 {:.2} ms (the write alone p50 {:.2} ms); \
         baseline (full reload every 2 s): ~1000 ms mean, 2000 ms worst, plus the reload",
        ms(percentile(&after_write, 0.5)),
        ms(percentile(&after_write, 0.99)),
        ms(percentile(&after_write, 1.0)),
        ms(percentile(&whole, 0.5)),
        ms(percentile(&whole, 0.99)),
        ms(percentile(&write, 0.5)),
    );
    println!("store b sync: {:?}", b.index_sync_stats());
    sync.abort();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(a.pool())
    .await;
    a.close().await;
    b.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("child") {
        let (Some(backend), Some(place)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: index_sync child pg|sqlite SCHEMA|DIR");
            std::process::exit(2);
        };
        rt.block_on(child(backend, place));
        return;
    }
    // `cargo test --all-targets` runs this without `--bench`: a smoke run that only proves it works.
    let bench = args.iter().any(|a| a == "--bench");
    let (default_sizes, default_changes) = if bench { ("100000,1000000", 500) } else { ("2000", 20) };
    let sizes: Vec<u64> = std::env::var("INDEX_BENCH_SIZES")
        .unwrap_or_else(|_| default_sizes.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let changes: usize = std::env::var("INDEX_BENCH_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_changes);
    rt.block_on(async {
        propagation(changes).await;
        for n in sizes {
            for backend in ["sqlite", "pg"] {
                sizes_case(backend, n).await;
            }
        }
    });
}
