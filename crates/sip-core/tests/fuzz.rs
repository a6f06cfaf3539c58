//! Deterministic mutation fuzzing: parse, validate and every typed view must never panic on
//! mutated RFC 4475 messages and the benchmark INVITE.

use bytes::Bytes;
use sip_core::framing::StreamFramer;
use sip_core::message::{validate, HeaderName, Message};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\r\n ",
    b" ",
    b":",
    b";",
    b",",
    b"\"",
    b"\\",
    b"<",
    b">",
    b"@",
    b"%",
    b"%4",
    b"[",
    b"]",
    b"=",
    b"/",
    b"\0",
    b"\xff",
    b"SIP/2.0",
    b"Content-Length: 99999999999999999999\r\n",
    b"l: 5\r\n",
    b"v: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK\r\n",
    b"\xc3",
];

fn corpus() -> Vec<Vec<u8>> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let mut out = vec![include_bytes!("data/bench_invite.sip").to_vec()];
    for dir in ["valid", "invalid", "semantic"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}

fn mutate(rng: &mut XorShift, src: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(len + 1)),
            2 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, ins.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(16).min(len - i);
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            _ if len > 1 => {
                // Duplicate a random line somewhere else.
                let a = rng.below(len);
                let b = (a + rng.below(80)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len);
                v.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    v
}

fn exercise(m: &Message) {
    let _ = validate(m);
    let _ = m.request_uri();
    let _ = (m.method(), m.status(), m.reason(), m.request_uri_raw());
    if let Ok(vias) = m.vias() {
        for x in &vias {
            std::hint::black_box((x.branch(), x.rport(), x.received(), x.has_magic_cookie()));
        }
    }
    let _ = m.top_via();
    for na in [m.from(), m.to()].into_iter().flatten() {
        let _ = (na.tag(), na.uri.user(), na.uri.scheme(), na.display_name.clone());
    }
    let _ = (
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.content_length(),
        m.content_type(),
    );
    if let Ok(c) = m.contacts() {
        for n in &c {
            std::hint::black_box(n.uri.user());
        }
    }
    let _ = (m.routes(), m.record_routes(), m.expires());
    let _ = (m.require(), m.proxy_require(), m.supported(), m.allow());
    if let Ok(Some(c)) = m.www_authenticate() {
        let _ = (c.param("realm"), c.param("nonce"));
    }
    if let Ok(Some(c)) = m.authorization() {
        let _ = c.param("response");
    }
    let _ = m.proxy_authenticate();
    let _ = m.proxy_authorization();
    let _ = m.header(&HeaderName::from("X-Whatever"));
    let _ = m.header_entries().count();
    let _ = (m.body(), m.body_bytes());
    if m.is_request() {
        let r = sip_core::build::ResponseBuilder::for_request(m, 400, "Bad Request")
            .received_from("192.0.2.1:5060".parse().unwrap())
            .to_tag("x")
            .build();
        let _ = Message::parse(r);
        let _ = sip_core::build::cancel_for(m);
        let _ = sip_core::build::ack_for_non2xx(m, m);
    }
}

#[test]
fn mutations_never_panic() {
    let corpus = corpus();
    assert!(corpus.len() >= 50);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0usize;
    let rounds = 400;
    for src in &corpus {
        for _ in 0..rounds {
            let input = mutate(&mut rng, src);
            for m in [
                Message::parse(Bytes::from(input.clone())),
                Message::parse_stream(Bytes::from(input.clone())),
            ]
            .into_iter()
            .flatten()
            {
                parsed += 1;
                exercise(&m);
            }
            let mut f = StreamFramer::new(4096);
            let step = 1 + rng.below(64);
            for chunk in input.chunks(step) {
                f.push(chunk);
                while let Ok(Some(_)) = f.next() {}
            }
        }
    }
    // Mutations must not be so destructive that nothing parses (the test would prove nothing).
    assert!(parsed > corpus.len() * rounds / 10, "only {parsed} parsed");
}
