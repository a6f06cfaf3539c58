//! The SIP message: one `Bytes` buffer plus byte ranges for the start line, each header and
//! the body. Nothing is copied at parse time; typed views are parsed on demand and borrow
//! from the buffer, so a proxy that only looks at Via/CSeq pays only for those.

mod error;
mod method;
pub mod validate;

use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;

pub use crate::headers::{CSeq, Challenge, Credentials, HeaderName, NameAddr, Params, Transport, Via};
pub use crate::uri::{SipUri, TelUri, Uri};
pub use error::ParseError;
pub use method::Method;
pub use validate::{validate, validate_request, validate_response};

use crate::headers::lex::{find_any, is_token_char, is_ws, parse_u64, trim_lws, ListIter};
use crate::headers::{id, known_id_in, other_matches, HeaderId, NAMES};

/// `word` characters of Call-ID (RFC 3261 25.1) plus the one `@`.
static CALL_ID_CHARS: [bool; 256] = crate::headers::lex::char_table(b"-.!%*_+`'~()<>:\\\"/[]?{}@");

/// `Message::first` marker for "no header with this id".
const NO_HEADER: u8 = u8::MAX;
/// `Message::end` marker for "scan to the last header" (an end index past 254).
const TO_LAST: u8 = u8::MAX;

/// Largest message accepted (datagram or stream frame).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Most header fields accepted in one message.
pub const MAX_HEADERS: usize = 256;
/// Longest physical line accepted.
pub const MAX_LINE_LEN: usize = 8 * 1024;

/// A byte range into the message buffer (u32 is plenty below `MAX_MESSAGE_SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    // Offsets are bounded by MAX_MESSAGE_SIZE (64 KiB), so the u32 casts cannot truncate.
    #[inline]
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    #[inline]
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: HeaderId,
    name: Span,
    value: Span,
}

#[derive(Debug, Clone)]
enum StartLine {
    Request { method: Method, uri: Span },
    Response { status: u16, reason: Span },
}

/// A parsed SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Bytes,
    /// The start line and headers, UTF-8-validated once so views slice it for free.
    head: ByteString,
    start: StartLine,
    headers: Vec<Entry>,
    /// Where the headers of each id lie, so a view of an absent header costs nothing and a
    /// present one scans only from its first entry to its last: `first` is the index of the
    /// first (`NO_HEADER` when absent), `end` one past the last (`TO_LAST` when above 254).
    /// One byte each keeps `Message` small; an index that does not fit (more than 254
    /// headers before it) is clamped to 254, which only makes the scan start earlier.
    first: [u8; NAMES.len()],
    end: [u8; NAMES.len()],
    /// Content-Length as parse found it (every value was already checked there): the first
    /// value, and whether any later one disagrees. Without a conflict the value is at most the
    /// message size, so u32 holds it; with one it is never read (a value past u32 is `None`).
    content_length: Option<u32>,
    content_length_conflict: bool,
    body: Span,
}

impl Message {
    /// Datagram rules (RFC 3261 18.3): body longer than Content-Length is cut; shorter is
    /// `Err(ParseError::BodyTooShort)`. Missing Content-Length: body = rest of datagram.
    /// Conflicting Content-Length values are tolerated here (the datagram bounds the
    /// message) so a 400 can still be built; `content_length()`/`validate_request` report them.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        parse_impl(buf, false)
    }

    /// Stream rules: the framer already cut the message; Content-Length is required and
    /// conflicting values are an error.
    pub fn parse_stream(buf: Bytes) -> Result<Message, ParseError> {
        parse_impl(buf, true)
    }

    /// The raw message (cut to Content-Length).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Request-URI text as received.
    pub fn request_uri_raw(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// Parsed Request-URI; unknown schemes are `Uri::Other`, not errors.
    pub fn request_uri(&self) -> Result<Uri<'_>, ParseError> {
        let raw = self.request_uri_raw().ok_or(ParseError::NotARequest)?;
        Uri::parse(raw).map_err(|e| match e {
            ParseError::InvalidUri(r) => ParseError::InvalidRequestUri(r),
            other => other,
        })
    }

    /// Response status code.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// Response reason phrase (may be empty).
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of `name` (raw; may contain folded CRLF WS).
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        let want = name.id();
        self.headers
            .iter()
            .find(|h| {
                if want != id::OTHER {
                    h.id == want
                } else {
                    h.id == id::OTHER && other_matches(name.as_str(), self.text(h.name))
                }
            })
            .map(|h| self.text(h.value))
    }

    /// All values of `name`, in order; comma lists are NOT split.
    pub fn headers<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        let want = name.id();
        self.headers
            .iter()
            .filter(move |h| {
                if want != id::OTHER {
                    h.id == want
                } else {
                    h.id == id::OTHER && other_matches(name.as_str(), self.text(h.name))
                }
            })
            .map(move |h| self.text(h.value))
    }

    /// Every header as `(name, name as sent, value)`, in order.
    pub fn header_entries(&self) -> impl Iterator<Item = (HeaderName, &str, &str)> {
        self.headers.iter().map(move |h| {
            let raw = self.text(h.name);
            let name = if h.id == id::OTHER {
                HeaderName::parse(raw.as_bytes())
            } else {
                HeaderName::from_id(h.id)
            };
            (name, raw, self.text(h.value))
        })
    }

    /// Every header field in order as (its name when it is one this crate knows, `None` for extension
    /// headers such as `X-...`; the name as written; the value). Unlike [`Self::header_entries`] it never
    /// allocates, which matters on paths that look at every header of every INVITE.
    pub fn fields(&self) -> impl Iterator<Item = (Option<HeaderName>, &str, &str)> {
        self.headers.iter().map(move |h| {
            let name = (h.id != id::OTHER).then(|| HeaderName::from_id(h.id));
            (name, self.text(h.name), self.text(h.value))
        })
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The body (cut to Content-Length).
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.range()]
    }

    /// The body as a zero-copy `Bytes` slice.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    // ---- typed views ----

    /// All Via values, comma lists split, in order.
    pub fn vias(&self) -> Result<Vec<Via<'_>>, ParseError> {
        let mut out = Vec::with_capacity(4);
        for v in self.values(id::VIA) {
            // Most values hold one Via: parse the whole value first. When that succeeds the value
            // has no top-level comma (no part of the Via grammar outside a quoted string takes
            // one), so it is exactly the one element `ListIter` would yield; otherwise split.
            if let Ok(via) = Via::parse(v) {
                out.push(via);
                continue;
            }
            for item in ListIter::new(v) {
                out.push(Via::parse(item).map_err(|r| ParseError::header("Via", r))?);
            }
        }
        if out.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        Ok(out)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        // A first value that parses whole is its own first element (see `vias`).
        if let Some(Ok(via)) = self.values(id::VIA).next().map(Via::parse) {
            return Ok(via);
        }
        Via::parse(self.top_via_raw()?).map_err(|r| ParseError::header("Via", r))
    }

    /// Raw text of the topmost Via value (first element of the first Via header).
    pub fn top_via_raw(&self) -> Result<&str, ParseError> {
        let v = self.values(id::VIA).next().ok_or(ParseError::MissingHeader("Via"))?;
        ListIter::new(v)
            .next()
            .filter(|s| !s.is_empty())
            .ok_or(ParseError::header("Via", "empty value"))
    }

    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(id::FROM)
    }

    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(id::TO)
    }

    /// Call-ID (`word ["@" word]`, RFC 3261 25.1).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.first(id::CALL_ID)?;
        let (mut chars_ok, mut ats) = (true, 0usize);
        for c in v.bytes() {
            chars_ok &= CALL_ID_CHARS[c as usize];
            ats += usize::from(c == b'@');
        }
        let ok = !v.is_empty() && chars_ok && ats <= 1;
        if !ok {
            return Err(ParseError::header("Call-ID", "invalid characters"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.first(id::CSEQ)?).map_err(|r| ParseError::header("CSeq", r))
    }

    /// Max-Forwards (0-255), `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        let Some(v) = self.values(id::MAX_FORWARDS).next() else {
            return Ok(None);
        };
        match parse_u64(v) {
            Some(n) if n <= 255 => Ok(Some(n as u32)),
            Some(_) => Err(ParseError::header("Max-Forwards", "greater than 255")),
            None => Err(ParseError::header("Max-Forwards", "not a number")),
        }
    }

    /// Content-Length, `None` when absent; conflicting values are an error.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        if self.content_length_conflict {
            return Err(ParseError::ConflictingContentLength);
        }
        Ok(self.content_length.map(|n| n as usize))
    }

    /// Content-Type value (raw).
    pub fn content_type(&self) -> Option<&str> {
        self.values(id::CONTENT_TYPE).next()
    }

    /// Contact values; a `*` Contact yields an empty list (see `contact_is_star`).
    pub fn contacts(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        if self.contact_is_star() {
            return Ok(Vec::new());
        }
        self.name_addr_list(id::CONTACT, "Contact")
    }

    /// True when the (only) Contact is `*` (REGISTER remove-all, RFC 3261 10.2.2).
    pub fn contact_is_star(&self) -> bool {
        let mut it = self.values(id::CONTACT);
        matches!((it.next(), it.next()), (Some("*"), None))
    }

    pub fn routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addr_list(id::ROUTE, "Route")
    }

    pub fn record_routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addr_list(id::RECORD_ROUTE, "Record-Route")
    }

    /// Option tags of Require.
    pub fn require(&self) -> Vec<&str> {
        self.tokens(id::REQUIRE)
    }

    pub fn proxy_require(&self) -> Vec<&str> {
        self.tokens(id::PROXY_REQUIRE)
    }

    pub fn supported(&self) -> Vec<&str> {
        self.tokens(id::SUPPORTED)
    }

    pub fn unsupported(&self) -> Vec<&str> {
        self.tokens(id::UNSUPPORTED)
    }

    /// Methods listed in Allow.
    pub fn allow(&self) -> Vec<&str> {
        self.tokens(id::ALLOW)
    }

    /// Expires header (delta-seconds, 32-bit), `None` when absent.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.values(id::EXPIRES)
            .next()
            .map(|v| {
                parse_u64(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(ParseError::header("Expires", "not a 32-bit number"))
            })
            .transpose()
    }

    pub fn www_authenticate(&self) -> Result<Option<Challenge<'_>>, ParseError> {
        self.values(id::WWW_AUTHENTICATE)
            .next()
            .map(|v| Challenge::parse(v).map_err(|r| ParseError::header("WWW-Authenticate", r)))
            .transpose()
    }

    pub fn proxy_authenticate(&self) -> Result<Option<Challenge<'_>>, ParseError> {
        self.values(id::PROXY_AUTHENTICATE)
            .next()
            .map(|v| Challenge::parse(v).map_err(|r| ParseError::header("Proxy-Authenticate", r)))
            .transpose()
    }

    pub fn authorization(&self) -> Result<Option<Credentials<'_>>, ParseError> {
        self.values(id::AUTHORIZATION)
            .next()
            .map(|v| Credentials::parse(v).map_err(|r| ParseError::header("Authorization", r)))
            .transpose()
    }

    pub fn proxy_authorization(&self) -> Result<Option<Credentials<'_>>, ParseError> {
        self.values(id::PROXY_AUTHORIZATION)
            .next()
            .map(|v| Credentials::parse(v).map_err(|r| ParseError::header("Proxy-Authorization", r)))
            .transpose()
    }

    // ---- internals ----

    /// Text of a span of the head. Every span boundary sits on an ASCII delimiter, so it is
    /// a char boundary and this never falls back to "".
    #[inline]
    fn text(&self, s: Span) -> &str {
        self.head.get(s.range()).unwrap_or("")
    }

    #[inline]
    pub(crate) fn values(&self, want: HeaderId) -> impl Iterator<Item = &str> {
        let range = match (self.first.get(want as usize), self.end.get(want as usize)) {
            (Some(&f), Some(&TO_LAST)) if f != NO_HEADER => usize::from(f)..self.headers.len(),
            (Some(&f), Some(&e)) if f != NO_HEADER => usize::from(f)..usize::from(e),
            _ => 0..0,
        };
        self.headers
            .get(range)
            .unwrap_or(&[])
            .iter()
            .filter(move |h| h.id == want)
            .map(move |h| self.text(h.value))
    }

    pub(crate) fn count(&self, want: HeaderId) -> usize {
        self.headers.iter().filter(|h| h.id == want).count()
    }

    fn first(&self, want: HeaderId) -> Result<&str, ParseError> {
        self.values(want)
            .next()
            .ok_or(ParseError::MissingHeader(NAMES[want as usize]))
    }

    fn name_addr(&self, want: HeaderId) -> Result<NameAddr<'_>, ParseError> {
        let name = NAMES[want as usize];
        NameAddr::parse(self.first(want)?).map_err(|r| ParseError::header(name, r))
    }

    fn name_addr_list(&self, want: HeaderId, name: &'static str) -> Result<Vec<NameAddr<'_>>, ParseError> {
        let mut values = self.values(want).peekable();
        if values.peek().is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(2);
        for v in values {
            // Whole value first, as in `vias`: a name-addr that parses whole has no comma outside
            // a quoted string or `<...>`, so it is the one element `ListIter` would yield.
            if let Ok(na) = NameAddr::parse(v) {
                out.push(na);
                continue;
            }
            for item in ListIter::new(v) {
                out.push(NameAddr::parse(item).map_err(|r| ParseError::header(name, r))?);
            }
        }
        Ok(out)
    }

    fn tokens(&self, want: HeaderId) -> Vec<&str> {
        let mut values = self.values(want).peekable();
        if values.peek().is_none() {
            return Vec::new();
        }
        // Typical option-tag and Allow lists fit: one allocation, no regrowth.
        let mut out = Vec::with_capacity(8);
        for v in values {
            let b = v.as_bytes();
            let first = out.len();
            let mut st = 0;
            let plain = loop {
                // Eight bytes per step to the next separator or quoting character.
                match find_any(b.get(st..).unwrap_or(&[]), [b',', b'"', b'<']).map(|o| st + o) {
                    Some(i) if b[i] == b',' => {
                        push_trimmed(&mut out, v.get(st..i).unwrap_or(""));
                        // The usual single space after a comma: skipped here, the next item
                        // takes `trim_lws`'s no-op path.
                        st = i + 1 + usize::from(b.get(i + 1) == Some(&b' '));
                    }
                    Some(_) => break false,
                    None => break true,
                }
            };
            if plain {
                // No quoted string or `<...>`: every comma separates, exactly as `ListIter`.
                push_trimmed(&mut out, v.get(st..).unwrap_or(""));
            } else {
                out.truncate(first);
                out.extend(ListIter::new(v).filter(|s| !s.is_empty()));
            }
        }
        out
    }
}

/// Pushes `s` LWS-trimmed unless that leaves it empty.
#[inline]
fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let t = trim_lws(s);
    if !t.is_empty() {
        out.push(t);
    }
}

/// `1*DIGIT`, no sign; anything above the message limit is still a number (the body check
/// reports it), but overflow is an error.
fn parse_content_length(v: &[u8]) -> Result<usize, ParseError> {
    let s = std::str::from_utf8(v).map_err(|_| ParseError::InvalidContentLength)?;
    parse_u64(trim_lws(s))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(ParseError::InvalidContentLength)
}

/// Refuses control bytes other than HTAB and CRLF line ends (a bare CR or LF inside a line
/// has already ended it or is refused here). Eight bytes at a time: only words holding a byte
/// below 0x20 (the line ends, mostly) or DEL take the byte-by-byte path.
fn check_controls(b: &[u8], place: &'static str) -> Result<(), ParseError> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // A byte < 0x20 (the classic "has less than" trick), or a byte equal to 0x7f.
        let below = x.wrapping_sub(LOW * 0x20) & !x & HIGH;
        let del = (x ^ (LOW * 0x7f)).wrapping_sub(LOW) & !(x ^ (LOW * 0x7f)) & HIGH;
        if below | del != 0 {
            check_controls_slow(b, at, at + 8, place)?;
        }
        at += 8;
    }
    check_controls_slow(b, at, b.len(), place)
}

fn check_controls_slow(b: &[u8], from: usize, to: usize, place: &'static str) -> Result<(), ParseError> {
    for i in from..to {
        let c = b[i];
        let ok = match c {
            b'\t' | b'\n' => true,
            b'\r' => b.get(i + 1) == Some(&b'\n'),
            0..=0x1f | 0x7f => quoted_pair_at(b, i),
            _ => true,
        };
        if !ok {
            return Err(ParseError::ControlCharacter { byte: c, place });
        }
    }
    Ok(())
}

/// Is the control byte at `i` the escaped half of a quoted-pair inside a quoted string
/// (RFC 3261 25.1 allows `\` followed by any byte but CR and LF there; RFC 4475 `intmeth`
/// carries BEL, NUL and DEL that way)? Rare enough to rescan its line from the start.
fn quoted_pair_at(b: &[u8], i: usize) -> bool {
    let start = b[..i].iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
    let (mut quoted, mut j) = (false, start);
    while j < i {
        match b[j] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => {
                if j + 1 == i {
                    return true;
                }
                j += 1;
            }
            _ => {}
        }
        j += 1;
    }
    false
}

/// Returns (end of line content excluding CR, index after LF).
#[inline]
fn line_at(b: &[u8], start: usize) -> Result<(usize, usize), ParseError> {
    let lf = memchr::memchr(b'\n', &b[start..]).ok_or(ParseError::MissingHeaderTerminator)? + start;
    let end = if lf > start && b[lf - 1] == b'\r' { lf - 1 } else { lf };
    if end - start > MAX_LINE_LEN {
        return Err(ParseError::LineTooLong { max: MAX_LINE_LEN });
    }
    Ok((end, lf + 1))
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let looks_like_version = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|&c| c.is_ascii_digit() || c == b'.')
        && v[4..].iter().filter(|&&c| c == b'.').count() == 1;
    if looks_like_version {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::InvalidStartLine("malformed SIP-Version"))
    }
}

fn parse_start_line(b: &[u8], s: usize, e: usize) -> Result<StartLine, ParseError> {
    let line = &b[s..e];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::InvalidStartLine("missing status code"))?;
        check_version(&line[..sp])?;
        let rest = &line[sp + 1..];
        let code_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::InvalidStatus);
        }
        let status = code.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::InvalidStatus);
        }
        let rs = (s + sp + 1 + code_end + 1).min(e);
        Ok(StartLine::Response {
            status,
            reason: Span::new(rs, e),
        })
    } else {
        let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::InvalidStartLine("missing Request-URI"))?;
        let method = Method::parse(&line[..sp1])?;
        let rest = &line[sp1 + 1..];
        let sp2 = memchr::memchr(b' ', rest).ok_or(ParseError::InvalidStartLine("missing SIP-Version"))?;
        if sp2 == 0 {
            return Err(ParseError::InvalidStartLine("extra whitespace before Request-URI"));
        }
        let uri = &rest[..sp2];
        if uri.iter().any(|&c| c <= b' ' || c == 0x7f) {
            return Err(ParseError::InvalidStartLine("whitespace in Request-URI"));
        }
        check_version(&rest[sp2 + 1..])?;
        let us = s + sp1 + 1;
        Ok(StartLine::Request {
            method,
            uri: Span::new(us, us + sp2),
        })
    }
}

/// A message our own builder (`crate::build`) just wrote, indexed without re-reading it: `lines` are the
/// offsets where its header lines start and `body_start` is one past the blank line. The builder writes
/// one `Name: value` line per header with control bytes already replaced, so the line scan and control
/// check of [`parse_impl`] are skipped; anything unexpected (a name that is not a token, a start line the
/// parser would refuse, a size past the limits) goes through the full parser, which gives its error.
pub(crate) fn from_built(buf: Bytes, lines: &[u32], body_start: usize) -> Result<Message, ParseError> {
    let full = |buf: Bytes| parse_impl(buf, false);
    let b: &[u8] = &buf;
    let first_line = lines.first().map_or(body_start, |&l| l as usize);
    if buf.len() > MAX_MESSAGE_SIZE
        || lines.len() > MAX_HEADERS
        || body_start > b.len()
        || body_start < 2
        || first_line < 2
        || b.get(..2) == Some(b"\r\n")
    {
        return full(buf);
    }
    let Ok(start) = parse_start_line(b, 0, first_line - 2) else {
        return full(buf);
    };
    let mut headers: Vec<Entry> = Vec::with_capacity(lines.len());
    let mut first = [NO_HEADER; NAMES.len()];
    let mut end = [0u8; NAMES.len()];
    let mut cl: Option<usize> = None;
    let mut conflict = false;
    for (n, &ls) in lines.iter().enumerate() {
        let ls = ls as usize;
        // Each line ends with CRLF right before the next line (or before the blank line).
        let le = lines
            .get(n + 1)
            .map_or(body_start - 2, |&l| l as usize)
            .saturating_sub(2);
        if ls >= le {
            return full(buf);
        }
        let line = &b[ls..le];
        let ne = line.iter().position(|&c| !is_token_char(c)).unwrap_or(line.len());
        let mut i = ne;
        while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        if ne == 0 || line.get(i) != Some(&b':') {
            return full(buf);
        }
        let (mut s, mut e) = (ls + i + 1, le);
        while s < e && is_ws(b[s]) {
            s += 1;
        }
        while e > s && is_ws(b[e - 1]) {
            e -= 1;
        }
        let hid = known_id_in(b, ls, ne);
        if let (Some(f), Some(x)) = (first.get_mut(hid as usize), end.get_mut(hid as usize)) {
            if *f == NO_HEADER {
                *f = u8::try_from(n).unwrap_or(254).min(254);
            }
            *x = u8::try_from(n + 1).unwrap_or(TO_LAST);
        }
        if hid == id::CONTENT_LENGTH {
            let Ok(v) = parse_content_length(&b[s..e]) else {
                return full(buf);
            };
            match cl {
                Some(p) if p != v => conflict = true,
                _ => cl = Some(v),
            }
        }
        headers.push(Entry {
            id: hid,
            name: Span::new(ls, ls + ne),
            value: Span::new(s, e),
        });
    }
    let body_end = match cl {
        Some(n) if !conflict && body_start + n == b.len() => b.len(),
        _ => return full(buf),
    };
    let Ok(head) = ByteString::try_from(buf.slice(..body_start)) else {
        return full(buf);
    };
    Ok(Message {
        buf,
        head,
        start,
        headers,
        first,
        end,
        content_length: cl.and_then(|n| u32::try_from(n).ok()),
        content_length_conflict: false,
        body: Span::new(body_start, body_end),
    })
}

fn parse_impl(mut buf: Bytes, stream: bool) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge {
            size: buf.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    let b: &[u8] = &buf;
    // RFC 3261 7.5: CRLFs before the start line are ignored.
    let mut pos = 0;
    while pos < b.len() && (b[pos] == b'\r' || b[pos] == b'\n') {
        pos += 1;
    }
    if pos >= b.len() {
        return Err(ParseError::Empty);
    }
    let (le, mut next) = line_at(b, pos)?;
    check_controls(&b[pos..le], "start line")?;
    let start = parse_start_line(b, pos, le)?;
    let headers_start = next;
    let mut headers: Vec<Entry> = Vec::with_capacity(24);
    let mut first = [NO_HEADER; NAMES.len()];
    let mut end = [0u8; NAMES.len()];
    let body_start;
    loop {
        let Some(&c) = b.get(next) else {
            return Err(ParseError::MissingHeaderTerminator);
        };
        if c == b'\n' {
            body_start = next + 1;
            break;
        }
        if c == b'\r' {
            if b.get(next + 1) == Some(&b'\n') {
                body_start = next + 2;
                break;
            }
            return Err(ParseError::InvalidHeaderLine("bare CR"));
        }
        let (le, nx) = line_at(b, next)?;
        if c == b' ' || c == b'\t' {
            // Folded continuation (LWS): extends the previous value.
            let last = headers
                .last_mut()
                .ok_or(ParseError::InvalidHeaderLine("continuation line before first header"))?;
            last.value.end = le as u32;
        } else {
            // Name: token characters, optional SP/HT, then ':' (one pass, no memchr).
            let ne = next + b[next..le].iter().position(|&c| !is_token_char(c)).unwrap_or(le - next);
            let mut i = ne;
            while i < le && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            if i >= le || b[i] != b':' {
                return Err(ParseError::InvalidHeaderLine(if ne == next {
                    "invalid header name"
                } else {
                    "missing ':'"
                }));
            }
            if ne == next {
                return Err(ParseError::InvalidHeaderLine("invalid header name"));
            }
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::TooManyHeaders { max: MAX_HEADERS });
            }
            i += 1;
            i += b[i..le].iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(le - i);
            let hid = known_id_in(b, next, ne - next);
            if let (Some(f), Some(e)) = (first.get_mut(hid as usize), end.get_mut(hid as usize)) {
                let n = headers.len();
                if *f == NO_HEADER {
                    *f = u8::try_from(n).unwrap_or(254).min(254);
                }
                *e = u8::try_from(n + 1).unwrap_or(TO_LAST);
            }
            headers.push(Entry {
                id: hid,
                name: Span::new(next, ne),
                value: Span::new(i, le),
            });
        }
        next = nx;
    }
    check_controls(&b[headers_start..body_start], "header section")?;
    let mut cl: Option<usize> = None;
    let mut conflict = false;
    for h in &mut headers {
        let (mut s, mut e) = (h.value.start as usize, h.value.end as usize);
        if s < e && (is_ws(b[s]) || is_ws(b[e - 1])) {
            // Only folded or oddly spaced values need the slow trim.
            while s < e && is_ws(b[s]) {
                s += 1;
            }
            while e > s && is_ws(b[e - 1]) {
                e -= 1;
            }
            h.value = Span::new(s, e);
        }
        if h.id == id::CONTENT_LENGTH {
            let n = parse_content_length(&b[s..e])?;
            match cl {
                Some(p) if p != n => conflict = true,
                _ => cl = Some(n),
            }
        }
    }
    let head = ByteString::try_from(buf.slice(..body_start)).map_err(|_| ParseError::NotUtf8)?;

    let avail = b.len() - body_start;
    let body_end = if conflict {
        if stream {
            return Err(ParseError::ConflictingContentLength);
        }
        b.len()
    } else {
        match cl {
            Some(n) if n > avail => {
                return Err(ParseError::BodyTooShort {
                    declared: n,
                    actual: avail,
                })
            }
            Some(n) => body_start + n,
            None if stream => return Err(ParseError::MissingContentLength),
            None => b.len(),
        }
    };
    buf.truncate(body_end);
    Ok(Message {
        buf,
        head,
        start,
        headers,
        first,
        end,
        content_length: cl.and_then(|n| u32::try_from(n).ok()),
        content_length_conflict: conflict,
        body: Span::new(body_start, body_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_via_is_the_first_element() {
        let raw = "INVITE sip:a@b SIP/2.0\r\n\
                   Via: SIP/2.0/UDP h:5060;rport;branch=z9hG4bK1;received=192.0.2.4, SIP/2.0/TCP x\r\n\
                   v: SIP/2.0/UDP y;branch=z9hG4bK2\r\nl: 0\r\n\r\n";
        let m = Message::parse(Bytes::from_static(raw.as_bytes())).unwrap();
        let top = m.top_via().unwrap();
        assert_eq!(
            (top.host, top.port, top.rport(), top.received()),
            ("h", Some(5060), Some(None), Some("192.0.2.4"))
        );
        let vias = m.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0], top);
        assert_eq!(
            m.top_via_raw().unwrap(),
            "SIP/2.0/UDP h:5060;rport;branch=z9hG4bK1;received=192.0.2.4"
        );
    }

    #[test]
    fn header_index_past_254_still_found() {
        let mut raw = String::from("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n");
        for _ in 0..250 {
            raw.push_str("X-A: 1\r\n");
        }
        // Indices 251..=255: the last ones do not fit the one-byte index and are clamped.
        raw.push_str("Contact: <sip:x@y>\r\nSupported: a\r\nContact: <sip:z@w>\r\nk: b, c\r\nl: 0\r\n\r\n");
        let m = Message::parse(Bytes::from(raw)).unwrap();
        assert_eq!(m.header_count(), 256);
        assert_eq!(m.contacts().unwrap().len(), 2);
        assert_eq!(m.supported(), ["a", "b", "c"]);
        assert_eq!(m.content_length().unwrap(), Some(0));
    }
}
