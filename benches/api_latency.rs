//! API latency: GET a number and PATCH its routing against a running edge (embedded SQLite), sequentially
//! for latency percentiles and with 16 concurrent clients for throughput. Prints p50/p99 per operation.
//!
//!     cargo bench --bench api_latency

use std::time::{Duration, Instant};

use oneinbox_edge::config::Config;
use oneinbox_edge::server;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<Duration>, wall: Duration) {
    v.sort();
    println!(
        "{name:<28} n={:<6} p50={:>7.1} us  p99={:>7.1} us  max={:>8.1} us  {:>8.0} req/s",
        v.len(),
        pct(&v, 0.50).as_secs_f64() * 1e6,
        pct(&v, 0.99).as_secs_f64() * 1e6,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
        v.len() as f64 / wall.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` runs this with --test: a smoke run only.
    let smoke = std::env::args().any(|a| a == "--test");
    let n = if smoke { 20 } else { 5_000 };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_tests(dir.path());
    cfg.log_level = "error".into();
    let edge = server::start(cfg).await.unwrap();
    let (_, key) = edge.store.create_api_key(None, "bench").await.unwrap();
    let base = format!("http://{}", edge.api.unwrap());
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap();
    let auth = format!("Bearer {key}");
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .header("Authorization", &auth)
            .json(&body)
            .send()
    };
    let agent: serde_json::Value = post(
        "/v1/agents",
        serde_json::json!({"name":"a","sip_uri":"sip:a@127.0.0.1:5090"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let agent_id = agent["id"].as_str().unwrap().to_owned();
    let num: serde_json::Value = post(
        "/v1/phone-numbers/purchase",
        serde_json::json!({"country":"US","area_code":"415","agent_id": agent_id,
                           "inbound_routing": {"agent_id": agent_id}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = num["id"].as_str().unwrap().to_owned();
    let get_url = format!("{base}/v1/phone-numbers/{id}");

    for (name, patch) in [("GET /v1/phone-numbers/{id}", false), ("PATCH inbound_routing", true)] {
        // Sequential: latency as one client sees it.
        let mut lat = Vec::with_capacity(n);
        let wall = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            let r = if patch {
                let msg = format!("message {i}");
                http.patch(&get_url)
                    .header("Authorization", &auth)
                    .json(&serde_json::json!({"inbound_routing": {"voicemail_message": msg}}))
                    .send()
                    .await
            } else {
                http.get(&get_url).header("Authorization", &auth).send().await
            };
            let r = r.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let _ = r.bytes().await.unwrap();
            lat.push(t.elapsed());
        }
        report(&format!("{name} (1 client)"), lat, wall.elapsed());

        // 16 concurrent clients: throughput and tail under load.
        let wall = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..16 {
            let (http, url, auth) = (http.clone(), get_url.clone(), auth.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..n / 16 {
                    let t = Instant::now();
                    let r = if patch {
                        let body = serde_json::json!({"inbound_routing": {"voicemail_message": format!("m{c}-{i}")}});
                        http.patch(&url).header("Authorization", &auth).json(&body).send().await
                    } else {
                        http.get(&url).header("Authorization", &auth).send().await
                    };
                    let r = r.unwrap();
                    assert!(r.status().is_success());
                    let _ = r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        report(&format!("{name} (16 clients)"), all, wall.elapsed());
    }
    edge.shutdown().await;
}
