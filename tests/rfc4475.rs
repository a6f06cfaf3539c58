//! RFC 4475 torture messages sent to a running edge over UDP and TCP on loopback, checking the answer a
//! carrier would see; prints the conformance table (ours against rsip's parser) that docs/rfc4475.md holds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oneinbox_edge::config::Config;
use oneinbox_edge::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// What the edge must do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A final response with this status code.
    Code(u16),
    /// Nothing: a stray response, or a request without a usable Via.
    Silence,
}
use Want::*;

/// Expected answers, with the reason from RFC 4475's text. An INVITE that passes every check reaches the
/// router, which knows no numbers in this test: 404.
const CASES: &[(&str, Want, &str)] = &[
    (
        "valid/wsinv",
        Code(481),
        "3.1.1.1 short tortuous INVITE: parsed; its To tag names a dialog we do not hold",
    ),
    (
        "valid/intmeth",
        Code(501),
        "3.1.1.2 wide range of valid characters: unknown extension method",
    ),
    ("valid/esc01", Code(404), "3.1.1.3 escapes in Request-URI user"),
    (
        "valid/escnull",
        Code(405),
        "3.1.1.4 escaped nulls in URIs: REGISTER is not served here",
    ),
    (
        "valid/esc02",
        Code(501),
        "3.1.1.5 escaped method name is an extension method",
    ),
    ("valid/lwsdisp", Code(200), "3.1.1.6 no LWS between display name and <"),
    ("valid/longreq", Code(404), "3.1.1.7 long values in header fields"),
    (
        "valid/dblreq",
        Code(405),
        "3.1.1.8 extra trailing octets after Content-Length: cut (UDP)",
    ),
    (
        "valid/semiuri",
        Code(200),
        "3.1.1.9 semicolon-separated parameters in URI user part",
    ),
    (
        "valid/transports",
        Code(200),
        "3.1.1.10 varied and unknown transport types",
    ),
    (
        "valid/mpart01",
        Code(405),
        "3.1.1.11 multipart MIME message: MESSAGE is not served here",
    ),
    (
        "valid/unreason",
        Silence,
        "3.1.1.12 unusual reason phrase: a stray response is dropped",
    ),
    (
        "valid/noreason",
        Silence,
        "3.1.1.13 empty reason phrase: a stray response is dropped",
    ),
    (
        "invalid/badinv01",
        Code(400),
        "3.1.2.1 extraneous header field separators",
    ),
    ("invalid/clerr", Code(400), "3.1.2.2 Content-Length larger than message"),
    ("invalid/ncl", Code(400), "3.1.2.3 negative Content-Length"),
    (
        "invalid/scalar02",
        Code(400),
        "3.1.2.4 request scalar fields with overlarge values",
    ),
    (
        "invalid/scalarlg",
        Silence,
        "3.1.2.5 response scalar fields with overlarge values: a response",
    ),
    (
        "invalid/quotbal",
        Code(400),
        "3.1.2.6 unterminated quoted string in display name",
    ),
    ("invalid/ltgtruri", Code(400), "3.1.2.7 <> enclosing Request-URI"),
    (
        "invalid/lwsruri",
        Code(400),
        "3.1.2.8 malformed SIP Request-URI (embedded LWS)",
    ),
    (
        "invalid/lwsstart",
        Code(400),
        "3.1.2.9 multiple SP separating Request-Line elements",
    ),
    (
        "invalid/trws",
        Code(400),
        "3.1.2.10 SP characters at end of Request-Line",
    ),
    (
        "invalid/escruri",
        Code(400),
        "3.1.2.11 escaped headers in SIP Request-URI",
    ),
    (
        "invalid/baddate",
        Code(400),
        "3.1.2.12 invalid time zone in Date header field",
    ),
    (
        "invalid/regbadct",
        Code(400),
        "3.1.2.13 failure to enclose name-addr URI in <>",
    ),
    ("invalid/badaspec", Code(400), "3.1.2.14 spaces within addr-spec"),
    (
        "invalid/baddn",
        Code(400),
        "3.1.2.15 non-token characters in display name",
    ),
    (
        "invalid/badvers",
        Code(505),
        "3.1.2.16 unknown protocol version: 505 Version Not Supported",
    ),
    (
        "invalid/mismatch01",
        Code(400),
        "3.1.2.17 start line and CSeq method mismatch",
    ),
    (
        "invalid/mismatch02",
        Code(400),
        "3.1.2.18 unknown method with CSeq method mismatch",
    ),
    (
        "invalid/bigcode",
        Silence,
        "3.1.2.19 overlarge response code: a response",
    ),
    (
        "semantic/badbranch",
        Code(200),
        "3.3.1 missing transaction identifier cookie: 2543 matching",
    ),
    ("semantic/insuf", Code(400), "3.3.2 missing required header fields"),
    ("semantic/unkscm", Code(416), "3.3.3 Request-URI with unknown scheme"),
    (
        "semantic/novelsc",
        Code(416),
        "3.3.4 Request-URI with known but atypical scheme",
    ),
    (
        "semantic/unksm2",
        Code(405),
        "3.3.5 unknown URI schemes in header fields: REGISTER not served",
    ),
    (
        "semantic/bext01",
        Code(420),
        "3.3.6 proxy-require and require: Unsupported listed",
    ),
    ("semantic/invut", Code(415), "3.3.7 unknown Content-Type"),
    (
        "semantic/regaut01",
        Code(405),
        "3.3.8 unknown authorization scheme: REGISTER not served",
    ),
    (
        "semantic/multi01",
        Code(400),
        "3.3.9 multiple values in single value required fields",
    ),
    ("semantic/mcl01", Code(400), "3.3.10 multiple Content-Length values"),
    (
        "semantic/bcast",
        Silence,
        "3.3.11 200 OK response with broadcast Via received: a stray response",
    ),
    ("semantic/zeromf", Code(483), "3.3.12 Max-Forwards of zero"),
    (
        "semantic/cparam01",
        Code(405),
        "3.3.13 REGISTER with a contact parameter: not served",
    ),
    (
        "semantic/cparam02",
        Code(405),
        "3.3.14 REGISTER with a url parameter: not served",
    ),
    (
        "semantic/regescrt",
        Code(405),
        "3.3.15 REGISTER with a URL escaped header: not served",
    ),
    (
        "semantic/sdp01",
        Code(404),
        "3.3.16 unacceptable Accept offering: routed (unknown number)",
    ),
    (
        "semantic/inv2543",
        Code(404),
        "3.4 RFC 2543 INVITE: no branch cookie, no Max-Forwards, routed",
    ),
];

/// The corpus sip-core keeps with its own tests (`crates/sip-core/tests/data/rfc4475`): inside the
/// repository, so a fresh clone runs this test with nothing beside it.
fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/sip-core/tests/data/rfc4475");
    assert!(dir.is_dir(), "RFC 4475 corpus missing at {}", dir.display());
    dir
}

fn status_of(resp: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(resp.get(..12)?).ok()?;
    s.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Final answer (skipping 1xx) or silence within `wait`.
async fn udp_answer(sock: &UdpSocket, wait: Duration) -> (Option<u16>, String) {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let code = status_of(&buf[..n]);
                if code.is_some_and(|c| c >= 200) {
                    return (code, String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            _ => return (None, String::new()),
        }
    }
}

fn want_matches(want: Want, got: Option<u16>) -> bool {
    match want {
        Code(c) => got == Some(c),
        Silence => got.is_none(),
    }
}

/// True when the file's body is exactly its Content-Length, so a stream can frame it as sent.
fn frames_on_a_stream(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let lens: Vec<usize> = head
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n == "content-length" || n == "l").then(|| v.trim().parse().ok())?
        })
        .collect();
    lens.len() == 1 && lens[0] == raw.len() - end - 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4475_over_udp_and_tcp() {
    let dir = corpus_dir();
    let data = tempfile::tempdir().unwrap();

    let mut table = String::from(
        "| message | RFC 4475 | expected | edge over UDP | edge over TCP | rsip 0.4 parses |\n|---|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    for (name, want, why) in CASES {
        let raw = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        // A fresh edge per message and transport: the RFC's messages reuse branches, and a request with the
        // branch, sent-by and method of a live transaction is its retransmission (RFC 3261 17.2.3).
        let edge = server::start(Config::for_tests(data.path())).await.unwrap();
        let udp_to = edge.sip_udp.unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&raw, udp_to).await.unwrap();
        let wait = if *want == Silence {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(3)
        };
        let (got, text) = udp_answer(&sock, wait).await;
        if !want_matches(*want, got) {
            failures.push(format!("{name} over UDP: want {want:?}, got {got:?}\n{text}"));
        }
        if matches!(want, Code(400) | Code(505)) && got == Some(want_code(*want)) && !text.contains("\r\nWarning: 399 ")
        {
            failures.push(format!(
                "{name}: a rejection must carry a Warning naming the fault\n{text}"
            ));
        }

        // TCP, where the message can be framed as written (body length == Content-Length).
        edge.shutdown().await;
        let tcp_got = if frames_on_a_stream(&raw) {
            let edge = server::start(Config::for_tests(data.path())).await.unwrap();
            let got = tcp_answer(edge.sip_tcp.unwrap(), &raw, *want).await;
            edge.shutdown().await;
            if !want_matches(*want, got) {
                failures.push(format!("{name} over TCP: want {want:?}, got {got:?}"));
            }
            fmt_answer(got)
        } else {
            "n/a (not framable)".into()
        };
        let rsip_ok = rsip::SipMessage::try_from(raw.as_slice()).is_ok();
        table.push_str(&format!(
            "| `{name}` | {why} | {} | {} | {tcp_got} | {} |\n",
            fmt_want(*want),
            fmt_answer(got),
            if rsip_ok { "yes" } else { "no" }
        ));
    }
    println!("{table}");
    let rsip_valid = CASES
        .iter()
        .filter(|(n, _, _)| n.starts_with("valid/"))
        .filter(|(n, _, _)| {
            rsip::SipMessage::try_from(std::fs::read(dir.join(format!("{n}.dat"))).unwrap().as_slice()).is_ok()
        })
        .count();
    println!("rsip 0.4 parses {rsip_valid} of 13 valid messages");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn want_code(w: Want) -> u16 {
    match w {
        Code(c) => c,
        Silence => 0,
    }
}

fn fmt_want(w: Want) -> String {
    match w {
        Code(c) => c.to_string(),
        Silence => "silence".into(),
    }
}

fn fmt_answer(a: Option<u16>) -> String {
    a.map_or("silence".into(), |c| c.to_string())
}

async fn tcp_answer(to: std::net::SocketAddr, raw: &[u8], want: Want) -> Option<u16> {
    let mut s = TcpStream::connect(to).await.ok()?;
    s.write_all(raw).await.ok()?;
    let wait = if want == Silence {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut acc = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // Look for a complete final response in what arrived so far.
        let text = String::from_utf8_lossy(&acc).into_owned();
        for part in text.split("\r\n\r\n") {
            let p = part.trim_start();
            if let Some(c) = status_of(p.as_bytes()) {
                if c >= 200 {
                    return Some(c);
                }
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => acc.extend_from_slice(&buf[..n]),
        }
    }
}
