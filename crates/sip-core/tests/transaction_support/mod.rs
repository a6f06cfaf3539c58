//! Shared helpers for the transaction-layer tests: raw SIP text builders and a fake clock.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::message::{Message, Transport};
use sip_core::transaction::{Peer, TransactionLayer, Transmit, TxEvent};

pub const CALL_ID: &str = "a84b4c76e66710@pc33.example.com";

pub fn peer(transport: Transport) -> Peer {
    let addr: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    Peer {
        addr,
        transport,
        conn: match transport {
            Transport::Udp => None,
            _ => Some(7),
        },
    }
}

pub fn udp() -> Peer {
    peer(Transport::Udp)
}

pub fn tcp() -> Peer {
    peer(Transport::Tcp)
}

/// `;branch=x`, or nothing for an empty branch (RFC 2543 clients may send none).
fn branch_param(branch: &str) -> String {
    if branch.is_empty() {
        String::new()
    } else {
        format!(";branch={branch}")
    }
}

/// Raw request text. `cseq_method` defaults to `method`.
pub fn request_text(method: &str, branch: &str, cseq: u32, to_tag: Option<&str>, host: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let branch = branch_param(branch);
    format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {host}:5060{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>{to_tag}\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@{host}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub fn request(method: &str, branch: &str, cseq: u32) -> Message {
    parse(request_text(method, branch, cseq, None, "pc33.example.com"))
}

pub fn request_with(method: &str, branch: &str, cseq: u32, to_tag: Option<&str>) -> Message {
    parse(request_text(method, branch, cseq, to_tag, "pc33.example.com"))
}

/// Raw response text for a request with the given branch/CSeq.
pub fn response_text(code: u16, reason: &str, branch: &str, cseq: u32, method: &str, to_tag: Option<&str>) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let branch = branch_param(branch);
    format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP pc33.example.com:5060{branch};received=192.0.2.10\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>{to_tag}\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub fn response(code: u16, branch: &str, cseq: u32, method: &str, to_tag: Option<&str>) -> Message {
    parse(response_text(code, "Reason", branch, cseq, method, to_tag))
}

pub fn response_bytes(code: u16, branch: &str, method: &str, to_tag: Option<&str>) -> Bytes {
    Bytes::from(response_text(code, "Reason", branch, 1, method, to_tag))
}

/// A response to hand to `TransactionLayer::respond` (CSeq 1).
pub fn response_msg(code: u16, branch: &str, method: &str, to_tag: Option<&str>) -> Message {
    parse(response_text(code, "Reason", branch, 1, method, to_tag))
}

pub fn parse(text: String) -> Message {
    Message::parse(Bytes::from(text)).expect("test message parses")
}

pub fn drain(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

pub fn events(layer: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// Status code of a transmitted response (first line).
pub fn status_line(t: &Transmit) -> String {
    let text = std::str::from_utf8(&t.bytes).unwrap();
    text.lines().next().unwrap().to_string()
}

/// What happened at one instant of the fake clock.
#[derive(Debug, Default)]
pub struct Tick {
    pub at: Duration,
    pub transmits: Vec<Transmit>,
    pub events: Vec<TxEvent>,
}

/// Fake clock: jumps from deadline to deadline (as reported by `poll_timeout`) until `until`
/// after `base`, firing timers, and records what each firing produced.
pub fn run_until(layer: &mut TransactionLayer, base: Instant, until: Duration) -> Vec<Tick> {
    let mut ticks = Vec::new();
    let mut guard = 0;
    while let Some(deadline) = layer.poll_timeout() {
        if deadline > base + until {
            break;
        }
        guard += 1;
        assert!(guard < 10_000, "timer loop does not converge");
        layer.handle_timeout(deadline);
        let tick = Tick {
            at: deadline - base,
            transmits: drain(layer),
            events: events(layer),
        };
        if !tick.transmits.is_empty() || !tick.events.is_empty() {
            ticks.push(tick);
        }
    }
    ticks
}

/// Instants (offsets from base) at which transmits happened, one entry per transmit.
pub fn transmit_times(ticks: &[Tick]) -> Vec<Duration> {
    ticks
        .iter()
        .flat_map(|t| t.transmits.iter().map(move |_| t.at))
        .collect()
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
