//! Webhook deliveries per second (issue 22): the edge's delivery worker draining a backlog of queued
//! events from the store to a receiver on loopback, next to a plain reqwest client posting the same signed
//! bodies at the same concurrency (the HTTP alone: what the store's claim and outcome writes cost on top).
//!
//!     cargo bench --bench webhook_deliveries                 # N=5000 deliveries per run
//!     WEBHOOK_BENCH_N=20000 cargo bench --bench webhook_deliveries
//!
//! The receiver is a minimal HTTP/1.1 keep-alive server answering 200 at once, in the same process, on
//! its own runtime thread; both runs send to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_store::{CallRecord, CallStatus, HangupBy, Route, WebhookEvent};
use oneinbox_edge::config::Config;
use oneinbox_edge::webhooks::{signature_header, spawn_worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counts requests; answers 200 to each.
async fn receiver(count: Arc<AtomicU64>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // Whole requests in `buf`: head, then Content-Length bytes.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    }
                    buf.drain(..end + 4 + len);
                    count.fetch_add(1, Ordering::Relaxed);
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn completed(i: usize, account: &str) -> CallRecord {
    CallRecord {
        id: format!("call_bench{i}"),
        account_id: account.into(),
        direction: "inbound".into(),
        carrier: "loopback".into(),
        from: "+15005550006".into(),
        caller_name: None,
        to: "+14155550100".into(),
        phone_number_id: None,
        status: CallStatus::Completed,
        answered_by: Some(Route::Primary),
        agent_id: Some("agt_bench".into()),
        hops: Vec::new(),
        end_reason: Some("caller hung up".into()),
        hangup_by: Some(HangupBy::Caller),
        sip_status: None,
        sip_call_id: format!("{i}@bench"),
        error: None,
        created_at_ms: 1_000,
        answered_at_ms: Some(2_000),
        ended_at_ms: Some(60_000),
        node: None,
    }
}

async fn wait_for(count: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while count.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The edge's worker: N queued deliveries drained at `concurrency`; deliveries per second.
async fn worker_run(n: usize, concurrency: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_tests(dir.path());
    let store = Arc::new(oneinbox_edge::server::open_store(&cfg).await.unwrap());
    let (account, _) = store.create_api_key(None, "bench").await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let addr = receiver(Arc::clone(&count)).await;
    store
        .create_webhook(&account, &format!("http://{addr}/hook"), &[WebhookEvent::CallCompleted])
        .await
        .unwrap();
    let recs: Vec<CallRecord> = (0..n).map(|i| completed(i, &account)).collect();
    for chunk in recs.chunks(256) {
        assert!(store.upsert_calls(chunk).await.unwrap().is_empty());
    }
    assert_eq!(store.webhook_backlog().await.unwrap(), n as i64);
    let mut settings = cfg.webhooks.clone();
    settings.concurrency = concurrency;
    settings.poll_interval = Duration::from_millis(5);
    let policy = edge_contract::TargetPolicy::new(cfg.security.internal_targets.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let worker = spawn_worker(Arc::clone(&store), settings, policy, stop_rx).unwrap();
    wait_for(&count, n as u64).await;
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = worker.await;
    // Every outcome written back before the next run.
    for _ in 0..1000 {
        if store.webhook_backlog().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.close().await;
    n as f64 / secs
}

/// The baseline: the same signed bodies posted by a plain reqwest client at `concurrency`, no store.
async fn baseline_run(n: usize, concurrency: usize) -> f64 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let count = Arc::new(AtomicU64::new(0));
    let addr = receiver(Arc::clone(&count)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = serde_json::json!({"id": "whd_x", "type": "call.completed", "data": completed(0, "acc_x")}).to_string();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, body, next) = (client.clone(), body.clone(), Arc::clone(&next));
        let url = format!("http://{addr}/hook");
        set.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                let t = edge_store::now_ms() / 1000;
                let sig = signature_header("whsec_bench", t, body.as_bytes());
                let r = client
                    .post(&url)
                    .header("OneInbox-Signature", sig)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        });
    }
    while set.join_next().await.is_some() {}
    wait_for(&count, n as u64).await;
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): a smoke run there, the figures under
    // `cargo bench`.
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("WEBHOOK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 5000 } else { 200 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("webhook deliveries, N={n} per run, receiver on loopback answering 200 (SQLite store)");
    println!(
        "{:>11} {:>16} {:>16} {:>7}",
        "concurrency", "worker /s", "plain HTTP /s", "ratio"
    );
    for concurrency in [1usize, 16, 64] {
        let worker = rt.block_on(worker_run(n, concurrency));
        let base = rt.block_on(baseline_run(n, concurrency));
        println!("{concurrency:>11} {worker:>16.0} {base:>16.0} {:>7.2}", worker / base);
    }
}
