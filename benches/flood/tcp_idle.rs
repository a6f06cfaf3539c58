//! Flood: idle TCP connections (issue 16, "TCP lock-out"). Loopback only, bounded, stops by itself.
//!
//! Starts a built edge (`EDGE_BIN`) with a bench config (carrier allow list `127.0.0.1/32`, media off),
//! then for `DURATION_S` seconds:
//!
//! - strangers: `STRANGERS` connections from `STRANGER_ADDRS` source addresses (127.0.1.1, 127.0.1.2, ...,
//!   127.0.2.1, ...) that never send a byte. A connection the edge closes is opened again
//!   `RECONNECT_MS` later (0: not at all), as an attacker keeping its slots would;
//! - a carrier: from 127.0.0.1, `CARRIER_RATE` new TCP connections a second, each sending one OPTIONS or
//!   INVITE (alternately; the INVITE's number is unknown, so its final answer is a 404 which we ACK)
//!   and waiting for the final answer.
//!
//! Prints the carrier's connections attempted / answered, the strangers' connections attempted /
//! established / closed at once (refused) / closed later (first-message timeout), the edge's own counters
//! from /metrics and its RSS. Only keys every edge version knows are set in its config, so the same run
//! works against a build before the TCP budgets (`EDGE_BIN=/path/to/old/oneinbox-edge`).
//!
//! Run through `benches/flood/tcp_idle.sh`, which builds the edge and raises `ulimit -n`.
//!
//! Without `--bench` (`cargo test --all-targets`, as `scripts/test.sh` runs it) it is a smoke test of a
//! few seconds instead: 200 strangers from 10 addresses against the debug edge on free ports, and it
//! fails unless every carrier connection was answered and the edge refused strangers.

#[path = "../support/process.rs"]
mod process;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use process::{cpu_ticks, raise_open_files, rss_kib, EdgeProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Settings {
    edge_bin: PathBuf,
    strangers: usize,
    stranger_addrs: usize,
    duration: Duration,
    reconnect: Option<Duration>,
    carrier_rate: u64,
    sip_port: u16,
    api_port: u16,
}

impl Settings {
    /// `cargo test` mode: small, short, on ports nobody holds.
    fn smoke() -> Settings {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_or(0, |a| a.port())
        };
        // The SIP port must be free for UDP too.
        let sip_port = (0..20)
            .map(|_| free())
            .find(|p| *p != 0 && std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .unwrap_or(19_160);
        Settings {
            edge_bin: PathBuf::from(env!("CARGO_BIN_EXE_oneinbox-edge")),
            strangers: 200,
            stranger_addrs: 10,
            duration: Duration::from_secs(3),
            reconnect: Some(Duration::from_millis(200)),
            carrier_rate: 10,
            sip_port,
            api_port: free(),
        }
    }

    fn from_env() -> Settings {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let reconnect_ms: u64 = env_or("RECONNECT_MS", 1_000);
        Settings {
            edge_bin: std::env::var_os("EDGE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/release/oneinbox-edge")),
            strangers: env_or("STRANGERS", 10_000),
            stranger_addrs: env_or::<usize>("STRANGER_ADDRS", 500).clamp(1, 254 * 200),
            duration: Duration::from_secs(env_or("DURATION_S", 60)),
            reconnect: (reconnect_ms > 0).then(|| Duration::from_millis(reconnect_ms)),
            carrier_rate: env_or::<u64>("CARRIER_RATE", 10).max(1),
            sip_port: env_or("SIP_PORT", 19_060),
            api_port: env_or("API_PORT", 19_080),
        }
    }
}

/// The `i`th stranger source address: 127.0.1.1-254, then 127.0.2.1-254, ...
fn stranger_addr(i: usize) -> IpAddr {
    let block = 1 + i / 254;
    IpAddr::V4(Ipv4Addr::new(127, 0, block as u8, 1 + (i % 254) as u8))
}

#[derive(Default)]
struct StrangerCounts {
    attempts: AtomicU64,
    connect_failed: AtomicU64,
    established: AtomicU64,
    /// Closed by the edge within 500 ms of connecting: refused at accept. The edge resets refused
    /// connections, so many end before the client's connect returns; those count here too.
    closed_at_once: AtomicU64,
    /// Closed by the edge later: the first-message (or idle) timeout.
    closed_later: AtomicU64,
    open: AtomicU64,
}

#[derive(Default)]
struct CarrierCounts {
    attempts: AtomicU64,
    connect_failed: AtomicU64,
    /// Final answer received on the connection.
    answered: AtomicU64,
    /// The edge closed (or reset) the connection before answering: refused.
    closed_unanswered: AtomicU64,
    timed_out: AtomicU64,
}

/// One idle stranger slot: connect, wait to be closed, reconnect; until `end`.
async fn stranger(edge: SocketAddr, from: IpAddr, end: Instant, reconnect: Option<Duration>, c: Arc<StrangerCounts>) {
    let end = tokio::time::Instant::from_std(end);
    loop {
        if tokio::time::Instant::now() >= end {
            return;
        }
        c.attempts.fetch_add(1, Ordering::Relaxed);
        let connected = async {
            let sock = TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(from, 0))?;
            sock.connect(edge).await
        };
        let mut s = match tokio::time::timeout_at(end, connected).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                c.closed_at_once.fetch_add(1, Ordering::Relaxed);
                match reconnect {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return,
                }
                continue;
            }
            Ok(Err(_)) => {
                c.connect_failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => return,
        };
        c.established.fetch_add(1, Ordering::Relaxed);
        c.open.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        let mut buf = [0u8; 64];
        // Never sends; any read result but a timeout means the edge ended it.
        let r = tokio::time::timeout_at(end, s.read(&mut buf)).await;
        c.open.fetch_sub(1, Ordering::Relaxed);
        match r {
            Err(_) => return,
            Ok(_) if since.elapsed() < Duration::from_millis(500) => &c.closed_at_once,
            Ok(_) => &c.closed_later,
        }
        .fetch_add(1, Ordering::Relaxed);
        drop(s);
        match reconnect {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                // Hold the task (and nothing else) until the end.
                tokio::time::sleep_until(end).await;
                return;
            }
        }
    }
}

/// One carrier connection: a request, its final answer (ACKed when it is a non-2xx to an INVITE).
async fn carrier_once(edge: SocketAddr, n: u64, c: Arc<CarrierCounts>, latencies: Arc<std::sync::Mutex<Vec<u32>>>) {
    c.attempts.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut s = match tokio::time::timeout(Duration::from_secs(5), async {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?;
        sock.connect(edge).await
    })
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            c.closed_unanswered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => {
            c.connect_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let me = match s.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let method = if n.is_multiple_of(2) { "OPTIONS" } else { "INVITE" };
    let common = format!(
        "Via: SIP/2.0/TCP {me};branch=z9hG4bKflood{n};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:carrier@{me}>;tag=c{n}\r\nTo: <sip:+15550000000@edge>\r\nCall-ID: flood-{n}@carrier\r\n"
    );
    let req = format!(
        "{method} sip:+15550000000@edge SIP/2.0\r\n{common}CSeq: 1 {method}\r\nContact: <sip:carrier@{me};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        c.closed_unanswered.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match final_status(&mut s).await {
        Answer::Final(status, to) => {
            c.answered.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = latencies.lock() {
                l.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            if method == "INVITE" && status >= 300 {
                // RFC 3261 17.1.1.3: same branch, the answer's To (with its tag).
                let ack = format!(
                    "ACK sip:+15550000000@edge SIP/2.0\r\n{}CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    common.replace("To: <sip:+15550000000@edge>", &format!("To: {to}"))
                );
                let _ = s.write_all(ack.as_bytes()).await;
            }
        }
        Answer::Closed => {
            c.closed_unanswered.fetch_add(1, Ordering::Relaxed);
        }
        Answer::TimedOut => {
            c.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Answer {
    /// The status and the answer's To header value.
    Final(u16, String),
    Closed,
    TimedOut,
}

/// Reads until a final (>= 200) status line arrives.
async fn final_status(s: &mut TcpStream) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Answer::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => return Answer::Closed,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        let mut status = None;
        for line in text.split("\r\n") {
            if let Some(code) = line
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3)?.parse::<u16>().ok())
            {
                status = Some(code);
            } else if let Some(to) = line.strip_prefix("To:").or_else(|| line.strip_prefix("t:")) {
                if let Some(code) = status.filter(|c| *c >= 200) {
                    return Answer::Final(code, to.trim().to_owned());
                }
            }
        }
    }
}

/// A plain HTTP/1.0 GET on the edge's API listener.
async fn http_get(api: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(api))
        .await
        .ok()?
        .ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: edge\r\nAuthorization: Bearer {METRICS_TOKEN}\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The edge's `edge_tcp*` series from /metrics.
async fn tcp_metrics(api: SocketAddr) -> BTreeMap<String, f64> {
    let text = http_get(api, "/metrics").await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("edge_tcp"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The edge and its temporary directory (config, data, log), removed after the edge stopped.
struct Running {
    edge: EdgeProcess,
    _dir: tempfile::TempDir,
}

/// Bearer token of the bench edge's /metrics (`[api] metrics_token`, since issue 17; builds older than that
/// key need `EDGE_LEGACY_CONFIG=1`, and ignore the token).
const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";

fn start_edge(s: &Settings) -> std::io::Result<Running> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = \"127.0.0.1:{sip}\"\ntcp = \"127.0.0.1:{sip}\"\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\n{metrics_token}[storage]\ndata_dir = {data:?}\n\
             [log]\nformat = \"json\"\nlevel = \"warn\"\n[media]\nenabled = false\n\
             [[carriers]]\nname = \"bench-carrier\"\nallow = [\"127.0.0.1/32\"]\n",
            metrics_token = if std::env::var_os("EDGE_LEGACY_CONFIG").is_some() {
                String::new()
            } else {
                format!("metrics_token = \"{METRICS_TOKEN}\"\n")
            },
            sip = s.sip_port,
            api = s.api_port,
            data = dir.path().join("data").display().to_string(),
        ),
    )?;
    let edge = EdgeProcess::spawn(&s.edge_bin, cfg, &dir.path().join("edge.log"))?;
    Ok(Running { edge, _dir: dir })
}

const STRANGERS_ACCEPTED: &str = "edge_tcp_connections_accepted_by_class_total{class=\"stranger\"}";

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn main() -> std::process::ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let s = if bench { Settings::from_env() } else { Settings::smoke() };
    let files = raise_open_files();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "flood: edge {} | {} idle stranger connections from {} addresses, reconnect {:?} | carrier {} conn/s | {} s | open files {:?}",
        s.edge_bin.display(),
        s.strangers,
        s.stranger_addrs,
        s.reconnect,
        s.carrier_rate,
        s.duration.as_secs(),
        files
    );
    let mut edge = match start_edge(&s) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("starting {}: {e}", s.edge_bin.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let pid = edge.edge.pid();
    let sip = SocketAddr::from(([127, 0, 0, 1], s.sip_port));
    let api = SocketAddr::from(([127, 0, 0, 1], s.api_port));
    rt.block_on(async {
        // Up within 30 s, or give up.
        let mut up = false;
        for _ in 0..300 {
            if http_get(api, "/healthz").await.is_some_and(|r| r.contains("\"ok\"")) {
                up = true;
                break;
            }
            if matches!(edge.edge.child.try_wait(), Ok(Some(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            eprintln!("the edge did not come up (log in its temp dir)");
            return std::process::ExitCode::FAILURE;
        }
        let rss_idle = rss_kib(pid);
        let before = tcp_metrics(api).await;
        let cpu_before = cpu_ticks(pid);
        let started = Instant::now();
        let end = started + s.duration;
        let sc = Arc::new(StrangerCounts::default());
        let cc = Arc::new(CarrierCounts::default());
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::with_capacity(s.strangers + 1);
        for i in 0..s.strangers {
            let from = stranger_addr(i % s.stranger_addrs);
            tasks.push(tokio::spawn(stranger(sip, from, end, s.reconnect, sc.clone())));
        }
        let carrier = {
            let (cc, latencies) = (cc.clone(), latencies.clone());
            let period = Duration::from_micros(1_000_000 / s.carrier_rate);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                let mut n = 0u64;
                let mut calls = Vec::new();
                while Instant::now() < end {
                    tick.tick().await;
                    calls.push(tokio::spawn(carrier_once(sip, n, cc.clone(), latencies.clone())));
                    n += 1;
                }
                for c in calls {
                    let _ = c.await;
                }
            })
        };
        let mut rss_peak = 0;
        let mut sec = 0u64;
        // Until a second before the end, so the counters below are read while the flood still holds on.
        while Instant::now() + Duration::from_secs(1) < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sec += 1;
            let rss = rss_kib(pid);
            rss_peak = rss_peak.max(rss);
            if sec.is_multiple_of(10) {
                println!(
                    "  t={sec:>3}s strangers open {:>5} | carrier {}/{} answered | edge RSS {} MiB",
                    sc.open.load(Ordering::Relaxed),
                    cc.answered.load(Ordering::Relaxed),
                    cc.attempts.load(Ordering::Relaxed),
                    rss / 1024
                );
            }
        }
        // Counters (and open gauges) while the flood still holds its connections.
        let after = tcp_metrics(api).await;
        rss_peak = rss_peak.max(rss_kib(pid));
        let cpu_s = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / 100.0;
        let wall_s = started.elapsed().as_secs_f64();
        let _ = carrier.await;
        for t in tasks {
            let _ = t.await;
        }
        let ld = |k: &str| (after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0)) as u64;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        lat.sort_unstable();
        let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
        println!("\n== carrier (127.0.0.1), one request per new TCP connection");
        println!(
            "attempted {} | answered {} ({:.1}%) | closed unanswered {} | connect failed {} | timed out {} | connect-to-answer p50 {:.1} ms p99 {:.1} ms",
            l(&cc.attempts),
            l(&cc.answered),
            pct(l(&cc.answered), l(&cc.attempts)),
            l(&cc.closed_unanswered),
            l(&cc.connect_failed),
            l(&cc.timed_out),
            q(0.5) as f64 / 1000.0,
            q(0.99) as f64 / 1000.0
        );
        println!("== strangers (client side)");
        println!(
            "attempted {} | established {} | closed or reset at once (refused) {} | closed later (first-message timeout) {} | open at the end {} | connect failed {}",
            l(&sc.attempts),
            l(&sc.established),
            l(&sc.closed_at_once),
            l(&sc.closed_later),
            l(&sc.open),
            l(&sc.connect_failed)
        );
        println!("== edge /metrics (change over the run; absent on builds without the series)");
        for (k, v) in &after {
            let d = *v - before.get(k).copied().unwrap_or(0.0);
            if k.starts_with("edge_tcp_connections_open") {
                println!("{k} {v}");
            } else if d != 0.0 || !k.contains("by_") {
                println!("{k} +{d}");
            }
        }
        println!("== edge RSS: idle {} MiB, peak {} MiB", rss_idle / 1024, rss_peak / 1024);
        println!(
            "== edge CPU: {cpu_s:.1} s over {wall_s:.0} s ({:.0}% of one core)",
            100.0 * cpu_s / wall_s.max(1.0)
        );
        println!(
            "\n| carrier answered | strangers accepted (edge) | refused (edge) | first-message timeouts | edge RSS peak |\n|---|---|---|---|---|\n| {}/{} ({:.1}%) | {} | {} | {} | {} MiB |",
            l(&cc.answered),
            l(&cc.attempts),
            pct(l(&cc.answered), l(&cc.attempts)),
            // By class where the edge counts it; before that, every accepted connection but the carrier's
            // answered ones was a stranger's.
            if after.contains_key(STRANGERS_ACCEPTED) {
                ld(STRANGERS_ACCEPTED)
            } else {
                ld("edge_tcp_connections_accepted_total").saturating_sub(l(&cc.answered))
            },
            ld("edge_tcp_connections_refused_total"),
            ld("edge_tcp_first_message_timeouts_total"),
            rss_peak / 1024
        );
        let refused = l(&sc.closed_at_once);
        if !bench && (l(&cc.answered) == 0 || l(&cc.answered) != l(&cc.attempts) || refused == 0) {
            eprintln!("smoke test failed: every carrier connection must be answered and strangers refused");
            return std::process::ExitCode::FAILURE;
        }
        std::process::ExitCode::SUCCESS
    })
}
