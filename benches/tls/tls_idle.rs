//! SIP over TLS: memory per idle connection and handshakes per second of the edge's CPU (issue 20).
//! Loopback only, bounded, stops by itself.
//!
//! Each phase starts a fresh edge (`EDGE_BIN`, default the binary cargo built with this bench) with a
//! self-signed ECDSA P-256 certificate (rcgen's default, as Let's Encrypt issues) and a carrier allow list of
//! 127.0.0.1:
//!
//! 1. plain TCP: `CONNS` connections from the carrier, each sends one OPTIONS, reads the 200 and stays open;
//!    the edge's RSS before (after one warm-up connection) and after gives KiB per idle connection;
//! 2. TLS, the same over the TLS listener (handshake, OPTIONS, 200, idle): KiB per idle TLS connection, and
//!    the TLS cost as the difference to (1) in the same run;
//! 3. handshakes: `CLIENTS` tasks open a connection, finish the TLS handshake and drop it, for
//!    `HANDSHAKE_S` seconds; handshakes per second of the edge's CPU time (user + system) is the figure
//!    per core, since the client shares the box.
//!
//! `cargo bench --bench tls_idle` (`benches/tls/run.sh` raises `ulimit -n` first). Under `cargo test
//! --all-targets` it is a smoke test: 50 connections a phase, 1 s of handshakes, against the debug edge; it
//! fails unless every connection was answered and some handshakes completed.

#[path = "../support/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use process::{cpu_ticks, free_port, raise_open_files, rss_kib};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Edge {
    child: Child,
    tcp: SocketAddr,
    tls: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn start_edge(bin: &PathBuf, cert_pem: &str, key_pem: &str, conns: usize) -> Edge {
    let dir = tempfile::tempdir().expect("temp dir");
    let (sip, tls, api) = (free_port(), free_port(), free_port());
    std::fs::write(dir.path().join("edge.crt"), cert_pem).expect("cert");
    std::fs::write(dir.path().join("edge.key"), key_pem).expect("key");
    let cfg = dir.path().join("edge.toml");
    let max = conns + 100;
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = \"127.0.0.1:{sip}\"\ntcp = \"127.0.0.1:{sip}\"\ntls = \"127.0.0.1:{tls}\"\n\
             tls_certificate = {crt:?}\ntls_private_key = {key:?}\n\
             tcp_max_connections = {max}\ntcp_max_connections_per_ip = {max}\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\n[storage]\ndata_dir = {data:?}\n\
             [log]\nformat = \"json\"\nlevel = \"warn\"\n[media]\nenabled = false\n\
             [[carriers]]\nname = \"bench-carrier\"\nallow = [\"127.0.0.1/32\"]\n",
            crt = dir.path().join("edge.crt").display().to_string(),
            key = dir.path().join("edge.key").display().to_string(),
            data = dir.path().join("data").display().to_string(),
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("edge.log")).expect("log");
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the edge starts");
    Edge {
        child,
        tcp: SocketAddr::from(([127, 0, 0, 1], sip)),
        tls: SocketAddr::from(([127, 0, 0, 1], tls)),
        _dir: dir,
    }
}

fn options(n: usize, transport: &str, to: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bKtlsbench{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=b{n}\r\nTo: <sip:{to}>\r\n\
         Call-ID: tls-bench-{n}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends an OPTIONS and reads until the end of the response's headers: true for a 200.
async fn ping<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, n: usize, transport: &str, to: SocketAddr) -> bool {
    if s.write_all(options(n, transport, to).as_bytes()).await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    got.starts_with(b"SIP/2.0 200")
}

async fn wait_until_up(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the edge did not listen on {addr}");
}

fn client_config(cert: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("the bench's root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn tls_connect(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await
    .ok()?
    .ok()
}

/// An open connection kept idle.
enum Conn {
    Tcp(#[allow(dead_code)] TcpStream),
    Tls(#[allow(dead_code)] Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Opens connection `n` and has one OPTIONS answered on it: the connection, and whether it got its 200.
async fn open(addr: SocketAddr, n: usize, tls: Option<&Arc<rustls::ClientConfig>>) -> (Option<Conn>, bool) {
    match tls {
        Some(cfg) => match tls_connect(addr, cfg).await {
            Some(mut s) => {
                let ok = ping(&mut s, n, "TLS", addr).await;
                (Some(Conn::Tls(Box::new(s))), ok)
            }
            None => (None, false),
        },
        None => match TcpStream::connect(addr).await {
            Ok(mut s) => {
                let ok = ping(&mut s, n, "TCP", addr).await;
                (Some(Conn::Tcp(s)), ok)
            }
            Err(_) => (None, false),
        },
    }
}

/// Opens `conns` idle connections (one OPTIONS answered on each); the edge's RSS growth per connection in
/// KiB, and how many were answered.
async fn idle_kib(edge: &Edge, conns: usize, tls: Option<&Arc<rustls::ClientConfig>>) -> (f64, usize) {
    let addr = if tls.is_some() { edge.tls } else { edge.tcp };
    wait_until_up(addr).await;
    // A warm-up connection: the listener's first-use allocations are not any connection's.
    let (warm, _) = open(addr, 0, tls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(edge.pid());
    let mut kept = Vec::with_capacity(conns + 1);
    kept.extend(warm);
    let mut answered = 0;
    for n in 1..=conns {
        let (conn, ok) = open(addr, n, tls).await;
        kept.extend(conn);
        answered += usize::from(ok);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(edge.pid());
    let per = after.saturating_sub(before) as f64 / conns.max(1) as f64;
    drop(kept);
    (per, answered)
}

/// Handshakes completed in `secs` by `clients` tasks, and the edge's CPU seconds meanwhile.
async fn handshakes(edge: &Edge, cfg: &Arc<rustls::ClientConfig>, clients: usize, secs: f64) -> (u64, f64) {
    wait_until_up(edge.tls).await;
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_ticks(edge.pid());
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (cfg, done, addr) = (cfg.clone(), done.clone(), edge.tls);
            tokio::spawn(async move {
                while Instant::now() < end {
                    if tls_connect(addr, &cfg).await.is_some() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let cpu = cpu_ticks(edge.pid()).saturating_sub(cpu0) as f64 / 100.0;
    (done.load(Ordering::Relaxed), cpu)
}

fn main() -> std::process::ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let conns: usize = env_or("CONNS", if bench { 2000 } else { 50 });
    let clients: usize = env_or("CLIENTS", 4);
    let secs: f64 = env_or("HANDSHAKE_S", if bench { 10.0 } else { 1.0 });
    let bin = std::env::var_os("EDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oneinbox-edge")));
    let _ = raise_open_files();
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    let (cert_pem, key_pem, der) = (cert.pem(), key.serialize_pem(), cert.der().clone());
    let cfg = client_config(&der);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let edge = start_edge(&bin, &cert_pem, &key_pem, conns);
        let (tcp_kib, tcp_ok) = idle_kib(&edge, conns, None).await;
        drop(edge);
        let edge = start_edge(&bin, &cert_pem, &key_pem, conns);
        let (tls_kib, tls_ok) = idle_kib(&edge, conns, Some(&cfg)).await;
        drop(edge);
        let edge = start_edge(&bin, &cert_pem, &key_pem, conns);
        let (n, cpu) = handshakes(&edge, &cfg, clients, secs).await;
        drop(edge);
        println!("idle TCP: {tcp_ok}/{conns} answered, edge RSS +{tcp_kib:.1} KiB per connection");
        println!("idle TLS: {tls_ok}/{conns} answered, edge RSS +{tls_kib:.1} KiB per connection ({:.1} KiB more than TCP, {:.2}x)",
            tls_kib - tcp_kib, tls_kib / tcp_kib.max(0.1));
        println!(
            "handshakes: {n} in {secs:.1} s by {clients} clients = {:.0}/s wall; edge CPU {cpu:.2} s = {:.0} handshakes per edge CPU-second",
            n as f64 / secs,
            n as f64 / cpu.max(0.01)
        );
        if tcp_ok == conns && tls_ok == conns && n > 0 {
            std::process::ExitCode::SUCCESS
        } else {
            eprintln!("FAILED: every connection must be answered and handshakes must complete");
            std::process::ExitCode::FAILURE
        }
    })
}
