//! Parse a ~1 KB carrier INVITE with SDP and touch every typed view: sip-core vs rsip.
//! Run: cargo bench --bench parse -- --warm-up-time 1 --measurement-time 5

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use rsip::prelude::*;

const INVITE: &[u8] = include_bytes!("../crates/sip-core/tests/data/bench_invite.sip");

/// Our parser plus every typed view of the contract.
#[inline(never)]
fn ours(buf: Bytes) -> usize {
    let m = sip_core::Message::parse(buf).expect("bench INVITE parses");
    let mut n = 0;
    n += m.request_uri().map(|u| u.host().map_or(0, str::len)).unwrap_or(0);
    for v in m.vias().expect("vias") {
        n += v.host.len() + usize::from(v.port.unwrap_or(0)) + v.branch().map_or(0, str::len);
        n += usize::from(v.rport().is_some()) + v.received().map_or(0, str::len);
    }
    n += m.top_via().map(|v| usize::from(v.has_magic_cookie())).unwrap_or(0);
    let from = m.from().expect("from");
    n += from.tag().map_or(0, str::len) + from.display_name.map_or(0, |d| d.len());
    n += m.to().expect("to").uri.user().map_or(0, |u| u.len());
    n += m.call_id().expect("call-id").len();
    n += m.cseq().expect("cseq").seq as usize;
    n += m.max_forwards().expect("mf").unwrap_or(0) as usize;
    n += m.content_length().expect("cl").unwrap_or(0);
    n += m.content_type().map_or(0, str::len);
    n += m.contacts().expect("contact").len();
    n += m.routes().expect("route").len();
    n += m.record_routes().expect("rr").len();
    n += m.require().len() + m.proxy_require().len() + m.supported().len() + m.allow().len();
    n += usize::from(m.www_authenticate().expect("www").is_some());
    n += usize::from(m.authorization().expect("auth").is_some());
    n += usize::from(m.proxy_authenticate().expect("pa").is_some());
    n += usize::from(m.proxy_authorization().expect("pz").is_some());
    n + m.body().len()
}

/// rsip: parse plus the equivalent typed headers.
fn theirs(buf: &[u8]) -> usize {
    let msg = rsip::SipMessage::try_from(buf).expect("rsip parses");
    let mut n = 0;
    if let rsip::SipMessage::Request(r) = &msg {
        n += r.uri.host_with_port.to_string().len();
    }
    for h in msg.headers().iter() {
        match h {
            rsip::Header::Via(v) => {
                let t = v.typed().expect("via");
                n += t.branch().map_or(0, |b| b.to_string().len());
            }
            rsip::Header::ContentLength(c) => n += c.length().expect("cl") as usize,
            rsip::Header::ContentType(c) => n += c.typed().map(|_| 1).unwrap_or(0),
            rsip::Header::RecordRoute(r) => n += r.typed().map(|t| t.uris().len()).unwrap_or(0),
            rsip::Header::Allow(a) => n += a.typed().map(|t| t.0.len()).unwrap_or(0),
            rsip::Header::Supported(s) => n += s.value().split(',').count(),
            _ => {}
        }
    }
    let from = msg.from_header().expect("from").typed().expect("from typed");
    n += from.tag().map_or(0, |t| t.value().len());
    n += msg.to_header().expect("to").typed().map(|_| 1).unwrap_or(0);
    n += msg.call_id_header().expect("cid").value().len();
    n += msg.cseq_header().expect("cseq").typed().expect("cseq typed").seq as usize;
    n += msg.max_forwards_header().expect("mf").num().expect("mf num") as usize;
    n += msg.contact_header().expect("contact").typed().map(|_| 1).unwrap_or(0);
    n + msg.body().len()
}

fn bench(c: &mut Criterion) {
    let bytes = Bytes::from_static(INVITE);
    assert_eq!(ours(bytes.clone()), ours(bytes.clone()));
    let mut g = c.benchmark_group("parse_invite_all_views");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sip_core", |b| b.iter(|| ours(black_box(bytes.clone()))));
    g.bench_function("sip_core_parse_only", |b| {
        b.iter(|| sip_core::Message::parse(black_box(bytes.clone())).map(|m| m.header_count()))
    });
    g.bench_function("rsip", |b| b.iter(|| theirs(black_box(INVITE))));
    g.finish();
}

criterion_group!(benches, bench);

/// `PARSE_LOOP=N` runs parse + every view N times and exits, for instruction counts that do not
/// depend on the load of the box: `PARSE_LOOP=1000 valgrind --tool=callgrind <bench binary>` and
/// the same with 2000; the difference over 1000 is instructions per message (`PARSE_ONLY=1`:
/// parse alone). Otherwise the criterion benchmarks run as usual.
fn main() {
    if let Some(n) = std::env::var("PARSE_LOOP").ok().and_then(|v| v.parse::<usize>().ok()) {
        let bytes = Bytes::from_static(INVITE);
        let parse_only = std::env::var_os("PARSE_ONLY").is_some();
        let mut acc = 0;
        for _ in 0..n {
            acc += if parse_only {
                sip_core::Message::parse(black_box(bytes.clone())).map_or(0, |m| m.header_count())
            } else {
                ours(black_box(bytes.clone()))
            };
        }
        println!("{acc}");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
