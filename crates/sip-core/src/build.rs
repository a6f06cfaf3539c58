//! Serializing new messages straight into `BytesMut` (no `format!` on the hot path).
//!
//! Caller-supplied text (reasons, header values, URIs) has CR and LF replaced by spaces so
//! nothing handed to a builder can inject an extra header line.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::headers::id;
use crate::headers::lex::ListIter;
use crate::headers::Via;
use crate::message::{Message, Method, ParseError};

/// A byte our own parser refuses in a header or start line (RFC 3261 25.1 allows HTAB, nothing else below
/// 0x20, nor DEL): the builders never send one, whatever text a caller echoes.
fn is_unsendable(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

/// Writes `s` with CR, LF and other control bytes neutralised (a space each).
fn put_clean(out: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    if !b.iter().any(|&c| is_unsendable(c)) {
        out.put_slice(b);
    } else {
        out.extend(b.iter().map(|&c| if is_unsendable(c) { b' ' } else { c }));
    }
}

/// A `Warning` header value (RFC 3261 20.43): code 399, our warn-agent and `text` as a safe quoted-string.
pub fn warning(warn_agent: &str, text: &str) -> String {
    format!("399 {warn_agent} \"{}\"", warn_text(text))
}

/// `text` made fit for a warn-text quoted-string: quotes and backslashes become `'`, control characters
/// spaces, at most 200 characters (a Warning explains; it never echoes a whole attacker's header).
pub fn warn_text(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// The buffer a builder writes, and where each header line starts: enough to index the message as it
/// is written ([`Message`] without parsing it back).
struct Writer {
    out: BytesMut,
    lines: Vec<u32>,
}

impl Writer {
    fn with_capacity(n: usize) -> Self {
        Writer {
            out: BytesMut::with_capacity(n),
            lines: Vec::with_capacity(16),
        }
    }

    /// Starts a header line: `name: `; the caller writes the value, then [`Self::end_line`].
    fn begin(&mut self, name: &str) {
        // Messages are capped far below 4 GiB (MAX_MESSAGE_SIZE); a longer one is refused in `message`.
        self.lines.push(u32::try_from(self.out.len()).unwrap_or(u32::MAX));
        put_clean(&mut self.out, name);
        self.out.put_slice(b": ");
    }

    fn end_line(&mut self) {
        self.out.put_slice(b"\r\n");
    }

    fn header(&mut self, name: &str, value: &str) {
        self.begin(name);
        put_clean(&mut self.out, value);
        self.end_line();
    }

    /// Content-Type (with a body), Content-Length, the blank line and the body; returns where the body starts.
    fn finish_head(&mut self, body: &Option<(&str, Bytes)>) -> usize {
        if let Some((ct, _)) = body {
            self.header("Content-Type", ct);
        }
        self.begin("Content-Length");
        put_u64(&mut self.out, body.as_ref().map_or(0, |(_, b)| b.len() as u64));
        self.out.put_slice(b"\r\n\r\n");
        let body_start = self.out.len();
        if let Some((_, b)) = body {
            self.out.put_slice(b);
        }
        body_start
    }

    fn into_bytes(self) -> Bytes {
        self.out.freeze()
    }

    /// The message as a value, indexed from what was written (the full parser runs only if something
    /// unexpected was written, and then gives its error).
    fn into_message(self, body_start: usize) -> Result<Message, ParseError> {
        crate::message::from_built(self.out.freeze(), &self.lines, body_start)
    }
}

fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&tmp[i..]);
}

fn put_ip(out: &mut BytesMut, ip: IpAddr) {
    use std::fmt::Write;
    // Writing into BytesMut cannot fail.
    let _ = write!(out, "{ip}");
}

/// Builds a response to a request (RFC 3261 8.2.6): copies Via (all, in order), From, To,
/// Call-ID and CSeq from the request.
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    req: &'a Message,
    code: u16,
    reason: &'a str,
    source: Option<SocketAddr>,
    to_tag: Option<&'a str>,
    record_route: bool,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, Bytes)>,
}

impl<'a> ResponseBuilder<'a> {
    /// `code` should be 100-699 (the caller's choice is written as given).
    pub fn for_request(req: &'a Message, code: u16, reason: &'a str) -> Self {
        ResponseBuilder {
            req,
            code,
            reason,
            source: None,
            to_tag: None,
            record_route: false,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Packet source: adds `received` (RFC 3261 18.2.1) and fills `rport` (RFC 3581).
    pub fn received_from(mut self, addr: SocketAddr) -> Self {
        self.source = Some(addr);
        self
    }

    /// Tag added to To when the request's To has none and `code > 100`.
    pub fn to_tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// Copies the request's Record-Route headers (dialog-creating responses, RFC 3261 12.1.1).
    pub fn copy_record_route(mut self) -> Self {
        self.record_route = true;
        self
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// [`Self::header`] unless `value` is empty (a Server or User-Agent the operator turned off).
    pub fn header_unless_empty(self, name: &'a str, value: &'a str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.header(name, value)
        }
    }

    pub fn body(mut self, content_type: &'a str, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    /// Serializes; Content-Length is always set.
    pub fn build(self) -> Bytes {
        self.write().0.into_bytes()
    }

    /// The response as a [`Message`], for [`TransactionLayer::respond`](crate::transaction::TransactionLayer::respond):
    /// the same bytes as [`Self::build`], indexed as they are written instead of parsed back. An error
    /// only when the result would not pass our own parser (e.g. a status outside 100-699, a header name
    /// that is not a token, more than 64 KiB).
    pub fn build_message(self) -> Result<Message, ParseError> {
        let (w, body_start) = self.write();
        w.into_message(body_start)
    }

    fn write(self) -> (Writer, usize) {
        let req = self.req;
        let extra: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut w = Writer::with_capacity(
            256 + req.bytes().len().min(2048) + extra + self.body.as_ref().map_or(0, |(_, b)| b.len()),
        );
        let out = &mut w.out;
        out.put_slice(b"SIP/2.0 ");
        put_u64(out, u64::from(self.code));
        out.put_u8(b' ');
        put_clean(out, self.reason);
        out.put_slice(b"\r\n");

        let mut first = true;
        for v in req.values(id::VIA) {
            for item in ListIter::new(v) {
                if item.is_empty() {
                    continue;
                }
                w.begin("Via");
                match (first, self.source) {
                    (true, Some(src)) => put_top_via(&mut w.out, item, src),
                    _ => put_clean(&mut w.out, item),
                }
                w.end_line();
                first = false;
            }
        }
        if self.record_route {
            for v in req.values(id::RECORD_ROUTE) {
                w.header("Record-Route", v);
            }
        }
        for v in req.values(id::FROM) {
            w.header("From", v);
        }
        for v in req.values(id::TO) {
            w.begin("To");
            put_clean(&mut w.out, v);
            if let Some(tag) = self.to_tag {
                let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
                if self.code > 100 && !has_tag {
                    w.out.put_slice(b";tag=");
                    put_clean(&mut w.out, tag);
                }
            }
            w.end_line();
        }
        for v in req.values(id::CALL_ID) {
            w.header("Call-ID", v);
        }
        for v in req.values(id::CSEQ) {
            w.header("CSeq", v);
        }
        for (n, v) in &self.headers {
            w.header(n, v);
        }
        let body_start = w.finish_head(&self.body);
        (w, body_start)
    }
}

/// `response` with its top Via given the `received` and `rport` of `source`, the address its request came
/// from (RFC 3261 18.2.1, RFC 3581 4), as [`ResponseBuilder::received_from`] writes them; `None` when
/// there is nothing to add (they are there already, or the request asked for no `rport` and came from the
/// address its Via names). The transaction layer applies it to every response a TU hands it, so a TU
/// that builds responses without the source (call control) still answers as the endpoint does.
pub fn with_received(response: &Message, source: SocketAddr) -> Option<Bytes> {
    let raw = response.top_via_raw().ok()?;
    let via = Via::parse(raw).ok()?;
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_ip = host.parse::<IpAddr>().is_ok_and(|h| h == source.ip());
    let rport_open = via.rport() == Some(None);
    let received_due = via.received().is_none() && (!same_ip || via.rport().is_some());
    if !rport_open && !received_due {
        return None;
    }
    // `raw` is a slice of the message's own buffer: splice the rewritten Via in its place.
    let buf = response.bytes();
    let start = (raw.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(raw.len()).filter(|&e| e <= buf.len())?;
    let mut out = BytesMut::with_capacity(buf.len() + 48);
    out.put_slice(&buf[..start]);
    put_top_via(&mut out, raw, source);
    out.put_slice(&buf[end..]);
    Some(out.freeze())
}

/// Rewrites the top Via with `received`/`rport` from the packet source.
fn put_top_via(out: &mut BytesMut, raw: &str, src: SocketAddr) {
    let Ok(via) = Via::parse(raw) else {
        put_clean(out, raw);
        return;
    };
    let ip = src.ip();
    let rport_requested = via.rport().is_some();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_ip = host.parse::<IpAddr>().is_ok_and(|h| h == ip);
    // RFC 3581 4: with rport, received is always added.
    let add_received = !same_ip || rport_requested;
    let params = via.params.raw();
    let prefix = raw.strip_suffix(params).unwrap_or(raw);
    put_clean(out, prefix.trim_end());
    for (n, v) in via.params.iter() {
        let replaced = (add_received && n.eq_ignore_ascii_case("received"))
            || (rport_requested && n.eq_ignore_ascii_case("rport"));
        if replaced {
            continue;
        }
        out.put_u8(b';');
        put_clean(out, n);
        if let Some(v) = v {
            out.put_u8(b'=');
            put_clean(out, v);
        }
    }
    if add_received {
        out.put_slice(b";received=");
        put_ip(out, ip);
    }
    if rport_requested {
        out.put_slice(b";rport=");
        put_u64(out, u64::from(src.port()));
    }
}

/// Builds a new request.
#[derive(Debug, Clone)]
pub struct RequestBuilder<'a> {
    method: Method,
    uri: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, Bytes)>,
}

impl<'a> RequestBuilder<'a> {
    pub fn new(method: Method, uri: &'a str) -> Self {
        RequestBuilder {
            method,
            uri,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// [`Self::header`] unless `value` is empty (a Server or User-Agent the operator turned off).
    pub fn header_unless_empty(self, name: &'a str, value: &'a str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.header(name, value)
        }
    }

    pub fn body(mut self, content_type: &'a str, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    /// Serializes; adds `Max-Forwards: 70` unless given, and always Content-Length.
    pub fn build(self) -> Bytes {
        self.write().0.into_bytes()
    }

    /// The request as a [`Message`], for [`TransactionLayer::send_request`](crate::transaction::TransactionLayer::send_request):
    /// the bytes of [`Self::build`], indexed as they are written instead of parsed back. An error only
    /// when the result would not pass our own parser (e.g. whitespace in the Request-URI).
    pub fn build_message(self) -> Result<Message, ParseError> {
        let (w, body_start) = self.write();
        w.into_message(body_start)
    }

    fn write(self) -> (Writer, usize) {
        let extra: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut w =
            Writer::with_capacity(128 + self.uri.len() + extra + self.body.as_ref().map_or(0, |(_, b)| b.len()));
        let out = &mut w.out;
        put_clean(out, self.method.as_str());
        out.put_u8(b' ');
        put_clean(out, self.uri);
        out.put_slice(b" SIP/2.0\r\n");
        let mut has_mf = false;
        for (n, v) in &self.headers {
            has_mf |= n.eq_ignore_ascii_case("Max-Forwards");
            w.header(n, v);
        }
        if !has_mf {
            w.header("Max-Forwards", "70");
        }
        let body_start = w.finish_head(&self.body);
        (w, body_start)
    }
}

/// ACK or CANCEL for `invite` (RFC 3261 17.1.1.3, 9.1): the INVITE's Request-URI, top Via, Route set,
/// From, Call-ID and CSeq number; To from `to` (the final response's, with its tag) or the INVITE's.
fn write_in_transaction_request(invite: &Message, method: &str, to: Option<&str>) -> (Writer, usize) {
    let mut w = Writer::with_capacity(512);
    let out = &mut w.out;
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    put_clean(out, invite.request_uri_raw().unwrap_or(""));
    out.put_slice(b" SIP/2.0\r\n");
    if let Ok(v) = invite.top_via_raw() {
        w.header("Via", v);
    }
    for r in invite.values(id::ROUTE) {
        w.header("Route", r);
    }
    if let Some(f) = invite.values(id::FROM).next() {
        w.header("From", f);
    }
    if let Some(t) = to.or_else(|| invite.values(id::TO).next()) {
        w.header("To", t);
    }
    if let Some(c) = invite.values(id::CALL_ID).next() {
        w.header("Call-ID", c);
    }
    w.begin("CSeq");
    put_u64(&mut w.out, invite.cseq().map_or(0, |c| u64::from(c.seq)));
    w.out.put_u8(b' ');
    w.out.put_slice(method.as_bytes());
    w.end_line();
    w.header("Max-Forwards", "70");
    let body_start = w.finish_head(&None);
    (w, body_start)
}

/// ACK for a non-2xx final response (RFC 3261 17.1.1.3): same Request-URI, top Via, Route,
/// From, Call-ID and CSeq number as the INVITE; To from the response (with its tag).
pub fn ack_for_non2xx(invite: &Message, response: &Message) -> Bytes {
    write_in_transaction_request(invite, "ACK", response.values(id::TO).next())
        .0
        .into_bytes()
}

/// CANCEL for a pending INVITE (RFC 3261 9.1): same Request-URI, top Via, Route, From, To,
/// Call-ID and CSeq number.
pub fn cancel_for(invite: &Message) -> Bytes {
    write_in_transaction_request(invite, "CANCEL", None).0.into_bytes()
}

/// [`cancel_for`] as a [`Message`], ready for [`TransactionLayer::send_request`](crate::transaction::TransactionLayer::send_request)
/// without parsing it back. An error only when the INVITE's Request-URI is unusable.
pub fn cancel_message_for(invite: &Message) -> Result<Message, ParseError> {
    let (w, body_start) = write_in_transaction_request(invite, "CANCEL", None);
    w.into_message(body_start)
}

/// A new RFC 3261 branch: magic cookie + 16 hex digits of a CSPRNG (64 random bits).
///
/// Branches, tags and Call-IDs are what an outsider would have to guess to answer one of our
/// transactions or to speak inside one of our dialogs, so they are random, not counters
/// (RFC 3261 19.3 asks for "cryptographically random" tags with at least 32 bits).
pub fn new_branch() -> String {
    branch_of(random_u64())
}

/// 16 hex digits (64 random bits) from the same CSPRNG as [`new_branch`]: for tags and Call-IDs.
pub fn new_token() -> String {
    token_of(random_u64())
}

/// A branch (magic cookie + 16 hex digits) from 64 bits the caller drew: for a sans-IO core that is
/// handed its randomness (a seeded source in tests), not one that reads the thread's generator.
pub fn branch_of(bits: u64) -> String {
    let mut s = String::with_capacity(23);
    s.push_str(crate::headers::via::MAGIC_COOKIE);
    push_hex(&mut s, bits);
    s
}

/// A token (16 hex digits) from 64 bits the caller drew; see [`branch_of`].
pub fn token_of(bits: u64) -> String {
    let mut s = String::with_capacity(16);
    push_hex(&mut s, bits);
    s
}

/// 64 bits from the thread's ChaCha12 CSPRNG (`rand::rng()`, seeded and periodically reseeded
/// from the operating system): a getrandom system call per token would cost a syscall per tag on
/// the per-call path.
pub fn random_u64() -> u64 {
    use rand::Rng as _;
    rand::rng().next_u64()
}

fn push_hex(s: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        s.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}
