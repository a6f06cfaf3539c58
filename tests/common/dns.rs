//! A tiny authoritative DNS responder on loopback for trunk hosts: SRV and A records the test chooses.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record};
use tokio::net::UdpSocket;

pub fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(Name::from_ascii(owner).unwrap(), 60, RData::A(A(Ipv4Addr::from(ip))))
}

pub fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        Name::from_ascii(owner).unwrap(),
        60,
        RData::SRV(SRV::new(priority, weight, port, Name::from_ascii(target).unwrap())),
    )
}

/// Serves `records`; names absent answer NXDOMAIN, present names without the asked type answer empty.
pub async fn serve(records: Vec<Record>) -> SocketAddr {
    let mut zone: HashMap<String, Vec<Record>> = HashMap::new();
    for r in records {
        zone.entry(r.name.to_ascii().to_ascii_lowercase()).or_default().push(r);
    }
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
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
    addr
}
