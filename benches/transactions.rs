//! Throughput of the sans-IO transaction layer (no sockets, no parsing in the loop).
//!
//! One iteration = a realistic mix of 8 messages through the layer, all over UDP so the
//! retransmission/wait timers are live:
//! - non-INVITE server: OPTIONS in -> 200 out (Timer J later drains it)           2 msgs
//! - INVITE server: INVITE in -> 100 out (auto) -> 200 out -> 2xx ACK in (Timer L)  4 msgs
//! - non-INVITE client: OPTIONS out -> 200 in (Timer K)                             2 msgs
//!
//! A virtual clock advances 10 ms per iteration and `handle_timeout` runs every iteration,
//! so timers fire and transactions terminate continuously (~10k live transactions).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sip_core::message::{Message, Transport};
use sip_core::transaction::{Incoming, Peer, TimerConfig, TransactionLayer};

/// Distinct branches per flow; reused only after POOL * STEP = 41 s > 64*T1 (32 s).
const POOL: usize = 4096;
const STEP: Duration = Duration::from_millis(10);

fn req(method: &str, branch: &str) -> Message {
    let text = format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         Call-ID: {branch}@atlanta.example.com\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:alice@198.51.100.7>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).expect("bench request parses")
}

fn ack(branch: &str, call: &str) -> Message {
    let text = format!(
        "ACK sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>;tag=srv\r\n\
         Call-ID: {call}@atlanta.example.com\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).expect("bench ACK parses")
}

fn resp(code: u16, branch: &str, method: &str) -> Bytes {
    Bytes::from(format!(
        "SIP/2.0 {code} OK\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>;tag=srv\r\n\
         Call-ID: {branch}@atlanta.example.com\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

struct Flows {
    options_in: Vec<Message>,
    invite_in: Vec<Message>,
    ack_in: Vec<Message>,
    options_out: Vec<Message>,
    ok_in: Vec<Message>,
    ok_options: Bytes,
    ok_invite: Bytes,
}

fn flows() -> Flows {
    let mut f = Flows {
        options_in: Vec::with_capacity(POOL),
        invite_in: Vec::with_capacity(POOL),
        ack_in: Vec::with_capacity(POOL),
        options_out: Vec::with_capacity(POOL),
        ok_in: Vec::with_capacity(POOL),
        ok_options: resp(200, "z9hG4bKsrv", "OPTIONS"),
        ok_invite: resp(200, "z9hG4bKsrv", "INVITE"),
    };
    for i in 0..POOL {
        f.options_in.push(req("OPTIONS", &format!("z9hG4bKso{i}")));
        let inv = format!("z9hG4bKsi{i}");
        f.invite_in.push(req("INVITE", &inv));
        f.ack_in.push(ack(&format!("z9hG4bKsa{i}"), &inv));
        let cb = format!("z9hG4bKco{i}");
        f.options_out.push(req("OPTIONS", &cb));
        f.ok_in
            .push(Message::parse(resp(200, &cb, "OPTIONS")).expect("bench response parses"));
    }
    f
}

fn bench(c: &mut Criterion) {
    let f = flows();
    let peer = Peer {
        addr: SocketAddr::from(([198, 51, 100, 7], 5060)),
        transport: Transport::Udp,
        conn: None,
    };
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let mut now = Instant::now();
    let mut i = 0usize;
    let mut g = c.benchmark_group("transactions");
    g.throughput(Throughput::Elements(8));
    g.bench_function("mixed_udp_8_msgs", |b| {
        b.iter(|| {
            let n = i % POOL;
            i += 1;
            now += STEP;
            // non-INVITE server
            if let Incoming::NewRequest { key, .. } = layer.handle_incoming(now, peer, f.options_in[n].clone()) {
                let _ = layer.respond_bytes(now, &key, f.ok_options.clone());
            }
            // INVITE server (100 Trying sent automatically)
            if let Incoming::NewRequest { key, .. } = layer.handle_incoming(now, peer, f.invite_in[n].clone()) {
                let _ = layer.respond_bytes(now, &key, f.ok_invite.clone());
            }
            black_box(layer.handle_incoming(now, peer, f.ack_in[n].clone()));
            // non-INVITE client
            let _ = layer.send_request(now, peer, f.options_out[n].clone());
            black_box(layer.handle_incoming(now, peer, f.ok_in[n].clone()));
            layer.handle_timeout(now);
            while let Some(t) = layer.poll_transmit() {
                black_box(t);
            }
            while let Some(e) = layer.poll_event() {
                black_box(e);
            }
        })
    });
    g.finish();
    eprintln!("live transactions at end: {}", layer.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
