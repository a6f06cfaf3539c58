//! The bytes peers send, without sockets: a carrier's caller (as `tests/common`'s `Carrier`), an agent's
//! UAC placing outbound calls (as `tests/outbound_calls.rs`'s `AgentUac`), and an agent's in-dialog
//! requests. Each returns the message; the test hands it to [`Harness::send`](super::harness::Harness).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use sip_core::build::ResponseBuilder;
use sip_core::message::{HeaderName, Message};

use super::harness::{EDGE, SDP};

static SEQ: AtomicU32 = AtomicU32::new(1);

pub fn uniq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A caller behind a carrier: an INVITE for a DID and the caller's side of its dialog.
#[derive(Debug, Clone)]
pub struct CarrierCall {
    /// The carrier address it sends from.
    pub me: String,
    pub call_id: String,
    pub branch: String,
    pub from_tag: String,
    pub did: String,
    /// To of the 2xx (with the edge's tag) once answered.
    pub remote_to: Option<String>,
    pub cseq: u32,
}

impl CarrierCall {
    pub fn new(me: &str, did: &str) -> CarrierCall {
        let n = uniq();
        CarrierCall {
            me: me.into(),
            call_id: format!("carrier-{n}@192.0.2.10"),
            branch: format!("z9hG4bKcarrier{n}"),
            from_tag: format!("ct{n}"),
            did: did.into(),
            remote_to: None,
            cseq: 1,
        }
    }

    pub fn invite(&self) -> String {
        let me = &self.me;
        format!(
            "INVITE sip:{did}@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: <sip:{did}@{EDGE}>\r\nCall-ID: {c}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:+12125550000@{me}>\r\nX-Twilio-CallSid: CA0123456789abcdef\r\n\
             Content-Type: application/sdp\r\nContent-Length: {l}\r\n\r\n{SDP}",
            did = self.did,
            b = self.branch,
            t = self.from_tag,
            c = self.call_id,
            l = SDP.len()
        )
    }

    /// Remembers the dialog's To from a 2xx to the INVITE.
    pub fn answered(&mut self, ok: &Message) {
        if ok.status().is_some_and(|s| (200..300).contains(&s)) {
            self.remote_to = ok.header(&HeaderName::To).map(str::to_owned);
        }
    }

    /// ACK for `resp`: the INVITE's branch for a non-2xx, a new one for a 2xx.
    pub fn ack(&self, resp: &Message) -> String {
        let me = &self.me;
        let code = resp.status().unwrap_or(0);
        let branch = if code >= 300 {
            self.branch.clone()
        } else {
            format!("z9hG4bKack{}", uniq())
        };
        let to = resp.header(&HeaderName::To).unwrap_or("");
        format!(
            "ACK sip:{did}@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {c}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            did = self.did,
            t = self.from_tag,
            c = self.call_id,
        )
    }

    pub fn cancel(&self) -> String {
        let me = &self.me;
        format!(
            "CANCEL sip:{did}@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: <sip:{did}@{EDGE}>\r\nCall-ID: {c}\r\n\
             CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            did = self.did,
            b = self.branch,
            t = self.from_tag,
            c = self.call_id,
        )
    }

    /// An in-dialog request (BYE, re-INVITE with SDP, INFO) from the caller.
    pub fn in_dialog(&mut self, method: &str, with_sdp: bool) -> String {
        self.cseq += 1;
        let me = &self.me;
        let to = self.remote_to.clone().expect("answered");
        let (ct, body) = if with_sdp {
            ("Content-Type: application/sdp\r\n", SDP)
        } else {
            ("", "")
        };
        format!(
            "{method} sip:edge@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcd{u};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {c}\r\nCSeq: {n} {method}\r\n\
             Contact: <sip:+12125550000@{me}>\r\n{ct}Content-Length: {l}\r\n\r\n{body}",
            u = uniq(),
            t = self.from_tag,
            c = self.call_id,
            n = self.cseq,
            l = body.len()
        )
    }

    /// 200 OK to a request of the edge's (a BYE, a re-INVITE with `body`).
    pub fn ok(&self, req: &Message, body: Option<&str>) -> Bytes {
        ok_from(&self.me, "+12125550000", req, body)
    }
}

/// 200 OK from `me` to `req`, with a Contact and an optional SDP body.
pub fn ok_from(me: &str, user: &str, req: &Message, body: Option<&str>) -> Bytes {
    let contact = format!("<sip:{user}@{me}>");
    let b = ResponseBuilder::for_request(req, 200, "OK").header("Contact", &contact);
    let b = match body {
        Some(sdp) => b.body("application/sdp", Bytes::copy_from_slice(sdp.as_bytes())),
        None => b,
    };
    b.build()
}

/// An agent's request in the dialog of `inv` (the INVITE the edge sent it, answered with To tag `tag`):
/// its BYE or re-INVITE, as `tests/common`'s `Agent::send_in_dialog`.
pub fn agent_in_dialog(me: &str, inv: &Message, tag: &str, method: &str, with_sdp: bool) -> String {
    let contact = inv
        .contacts()
        .ok()
        .and_then(|c| c.first().map(|c| c.uri_raw.to_owned()))
        .expect("the edge's Contact");
    let ack_to = format!("{};tag={tag}", inv.header(&HeaderName::To).unwrap_or("").trim());
    let to = inv.header(&HeaderName::From).unwrap_or("");
    let call_id = inv.call_id().unwrap_or("");
    let (ct, body) = if with_sdp {
        ("Content-Type: application/sdp\r\n", SDP)
    } else {
        ("", "")
    };
    format!(
        "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKag{u};rport\r\nMax-Forwards: 70\r\n\
         From: {ack_to}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 100 {method}\r\nContact: <sip:agent@{me}>\r\n\
         {ct}Content-Length: {l}\r\n\r\n{body}",
        u = uniq(),
        l = body.len()
    )
}

/// An agent's SIP user agent placing a call from `me`.
pub struct AgentUac {
    pub me: String,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
}

impl AgentUac {
    pub fn new(me: &str) -> AgentUac {
        let n = uniq();
        AgentUac {
            me: me.into(),
            call_id: format!("agent-{n}@{me}"),
            from_tag: format!("at{n}"),
            cseq: 1,
        }
    }

    pub fn invite(&self, from: &str, to: &str, extra: &str) -> String {
        let me = &self.me;
        format!(
            "INVITE sip:{to}@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKau{c}{s};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{from}@{me}>;tag={t}\r\nTo: <sip:{to}@{EDGE}>\r\nCall-ID: {cid}\r\nCSeq: {c} INVITE\r\n\
             Contact: <sip:agent@{me}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {l}\r\n\r\n{SDP}",
            c = self.cseq,
            s = self.from_tag,
            t = self.from_tag,
            cid = self.call_id,
            l = SDP.len()
        )
    }

    pub fn ack(&self, resp: &Message, did: &str) -> String {
        let me = &self.me;
        let to = resp.header(&HeaderName::To).unwrap_or("");
        let branch = if resp.status().unwrap_or(0) >= 300 {
            format!("z9hG4bKau{}{}", self.cseq, self.from_tag)
        } else {
            format!("z9hG4bKack{}", self.from_tag)
        };
        format!(
            "ACK sip:edge@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{did}@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {c} ACK\r\nContent-Length: 0\r\n\r\n",
            t = self.from_tag,
            cid = self.call_id,
            c = self.cseq,
        )
    }

    pub fn bye(&self, ok: &Message, did: &str) -> String {
        let me = &self.me;
        let to = ok.header(&HeaderName::To).unwrap_or("");
        format!(
            "BYE sip:edge@{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye{t};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{did}@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {c} BYE\r\nContent-Length: 0\r\n\r\n",
            t = self.from_tag,
            cid = self.call_id,
            c = self.cseq + 1,
        )
    }
}

pub fn header(m: &Message, name: &str) -> Option<String> {
    m.header(&HeaderName::from(name)).map(str::to_owned)
}
