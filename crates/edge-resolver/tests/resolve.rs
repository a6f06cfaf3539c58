//! RFC 3263 resolution against a tiny authoritative DNS responder on 127.0.0.1:<random>.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_resolver::{DeadTargets, ResolveError, Resolver, ResolverConfig, Target, TargetList, Transport};
use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

type Zone = HashMap<String, Vec<Record>>;
type QueryLog = Arc<Mutex<Vec<(String, RecordType)>>>;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), 60, RData::A(A(Ipv4Addr::from(ip))))
}

fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        60,
        RData::SRV(SRV::new(priority, weight, port, name(target))),
    )
}

fn naptr(owner: &str, order: u16, pref: u16, services: &str, repl: &str) -> Record {
    Record::from_rdata(
        name(owner),
        60,
        RData::NAPTR(NAPTR::new(
            order,
            pref,
            b"s".to_vec().into_boxed_slice(),
            services.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(repl),
        )),
    )
}

/// The test zone. Names absent from it answer NXDOMAIN; present names without the asked
/// type answer NOERROR with no records.
fn zone() -> Zone {
    let recs = vec![
        // NAPTR: TCP preferred (order 10) over UDP (20); SCTP (order 5) is unsupported.
        naptr("naptr.test.", 5, 10, "SIP+D2S", "_sip._sctp.naptr.test."),
        naptr("naptr.test.", 20, 10, "SIP+D2U", "_sip._udp.naptr.test."),
        naptr("naptr.test.", 10, 10, "SIP+D2T", "_sip._tcp.naptr.test."),
        naptr("naptr.test.", 30, 10, "SIPS+D2T", "_sips._tcp.naptr.test."),
        srv("_sip._tcp.naptr.test.", 10, 0, 5070, "tcp1.naptr.test."),
        srv("_sip._udp.naptr.test.", 10, 0, 5080, "udp1.naptr.test."),
        srv("_sips._tcp.naptr.test.", 10, 0, 5061, "tls1.naptr.test."),
        srv("_sip._sctp.naptr.test.", 10, 0, 5090, "sctp1.naptr.test."),
        a("tcp1.naptr.test.", [10, 0, 0, 1]),
        a("udp1.naptr.test.", [10, 0, 0, 2]),
        a("tls1.naptr.test.", [10, 0, 0, 3]),
        a("sctp1.naptr.test.", [10, 0, 0, 4]),
        // SRV without NAPTR: priority 10 split 90/10 by weight, priority 20 last.
        a("srv.test.", [10, 1, 0, 9]),
        srv("_sip._udp.srv.test.", 20, 50, 5062, "c.srv.test."),
        srv("_sip._udp.srv.test.", 10, 10, 5060, "light.srv.test."),
        srv("_sip._udp.srv.test.", 10, 90, 5060, "heavy.srv.test."),
        a("heavy.srv.test.", [10, 1, 0, 1]),
        a("light.srv.test.", [10, 1, 0, 2]),
        a("c.srv.test.", [10, 1, 0, 3]),
        // Only an address.
        a("plain.test.", [10, 2, 0, 1]),
        // SRV whose first target does not exist and whose "." target means "not here".
        a("partial.test.", [10, 3, 0, 9]),
        srv("_sip._udp.partial.test.", 10, 0, 5060, "gone.partial.test."),
        srv("_sip._udp.partial.test.", 15, 0, 5060, "."),
        srv("_sip._udp.partial.test.", 20, 0, 5070, "ok.partial.test."),
        a("ok.partial.test.", [10, 3, 0, 1]),
        // Dual stack: IPv4 is tried first.
        Record::from_rdata(name("dual.test."), 60, RData::AAAA(AAAA("fd00::1".parse().unwrap()))),
        a("dual.test.", [10, 4, 0, 1]),
    ];
    let mut z: Zone = HashMap::new();
    for r in recs {
        z.entry(r.name.to_ascii().to_ascii_lowercase()).or_default().push(r);
    }
    z
}

/// Spawns the responder; returns its address and the log of questions it was asked.
async fn dns_server(zone: Zone) -> (SocketAddr, QueryLog) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let log: QueryLog = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.metadata.authoritative = true;
            if let Some(q) = req.queries.first() {
                let qname = q.name.to_ascii().to_ascii_lowercase();
                log2.lock().unwrap().push((qname.clone(), q.query_type));
                resp.add_query(q.clone());
                match zone.get(&qname) {
                    None => resp.metadata.response_code = ResponseCode::NXDomain,
                    Some(recs) => {
                        for r in recs.iter().filter(|r| r.record_type() == q.query_type) {
                            resp.add_answer(r.clone());
                        }
                    }
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = sock.send_to(&bytes, peer).await;
            }
        }
    });
    (addr, log)
}

async fn setup() -> (Resolver, QueryLog) {
    let (addr, log) = dns_server(zone()).await;
    let r = Resolver::new(ResolverConfig {
        nameservers: Some(vec![addr]),
        timeout: Duration::from_millis(500),
    })
    .unwrap();
    (r, log)
}

fn t(ip: [u8; 4], port: u16, transport: Transport) -> Target {
    Target {
        addr: SocketAddr::new(IpAddr::from(ip), port),
        transport,
    }
}

#[tokio::test]
async fn naptr_selects_transports_in_order() {
    let (r, _) = setup().await;
    let got = r.resolve("naptr.test", None, None, false).await.unwrap();
    assert_eq!(
        got,
        vec![
            t([10, 0, 0, 1], 5070, Transport::Tcp),
            t([10, 0, 0, 2], 5080, Transport::Udp),
            t([10, 0, 0, 3], 5061, Transport::Tls),
        ]
    );
    // sips: only the SIPS+D2T rule.
    let got = r.resolve("naptr.test", None, None, true).await.unwrap();
    assert_eq!(got, vec![t([10, 0, 0, 3], 5061, Transport::Tls)]);
    // A fixed transport skips NAPTR and asks the matching SRV name directly.
    let got = r
        .resolve("naptr.test", None, Some(Transport::Udp), false)
        .await
        .unwrap();
    assert_eq!(got, vec![t([10, 0, 0, 2], 5080, Transport::Udp)]);
}

#[tokio::test]
async fn srv_priority_is_strict_and_weights_bias_order() {
    let (r, _) = setup().await;
    let heavy = t([10, 1, 0, 1], 5060, Transport::Udp);
    let light = t([10, 1, 0, 2], 5060, Transport::Udp);
    let last = t([10, 1, 0, 3], 5062, Transport::Udp);
    let runs = 400;
    let mut heavy_first = 0;
    for _ in 0..runs {
        let got = r.resolve("srv.test", None, None, false).await.unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2], last, "priority 20 must come after priority 10");
        assert!(got[..2].contains(&heavy) && got[..2].contains(&light));
        if got[0] == heavy {
            heavy_first += 1;
        }
    }
    // Weight 90 vs 10: expect ~90 % heavy first; bounds wide enough never to flake.
    let share = f64::from(heavy_first) / f64::from(runs);
    assert!((0.8..0.97).contains(&share), "heavy first in {share} of runs");
}

#[tokio::test]
async fn no_srv_falls_back_to_a_on_default_port() {
    let (r, log) = setup().await;
    let got = r.resolve("plain.test", None, None, false).await.unwrap();
    assert_eq!(got, vec![t([10, 2, 0, 1], 5060, Transport::Udp)]);
    let asked: Vec<_> = log.lock().unwrap().iter().map(|(_, ty)| *ty).collect();
    assert!(asked.contains(&RecordType::NAPTR) && asked.contains(&RecordType::SRV));
    let got = r.resolve("plain.test", None, None, true).await.unwrap();
    assert_eq!(got, vec![t([10, 2, 0, 1], 5061, Transport::Tls)]);
}

#[tokio::test]
async fn explicit_port_skips_naptr_and_srv() {
    let (r, log) = setup().await;
    let got = r
        .resolve("srv.test", Some(5090), Some(Transport::Tcp), false)
        .await
        .unwrap();
    assert_eq!(got, vec![t([10, 1, 0, 9], 5090, Transport::Tcp)]);
    let got = r.resolve("srv.test", Some(5091), None, false).await.unwrap();
    assert_eq!(got, vec![t([10, 1, 0, 9], 5091, Transport::Udp)]);
    let asked = log.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|(_, ty)| matches!(ty, RecordType::A | RecordType::AAAA)),
        "{asked:?}"
    );
}

#[tokio::test]
async fn ip_literals_are_used_as_is() {
    let (r, log) = setup().await;
    assert_eq!(
        r.resolve("192.0.2.7", None, None, false).await.unwrap(),
        vec![t([192, 0, 2, 7], 5060, Transport::Udp)]
    );
    let v6 = r
        .resolve("[2001:db8::1]", Some(5070), Some(Transport::Tcp), false)
        .await
        .unwrap();
    assert_eq!(
        v6,
        vec![Target {
            addr: "[2001:db8::1]:5070".parse().unwrap(),
            transport: Transport::Tcp
        }]
    );
    assert_eq!(
        r.resolve("192.0.2.7", None, None, true).await.unwrap(),
        vec![t([192, 0, 2, 7], 5061, Transport::Tls)]
    );
    assert!(log.lock().unwrap().is_empty(), "IP literals need no DNS");
}

#[tokio::test]
async fn nxdomain_and_invalid_names_are_errors() {
    let (r, _) = setup().await;
    assert!(matches!(
        r.resolve("missing.test", None, None, false).await,
        Err(ResolveError::NxDomain(_))
    ));
    assert!(matches!(
        r.resolve("missing.test", Some(5060), None, false).await,
        Err(ResolveError::NxDomain(_))
    ));
    assert!(matches!(
        r.resolve("bad name", None, None, false).await,
        Err(ResolveError::InvalidHost(_))
    ));
    assert!(matches!(
        r.resolve("", None, None, false).await,
        Err(ResolveError::InvalidHost(_))
    ));
}

#[tokio::test]
async fn unreachable_dns_times_out_within_bound() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = Resolver::new(ResolverConfig {
        nameservers: Some(vec![silent.local_addr().unwrap()]),
        timeout: Duration::from_millis(100),
    })
    .unwrap();
    let start = Instant::now();
    let res = r.resolve("plain.test", None, None, false).await;
    assert!(res.is_err(), "{res:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
}

#[tokio::test]
async fn target_list_fails_over_past_dead_target() {
    let (r, _) = setup().await;
    let targets = r.resolve("naptr.test", None, None, false).await.unwrap();
    let dead = DeadTargets::new(Duration::from_secs(30));
    let now = Instant::now();

    // Call 1: first target times out; the caller marks it and moves on.
    let mut list = TargetList::new(targets.clone(), dead.clone());
    let first = list.next_target_at(now).unwrap();
    assert_eq!(first, targets[0]);
    list.mark_failed_at(first.addr, now);
    assert_eq!(list.next_target_at(now), Some(targets[1]));

    // Call 2, 10 s later: the dead target is skipped up front, then offered last.
    let later = now + Duration::from_secs(10);
    let mut list = TargetList::new(targets.clone(), dead.clone());
    assert_eq!(list.next_target_at(later), Some(targets[1]));
    assert_eq!(list.next_target_at(later), Some(targets[2]));
    assert_eq!(list.next_target_at(later), Some(targets[0]), "last resort");
    assert_eq!(list.next_target_at(later), None);

    // After 30 s it is forgiven.
    let much_later = now + Duration::from_secs(31);
    let mut list = TargetList::new(targets.clone(), dead);
    assert_eq!(list.next_target_at(much_later), Some(targets[0]));
}

#[tokio::test]
async fn srv_target_without_address_is_skipped() {
    let (r, _) = setup().await;
    let got = r.resolve("partial.test", None, None, false).await.unwrap();
    assert_eq!(got, vec![t([10, 3, 0, 1], 5070, Transport::Udp)]);
}

/// The edge shares one resolver across call tasks: it must be `Send + Sync` and its futures
/// spawnable.
#[tokio::test]
async fn shared_across_tasks() {
    let (r, _) = setup().await;
    let r = Arc::new(r);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.resolve("plain.test", None, None, false).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap(),
            vec![t([10, 2, 0, 1], 5060, Transport::Udp)]
        );
    }
}

#[tokio::test]
async fn dual_stack_lists_ipv4_then_ipv6() {
    let (r, _) = setup().await;
    let got = r.resolve("dual.test", None, None, false).await.unwrap();
    let want = vec![
        t([10, 4, 0, 1], 5060, Transport::Udp),
        Target {
            addr: "[fd00::1]:5060".parse().unwrap(),
            transport: Transport::Udp,
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn construction_needs_no_runtime_and_checks_config() {
    let r = Resolver::new(ResolverConfig {
        nameservers: Some(vec!["127.0.0.1:53".parse().unwrap()]),
        timeout: Duration::from_secs(1),
    });
    assert!(r.is_ok());
    assert!(matches!(
        Resolver::new(ResolverConfig {
            nameservers: Some(vec![]),
            timeout: Duration::from_secs(1),
        }),
        Err(ResolveError::Config(_))
    ));
}
