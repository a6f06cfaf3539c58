//! API latency: GET a number and PATCH its routing against a running edge (embedded SQLite), one client for
//! latency percentiles and 16 concurrent keep-alive clients for throughput. Prints p50/p99 per operation.
//!
//!     cargo bench --bench api_latency
//!
//! The client is a minimal HTTP/1.1 keep-alive loop over a TcpStream, so what is measured is the edge.

use std::time::{Duration, Instant};

use oneinbox_edge::config::Config;
use oneinbox_edge::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    auth: String,
}

impl Client {
    async fn new(addr: std::net::SocketAddr, key: &str) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            buf: Vec::with_capacity(16 * 1024),
            auth: format!("Bearer {key}"),
        }
    }

    /// One request on the kept-alive connection; returns (status, body).
    async fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: edge\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.auth,
            body.len()
        );
        self.s.write_all(req.as_bytes()).await.unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&self.buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let head = &text[..end];
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    return (status, text[end + 4..end + 4 + len].to_owned());
                }
            }
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<Duration>, wall: Duration) {
    v.sort();
    println!(
        "{name:<40} n={:<6} p50={:>7.1} us  p99={:>7.1} us  max={:>8.1} us  {:>8.0} req/s",
        v.len(),
        pct(&v, 0.50).as_secs_f64() * 1e6,
        pct(&v, 0.99).as_secs_f64() * 1e6,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
        v.len() as f64 / wall.as_secs_f64()
    );
}

fn body_for(patch: bool, tag: &str) -> (&'static str, String) {
    if patch {
        (
            "PATCH",
            format!("{{\"inbound_routing\":{{\"voicemail_message\":\"message {tag}\"}}}}"),
        )
    } else {
        ("GET", String::new())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` passes --test: a smoke run only.
    let smoke = std::env::args().any(|a| a == "--test");
    let n = if smoke { 32 } else { 5_000 };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_tests(dir.path());
    cfg.media.enabled = false;
    let edge = server::start(cfg).await.unwrap();
    let (_, key) = edge.store.create_api_key(None, "bench").await.unwrap();
    let api = edge.api.unwrap();
    let mut c = Client::new(api, &key).await;
    let (st, agent) = c
        .call(
            "POST",
            "/v1/agents",
            "{\"name\":\"a\",\"sip_uri\":\"sip:a@127.0.0.1:5090\"}",
        )
        .await;
    assert_eq!(st, 201, "{agent}");
    let agent: serde_json::Value = serde_json::from_str(&agent).unwrap();
    let agent_id = agent["id"].as_str().unwrap();
    let (st, num) = c
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            &format!("{{\"country\":\"US\",\"area_code\":\"415\",\"agent_id\":\"{agent_id}\",\"inbound_routing\":{{\"agent_id\":\"{agent_id}\"}}}}"),
        )
        .await;
    assert!(st == 200 || st == 201, "{num}");
    let num: serde_json::Value = serde_json::from_str(&num).unwrap();
    let path = format!("/v1/phone-numbers/{}", num["id"].as_str().unwrap());

    for (name, patch) in [
        ("GET /v1/phone-numbers/{id}", false),
        ("PATCH /v1/phone-numbers/{id} routing", true),
    ] {
        let mut lat = Vec::with_capacity(n);
        let wall = Instant::now();
        for i in 0..n {
            let (m, b) = body_for(patch, &i.to_string());
            let t = Instant::now();
            let (st, _) = c.call(m, &path, &b).await;
            lat.push(t.elapsed());
            assert_eq!(st, 200);
        }
        report(&format!("{name} (1 client)"), lat, wall.elapsed());

        let wall = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..16 {
            let (key, path) = (key.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = Client::new(api, &key).await;
                let mut lat = Vec::new();
                for i in 0..n / 16 {
                    let (m, b) = body_for(patch, &format!("{k}-{i}"));
                    let t = Instant::now();
                    let (st, _) = c.call(m, &path, &b).await;
                    lat.push(t.elapsed());
                    assert_eq!(st, 200);
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
