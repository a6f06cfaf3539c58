//! Relay benchmark (custom main, prints figures):
//! * throughput: packets/s per core of relay CPU time (sender → relay → receiver on loopback), plain, with
//!   G.711 law conversion (the receiver's SDP takes PCMA only, the sender sends PCMU), and SRTP on both legs
//!   (AES_CM_128_HMAC_SHA1_80: the relay decrypts the sender's SRTP and encrypts toward the receiver with its
//!   own key);
//! * added latency p50/p99: relay path minus direct path, timestamps in the payload, plain and SRTP (the
//!   sender protects and the receiver unprotects in both the direct and the relayed runs);
//! * memory per relayed call: RSS delta over 1,000 live relays (/proc/self/statm).
//!
//! `cargo bench --bench relay [-- --measurement-time SECS]`

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use edge_media::{MediaConfig, MediaEncryption, MediaEngine, RemoteMedia, Side};
use edge_srtp::{CryptoAttribute, SrtpContext, SrtpSuite};

/// What the relay does to each packet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// PCMU -> PCMA.
    Convert,
    /// SRTP on both legs: decrypt + encrypt per packet.
    Srtp,
}

/// The sender's key and the edge's key toward the receiver, for an SRTP run.
type Keys = Option<(CryptoAttribute, CryptoAttribute)>;

/// Leg A offers SRTP with the sender's key, leg B (policy `srtp`) answers the edge's offer with a key of
/// its own: returns the sender's key and the edge's key toward B.
fn srtp_legs(relay: &edge_media::RelayHandle, receiver: SocketAddr) -> (CryptoAttribute, CryptoAttribute) {
    let sdp = |port: u16, key: &CryptoAttribute| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\n\
             a=rtpmap:0 PCMU/8000\r\na=crypto:{}\r\n",
            key.to_sdp_value()
        )
    };
    relay.set_encryption(Side::B, MediaEncryption::Srtp, true);
    let a_key = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let (to_b, _) = relay.anchor(Side::A, sdp(9, &a_key).as_bytes(), None, true).unwrap();
    let edge_b = String::from_utf8_lossy(&to_b)
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttribute::parse(v).unwrap())
        .find(|c| c.suite() == SrtpSuite::AesCm128HmacSha1_80)
        .unwrap();
    let b_key = CryptoAttribute::generate(edge_b.tag, edge_b.suite()).unwrap();
    relay
        .anchor(Side::B, sdp(receiver.port(), &b_key).as_bytes(), None, false)
        .unwrap();
    (a_key, edge_b)
}

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Port ranges in this bench stay below the ephemeral range (32768+) so
/// sockets of concurrently running programs cannot occupy them.
fn config(lo: u16, hi: u16) -> MediaConfig {
    MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (lo, hi),
        quarantine: Duration::ZERO,
        media_timeout: Duration::from_secs(600),
        ..MediaConfig::default()
    }
}

fn remote(addr: SocketAddr) -> RemoteMedia {
    RemoteMedia {
        addr: addr.ip(),
        rtp_port: addr.port(),
        rtcp_port: addr.port() + 1,
        payload_types: vec![0],
        codecs: vec![],
        telephone_event_pt: None,
    }
}

/// An SDP-declared peer that takes only `law` (static payload types 0 / 8).
fn remote_law(addr: SocketAddr, pts: &[u8]) -> RemoteMedia {
    RemoteMedia {
        payload_types: pts.to_vec(),
        ..remote(addr)
    }
}

/// RTP packet (12-byte header + 160 bytes) with a send timestamp in the payload.
fn packet(seq: u16, sent_ns: u64) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x0BE4_C400u32.to_be_bytes());
    p[12..20].copy_from_slice(&sent_ns.to_le_bytes());
    p
}

fn thread_cpu() -> Duration {
    // utime + stime (fields 14, 15) in clock ticks of 10 ms (USER_HZ = 100 on Linux).
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or_default();
    // Tokens start at field 3 (state), so utime/stime are tokens 11 and 12.
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4
}

struct RelayThread {
    a_side: SocketAddr,
    keys: Keys,
    stop: mpsc::Sender<()>,
    done: thread::JoinHandle<(u64, Duration)>,
}

/// Runs one relay on its own single-threaded runtime (one core), forwarding to `receiver`.
fn spawn_relay(ports: (u16, u16), receiver: SocketAddr, mode: Mode) -> RelayThread {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop, stop_rx) = mpsc::channel::<()>();
    let done = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (engine, _events) = MediaEngine::new(config(ports.0, ports.1)).unwrap();
            let relay = engine.allocate_relay("bench").unwrap();
            let mut keys = None;
            match mode {
                Mode::Convert => {
                    // A sends PCMU (and may send PCMA); B takes PCMA only: every packet is converted.
                    relay.set_remote(Side::A, &remote_law(SocketAddr::new(LO, 9), &[0, 8]));
                    relay.set_remote(Side::B, &remote_law(receiver, &[8]));
                }
                Mode::Plain => relay.set_remote(Side::B, &remote(receiver)),
                Mode::Srtp => keys = Some(srtp_legs(&relay, receiver)),
            }
            ready_tx
                .send((SocketAddr::new(LO, relay.local_port(Side::A)), keys))
                .unwrap();
            let cpu0 = thread_cpu();
            while stop_rx.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let cpu = thread_cpu().saturating_sub(cpu0);
            (relay.release().await.relayed_a_to_b, cpu)
        })
    });
    let (a_side, keys) = ready_rx.recv().unwrap();
    RelayThread {
        a_side,
        keys,
        stop,
        done,
    }
}

fn throughput(secs: f64, mode: Mode) {
    let what = match mode {
        Mode::Plain => "throughput",
        Mode::Convert => "throughput (PCMU->PCMA)",
        Mode::Srtp => "throughput (SRTP both legs)",
    };
    let receiver = UdpSocket::bind((LO, 0)).unwrap();
    receiver.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let relay = spawn_relay((14000, 14003), receiver.local_addr().unwrap(), mode);
    let mut protect = relay.keys.as_ref().map(|(a, _)| SrtpContext::from_crypto(a));
    let running = Arc::new(AtomicBool::new(true));
    let received = Arc::new(AtomicU64::new(0));
    let rx = {
        let (running, received) = (running.clone(), received.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while running.load(Ordering::Relaxed) {
                if receiver.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let sender = UdpSocket::bind((LO, 0)).unwrap();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            let p = packet(sent as u16, 0);
            match &mut protect {
                Some(ctx) => {
                    let mut v = Vec::with_capacity(200);
                    v.extend_from_slice(&p);
                    ctx.protect_rtp(&mut v).unwrap();
                    let _ = sender.send_to(&v, relay.a_side);
                }
                None => {
                    let _ = sender.send_to(&p, relay.a_side);
                }
            }
            sent += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(100));
    relay.stop.send(()).unwrap();
    let (relayed, cpu) = relay.done.join().unwrap();
    running.store(false, Ordering::Relaxed);
    rx.join().unwrap();
    let cpu_s = cpu.as_secs_f64().max(0.01);
    println!("{what}: offered {:.0} pkt/s, relayed {relayed} in {wall:.2} s = {:.0} pkt/s wall, relay thread CPU {cpu_s:.2} s",
        sent as f64 / wall, relayed as f64 / wall);
    println!(
        "{what}: {:.0} packets/s per core (relayed / relay CPU time); receiver got {}",
        relayed as f64 / cpu_s,
        received.load(Ordering::Relaxed)
    );
}

/// Latency samples (µs) for `count` packets at `rate` pkt/s to `target`, received on `receiver`; with
/// `keys`, protected with the first and unprotected with the second (the same key for a direct run).
fn latencies(target: SocketAddr, receiver: UdpSocket, count: usize, rate: u64, keys: Keys) -> Vec<f64> {
    let mut protect = keys.as_ref().map(|(a, _)| SrtpContext::from_crypto(a));
    let mut unprotect = keys.as_ref().map(|(_, b)| SrtpContext::from_crypto(b));
    let base = Instant::now();
    receiver.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let rx = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let Ok(n) = receiver.recv(&mut buf) else {
                break;
            };
            let mut p = buf[..n].to_vec();
            if let Some(ctx) = &mut unprotect {
                if ctx.unprotect_rtp(&mut p).is_err() {
                    continue;
                }
            }
            if p.len() >= 20 {
                let sent = u64::from_le_bytes(p[12..20].try_into().unwrap_or_default());
                let now = base.elapsed().as_nanos() as u64;
                out.push(now.saturating_sub(sent) as f64 / 1000.0);
            }
        }
        out
    });
    let sender = UdpSocket::bind((LO, 0)).unwrap();
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let mut next = Instant::now();
    for i in 0..count {
        // Sleep-paced (not spinning): on a shared 2-core box a spinning sender
        // would steal the relay's CPU and measure the scheduler instead.
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        next += gap;
        let mut p = packet(i as u16, base.elapsed().as_nanos() as u64).to_vec();
        if let Some(ctx) = &mut protect {
            ctx.protect_rtp(&mut p).unwrap();
        }
        let _ = sender.send_to(&p, target);
    }
    let mut v = rx.join().unwrap();
    v.sort_by(f64::total_cmp);
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn latency(count: usize, mode: Mode) {
    let relay_rx = UdpSocket::bind((LO, 0)).unwrap();
    let relay = spawn_relay((14010, 14013), relay_rx.local_addr().unwrap(), mode);
    // The direct run does the same crypto at both ends (one key), so the difference is the relay's.
    let direct_keys = relay.keys.as_ref().map(|(a, _)| (a.clone(), a.clone()));
    let direct_rx = UdpSocket::bind((LO, 0)).unwrap();
    let direct_addr = direct_rx.local_addr().unwrap();
    let direct = latencies(direct_addr, direct_rx, count, 5000, direct_keys);
    let relayed = latencies(relay.a_side, relay_rx, count, 5000, relay.keys.clone());
    relay.stop.send(()).unwrap();
    let _ = relay.done.join();
    let what = if mode == Mode::Srtp { " (SRTP both legs)" } else { "" };
    println!(
        "latency{what} @5k pkt/s, {} / {} samples: direct p50 {:.1} µs p99 {:.1} µs; via relay p50 {:.1} µs p99 {:.1} µs",
        direct.len(),
        relayed.len(),
        pct(&direct, 0.5),
        pct(&direct, 0.99),
        pct(&relayed, 0.5),
        pct(&relayed, 0.99)
    );
    println!(
        "latency{what} added by relay: p50 {:.1} µs, p99 {:.1} µs",
        pct(&relayed, 0.5) - pct(&direct, 0.5),
        pct(&relayed, 0.99) - pct(&direct, 0.99)
    );
}

fn memory(calls: u16) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (engine, _events) = MediaEngine::new(config(10000, 10000 + calls * 4 - 1)).unwrap();
        let peer = UdpSocket::bind((LO, 0)).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let before = rss_kib();
        let mut relays = Vec::with_capacity(usize::from(calls));
        for i in 0..calls {
            let relay = engine.allocate_relay(&format!("mem-{i}")).unwrap();
            relay.set_remote(Side::A, &remote(peer_addr));
            relay.set_remote(Side::B, &remote(peer_addr));
            relays.push(relay);
        }
        // Push one packet through every relay so each task has run and touched its buffer.
        let sender = UdpSocket::bind((LO, 0)).unwrap();
        for r in &relays {
            let _ = sender.send_to(&packet(1, 0), SocketAddr::new(LO, r.local_port(Side::A)));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = rss_kib();
        let relayed: u64 = relays.iter().map(|r| r.stats().relayed_a_to_b).sum();
        println!(
            "memory: {} relays ({} relayed a packet): RSS +{} KiB = {:.1} KiB per relayed call (user space; kernel socket buffers not included)",
            calls, relayed, after.saturating_sub(before), after.saturating_sub(before) as f64 / f64::from(calls)
        );
        drop(relays);
    });
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) a short smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let mut secs = if full { 3.0 } else { 0.2 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--measurement-time" {
            secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(secs);
        }
    }
    let (calls, samples) = if full { (1000, 10_000) } else { (50, 500) };
    memory(calls);
    throughput(secs, Mode::Plain);
    throughput(secs, Mode::Convert);
    throughput(secs, Mode::Srtp);
    throughput(secs, Mode::Plain);
    throughput(secs, Mode::Srtp);
    latency(samples, Mode::Plain);
    latency(samples, Mode::Srtp);
}
