//! Building the messages of the two legs of a bridged call. The carrier leg (A) and the agent leg (B) are
//! separate dialogs (RFC 3261 12): new Call-ID, tags and CSeq space on B, the caller's identity kept.

use std::borrow::Cow;

use bytes::Bytes;
use sip_core::build::ResponseBuilder;
use sip_core::message::{HeaderName, Message, Method, ParseError, Transport};

use crate::sip::endpoint::{ALLOW, SUPPORTED};

/// One side of a dialog as this edge holds it: enough to send it requests and recognise its own.
#[derive(Debug, Clone)]
pub struct DialogSide {
    /// Transport word of our Via toward this side (`UDP`, `TCP`).
    pub transport: &'static str,
    pub call_id: String,
    /// Our From/To value toward this side (with our tag): From in requests we send.
    pub local: String,
    /// The peer's From/To value (with its tag): To in requests we send.
    pub remote: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route set in the order requests carry it.
    pub route_set: Vec<String>,
    pub local_cseq: u32,
}

/// Our address as written in Via and Contact.
#[derive(Debug, Clone)]
pub struct Local {
    /// `host:port` for Via sent-by.
    pub sent_by: String,
    /// `<sip:edge@host:port>`
    pub contact: String,
    pub server_name: String,
    /// `host:port` of the TLS listener (`sip.tls`), for Via and Contact on legs over TLS: a peer that has
    /// to reconnect, or that takes our Contact as where to send, must reach the TLS port.
    pub tls_sent_by: Option<String>,
}

impl Local {
    /// Our Contact on a leg over `transport`: `;transport=` named for every transport but UDP (the default
    /// of a `sip:` URI, RFC 3261 19.1.1), so that the peer sends its ACK, re-INVITEs and BYE back over the
    /// transport the leg uses (a TCP-only peer, or a firewall open for TCP alone, would lose them).
    pub fn contact_for(&self, transport: Transport) -> Cow<'_, str> {
        if let (Transport::Tls, Some(tls)) = (transport, &self.tls_sent_by) {
            return Cow::Owned(format!("<sip:edge@{tls};transport=tls>"));
        }
        match uri_transport(transport) {
            None => Cow::Borrowed(&self.contact),
            Some(t) => Cow::Owned(match self.contact.strip_suffix('>') {
                Some(uri) => format!("{uri};transport={t}>"),
                None => format!("<{};transport={t}>", self.contact),
            }),
        }
    }

    /// Our Contact on an answer to `req`: the transport its top Via names, which is the one it came over
    /// and the one the answer goes back on (RFC 3261 18.2.2).
    /// A request whose Request-URI is `sips:` (over TLS) gets a `sips:` Contact (RFC 3261 8.1.1.8, 12.1.1).
    pub fn contact_answering(&self, req: &Message) -> Cow<'_, str> {
        let transport = req.top_via().map_or(Transport::Udp, |v| v.transport);
        self.contact_on(transport, req.request_uri_raw().unwrap_or(""))
    }

    /// Our Contact on a leg over `transport` toward `target` (the Request-URI the peer used, or the
    /// peer's Contact we send to): `sips:` when the target is, else [`contact_for`](Self::contact_for).
    pub fn contact_on(&self, transport: Transport, target: &str) -> Cow<'_, str> {
        let sips = target.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        if transport == Transport::Tls && sips {
            return Cow::Owned(format!("<sips:edge@{}>", self.sent_by_for(transport)));
        }
        self.contact_for(transport)
    }

    /// Via sent-by on a leg over `transport`: the TLS listener's for TLS, else the SIP address's.
    pub fn sent_by_for(&self, transport: Transport) -> &str {
        match (transport, &self.tls_sent_by) {
            (Transport::Tls, Some(tls)) => tls,
            _ => &self.sent_by,
        }
    }
}

/// The `transport=` URI parameter for a leg over `t`; `None` for UDP, the default.
pub fn uri_transport(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Tcp => Some("tcp"),
        Transport::Tls => Some("tls"),
        _ => None,
    }
}

/// Option tags that hold across the edge in a `Supported` it passes on: its own ([`SUPPORTED`]) and
/// session timers (RFC 4028), whose headers and refreshes call control relays end to end, so `timer` is
/// true exactly when the peer on the other leg said it. Anything else the peer supports (`100rel`,
/// `replaces`, ...) the edge does not, and does not claim.
const PASSED_THROUGH: &[&str] = &["timer"];

/// The `Supported` value to send on behalf of `msg`'s sender (possibly empty: no extension).
pub fn supported_across(msg: &Message) -> String {
    msg.supported()
        .into_iter()
        .filter(|t| {
            SUPPORTED
                .iter()
                .chain(PASSED_THROUGH)
                .any(|s| s.eq_ignore_ascii_case(t))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Via transport word for requests sent over `t`.
pub fn via_transport(t: sip_core::message::Transport) -> &'static str {
    match t {
        sip_core::message::Transport::Tcp => "TCP",
        sip_core::message::Transport::Tls => "TLS",
        _ => "UDP",
    }
}

/// A new call record id: `call_` + the time in milliseconds (11 hex digits) + a random `token`. Ids of calls
/// taken one after the other sort together, so the store appends to its primary-key index instead of
/// writing a page at a random place of it per call (with random ids each call record dirtied its own
/// index page: a 4 KiB WAL frame written and checksummed per call on SQLite).
pub fn call_record_id(now_ms: i64, token: &str) -> String {
    let t = u64::try_from(now_ms).unwrap_or(0) & 0xfff_ffff_ffff;
    format!("call_{t:011x}{token}")
}

/// Headers carried from the carrier's INVITE to the agent: their own `X-` headers (Twilio's
/// `X-Twilio-CallSid`, Telnyx's `X-call_leg_id`, ...), never ours, bounded in count and size.
pub fn passthrough_headers(invite: &Message) -> impl Iterator<Item = (&str, &str)> {
    const OURS: &[u8] = b"x-oneinbox-";
    invite
        .fields()
        .filter(|(_, name, _)| {
            let n = name.as_bytes();
            n.len() > 2
                && n[..2].eq_ignore_ascii_case(b"x-")
                && !(n.len() >= OURS.len() && n[..OURS.len()].eq_ignore_ascii_case(OURS))
        })
        .filter(|(_, _, v)| v.len() <= 512)
        .take(32)
        .map(|(_, n, v)| (n, v))
}

/// Headers worth relaying on in-dialog requests and their answers (session timers, content, reason).
/// `Supported` is written by [`supported_across`], which keeps only what holds across the edge.
const RELAYED: &[HeaderName] = &[
    HeaderName::ContentType,
    HeaderName::SessionExpires,
    HeaderName::MinSE,
    HeaderName::Require,
    HeaderName::Reason,
    HeaderName::Event,
];

fn relayed_headers(msg: &Message) -> Vec<(String, String)> {
    msg.fields()
        .filter(|(n, raw, _)| {
            n.as_ref()
                .is_some_and(|n| RELAYED.contains(n) && *n != HeaderName::ContentType)
                // A NOTIFY's subscription state (a carrier's transfer progress, relayed to the agent).
                || raw.eq_ignore_ascii_case("Subscription-State")
        })
        .map(|(_, raw, v)| (raw.to_owned(), v.to_owned()))
        .collect()
}

/// An in-dialog request toward `side`, mirroring `orig` (method, body, session-timer headers); `body`
/// is an SDP that replaces `orig`'s (an empty one drops it).
pub fn in_dialog_request(
    side: &mut DialogSide,
    local: &Local,
    method: &Method,
    orig: Option<&Message>,
    extra: &[(&str, &str)],
    body: Option<Bytes>,
    branch: &str,
) -> Result<Message, ParseError> {
    let body = body.map(|b| ("application/sdp", b));
    in_dialog_request_with(side, local, method, orig, extra, body, branch)
}

/// [`in_dialog_request`] with a body of any type (a NOTIFY's `message/sipfrag`).
pub fn in_dialog_request_with(
    side: &mut DialogSide,
    local: &Local,
    method: &Method,
    orig: Option<&Message>,
    extra: &[(&str, &str)],
    body: Option<(&str, Bytes)>,
    branch: &str,
) -> Result<Message, ParseError> {
    side.local_cseq = side.local_cseq.wrapping_add(1).max(1);
    let transport = Transport::from_token(side.transport);
    let via = format!(
        "SIP/2.0/{} {};branch={branch};rport",
        side.transport,
        local.sent_by_for(transport)
    );
    let cseq = format!("{} {}", side.local_cseq, method.as_str());
    let contact = local.contact_on(transport, &side.remote_target);
    let mut b = sip_core::build::RequestBuilder::new(method.clone(), &side.remote_target)
        .header("Via", &via)
        .header("From", &side.local)
        .header("To", &side.remote)
        .header("Call-ID", &side.call_id)
        .header("CSeq", &cseq)
        .header("Contact", &contact)
        .header_unless_empty("User-Agent", &local.server_name);
    for r in &side.route_set {
        b = b.header("Route", r);
    }
    let relayed = orig.map(relayed_headers).unwrap_or_default();
    for (n, v) in &relayed {
        b = b.header(n, v);
    }
    let supported = orig.map(supported_across).unwrap_or_default();
    b = b.header_unless_empty("Supported", &supported);
    for (n, v) in extra {
        b = b.header(n, v);
    }
    match body {
        Some((ct, bytes)) if !bytes.is_empty() => b = b.body(ct, bytes),
        Some(_) => {}
        None => {
            if let Some(m) = orig.filter(|m| !m.body().is_empty()) {
                b = b.body(m.content_type().unwrap_or("application/sdp"), m.body_bytes());
            }
        }
    }
    b.build_message()
}

/// ACK for a 2xx on `side` (a new transaction of its own, RFC 3261 13.2.2.4), same CSeq number as the INVITE.
pub fn ack_2xx(side: &DialogSide, local: &Local, invite_cseq: u32, branch: &str) -> Bytes {
    let via = format!(
        "SIP/2.0/{} {};branch={branch};rport",
        side.transport,
        local.sent_by_for(Transport::from_token(side.transport))
    );
    let cseq = format!("{invite_cseq} ACK");
    let mut b = sip_core::build::RequestBuilder::new(Method::Ack, &side.remote_target)
        .header("Via", &via)
        .header("From", &side.local)
        .header("To", &side.remote)
        .header("Call-ID", &side.call_id)
        .header("CSeq", &cseq);
    for r in &side.route_set {
        b = b.header("Route", r);
    }
    b.build()
}

/// A response to `req` relaying `from`'s status, reason and body; our tag and Contact on it (with the
/// transport `req` came over), and on 18x/2xx the methods we allow and the extensions that hold across
/// the edge (RFC 3261 13.3.1.4). `body` replaces `from`'s body (the media anchor's rewritten SDP); an
/// empty one drops it.
pub fn relay_response(
    req: &Message,
    from: &Message,
    tag: &str,
    local: &Local,
    body: Option<Bytes>,
) -> Result<Message, ParseError> {
    let code = from.status().unwrap_or(500);
    let reason = from.reason().unwrap_or("");
    let relayed = relayed_headers(from);
    let contact = local.contact_answering(req);
    let supported = supported_across(from);
    let mut b = ResponseBuilder::for_request(req, code, reason)
        .to_tag(tag)
        .header_unless_empty("Server", &local.server_name);
    if code < 300 {
        b = b.header("Contact", &contact);
    }
    if code > 100 && code < 300 {
        b = b.header("Allow", ALLOW).header("Supported", &supported);
    } else {
        b = b.header_unless_empty("Supported", &supported);
    }
    for (n, v) in &relayed {
        b = b.header(n, v);
    }
    match body {
        Some(sdp) if !sdp.is_empty() => b = b.body("application/sdp", sdp),
        Some(_) => {}
        None if !from.body().is_empty() => {
            b = b.body(from.content_type().unwrap_or("application/sdp"), from.body_bytes());
        }
        None => {}
    }
    b.build_message()
}

/// Route set from a response's Record-Route, reversed for the UAC side (RFC 3261 12.1.2).
pub fn uac_route_set(resp: &Message) -> Vec<String> {
    let mut v: Vec<String> = resp.headers(&HeaderName::RecordRoute).flat_map(split_list).collect();
    v.reverse();
    v
}

/// Route set from a request's Record-Route, in order for the UAS side (RFC 3261 12.1.1).
pub fn uas_route_set(req: &Message) -> Vec<String> {
    req.headers(&HeaderName::RecordRoute).flat_map(split_list).collect()
}

/// The first Contact URI of a message, as `<uri>` text usable as a Request-URI.
pub fn contact_uri(msg: &Message) -> Option<String> {
    let c = msg.contacts().ok()?;
    let first = c.first()?;
    Some(first.uri_raw.to_owned())
}

/// Splits a comma list of name-addrs, not inside `<>` or quotes.
fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let b = v.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                out.push(v[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = v[start..].trim();
    if !last.is_empty() {
        out.push(last.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_commas_inside_brackets() {
        assert_eq!(
            split_list("<sip:a;lr>, \"x, y\" <sip:b>,<sip:c?h=1,2>"),
            vec!["<sip:a;lr>", "\"x, y\" <sip:b>", "<sip:c?h=1,2>"]
        );
    }

    #[test]
    fn call_record_ids_are_valid_unique_and_sort_by_time() {
        let t = sip_core::build::new_token;
        let a = call_record_id(1_796_164_196_972, &t());
        let b = call_record_id(1_796_164_196_972, &t());
        let later = call_record_id(1_796_164_196_973, &t());
        assert!(edge_store::IdKind::Call.is_valid(&a), "{a}");
        assert_ne!(a, b);
        assert!(a[..16] < later[..16], "{a} {later}");
        assert!(call_record_id(0, &t()).starts_with("call_00000000000"));
        assert!(edge_store::IdKind::Call.is_valid(&call_record_id(-5, &t())));
    }

    #[test]
    fn tls_legs_name_the_tls_port_and_sips_when_the_peer_used_it() {
        let local = Local {
            sent_by: "198.51.100.7:5060".into(),
            contact: "<sip:edge@198.51.100.7:5060>".into(),
            server_name: String::new(),
            tls_sent_by: Some("198.51.100.7:5061".into()),
        };
        assert_eq!(local.contact_for(Transport::Udp), "<sip:edge@198.51.100.7:5060>");
        assert_eq!(
            local.contact_for(Transport::Tcp),
            "<sip:edge@198.51.100.7:5060;transport=tcp>"
        );
        assert_eq!(
            local.contact_for(Transport::Tls),
            "<sip:edge@198.51.100.7:5061;transport=tls>"
        );
        assert_eq!(local.sent_by_for(Transport::Tls), "198.51.100.7:5061");
        assert_eq!(local.sent_by_for(Transport::Tcp), "198.51.100.7:5060");
        assert_eq!(
            local.contact_on(Transport::Tls, "SIPS:+15551234567@edge.example"),
            "<sips:edge@198.51.100.7:5061>"
        );
        assert_eq!(
            local.contact_on(Transport::Tls, "sip:+15551234567@edge.example"),
            "<sip:edge@198.51.100.7:5061;transport=tls>"
        );
        assert_eq!(via_transport(Transport::Tls), "TLS");
    }
}
