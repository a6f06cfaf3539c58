//! Old (`sdp-types` parse/edit/serialise) vs new (single-pass) SDP rewrite on a typical carrier offer.
//!
//! `cargo bench -p edge-media --bench sdp`
//!
//! With `SDP_BENCH_LOOP=old|new:N` it only runs N rewrites and exits, for instruction counts that
//! other builds on the machine cannot disturb (callgrind at two N, take the difference).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, Criterion};

#[path = "../tests/support/sdp_oracle.rs"]
mod oracle;

// PCMU, PCMA, telephone-event: what most trunks send.
const CARRIER_OFFER: &[u8] = b"v=0\r\n\
o=root 1819914217 1819914217 IN IP4 54.172.60.1\r\n\
s=Twilio Media Gateway\r\n\
c=IN IP4 54.172.60.1\r\n\
t=0 0\r\n\
m=audio 18642 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const EDGE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn rewrite(c: &mut Criterion) {
    let allowed = vec!["PCMU".to_string(), "PCMA".to_string()];
    let mut group = c.benchmark_group("rewrite_sdp");
    group.bench_function("old", |b| {
        b.iter(|| oracle::rewrite_sdp(black_box(CARRIER_OFFER), EDGE, 30000, None))
    });
    group.bench_function("new", |b| {
        b.iter(|| edge_media::rewrite_sdp(black_box(CARRIER_OFFER), EDGE, 30000, None))
    });
    group.bench_function("old_allow_list", |b| {
        b.iter(|| oracle::rewrite_sdp(black_box(CARRIER_OFFER), EDGE, 30000, Some(&allowed)))
    });
    group.bench_function("new_allow_list", |b| {
        b.iter(|| edge_media::rewrite_sdp(black_box(CARRIER_OFFER), EDGE, 30000, Some(&allowed)))
    });
    group.finish();
}

criterion_group!(benches, rewrite);

fn main() {
    if let Some((which, n)) = std::env::var("SDP_BENCH_LOOP")
        .ok()
        .as_deref()
        .and_then(|v| v.split_once(':'))
    {
        let n: usize = n.parse().unwrap_or(0);
        for _ in 0..n {
            let r = match which {
                "old" => oracle::rewrite_sdp(black_box(CARRIER_OFFER), EDGE, 30000, None),
                _ => edge_media::rewrite_sdp(black_box(CARRIER_OFFER), EDGE, 30000, None),
            };
            black_box(r).ok();
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
