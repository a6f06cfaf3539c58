//! Call control driven without sockets or sleeps: the transaction layer, a fake media plane and a clock
//! that moves when the test says so.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_store::{
    AgentRecord, AgentStatus, CallRecord, CallStatus, HangupBy, InboundRoute, NumberRoute, NumberSource, Provider,
    Route, RoutingIndex,
};
use sip_core::build::ResponseBuilder;
use sip_core::message::{Message, Method, Transport};
use sip_core::transaction::{Incoming, Peer, TransactionLayer, TxConfig};

use super::leg::Local;
use super::media::fake::FakeMedia;
use super::{CallConfig, CallController, CallMedia, Ctx, Persist};
use crate::config::Config;
use crate::sip::endpoint::{SourcePolicy, Transmit};

const CONFIG: &str = r#"
[sip]
udp = "203.0.113.1:5060"
[media]
enabled = false
[[carriers]]
name = "carrier"
allow = ["192.0.2.0/24"]
"#;
const WALL_MS: i64 = 1_796_164_196_972;
const DID: &str = "+14155550100";

struct Policy;
impl SourcePolicy for Policy {
    fn carrier_for(&self, source: SocketAddr) -> Option<Arc<str>> {
        (source.ip() == IpAddr::from([192, 0, 2, 10])).then(|| Arc::from("carrier"))
    }
    fn agent_network_for(&self, _: SocketAddr) -> Option<Arc<str>> {
        None
    }
    fn reject_unknown(&self) -> bool {
        true
    }
    fn digest_offered_to(&self, _: SocketAddr) -> bool {
        false
    }
}

/// The context of one event: the rig's time, and its transaction layer and send queue (not its controller).
macro_rules! ctx {
    ($rig:expr) => {
        Ctx {
            now: $rig.now,
            wall_ms: WALL_MS + $rig.now.duration_since($rig.start).as_millis() as i64,
            tx: &mut $rig.tx,
            out: &mut $rig.out,
        }
    };
}

/// The controller, its transaction layer and send queue, and the time.
struct Rig {
    ctl: CallController,
    tx: TransactionLayer,
    out: VecDeque<Transmit>,
    start: Instant,
    now: Instant,
    ring: Duration,
}

fn udp(addr: &str) -> Peer {
    Peer {
        addr: addr.parse().unwrap(),
        transport: Transport::Udp,
        conn: None,
    }
}

impl Rig {
    fn new(agent_status: AgentStatus, media: Option<Box<dyn CallMedia>>) -> Rig {
        let cfg = Config::parse(Path::new("<test>"), CONFIG).unwrap();
        let agent = AgentRecord {
            id: "ag_1".into(),
            account_id: "acct".into(),
            name: "ag_1".into(),
            sip_uri: "sip:agent@198.51.100.20:5060".into(),
            max_concurrent_calls: 2,
            voicemail_message: None,
            status: agent_status,
            sip_username: None,
            sip_password: None,
            media_encryption: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let number = NumberRoute {
            number_id: "num_1".into(),
            account_id: "acct".into(),
            phone_number: DID.into(),
            agent_id: "ag_1".into(),
            inbound_routing: Some(InboundRoute {
                agent_id: "ag_1".into(),
                fallback_agent_id: None,
                voicemail_message: Some("Leave a message".into()),
                transfer: Default::default(),
            }),
            provider: Provider::Twilio,
            source: NumberSource::Byo,
            provider_config: None,
        };
        let index = Arc::new(RoutingIndex::from_entries(vec![agent], vec![number]));
        let sent_by = "203.0.113.1:5060".to_string();
        let call_cfg = CallConfig {
            agent_setup_timeout: cfg.agent_setup_timeout,
            agent_ring_timeout: cfg.agent_ring_timeout,
            default_country_code: cfg.default_country_code.clone(),
            local: Arc::new(Local {
                contact: format!("<sip:edge@{sent_by}>"),
                sent_by,
                server_name: String::new(),
                tls_sent_by: None,
            }),
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            warn_agent: "203.0.113.1".into(),
            outbound: cfg.outbound.clone(),
            targets: Default::default(),
            node: Arc::from(cfg.node_id.as_str()),
            tls: Default::default(),
        };
        Rig {
            ctl: CallController::new(
                call_cfg,
                index,
                media,
                crate::shard::CallShard::single(Duration::from_secs(3)),
            ),
            tx: TransactionLayer::new(TxConfig::default()),
            out: VecDeque::new(),
            start: Instant::now(),
            now: Instant::now(),
            ring: cfg.agent_ring_timeout,
        }
    }

    /// A request from `from` through the transaction layer; its new server transaction.
    fn request(&mut self, from: Peer, text: String) -> (sip_core::transaction::TxKey, Message) {
        match self
            .tx
            .handle_incoming(self.now, from, Message::parse(Bytes::from(text)).unwrap())
        {
            Incoming::NewRequest { key, msg } => (key, msg),
            _ => panic!("not a new request"),
        }
    }

    /// Everything the transaction layer and the controller want sent, parsed.
    fn sent(&mut self) -> Vec<Message> {
        let mut v: Vec<Message> = self.out.drain(..).map(|t| Message::parse(t.bytes).unwrap()).collect();
        while let Some(t) = self.tx.poll_transmit() {
            v.push(Message::parse(t.bytes).unwrap());
        }
        v
    }

    /// The last call record the controller produced.
    fn last_record(&mut self) -> CallRecord {
        let mut last = None;
        while let Some(p) = self.ctl.poll_record() {
            if let Persist::Call(r) = p {
                last = Some(r);
            }
        }
        last.expect("a call record")
    }
}

fn invite() -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:{DID}@203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+14155559999@192.0.2.10>;tag=carrier1\r\nTo: <sip:{DID}@203.0.113.1>\r\n\
         Call-ID: a-leg-1\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@192.0.2.10:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

#[test]
fn a_disabled_agent_sends_the_call_to_voicemail_and_bye_releases_everything() {
    let media = FakeMedia::default();
    let mut rig = Rig::new(AgentStatus::Disabled, Some(Box::new(media.clone())));
    let carrier = udp("192.0.2.10:5060");
    let (key, msg) = rig.request(carrier, invite());
    let mut ctx = ctx!(rig);
    rig.ctl
        .on_invite(&mut ctx, key, msg, carrier, "carrier")
        .expect("taken");
    let answer = rig
        .sent()
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("voicemail answers 200");
    assert!(
        answer.body().ends_with(b"a=voicemail:Leave a message\r\n"),
        "the number's greeting plays"
    );
    assert_eq!(
        media.relays.load(Ordering::Relaxed),
        0,
        "the relay is let go: the edge is the media peer"
    );
    assert_eq!(rig.ctl.pending_voicemails(), 1);
    let our_tag = answer
        .to()
        .ok()
        .and_then(|t| t.tag().map(str::to_owned))
        .expect("our tag on the answer");
    let bye = format!(
        "BYE sip:edge@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+14155559999@192.0.2.10>;tag=carrier1\r\n\
         To: <sip:{DID}@203.0.113.1>;tag={our_tag}\r\nCall-ID: a-leg-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let (key, msg) = rig.request(carrier, bye);
    let source = carrier.addr;
    let mut ctx = ctx!(rig);
    assert!(rig.ctl.on_in_dialog(&mut ctx, key, msg, source, &Policy));
    assert!(
        rig.sent().iter().any(|m| m.status() == Some(200)),
        "the BYE is answered"
    );
    assert_eq!(media.recordings.load(Ordering::Relaxed), 0, "the recording is stopped");
    let r = rig.last_record();
    assert_eq!(r.status, CallStatus::Completed);
    assert_eq!(r.hangup_by, Some(HangupBy::Caller));
    assert_eq!(r.answered_by, Some(Route::Voicemail));
    let hops: Vec<(&str, Option<u16>)> = r.hops.iter().map(|h| (h.outcome.as_str(), h.sip_status)).collect();
    assert_eq!(
        hops,
        vec![("unavailable: agent disabled", None), ("answered", Some(200))]
    );
    assert_eq!(
        r.created_at_ms / 1000,
        WALL_MS / 1000,
        "stamped with the wall clock passed in"
    );
    assert_eq!(rig.ctl.active(), 0);
}

#[test]
fn the_ring_time_out_runs_on_the_test_clock_and_a_chain_of_time_outs_is_no_answer() {
    let mut rig = Rig::new(AgentStatus::Active, None);
    let carrier = udp("192.0.2.10:5060");
    let agent = udp("198.51.100.20:5060");
    let (key, msg) = rig.request(carrier, invite());
    let mut ctx = ctx!(rig);
    rig.ctl
        .on_invite(&mut ctx, key, msg, carrier, "carrier")
        .expect("taken");
    let agent_invite = rig
        .sent()
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("the agent is rung");
    assert_eq!(rig.ctl.agent_load("ag_1"), 1);
    let ringing = ResponseBuilder::for_request(&agent_invite, 180, "Ringing")
        .to_tag("agent1")
        .build();
    let now = rig.now;
    let Incoming::Response { key, msg } = rig.tx.handle_incoming(now, agent, Message::parse(ringing).unwrap()) else {
        panic!("the 180 matches the agent INVITE");
    };
    let mut ctx = ctx!(rig);
    rig.ctl.on_response(&mut ctx, &key, msg);
    assert!(rig.sent().iter().any(|m| m.status() == Some(180)), "ringing is relayed");
    // The ring time-out, without waiting for it.
    rig.now += rig.ring + Duration::from_millis(1);
    assert!(rig.ctl.poll_timeout().is_some_and(|t| t <= rig.now));
    let mut ctx = ctx!(rig);
    rig.ctl.handle_timeout(&mut ctx);
    let sent = rig.sent();
    assert!(
        sent.iter().any(|m| m.method() == Some(&Method::Cancel)),
        "the ringing agent is cancelled"
    );
    assert!(
        sent.iter().any(|m| m.status() == Some(503)),
        "no voicemail without media: 503"
    );
    let r = rig.last_record();
    assert_eq!(r.status, CallStatus::NoAnswer);
    assert_eq!(
        r.hops[0].outcome,
        format!("timeout: no answer within {} s", rig.ring.as_secs())
    );
    assert_eq!(rig.ctl.agent_load("ag_1"), 0, "the agent is free again");
}

/// The voicemail of a caller whose From user is a name, not a number, is stored under that name, as the
/// call record shows it; a From with no user at all is `anonymous`. The edge's 200 says what it allows and
/// supports, with its Contact, and the record keeps the 200 as its SIP status.
#[test]
fn a_voicemails_caller_is_the_from_user_as_given() {
    for (from, caller) in [
        ("\"Front Desk\" <sip:reception@192.0.2.10>", "reception"),
        ("<sip:192.0.2.10>", "anonymous"),
        ("<sip:+14155559999@192.0.2.10>", "+14155559999"),
    ] {
        let media = FakeMedia::default();
        let mut rig = Rig::new(AgentStatus::Disabled, Some(Box::new(media.clone())));
        let carrier = udp("192.0.2.10:5060");
        let text = invite().replace("From: <sip:+14155559999@192.0.2.10>", &format!("From: {from}"));
        let (key, msg) = rig.request(carrier, text);
        let mut ctx = ctx!(rig);
        rig.ctl
            .on_invite(&mut ctx, key, msg, carrier, "carrier")
            .expect("taken");
        let answer = rig
            .sent()
            .into_iter()
            .find(|m| m.status() == Some(200))
            .expect("voicemail answers 200");
        let h = |n: &str| answer.header(&n.into()).map(str::to_owned);
        assert_eq!(h("Allow").as_deref(), Some(crate::sip::endpoint::ALLOW), "{from}");
        assert_eq!(h("Supported").as_deref(), Some(""), "no extension of the edge's own");
        assert_eq!(h("Contact").as_deref(), Some("<sip:edge@203.0.113.1:5060>"));
        // A live call's record is queued 20 ms after it changes.
        rig.now += Duration::from_millis(50);
        let mut ctx = ctx!(rig);
        rig.ctl.handle_timeout(&mut ctx);
        let record = rig.last_record();
        assert_eq!(record.from, caller, "{from}");
        assert_eq!(record.sip_status, Some(200), "an answered call keeps its 2xx");
        let call_id: Arc<str> = Arc::from(record.id.as_str());
        let mut ctx = ctx!(rig);
        rig.ctl.on_media_event(
            &mut ctx,
            edge_media::MediaEvent::VoicemailEnded {
                call_id,
                outcome: Ok(edge_media::VoicemailOutcome {
                    path: "voicemail/x.wav".into(),
                    duration_ms: 1500,
                    ended_by: edge_media::EndedBy::DtmfHash,
                }),
            },
        );
        let mut stored = None;
        while let Some(p) = rig.ctl.poll_record() {
            if let Persist::Voicemail(v) = p {
                stored = Some(v);
            }
        }
        let vm = stored.expect("a voicemail row");
        assert_eq!(vm.caller, caller, "{from}");
        assert_eq!(vm.ended_by, "dtmf-hash");
    }
}
