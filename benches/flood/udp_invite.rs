//! Flood: stranger INVITEs over UDP while a carrier places real calls (issue 16, "An INVITE flood from
//! outside stops carrier calls"). Loopback only, bounded in count and time, stops by itself.
//!
//! For each variant the bench starts a fresh edge (`EDGE_BIN`) with a bench config (carrier allow list
//! `127.0.0.1/32`, media off, `routing.unknown_source` per variant, every other key at its default),
//! provisions one agent and one number through the API, then:
//!
//! - the agent: SIPp `tests/sipp/uas_agent.xml` on 127.0.0.1 (answers 180, 200; takes ACK and BYE);
//! - the carrier: SIPp `tests/sipp/uac_inbound.xml` from 127.0.0.1, `CALLS` calls at `CALL_RATE` a second
//!   to that number (INVITE, 200, ACK, BYE), setup time (INVITE sent -> 200) per call from `-trace_rtt`
//!   (SIPp reads a coarse clock: on this kernel its times come in 4 ms steps, so "0 ms" is under 4 ms);
//! - the stranger (flood variants): one thread sending INVITEs to the same number as fast as it can,
//!   round-robin over `1` or `N` source addresses (127.0.0.2, or 127.0.1.1-254, 127.0.2.1, ...), from
//!   1 s before the carrier's first call until its last one ends (at most `FLOOD_MAX` datagrams). Each
//!   INVITE has its own Call-ID, branch and tag. A second thread reads what the edge sends back to the
//!   stranger's sockets.
//!
//! Variants (`VARIANTS`, default `none reject:1 reject:1000 drop:1 drop:1000`): `none` is the carrier
//! alone (the baseline of the same session), `POLICY:ADDRS` floods with `unknown_source = POLICY` from
//! `ADDRS` addresses. Prints per variant the carrier's success and setup p50/p99, the flood's rate, the
//! edge's CPU (and what the flood added over `none`, per 1,000 stranger datagrams the edge read), the
//! stranger's bytes back per byte sent (client side and the edge's own counter), and the edge's
//! transaction, admission and outsider counters from /metrics; then one table.
//!
//! Run through `benches/flood/udp_invite.sh`, which builds the edge. Only keys every edge version knows
//! are set in its config, so the same run works against a build before admission control
//! (`EDGE_BIN=/path/to/old/oneinbox-edge`).
//!
//! Without `--bench` (`cargo test --all-targets`, as `scripts/test.sh` runs it) it is a smoke test of a
//! few seconds instead: 100 calls at 50/s against the debug edge on free ports under a flood from 10
//! addresses, `reject` and `drop`; it fails unless every call succeeded, the edge created no transaction
//! for the stranger, `reject` answered it with at most 2x its bytes and `drop` sent it nothing.

#[path = "../support/process.rs"]
mod process;

use process::{cpu_ticks, free_port, free_udp_port, http, EdgeProcess};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The number the carrier dials and the stranger floods; routed to the SIPp agent.
const DID: &str = "+14155550100";

#[derive(Clone)]
struct Settings {
    edge_bin: PathBuf,
    sipp_dir: PathBuf,
    calls: u64,
    call_rate: u64,
    flood_max: u64,
    /// Stranger datagrams a second at most; 0: as fast as one thread can send.
    flood_rate: u64,
    variants: Vec<Variant>,
    sip_port: u16,
    api_port: u16,
    carrier_port: u16,
    agent_port: u16,
    media_port: u16,
}

#[derive(Clone, Debug)]
struct Variant {
    /// `None`: no flood.
    policy: Option<String>,
    addrs: usize,
}

impl Variant {
    fn parse(s: &str) -> Option<Variant> {
        if s == "none" {
            return Some(Variant { policy: None, addrs: 0 });
        }
        let (p, n) = s.split_once(':')?;
        let addrs: usize = n.parse().ok()?;
        ((p == "reject" || p == "drop") && (1..=254 * 200).contains(&addrs)).then(|| Variant {
            policy: Some(p.to_owned()),
            addrs,
        })
    }

    fn name(&self) -> String {
        match &self.policy {
            None => "no flood".to_owned(),
            Some(p) => format!("{p}, {} addr", self.addrs),
        }
    }
}

impl Settings {
    fn smoke() -> Settings {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Settings {
            edge_bin: PathBuf::from(env!("CARGO_BIN_EXE_oneinbox-edge")),
            sipp_dir: root.join("tests/sipp"),
            calls: 100,
            call_rate: 50,
            flood_max: 2_000_000,
            // Gentler than the bench's all-out flood, so that the debug edge on a shared box keeps up.
            flood_rate: 20_000,
            variants: ["reject:10", "drop:10"]
                .iter()
                .filter_map(|v| Variant::parse(v))
                .collect(),
            sip_port: free_udp_port(19_360),
            api_port: free_port(),
            carrier_port: free_udp_port(19_361),
            agent_port: free_udp_port(19_370),
            media_port: free_udp_port(19_600),
        }
    }

    fn from_env() -> Settings {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let variants = std::env::var("VARIANTS")
            .unwrap_or_else(|_| "none reject:1 reject:1000 drop:1 drop:1000".to_owned())
            .split_whitespace()
            .filter_map(|v| {
                let parsed = Variant::parse(v);
                if parsed.is_none() {
                    eprintln!("VARIANTS: {v:?} is not none, reject:N or drop:N; skipped");
                }
                parsed
            })
            .collect();
        Settings {
            edge_bin: std::env::var_os("EDGE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/release/oneinbox-edge")),
            sipp_dir: root.join("tests/sipp"),
            calls: env_or::<u64>("CALLS", 3_000).max(1),
            call_rate: env_or::<u64>("CALL_RATE", 150).max(1),
            flood_max: env_or("FLOOD_MAX", 20_000_000),
            flood_rate: env_or("FLOOD_RATE", 0),
            variants,
            sip_port: env_or("SIP_PORT", 19_260),
            api_port: env_or("API_PORT", 19_280),
            carrier_port: env_or("CARRIER_PORT", 19_261),
            agent_port: env_or("AGENT_PORT", 19_270),
            media_port: env_or("MEDIA_PORT", 19_600),
        }
    }
}

/// The `i`th stranger source address: 127.0.0.2 for a lone stranger, else 127.0.1.1-254, 127.0.2.1, ...
fn stranger_addr(i: usize, of: usize) -> IpAddr {
    if of == 1 {
        return IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    }
    let block = 1 + i / 254;
    IpAddr::V4(Ipv4Addr::new(127, 0, block as u8, 1 + (i % 254) as u8))
}

// ---------------------------------------------------------------------------------------------
// The edge process and its API

/// Bearer token of the bench edge's /metrics (`[api] metrics_token`).
const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";

/// Keys builds since issue 17 need here (loopback agents, /metrics behind a token), as the `[api]` lines and
/// the tables to append. `EDGE_LEGACY_CONFIG=1` leaves them out, for builds older than those keys (their
/// config refuses unknown keys; their /metrics ignores the token).
fn current_keys() -> (String, String) {
    if std::env::var_os("EDGE_LEGACY_CONFIG").is_some() {
        return (String::new(), String::new());
    }
    (
        format!("metrics_token = \"{METRICS_TOKEN}\"\n"),
        "[security]\ninternal_targets = [\"127.0.0.0/8\"]\n".to_owned(),
    )
}

fn start_edge(s: &Settings, dir: &Path, policy: &str) -> std::io::Result<EdgeProcess> {
    let cfg = dir.join("edge.toml");
    let current = current_keys();
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = \"127.0.0.1:{sip}\"\ntcp = \"127.0.0.1:{sip}\"\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\n{api_extra}[storage]\ndata_dir = {data:?}\n\
             [log]\nformat = \"json\"\nlevel = \"warn\"\n[media]\nenabled = false\n\
             [routing]\nunknown_source = \"{policy}\"\n\
             [[carriers]]\nname = \"bench-carrier\"\nallow = [\"127.0.0.1/32\"]\n{tail}",
            api_extra = current.0,
            tail = current.1,
            sip = s.sip_port,
            api = s.api_port,
            data = dir.join("data").display().to_string(),
        ),
    )?;
    EdgeProcess::spawn(&s.edge_bin, cfg, &dir.join("edge.log"))
}

/// An API key (`keys create`), an agent at the SIPp UAS and [`DID`] routed to it.
fn provision(s: &Settings, edge: &EdgeProcess, api: SocketAddr) -> Result<(), String> {
    let key = edge.create_key(&s.edge_bin)?;
    let agent = format!(
        "{{\"name\":\"bench-agent\",\"sip_uri\":\"sip:agent@127.0.0.1:{}\",\"max_concurrent_calls\":10000}}",
        s.agent_port
    );
    let (st, body) = http(api, "POST", "/v1/agents", Some(&key), Some(&agent)).ok_or("POST /v1/agents: no answer")?;
    let id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        .ok_or_else(|| format!("POST /v1/agents: {st} {body}"))?;
    let number =
        format!("{{\"phone_number\":\"{DID}\",\"agent_id\":\"{id}\",\"inbound_routing\":{{\"agent_id\":\"{id}\"}}}}");
    match http(api, "POST", "/v1/phone-numbers/purchase", Some(&key), Some(&number)) {
        Some((st, _)) if (200..300).contains(&st) => Ok(()),
        Some((st, body)) => Err(format!("purchase: {st} {body}")),
        None => Err("purchase: no answer".to_owned()),
    }
}

/// Counters and gauges from /metrics, by series (name and labels).
fn metrics(api: SocketAddr) -> BTreeMap<String, f64> {
    let text = http(api, "GET", "/metrics", Some(METRICS_TOKEN), None)
        .map(|(_, b)| b)
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("edge_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The stranger

#[derive(Default)]
struct FloodCounts {
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_errors: AtomicU64,
    received: AtomicU64,
    bytes_received: AtomicU64,
    /// Answers by status code (index: code - 100; 0..600).
    by_status: Vec<AtomicU64>,
}

impl FloodCounts {
    fn new() -> FloodCounts {
        FloodCounts {
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            ..FloodCounts::default()
        }
    }
}

/// An INVITE from `from` with a 10-digit counter at three places (branch, tag, Call-ID).
struct Template {
    bytes: Vec<u8>,
    at: [usize; 3],
}

impl Template {
    fn new(from: SocketAddr, edge: SocketAddr) -> Template {
        const MARK: &str = "##########";
        let text = format!(
            "INVITE sip:{DID}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{MARK};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+18005550199@{from}>;tag={MARK}\r\nTo: <sip:{DID}@{edge}>\r\n\
             Call-ID: {MARK}@flood\r\nCSeq: 1 INVITE\r\nContact: <sip:+18005550199@{from}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let mut at = [0; 3];
        let mut from_i = 0;
        for slot in &mut at {
            from_i += text[from_i..].find(MARK).unwrap_or(0);
            *slot = from_i;
            from_i += MARK.len();
        }
        Template {
            bytes: text.into_bytes(),
            at,
        }
    }

    fn stamp(&mut self, mut n: u64) {
        let mut digits = [b'0'; 10];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        for &i in &self.at {
            self.bytes[i..i + 10].copy_from_slice(&digits);
        }
    }
}

/// Sends until `stop` (or `max` datagrams), round-robin over the sockets.
fn flood_send(socks: &[UdpSocket], edge: SocketAddr, max: u64, rate: u64, stop: &AtomicBool, c: &FloodCounts) {
    let start = Instant::now();
    let mut templates: Vec<Template> = socks
        .iter()
        .map(|s| Template::new(s.local_addr().unwrap_or(edge), edge))
        .collect();
    let mut n = 0u64;
    let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    'outer: loop {
        for (sock, t) in socks.iter().zip(templates.iter_mut()) {
            if n.is_multiple_of(4096) {
                c.sent.store(sent, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || n >= max {
                    break 'outer;
                }
                if rate > 0 {
                    // Ahead of the pace: wait until it catches up.
                    let due = Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            n += 1;
            t.stamp(n);
            match sock.send(&t.bytes) {
                Ok(len) => {
                    sent += 1;
                    bytes += len as u64;
                }
                Err(_) => errors += 1,
            }
        }
    }
    c.sent.store(sent, Ordering::Relaxed);
    c.bytes_sent.store(bytes, Ordering::Relaxed);
    c.send_errors.store(errors, Ordering::Relaxed);
}

/// Drains every socket each 50 ms until `stop`, then once more a moment later; counts the edge's answers.
fn flood_receive(socks: &[UdpSocket], stop: &AtomicBool, c: &FloodCounts) {
    let mut buf = [0u8; 65_536];
    let mut last_sweep = false;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            // Answers to the last INVITEs still in flight.
            std::thread::sleep(Duration::from_millis(500));
            last_sweep = true;
        }
        for s in socks {
            while let Ok(len) = s.recv(&mut buf) {
                c.received.fetch_add(1, Ordering::Relaxed);
                c.bytes_received.fetch_add(len as u64, Ordering::Relaxed);
                let code = buf
                    .get(8..11)
                    .filter(|_| buf.starts_with(b"SIP/2.0 "))
                    .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                if let Some(slot) = c.by_status.get(code.saturating_sub(100)) {
                    slot.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if last_sweep {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stranger_sockets(addrs: usize, edge: SocketAddr) -> std::io::Result<Vec<UdpSocket>> {
    (0..addrs)
        .map(|i| {
            let s = UdpSocket::bind(SocketAddr::new(stranger_addr(i, addrs), 0))?;
            s.connect(edge)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SIPp

struct Sipp {
    child: Child,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn sipp(dir: &Path, args: &[String]) -> std::io::Result<Sipp> {
    std::fs::create_dir_all(dir)?;
    let out = std::fs::File::create(dir.join("sipp.out"))?;
    let child = Command::new("sipp")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    Ok(Sipp { child })
}

#[derive(Default, Debug)]
struct CarrierResult {
    successful: u64,
    failed: u64,
    retransmissions: u64,
    /// Setup times (INVITE sent -> 200 received), ms.
    setup_ms: Vec<f64>,
}

/// The SIPp carrier's totals (the statistics file's last line) and its setup times (`-trace_rtt`).
fn carrier_result(dir: &Path) -> CarrierResult {
    let mut r = CarrierResult::default();
    if let Ok(text) = std::fs::read_to_string(dir.join("stats.csv")) {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let head: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
        if let Some(last) = lines.next_back() {
            let row: Vec<&str> = last.split(';').collect();
            let col = |name: &str| {
                head.iter()
                    .position(|h| *h == name)
                    .and_then(|i| row.get(i)?.trim().parse().ok())
                    .unwrap_or(0)
            };
            r.successful = col("SuccessfulCall(C)");
            r.failed = col("FailedCall(C)");
            r.retransmissions = col("Retransmissions(C)");
        }
    }
    // uac_inbound_<pid>_rtt.csv: "Date_ms;response_time_ms;rtd_no", rtd 1 is INVITE -> 200.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().ends_with("_rtt.csv") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split(';').collect();
                if f.get(2).map(|s| s.trim()) == Some("1") {
                    if let Some(ms) = f.get(1).and_then(|v| v.trim().parse().ok()) {
                        r.setup_ms.push(ms);
                    }
                }
            }
        }
    }
    r.setup_ms.sort_by(f64::total_cmp);
    r
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// One variant

struct Outcome {
    variant: Variant,
    carrier: CarrierResult,
    wall_s: f64,
    cpu_s: f64,
    flood_sent: u64,
    flood_bytes_sent: u64,
    flood_send_errors: u64,
    flood_s: f64,
    answers: u64,
    answer_bytes: u64,
    by_status: Vec<(usize, u64)>,
    /// Change over the run of every edge series (gauges: value at the end).
    metrics: BTreeMap<String, f64>,
}

impl Outcome {
    fn m(&self, key: &str) -> f64 {
        self.metrics.get(key).copied().unwrap_or(0.0)
    }

    fn sum(&self, prefix: &str) -> f64 {
        self.metrics
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// Stranger datagrams the edge read: dropped unread by admission, or handled as an outsider's.
    fn stranger_read(&self) -> f64 {
        self.sum("edge_admission_dropped_total") + self.sum("edge_sip_outsider_requests_total")
    }
}

fn run_variant(s: &Settings, v: &Variant, root: &Path) -> Result<Outcome, String> {
    let dir = root.join(v.name().replace([',', ' '], "_"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let policy = v.policy.as_deref().unwrap_or("reject");
    let mut edge = start_edge(s, &dir, policy).map_err(|e| format!("starting {}: {e}", s.edge_bin.display()))?;
    let api = SocketAddr::from(([127, 0, 0, 1], s.api_port));
    let sip = SocketAddr::from(([127, 0, 0, 1], s.sip_port));
    if !edge.wait_up(api) {
        return Err(format!(
            "the edge did not come up (log: {})",
            dir.join("edge.log").display()
        ));
    }
    provision(s, &edge, api)?;
    let scen = |f: &str| s.sipp_dir.join(f).display().to_string();
    let timeout = s.calls / s.call_rate + 60;
    let _agent = sipp(
        &dir.join("agent"),
        &[
            "-sf".into(),
            scen("uas_agent.xml"),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            s.agent_port.to_string(),
            "-mp".into(),
            (s.media_port + 100).to_string(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{}s", timeout + 30),
            "-trace_err".into(),
        ],
    )
    .map_err(|e| format!("sipp (is it installed? apt-get install -y sip-tester): {e}"))?;
    std::fs::write(dir.join("dids.csv"), format!("SEQUENTIAL\n{DID};\n")).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));

    let pid = edge.child.id();
    let before = metrics(api);
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();

    let counts = Arc::new(FloodCounts::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut flood_threads = Vec::new();
    let mut flood_started = None;
    if v.policy.is_some() {
        let socks = Arc::new(stranger_sockets(v.addrs, sip).map_err(|e| format!("stranger sockets: {e}"))?);
        flood_started = Some(Instant::now());
        for send in [true, false] {
            let (socks, stop, counts) = (socks.clone(), stop.clone(), counts.clone());
            let (max, rate) = (s.flood_max, s.flood_rate);
            flood_threads.push(std::thread::spawn(move || {
                if send {
                    flood_send(&socks, sip, max, rate, &stop, &counts);
                } else {
                    flood_receive(&socks, &stop, &counts);
                }
            }));
        }
        // The carrier's first call goes out into a flood in full swing.
        std::thread::sleep(Duration::from_secs(1));
    }

    let carrier_dir = dir.join("carrier");
    let mut carrier = sipp(
        &carrier_dir,
        &[
            "-sf".into(),
            scen("uac_inbound.xml"),
            sip.to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            s.carrier_port.to_string(),
            "-mp".into(),
            s.media_port.to_string(),
            "-inf".into(),
            dir.join("dids.csv").display().to_string(),
            "-m".into(),
            s.calls.to_string(),
            "-r".into(),
            s.call_rate.to_string(),
            "-d".into(),
            "0".into(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{timeout}s"),
            "-trace_stat".into(),
            "-stf".into(),
            "stats.csv".into(),
            "-fd".into(),
            "1".into(),
            "-trace_rtt".into(),
            "-rtt_freq".into(),
            "100".into(),
            "-trace_err".into(),
        ],
    )
    .map_err(|e| format!("sipp: {e}"))?;
    // SIPp stops by itself (-m, -timeout); this bound is only for a SIPp that hangs.
    let deadline = Instant::now() + Duration::from_secs(timeout + 30);
    while matches!(carrier.child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let flood_s = flood_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let cpu_s = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / 100.0;
    let wall_s = started.elapsed().as_secs_f64();
    for t in flood_threads {
        let _ = t.join();
    }
    drop(carrier);
    let after = metrics(api);
    let delta = after
        .iter()
        .map(|(k, v)| {
            let d = if k == "edge_sip_transactions" || k.contains("_open") || k.contains("tracked") {
                *v
            } else {
                v - before.get(k).copied().unwrap_or(0.0)
            };
            (k.clone(), d)
        })
        .collect();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(Outcome {
        variant: v.clone(),
        carrier: carrier_result(&carrier_dir),
        wall_s,
        cpu_s,
        flood_sent: load(&counts.sent),
        flood_bytes_sent: load(&counts.bytes_sent),
        flood_send_errors: load(&counts.send_errors),
        flood_s,
        answers: load(&counts.received),
        answer_bytes: load(&counts.bytes_received),
        by_status: counts
            .by_status
            .iter()
            .enumerate()
            .filter(|(_, c)| load(c) > 0)
            .map(|(i, c)| (i + 100, load(c)))
            .collect(),
        metrics: delta,
    })
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The series a run is judged by, in the order printed.
const SHOWN: [&str; 9] = [
    "edge_sip_transactions_created_total",
    "edge_admission_dropped_total",
    "edge_sip_outsider_requests_total",
    "edge_sip_outsider_bytes_total",
    "edge_sip_reserved_for_carriers_total",
    "edge_sip_overload_rejected_total",
    "edge_udp_datagrams_total",
    "edge_udp_dropped_overload_total",
    "edge_calls_total",
];

fn report(o: &Outcome, baseline_cpu_per_s: Option<f64>) {
    let c = &o.carrier;
    let total = c.successful + c.failed;
    println!("\n== {} ({:.1} s)", o.variant.name(), o.wall_s);
    println!(
        "carrier: {}/{} calls successful ({:.2}%), {} failed, {} retransmissions | setup p50 {:.0} ms p99 {:.0} ms max {:.0} ms ({} samples)",
        c.successful,
        total,
        pct(c.successful, total),
        c.failed,
        c.retransmissions,
        quantile(&c.setup_ms, 0.5),
        quantile(&c.setup_ms, 0.99),
        quantile(&c.setup_ms, 1.0),
        c.setup_ms.len()
    );
    if o.variant.policy.is_some() {
        println!(
            "stranger: {} INVITEs sent in {:.1} s ({:.0}/s, {} bytes, {} send errors) from {} address(es); got back {} datagrams, {} bytes ({:.5} bytes out per byte in) {:?}",
            o.flood_sent,
            o.flood_s,
            o.flood_sent as f64 / o.flood_s.max(0.001),
            o.flood_bytes_sent,
            o.flood_send_errors,
            o.variant.addrs,
            o.answers,
            o.answer_bytes,
            o.answer_bytes as f64 / o.flood_bytes_sent.max(1) as f64,
            o.by_status
        );
    }
    println!(
        "edge CPU: {:.2} s over {:.1} s ({:.0}% of one core)",
        o.cpu_s,
        o.wall_s,
        100.0 * o.cpu_s / o.wall_s.max(0.001)
    );
    if o.variant.policy.is_some() {
        let read = o.stranger_read();
        let extra = baseline_cpu_per_s.map(|b| o.cpu_s - b * o.wall_s);
        println!(
            "edge read {read:.0} stranger datagrams ({:.1}% of those sent; kernel dropped {:.0} on the full socket): CPU {:.2} ms per 1,000 read (all the edge's CPU){}",
            100.0 * read / o.flood_sent.max(1) as f64,
            o.m("edge_udp_dropped_overload_total"),
            1000.0 * o.cpu_s / read.max(1.0) * 1000.0,
            extra.map_or(String::new(), |e| format!(
                ", {:.2} ms per 1,000 read above the no-flood run's CPU rate",
                1000.0 * e / read.max(1.0) * 1000.0
            ))
        );
    }
    println!("edge /metrics, change over the run:");
    for (k, v) in &o.metrics {
        if SHOWN.iter().any(|p| k.starts_with(p)) {
            println!("  {k} {v}");
        }
    }
}

fn main() -> std::process::ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let s = if bench { Settings::from_env() } else { Settings::smoke() };
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("sipp not installed (apt-get install -y sip-tester)");
        return std::process::ExitCode::FAILURE;
    }
    let root = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("temp dir: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let keep = std::env::var_os("KEEP").is_some();
    println!(
        "flood_udp_invite: edge {} | carrier {} calls at {}/s | variants {:?} | files {}{}",
        s.edge_bin.display(),
        s.calls,
        s.call_rate,
        s.variants.iter().map(Variant::name).collect::<Vec<_>>(),
        root.path().display(),
        if keep { " (kept)" } else { "" }
    );
    let mut outcomes = Vec::new();
    let mut baseline_cpu_per_s = None;
    for v in &s.variants {
        match run_variant(&s, v, root.path()) {
            Ok(o) => {
                if o.variant.policy.is_none() {
                    baseline_cpu_per_s = Some(o.cpu_s / o.wall_s.max(0.001));
                }
                report(&o, baseline_cpu_per_s);
                outcomes.push(o);
            }
            Err(e) => {
                eprintln!("{}: {e}", v.name());
                if !bench {
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }
    if keep {
        let _ = root.keep();
    }
    println!(
        "\n| variant | carrier calls ok | setup p50 / p99 | stranger INVITE/s | edge CPU | CPU per 1,000 stranger datagrams (above no-flood) | bytes back per byte sent | transactions carrier / other | admission dropped | outsider answered / silenced |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for o in &outcomes {
        let c = &o.carrier;
        let total = c.successful + c.failed;
        let read = o.stranger_read();
        let flood = o.variant.policy.is_some();
        let dash = || "-".to_owned();
        println!(
            "| {} | {}/{} ({:.2}%) | {:.0} / {:.0} ms | {} | {:.2} s / {:.0} s | {} | {} | {:.0} / {:.0} | {:.0} | {:.0} / {:.0} |",
            o.variant.name(),
            c.successful,
            total,
            pct(c.successful, total),
            quantile(&c.setup_ms, 0.5),
            quantile(&c.setup_ms, 0.99),
            if flood { format!("{:.0}", o.flood_sent as f64 / o.flood_s.max(0.001)) } else { dash() },
            o.cpu_s,
            o.wall_s,
            match baseline_cpu_per_s {
                Some(b) if flood => format!("{:.2} ms", 1e6 * (o.cpu_s - b * o.wall_s) / read.max(1.0)),
                _ => dash(),
            },
            if flood {
                format!("{:.5}", o.answer_bytes as f64 / o.flood_bytes_sent.max(1) as f64)
            } else {
                dash()
            },
            o.m("edge_sip_transactions_created_total{class=\"carrier\"}"),
            o.m("edge_sip_transactions_created_total{class=\"other\"}"),
            o.sum("edge_admission_dropped_total"),
            o.m("edge_sip_outsider_requests_total{outcome=\"answered\"}"),
            o.m("edge_sip_outsider_requests_total{outcome=\"silenced\"}"),
        );
    }
    if !bench {
        // The smoke test: every call through, no transaction for the stranger, at most one small answer each.
        let mut ok = outcomes.len() == s.variants.len();
        for o in &outcomes {
            let c = &o.carrier;
            let why = if c.successful != s.calls || c.failed != 0 {
                Some("not every carrier call succeeded")
            } else if o.m("edge_sip_transactions_created_total{class=\"carrier\"}") == 0.0 {
                Some("the edge's /metrics could not be read (no carrier transactions counted)")
            } else if o.m("edge_sip_transactions_created_total{class=\"other\"}") != 0.0 {
                Some("the edge created transactions for the stranger")
            } else if o.flood_sent == 0 {
                Some("the stranger sent nothing")
            } else if o.by_status.iter().any(|(code, _)| *code < 200)
                || o.answers as f64 > o.m("edge_sip_outsider_requests_total{outcome=\"answered\"}")
                || o.answer_bytes * o.flood_sent > 2 * o.flood_bytes_sent * o.answers
            {
                Some("the stranger got more than one answer per request, or one over twice its size")
            } else if o.variant.policy.as_deref() == Some("drop") && o.answers != 0 {
                Some("unknown_source = drop answered the stranger")
            } else if o.variant.policy.as_deref() == Some("reject") && o.answers == 0 {
                Some("unknown_source = reject never answered the stranger")
            } else {
                None
            };
            if let Some(why) = why {
                eprintln!("smoke test failed ({}): {why}", o.variant.name());
                ok = false;
            }
        }
        if !ok {
            return std::process::ExitCode::FAILURE;
        }
        println!("smoke test passed");
    }
    std::process::ExitCode::SUCCESS
}
