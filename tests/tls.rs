//! SIP over TLS (`[sip] tls`) as a carrier's engineer checks it, on loopback with self-signed certificates:
//! answers and in-dialog requests on the carrier's TLS connection with TLS in Via and `transport=tls` in
//! Contact, a call end to end to an agent over UDP, TLS 1.2 and 1.3 only, a connection that never
//! handshakes closed at the first-message time-out, and the certificate reloaded without a restart
//! (explicitly, on SIGHUP and when the files change), a bad new pair keeping the old one.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{start_edge, Agent, Mode, TestEdge, SDP};
use edge_store::AgentStatus;
use rustls::pki_types::{CertificateDer, ServerName};
use sip_core::framing::{Frame, StreamFramer};
use sip_core::message::{HeaderName, Message, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550142";

/// A self-signed certificate for `localhost` and 127.0.0.1 (its own common name, so that several can be
/// trusted at once), written as PEM to `dir/<name>.crt` and `.key`.
struct TestCert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn test_cert(name: &str) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    // Padded to one size (text outside PEM sections is ignored), so that a file replaced by another
    // certificate's can keep its size and modification time: a change only SIGHUP can find.
    let pad = |mut pem: String, to: usize| {
        assert!(pem.len() <= to, "{} bytes of PEM", pem.len());
        pem.extend(std::iter::repeat_n('\n', to - pem.len()));
        pem
    };
    TestCert {
        der: cert.der().clone(),
        cert_pem: pad(cert.pem(), 2048),
        key_pem: pad(key.serialize_pem(), 1024),
    }
}

/// The edge's certificate and key files, rewritten by the reload tests.
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn write(&self, c: &TestCert) {
        std::fs::write(&self.cert, &c.cert_pem).unwrap();
        std::fs::write(&self.key, &c.key_pem).unwrap();
    }

    /// Replaces the files with `c`'s keeping their size and modification time: the file watch sees
    /// nothing.
    fn write_unseen(&self, c: &TestCert) {
        for (path, pem) in [(&self.cert, &c.cert_pem), (&self.key, &c.key_pem)] {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!(meta.len(), pem.len() as u64);
            std::fs::write(path, pem).unwrap();
            let f = std::fs::File::options().write(true).open(path).unwrap();
            f.set_modified(meta.modified().unwrap()).unwrap();
        }
    }
}

async fn tls_edge(
    dir: &Path,
    first: &TestCert,
    tweak: impl FnOnce(&mut oneinbox_edge::config::Config),
) -> (TestEdge, Files) {
    let files = Files {
        cert: dir.join("edge.crt"),
        key: dir.join("edge.key"),
    };
    files.write(first);
    let (cert, key) = (files.cert.clone(), files.key.clone());
    let t = start_edge(move |c| {
        c.sip.tls = Some("127.0.0.1:0".parse().unwrap());
        c.sip.tls_certificate = Some(cert);
        c.sip.tls_private_key = Some(key);
        tweak(c);
    })
    .await;
    (t, files)
}

fn client_config(
    trusted: &[&TestCert],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn connect_with(t: &TestEdge, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(t.edge.sip_tls.unwrap()).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(S, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

async fn connect(t: &TestEdge, trusted: &[&TestCert]) -> TlsStream<TcpStream> {
    connect_with(t, client_config(trusted, rustls::DEFAULT_VERSIONS))
        .await
        .unwrap()
}

/// The certificate the edge presented on `s`.
fn served(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// A carrier on a TLS connection: reads whole SIP messages off the stream.
struct TlsPeer {
    s: TlsStream<TcpStream>,
    framer: StreamFramer,
}

impl TlsPeer {
    fn new(s: TlsStream<TcpStream>) -> Self {
        TlsPeer {
            s,
            framer: StreamFramer::new(65_535),
        }
    }

    fn me(&self) -> std::net::SocketAddr {
        self.s.get_ref().0.local_addr().unwrap()
    }

    async fn send(&mut self, raw: &str) {
        self.s.write_all(raw.as_bytes()).await.unwrap();
        self.s.flush().await.unwrap();
    }

    async fn recv(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while let Some(f) = self.framer.next().unwrap() {
                if let Frame::Message(b) = f {
                    return Some(Message::parse(b).unwrap());
                }
            }
            match tokio::time::timeout_at(deadline, self.s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.framer.push(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// The next message that is a request of `method` or a response to one.
    async fn expect(&mut self, method: Method, status: Option<u16>) -> Message {
        loop {
            let m = self
                .recv(S)
                .await
                .unwrap_or_else(|| panic!("nothing more on the TLS connection (waiting for {method:?} {status:?})"));
            let hit = match status {
                None => m.method() == Some(&method),
                Some(code) => m.status() == Some(code) && m.cseq().unwrap().method == method,
            };
            if hit {
                return m;
            }
            eprintln!(
                "skipped on the TLS connection: {}",
                String::from_utf8_lossy(m.bytes()).lines().next().unwrap_or("")
            );
        }
    }
}

fn options(me: std::net::SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtlsopt{n};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:edge>\r\nCall-ID: tls-opt-{n}@test\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The caller's side of one call over TLS.
struct TlsCall {
    call_id: String,
    tag: String,
    to: Option<String>,
    cseq: u32,
}

impl TlsCall {
    fn new(n: u32) -> Self {
        TlsCall {
            call_id: format!("tls-call-{n}@127.0.0.1"),
            tag: format!("tlsct{n}"),
            to: None,
            cseq: 1,
        }
    }

    fn invite(&self, me: std::net::SocketAddr, edge: std::net::SocketAddr, scheme: &str) -> String {
        format!(
            "INVITE {scheme}:{DID}@{edge} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{t}inv;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+12125550000@{me}>;tag={t}\r\nTo: <sip:{DID}@{edge}>\r\n\
             Call-ID: {c}\r\nCSeq: 1 INVITE\r\nContact: <sip:+12125550000@{me};transport=tls>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {l}\r\n\r\n{SDP}",
            c = self.call_id,
            t = self.tag,
            l = SDP.len()
        )
    }

    fn in_dialog(&mut self, me: std::net::SocketAddr, edge: std::net::SocketAddr, method: &str) -> String {
        if method != "ACK" {
            self.cseq += 1;
        }
        let cseq = if method == "ACK" { 1 } else { self.cseq };
        format!(
            "{method} sip:edge@{edge};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{t}{method}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+12125550000@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {c}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            c = self.call_id,
            t = self.tag,
            to = self.to.as_deref().unwrap(),
        )
    }
}

fn answer(req: &Message, code: u16) -> Bytes {
    sip_core::build::ResponseBuilder::for_request(req, code, "OK").build()
}

/// OPTIONS and two calls from a carrier over one TLS connection: every answer comes back on it, the edge's
/// Contact names its TLS port with `transport=tls` (`sips:` when the carrier dialled a `sips:` URI), the
/// carrier's BYE reaches the agent over UDP, and the agent's BYE reaches the carrier on its TLS
/// connection with TLS in the edge's Via.
#[tokio::test]
async fn a_carrier_call_over_tls_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_cert("edge-a");
    let (t, _files) = tls_edge(dir.path(), &cert, |_| {}).await;
    let edge = t.edge.sip_tls.unwrap();
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("tls-agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;

    let mut c = TlsPeer::new(connect(&t, &[&cert]).await);
    let me = c.me();
    c.send(&options(me, 1)).await;
    let ok = c.expect(Method::Options, Some(200)).await;
    let via = ok.top_via().unwrap();
    assert_eq!(via.transport, sip_core::message::Transport::Tls);
    assert_eq!(via.received(), Some("127.0.0.1"));

    // Call 1 (sip:): the carrier hangs up.
    let mut call = TlsCall::new(1);
    c.send(&call.invite(me, edge, "sip")).await;
    let ok = c.expect(Method::Invite, Some(200)).await;
    let contact = ok.header(&HeaderName::Contact).unwrap().to_owned();
    assert_eq!(contact, format!("<sip:edge@127.0.0.1:{};transport=tls>", edge.port()));
    call.to = ok.header(&HeaderName::To).map(str::to_owned);
    agent.expect(Method::Invite, S).await;
    c.send(&call.in_dialog(me, edge, "ACK")).await;
    c.send(&call.in_dialog(me, edge, "BYE")).await;
    c.expect(Method::Bye, Some(200)).await;
    let bye = agent.expect(Method::Bye, S).await;
    assert!(bye.top_via().unwrap().transport == sip_core::message::Transport::Udp);

    // Call 2 (sips:): the agent hangs up; the edge's BYE comes to the carrier on its TLS connection.
    let mut call = TlsCall::new(2);
    c.send(&call.invite(me, edge, "sips")).await;
    let ok = c.expect(Method::Invite, Some(200)).await;
    assert_eq!(
        ok.header(&HeaderName::Contact),
        Some(format!("<sips:edge@127.0.0.1:{}>", edge.port()).as_str())
    );
    call.to = ok.header(&HeaderName::To).map(str::to_owned);
    c.send(&call.in_dialog(me, edge, "ACK")).await;
    agent.expect(Method::Ack, S).await;
    agent.send_in_dialog("BYE", false).await;
    let bye = c.expect(Method::Bye, None).await;
    let via = bye.top_via().unwrap();
    assert_eq!(via.transport, sip_core::message::Transport::Tls);
    assert_eq!(
        bye.header(&HeaderName::Via).unwrap().split(';').next().unwrap(),
        format!("SIP/2.0/TLS 127.0.0.1:{}", edge.port())
    );
    c.s.write_all(&answer(&bye, 200)).await.unwrap();

    let stats = &t.edge.transport_stats;
    assert_eq!(
        stats.tls_handshakes.load(Ordering::Relaxed),
        1,
        "one connection for everything"
    );
    assert_eq!(stats.tls_handshake_failures.load(Ordering::Relaxed), 0);
}

/// TLS 1.3 and 1.2 are served; a client that offers TLS 1.1 at most is refused (with `openssl s_client`,
/// when there is one: rustls cannot speak 1.1), and plain SIP on the TLS port is a failed handshake.
#[tokio::test]
async fn tls_1_2_and_1_3_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_cert("edge-v");
    let (t, files) = tls_edge(dir.path(), &cert, |_| {}).await;
    for (v, want) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let s = connect_with(&t, client_config(&[&cert], &[v])).await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(want));
    }
    let stats = &t.edge.transport_stats;
    assert_eq!(stats.tls_handshakes.load(Ordering::Relaxed), 2);

    // Plain SIP where TLS is expected: refused at the handshake.
    let mut s = TcpStream::connect(t.edge.sip_tls.unwrap()).await.unwrap();
    s.write_all(options(s.local_addr().unwrap(), 9).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(S, s.read(&mut buf)).await;
    wait_for(
        || stats.tls_handshake_failures.load(Ordering::Relaxed) == 1,
        "plain SIP refused",
    )
    .await;

    let Ok(out) = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(t.edge.sip_tls.unwrap().to_string())
        .args(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile"])
        .arg(&files.cert)
        .stdin(std::process::Stdio::null())
        .output()
        .await
    else {
        eprintln!("no openssl: TLS 1.1 refusal checked by the version list only");
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // rustls answers a hello without TLS 1.2 or 1.3 with a handshake_failure alert.
    assert!(!out.status.success(), "TLS 1.1 handshake accepted: {text}");
    assert!(text.contains("Cipher is (NONE)") && text.contains("alert"), "{text}");
    wait_for(
        || stats.tls_handshake_failures.load(Ordering::Relaxed) == 2,
        "TLS 1.1 refused by the edge",
    )
    .await;
    assert_eq!(stats.tls_handshakes.load(Ordering::Relaxed), 2);
}

async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 3 s");
}

/// A client that opens TCP to the TLS port and never starts the handshake holds its slot only until the
/// first-message time-out; so does one that handshakes and then says nothing.
#[tokio::test]
async fn a_connection_that_never_handshakes_is_closed_at_the_first_message_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_cert("edge-t");
    let (t, _files) = tls_edge(dir.path(), &cert, |c| {
        c.sip.tcp_first_message_timeout = Duration::from_secs(1);
    })
    .await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(t.edge.sip_tls.unwrap()).await.unwrap();
    let mut quiet = connect(&t, &[&cert]).await;
    let stats = &t.edge.transport_stats;
    // Both hold a slot now (loopback is the test config's carrier).
    wait_for(
        || stats.tcp_open_carrier.load(Ordering::Relaxed) == 2,
        "two slots taken",
    )
    .await;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(4), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "silent connection still open: {closed:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "closed too early: {waited:?}");
    let closed = tokio::time::timeout(Duration::from_secs(4), quiet.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "quiet TLS connection still open: {closed:?}"
    );
    assert_eq!(stats.tcp_first_message_timeouts.load(Ordering::Relaxed), 2);
    assert_eq!(stats.tls_handshake_failures.load(Ordering::Relaxed), 0);
    wait_for(|| stats.tcp_open_carrier.load(Ordering::Relaxed) == 0, "slots freed").await;
}

/// The certificate is replaced without a restart: by [`Edge::reload_tls`] (what SIGHUP runs), on SIGHUP
/// itself, and when the files change. A new pair that does not load is refused with the reason and the
/// one in use stays; connections opened before a reload keep working.
#[tokio::test]
async fn the_certificate_is_reloaded_without_a_restart_and_a_bad_pair_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (
        test_cert("edge-1"),
        test_cert("edge-2"),
        test_cert("edge-3"),
        test_cert("edge-4"),
    );
    let all = [&a, &b, &c, &d];
    let (t, files) = tls_edge(dir.path(), &a, |_| {}).await;
    let mut first = TlsPeer::new(connect(&t, &all).await);
    assert_eq!(served(&first.s), a.der);

    // Replaced and reloaded: new connections get the new certificate, the old one still works.
    files.write(&b);
    t.edge.reload_tls().expect("tls on").expect("the new pair loads");
    assert_eq!(served(&connect(&t, &all).await), b.der);
    let me = first.me();
    first.send(&options(me, 20)).await;
    first.expect(Method::Options, Some(200)).await;

    // A key that is not the certificate's: refused, and the pair in use stays.
    std::fs::write(&files.cert, &a.cert_pem).unwrap();
    let e = t.edge.reload_tls().unwrap().expect_err("mismatched pair refused");
    assert!(e.to_string().contains("cannot serve together"), "{e}");
    assert_eq!(served(&connect(&t, &all).await), b.der);
    // Not a certificate at all: refused, naming the file.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64 !!\n").unwrap();
    let e = t.edge.reload_tls().unwrap().expect_err("garbage refused");
    assert!(e.to_string().contains("edge.crt"), "{e}");
    assert_eq!(served(&connect(&t, &all).await), b.der);

    // The files change: picked up without being asked.
    files.write(&c);
    let mut seen = None;
    for _ in 0..60 {
        let got = served(&connect(&t, &all).await);
        if got == c.der {
            seen = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.is_some(), "the changed files were not picked up within 6 s");

    // SIGHUP: the process goes on (it used to end) and re-reads the files. Replaced unseen, so that
    // only SIGHUP can load them: past a file-watch period the old certificate is still served.
    files.write_unseen(&d);
    tokio::time::sleep(oneinbox_edge::transport::tls::WATCH_EVERY + Duration::from_millis(500)).await;
    assert_eq!(served(&connect(&t, &all).await), c.der, "unchanged stamps: no reload");
    // SAFETY: kill(2) on our own pid with a signal the edge handles.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let mut seen = false;
    for _ in 0..30 {
        if served(&connect(&t, &all).await) == d.der {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "SIGHUP did not reload the certificate");
    first.send(&options(me, 21)).await;
    first.expect(Method::Options, Some(200)).await;
}

/// `oneinbox-edge check` names the key and line of a TLS file that cannot be read, and passes the pair.
#[tokio::test]
async fn check_names_the_key_and_line_of_a_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("edge.crt"), dir.path().join("edge.key"));
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nudp = \"127.0.0.1:5060\"\ntcp = \"127.0.0.1:5060\"\ntls = \"127.0.0.1:5061\"\n\
             tls_certificate = {:?}\ntls_private_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oneinbox-edge"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":5: key `sip.tls_certificate`") && err.contains("edge.crt"),
        "{err}"
    );
    let pair = test_cert("edge-check");
    Files { cert, key }.write(&pair);
    let out = check();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls 127.0.0.1:5061"));
}
