//! A customer's trunk as the edge sees it (Twilio/Telnyx termination), on a loopback UDP socket: optionally
//! challenges with digest (401 or 407) and checks the answer with the project's own verifier, then answers,
//! refuses with a chosen status (and Twilio's `X-Twilio-Error`), rings forever, or stays silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_core::build::ResponseBuilder;
use sip_core::digest::{Algorithm, AuthHeader, DigestVerifier, Qop, Secret, Verdict};
use sip_core::message::{Message, Method};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};

/// What the trunk does with an (authorised) INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkMode {
    /// 100, 180, 200 with SDP.
    Answer,
    /// 100, then this status and reason, with an `X-Twilio-Error` when given.
    Reject(u16, &'static str, Option<&'static str>),
    /// 100 and 180, never a final answer.
    Ring,
    /// Nothing at all.
    Silent,
}

/// Digest the trunk demands.
#[derive(Debug, Clone)]
pub struct TrunkAuth {
    pub username: String,
    pub password: String,
    /// `Authorization` (401) or `ProxyAuthorization` (407).
    pub header: AuthHeader,
    pub algorithm: Algorithm,
}

pub const TRUNK_SDP: &str = "v=0\r\no=trunk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

pub struct TestTrunk {
    pub addr: SocketAddr,
    /// Every message received, in order.
    pub rx: Mutex<mpsc::UnboundedReceiver<Message>>,
}

/// The trunk's answers to one request.
fn answers(
    m: &Message,
    mode: TrunkMode,
    verifier: Option<&DigestVerifier>,
    auth: Option<&TrunkAuth>,
    tag: &str,
    contact: &str,
) -> Vec<Bytes> {
    let reply = |code: u16, reason: &'static str| {
        let b = ResponseBuilder::for_request(m, code, reason);
        if code > 100 {
            b.to_tag(tag)
        } else {
            b
        }
    };
    match m.method() {
        Some(Method::Invite) if m.to().unwrap().tag().is_none() => {
            if let (Some(v), Some(a)) = (verifier, auth) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                // A trunk binds nothing to the client's address (the edge's is the same every time).
                let bind = b"edge";
                let lookup = |u: &str| (u == a.username).then_some(Secret::Password(&a.password));
                let challenge = match v.check(m, now, bind, lookup) {
                    Verdict::Authorized { .. } => None,
                    // Twilio answers a wrong password with a fresh challenge, not 403.
                    Verdict::Rejected { .. } => Some(v.challenge(now, bind, false)),
                    Verdict::Challenge(c) => Some(c),
                };
                if let Some(c) = challenge {
                    let mut b = reply(c.status, "Unauthorized");
                    for value in &c.header_values {
                        b = b.header(c.header_name, value);
                    }
                    return vec![b.build()];
                }
            }
            match mode {
                TrunkMode::Silent => vec![],
                TrunkMode::Answer => vec![
                    reply(100, "Trying").build(),
                    reply(180, "Ringing").build(),
                    reply(200, "OK")
                        .header("Contact", contact)
                        .body("application/sdp", Bytes::from_static(TRUNK_SDP.as_bytes()))
                        .build(),
                ],
                TrunkMode::Reject(code, reason, twilio) => {
                    let mut b = reply(code, reason);
                    if let Some(t) = twilio {
                        b = b.header("X-Twilio-Error", t);
                    }
                    vec![reply(100, "Trying").build(), b.build()]
                }
                TrunkMode::Ring => vec![reply(100, "Trying").build(), reply(180, "Ringing").build()],
            }
        }
        Some(Method::Ack) | None => vec![],
        Some(_) => vec![reply(200, "OK").build()],
    }
}

fn verifier_for(auth: &Option<TrunkAuth>) -> Option<DigestVerifier> {
    auth.as_ref().map(|a| {
        DigestVerifier::new(
            "trunk.test",
            b"trunk-secret",
            60,
            &[a.algorithm],
            Some(Qop::Auth),
            a.header,
        )
    })
}

impl TestTrunk {
    pub async fn spawn(mode: TrunkMode, auth: Option<TrunkAuth>) -> TestTrunk {
        Self::spawn_on("127.0.0.1:0", mode, auth).await
    }

    pub async fn spawn_on(bind: &str, mode: TrunkMode, auth: Option<TrunkAuth>) -> TestTrunk {
        let sock = Arc::new(UdpSocket::bind(bind).await.unwrap());
        let addr = sock.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let verifier = verifier_for(&auth);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let contact = format!("<sip:trunk@{addr}>");
            for n_tag in 0u32.. {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                    continue;
                };
                let _ = tx.send(m.clone());
                if !m.is_request() {
                    continue;
                }
                let tag = format!("tr{n_tag}");
                for r in answers(&m, mode, verifier.as_ref(), auth.as_ref(), &tag, &contact) {
                    let _ = sock.send_to(&r, from).await;
                }
            }
        });
        TestTrunk {
            addr,
            rx: Mutex::new(rx),
        }
    }

    /// The same trunk on TCP: answers on the connection each request came in on.
    pub async fn spawn_tcp(mode: TrunkMode, auth: Option<TrunkAuth>) -> TestTrunk {
        Self::spawn_stream(mode, auth, None).await
    }

    /// The same trunk on TLS with `acceptor`'s certificate (and client-certificate demand, if any).
    pub async fn spawn_tls(mode: TrunkMode, auth: Option<TrunkAuth>, acceptor: tokio_rustls::TlsAcceptor) -> TestTrunk {
        Self::spawn_stream(mode, auth, Some(acceptor)).await
    }

    async fn spawn_stream(
        mode: TrunkMode,
        auth: Option<TrunkAuth>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> TestTrunk {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let verifier = verifier_for(&auth);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, verifier, auth, tls) = (tx.clone(), verifier.clone(), auth.clone(), tls.clone());
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        let contact = format!("<sip:trunk@{addr};transport=tcp>");
                        return serve_conn(stream, contact, mode, verifier, auth, tx).await;
                    };
                    // A failed handshake (the edge refused our certificate) simply ends the connection.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let contact = format!("<sip:trunk@{addr};transport=tls>");
                        serve_conn(stream, contact, mode, verifier, auth, tx).await;
                    }
                });
            }
        });
        TestTrunk {
            addr,
            rx: Mutex::new(rx),
        }
    }

    /// The next request of `method` received within `wait`.
    pub async fn expect(&self, method: Method, wait: Duration) -> Message {
        self.try_expect(method.clone(), wait)
            .await
            .unwrap_or_else(|| panic!("trunk {} got no {method:?}", self.addr))
    }

    pub async fn try_expect(&self, method: Method, wait: Duration) -> Option<Message> {
        let mut rx = self.rx.lock().await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(m)) if m.method() == Some(&method) => return Some(m),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }
}

/// Reads SIP messages off one stream connection and answers each on it.
async fn serve_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    contact: String,
    mode: TrunkMode,
    verifier: Option<DigestVerifier>,
    auth: Option<TrunkAuth>,
    tx: mpsc::UnboundedSender<Message>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut framer = sip_core::framing::StreamFramer::new(65536);
    let mut buf = vec![0u8; 65536];
    let mut n_tag = 0u32;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        while let Ok(Some(sip_core::framing::Frame::Message(data))) = framer.next() {
            let Ok(m) = Message::parse_stream(data) else { continue };
            let _ = tx.send(m.clone());
            if !m.is_request() {
                continue;
            }
            n_tag += 1;
            let tag = format!("tt{n_tag}");
            for r in answers(&m, mode, verifier.as_ref(), auth.as_ref(), &tag, &contact) {
                let _ = stream.write_all(&r).await;
            }
            let _ = stream.flush().await;
        }
    }
}
