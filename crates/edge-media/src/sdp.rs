//! SDP rewriting for the B2BUA media anchor and the voicemail answer.
//!
//! Peer SDP is read and rewritten by one line-based pass over its bytes ([`rewrite_sdp`] runs twice
//! per call; parsing into an owned `sdp-types` tree and serialising it again was ~10% of the edge's
//! instructions). Everything we do not deliberately change (ptime, fmtp, direction, vendor
//! attributes) is copied verbatim. `sdp-types` still builds the edge's own offers and answers.

use std::io::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use sdp_types::{Connection, Media, Origin, Session};

use crate::g711::G711Law;
use crate::srtp::{CryptoIn, CryptoOut};

/// Why an SDP body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// Not parseable as SDP (SIP: 400 or 488).
    #[error("malformed SDP: {0}")]
    Parse(String),
    /// No active audio stream (SIP: 488).
    #[error("no active audio stream in SDP")]
    NoAudio,
    /// Audio only over a transport we cannot relay, e.g. DTLS (SIP: 488).
    #[error("unsupported media transport {0}")]
    UnsupportedTransport(String),
    /// Neither media- nor session-level `c=` line (SIP: 488).
    #[error("no usable connection address")]
    NoConnectionAddress,
    /// Nothing left after codec filtering (SIP: 488).
    #[error("no acceptable codec offered")]
    NoCommonCodec,
    /// `RTP/SAVP` without an `a=crypto` line the edge can use (SIP: 488).
    #[error("no usable a=crypto line (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM with an inline key)")]
    NoUsableCrypto,
    /// An SRTP answer whose `a=crypto` matches no line the edge offered (SIP: 488).
    #[error("the answer's a=crypto matches no offered line")]
    CryptoMismatch,
    /// Plain RTP from a leg whose policy is `srtp_required` (SIP: 488).
    #[error("SRTP required: plain RTP/AVP refused (media_encryption = srtp_required)")]
    SrtpRequired,
}

impl SdpError {
    /// SIP status code to answer the INVITE with.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Parse(_) => 400,
            SdpError::NoAudio
            | SdpError::UnsupportedTransport(_)
            | SdpError::NoConnectionAddress
            | SdpError::NoCommonCodec
            | SdpError::NoUsableCrypto
            | SdpError::CryptoMismatch
            | SdpError::SrtpRequired => 488,
        }
    }
}

/// One payload format of the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as written (e.g. "PCMU", "telephone-event").
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
}

/// Where and how a peer wants to receive audio, as declared in its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Connection address (media-level `c=` wins over session-level).
    pub addr: IpAddr,
    /// Audio RTP port.
    pub rtp_port: u16,
    /// RTCP port (`a=rtcp` or RTP + 1).
    pub rtcp_port: u16,
    /// Payload types left on the `m=` line, in preference order.
    pub payload_types: Vec<u8>,
    /// Codecs for those payload types.
    pub codecs: Vec<Codec>,
    /// RFC 4733 telephone-event payload type, if offered.
    pub telephone_event_pt: Option<u8>,
}

/// Names of the static audio payload types (RFC 3551) seen on trunks.
fn static_codec(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

fn is_telephone_event(name: &str) -> bool {
    name.eq_ignore_ascii_case("telephone-event")
}

fn serialize(session: &Session) -> Bytes {
    let mut out = Vec::with_capacity(512);
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    Bytes::from(out)
}

fn parse_error(n: usize, what: &str) -> SdpError {
    SdpError::Parse(format!("line {n}: {what}"))
}

/// One `x=value` line of the input; `n` (1-based, empty lines counted) is for error messages.
#[derive(Clone, Copy)]
struct Line<'a> {
    n: usize,
    key: u8,
    value: &'a [u8],
    /// `value` as text when the whole body was valid UTF-8 (checked once, not per line).
    text: Option<&'a str>,
    /// The whole line without its terminator, for verbatim copies.
    raw: &'a [u8],
}

impl<'a> Line<'a> {
    /// Every line type we interpret must be UTF-8 (as `sdp-types` required field by field; the fields
    /// cover the whole value, so checking the value at once is the same).
    fn text(&self) -> Result<&'a str, SdpError> {
        match self.text {
            Some(text) => Ok(text),
            None => std::str::from_utf8(self.value).map_err(|_| parse_error(self.n, "not UTF-8")),
        }
    }
}

const LOW_BITS: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// High bit set in the first zero byte of `x` (bytes above it may be false positives).
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS
}

/// Eight bytes at a time: lines are short, but byte loops were half of the rewrite's instructions.
fn find_newline(hay: &[u8]) -> Option<usize> {
    let pattern = LOW_BITS * u64::from(b'\n');
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let hits = zero_bytes(u64::from_le_bytes(bytes) ^ pattern);
        if hits != 0 {
            return Some(base + hits.trailing_zeros() as usize / 8);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'\n').map(|i| base + i)
}

fn has_nul_or_cr(line: &[u8]) -> bool {
    let cr = LOW_BITS * u64::from(b'\r');
    let mut chunks = line.chunks_exact(8);
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes);
        if zero_bytes(x) | zero_bytes(x ^ cr) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b == 0 || b == b'\r')
}

/// Splits the body into lines like `sdp-types` did: `\n` or `\r\n` terminated, empty lines skipped,
/// NUL or a stray CR refused (they would let a peer smuggle lines into what we forward), and every
/// other line must be `x=...` with a one-byte key.
#[derive(Clone, Copy)]
struct Lines<'a> {
    sdp: &'a [u8],
    /// `sdp` if it is valid UTF-8, so lines need no check of their own.
    text: Option<&'a str>,
    pos: usize,
    n: usize,
}

impl<'a> Lines<'a> {
    fn new(sdp: &'a [u8]) -> Self {
        Lines {
            sdp,
            text: std::str::from_utf8(sdp).ok(),
            pos: 0,
            n: 0,
        }
    }

    fn next_line(&mut self) -> Result<Option<Line<'a>>, SdpError> {
        while let Some(rest) = self.sdp.get(self.pos..).filter(|r| !r.is_empty()) {
            self.n += 1;
            let start = self.pos;
            let end = match find_newline(rest) {
                Some(i) => {
                    self.pos = start + i + 1;
                    // "\r\n": the CR belongs to the terminator.
                    start + i - usize::from(i > 0 && rest.get(i - 1) == Some(&b'\r'))
                }
                None => {
                    self.pos = self.sdp.len();
                    self.sdp.len()
                }
            };
            let line = self.sdp.get(start..end).unwrap_or_default();
            if line.is_empty() {
                continue;
            }
            if has_nul_or_cr(line) {
                return Err(parse_error(self.n, "NUL or CR inside a line"));
            }
            return match line {
                [key, b'=', value @ ..] if *key != b'=' => Ok(Some(Line {
                    n: self.n,
                    key: *key,
                    value,
                    text: self.text.and_then(|t| t.get(start + 2..end)),
                    raw: line,
                })),
                _ if line.contains(&b'=') => Err(parse_error(self.n, "line key is not one character")),
                _ => Err(parse_error(self.n, "line not in key=value format")),
            };
        }
        Ok(None)
    }
}

/// RFC 8866 `token`, required for nettype/addrtype so they cannot corrupt the line structure.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(
            |b| matches!(b, 0x21 | 0x23..=0x27 | 0x2a..=0x2b | 0x2d..=0x2e | 0x30..=0x39 | 0x41..=0x5a | 0x5e..=0x7e),
        )
}

/// `str::split_once` for an ASCII separator, without the generic `char` searcher (hot path).
fn cut(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Space-separated fields where runs of spaces count as one separator (o=, c=, t=, r=, z=, a=rtcp).
fn fields(s: &str) -> Fields<'_> {
    Fields(s)
}

struct Fields<'a>(&'a str);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.0.bytes().position(|b| b != b' ')?;
        let rest = self.0.get(start..)?;
        let (field, tail) = cut(rest, b' ').unwrap_or((rest, ""));
        self.0 = tail;
        Some(field)
    }
}

/// A `c=` line's fields that matter to us.
#[derive(Clone, Copy)]
struct Conn<'a> {
    addrtype: &'a str,
    address: &'a str,
}

fn parse_connection<'a>(line: &Line<'a>) -> Result<Conn<'a>, SdpError> {
    let mut f = fields(line.text()?);
    let nettype = f.next().ok_or_else(|| parse_error(line.n, "c= without nettype"))?;
    let addrtype = f.next().ok_or_else(|| parse_error(line.n, "c= without addrtype"))?;
    let address = f.next().ok_or_else(|| parse_error(line.n, "c= without address"))?;
    if !is_token(nettype) || !is_token(addrtype) || f.next().is_some() {
        return Err(parse_error(line.n, "malformed c="));
    }
    Ok(Conn { addrtype, address })
}

/// The peer's media address: an IP, with a valid `/ttl` (IP4) and `/count` suffix if present.
fn connection_ip(conn: &Conn<'_>) -> Option<IpAddr> {
    let (ip, suffix) = match conn.address.split_once('/') {
        Some((ip, suffix)) => (ip, Some(suffix)),
        None => (conn.address, None),
    };
    let ip: IpAddr = ip.parse().ok()?;
    if let Some(suffix) = suffix {
        if conn.addrtype.eq_ignore_ascii_case("IP4") {
            let (ttl, count) = match suffix.split_once('/') {
                Some((ttl, count)) => (ttl, Some(count)),
                None => (suffix, None),
            };
            ttl.parse::<u8>().ok()?;
            if let Some(count) = count {
                count.parse::<u8>().ok()?;
            }
        } else if conn.addrtype.eq_ignore_ascii_case("IP6") {
            suffix.parse::<u8>().ok()?;
        }
    }
    Some(ip)
}

/// The nettype as `sdp-types` wrote it back: known ones upper case, others verbatim.
fn nettype_text(nettype: &str) -> &str {
    ["IN", "TN", "ATM", "PSTN"]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(nettype))
        .unwrap_or(nettype)
}

/// Writes the `o=` line with our address; username, session id and version are the sender's.
fn write_origin(line: &Line<'_>, ours: &ConnText, out: &mut Out) -> Result<(), SdpError> {
    let mut f = fields(line.text()?);
    let mut next = |what| f.next().ok_or_else(|| parse_error(line.n, what));
    let username = next("o= without username")?;
    let sess_id = next("o= without session id")?;
    let version = next("o= without session version")?;
    let nettype = next("o= without nettype")?;
    let addrtype = next("o= without addrtype")?;
    next("o= without address")?;
    let version: u64 = version
        .parse()
        .map_err(|_| parse_error(line.n, "o= version not a number"))?;
    if !is_token(nettype) || !is_token(addrtype) || f.next().is_some() {
        return Err(parse_error(line.n, "malformed o="));
    }
    out.put(b"o=");
    out.put(username.as_bytes());
    out.put(b" ");
    out.put(sess_id.as_bytes());
    out.put(b" ");
    out.num(version);
    out.put(b" ");
    out.put(nettype_text(nettype).as_bytes());
    out.put(b" ");
    out.put(ours.without_nettype());
    out.end();
    Ok(())
}

fn check_bandwidth(line: &Line<'_>) -> Result<(), SdpError> {
    let mut parts = line.text()?.split(':').skip(1);
    match (parts.next().map(str::parse::<u64>), parts.next()) {
        (Some(Ok(_)), None) => Ok(()),
        _ => Err(parse_error(line.n, "malformed b=")),
    }
}

fn check_time(line: &Line<'_>) -> Result<(), SdpError> {
    let mut f = fields(line.text()?);
    match (
        f.next().map(str::parse::<u64>),
        f.next().map(str::parse::<u64>),
        f.next(),
    ) {
        (Some(Ok(_)), Some(Ok(_)), None) => Ok(()),
        _ => Err(parse_error(line.n, "malformed t=")),
    }
}

/// `r=`/`z=` time with an optional d/h/m/s unit.
fn typed_time(s: &str) -> Option<u64> {
    let (num, factor) = match s.as_bytes().last()? {
        b'd' => (&s[..s.len() - 1], 86_400),
        b'h' => (&s[..s.len() - 1], 3_600),
        b'm' => (&s[..s.len() - 1], 60),
        b's' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(factor)
}

fn check_repeat(line: &Line<'_>) -> Result<(), SdpError> {
    let mut f = fields(line.text()?);
    let interval = f.next().and_then(typed_time);
    let duration = f.next().and_then(typed_time);
    if interval.is_none() || duration.is_none() || !f.all(|o| typed_time(o).is_some()) {
        return Err(parse_error(line.n, "malformed r="));
    }
    Ok(())
}

/// Validates `z=` and returns how many adjustments it holds.
fn check_zones(line: &Line<'_>) -> Result<usize, SdpError> {
    let bad = || parse_error(line.n, "malformed z=");
    let mut f = fields(line.text()?);
    let mut count = 0;
    while let Some(adjustment) = f.next() {
        adjustment.parse::<u64>().map_err(|_| bad())?;
        let offset = f.next().ok_or_else(bad)?;
        let (negative, magnitude) = match offset.strip_prefix('-') {
            Some(m) => (true, m),
            None => (false, offset),
        };
        let magnitude = i128::from(typed_time(magnitude).ok_or_else(bad)?);
        i64::try_from(if negative { -magnitude } else { magnitude }).map_err(|_| bad())?;
        count += 1;
    }
    Ok(count)
}

/// Splits `a=name[:value]`.
fn attribute(text: &str) -> (&str, Option<&str>) {
    match cut(text, b':') {
        Some((name, value)) => (name, Some(value)),
        None => (text, None),
    }
}

/// `a=crypto` (RFC 4568).
fn is_crypto(name: &str) -> bool {
    name.eq_ignore_ascii_case("crypto")
}

/// Attributes that would leak the peer's addresses past the anchor.
fn leaks_addresses(name: &str) -> bool {
    [
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
    ]
    .iter()
    .any(|a| a.eq_ignore_ascii_case(name))
}

/// Payload type an `rtpmap`/`fmtp`/`rtcp-fb` attribute refers to.
fn attribute_pt(name: &str, value: Option<&str>) -> Option<u8> {
    if !["rtpmap", "fmtp", "rtcp-fb"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(name))
    {
        return None;
    }
    value?.split_ascii_whitespace().next()?.parse().ok()
}

/// `a=rtpmap` value: payload type (0-127), encoding name, clock rate.
fn parse_rtpmap(value: &str) -> Option<(u8, &str, u32)> {
    let (pt, rest) = cut(value, b' ')?;
    let pt: u8 = pt.parse().ok().filter(|pt| *pt <= 127)?;
    let (name, rest) = cut(rest, b'/')?;
    let clock_rate = cut(rest, b'/').map_or(rest, |(rate, _params)| rate).parse().ok()?;
    Some((pt, name, clock_rate))
}

/// Port of a well-formed `a=rtcp` value (RFC 3605: port, optionally nettype addrtype address).
fn parse_rtcp_port(value: &str) -> Option<u16> {
    let mut f = fields(value);
    let port = f.next()?.parse().ok()?;
    let Some(nettype) = f.next() else {
        return Some(port);
    };
    let addrtype = f.next()?;
    f.next()?;
    (is_token(nettype) && is_token(addrtype) && f.next().is_none()).then_some(port)
}

/// The first parseable `a=rtpmap` (payload type, encoding name, clock rate) of each payload type in
/// `wanted`, from the media section `lines` is at. Looked up before that section is copied, because
/// the `m=` line (written first) and the fmtp lines (which may precede their rtpmap) depend on codec
/// names. A malformed line just ends the look-up; the main pass refuses it.
fn section_rtpmaps<'a>(mut lines: Lines<'a>, wanted: u128, mut found: impl FnMut((u8, &'a str, u32))) {
    let mut missing = wanted;
    while missing != 0 {
        let Ok(Some(line)) = lines.next_line() else {
            break;
        };
        match line.key {
            b'm' => break,
            b'a' => {}
            _ => continue,
        }
        let Ok((name, Some(value))) = line.text().map(attribute) else {
            continue;
        };
        if !name.eq_ignore_ascii_case("rtpmap") {
            continue;
        }
        if let Some(map @ (pt, _, _)) = parse_rtpmap(value) {
            if missing & 1 << pt != 0 {
                missing &= !(1u128 << pt);
                found(map);
            }
        }
    }
}

fn is_rtp(proto: &str) -> bool {
    proto
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"RTP/"))
}

/// Set of payload types (0-255).
#[derive(Default)]
struct PtSet([u64; 4]);

impl PtSet {
    fn insert(&mut self, pt: u8) {
        self.0[usize::from(pt >> 6)] |= 1 << (pt & 63);
    }
    fn contains(&self, pt: u8) -> bool {
        self.0[usize::from(pt >> 6)] & (1 << (pt & 63)) != 0
    }
}

/// `IN IP4 192.0.2.1` for our address, formatted once per call instead of once per line.
struct ConnText {
    buf: [u8; 64],
    len: usize,
}

impl ConnText {
    fn new(addr: IpAddr) -> Self {
        let mut buf = [0u8; 64];
        let len = {
            let mut rest: &mut [u8] = &mut buf;
            // At most "IN IP6 " plus 39 characters of IPv6 text: always fits.
            match addr {
                // Formatting machinery is a visible share of a rewrite; IPv4 is the common case.
                IpAddr::V4(v4) => {
                    let _ = rest.write_all(b"IN IP4 ");
                    for (i, octet) in v4.octets().into_iter().enumerate() {
                        if i > 0 {
                            let _ = rest.write_all(b".");
                        }
                        let digits = [b'0' + octet / 100, b'0' + octet / 10 % 10, b'0' + octet % 10];
                        let skip = usize::from(octet < 100) + usize::from(octet < 10);
                        let _ = rest.write_all(&digits[skip..]);
                    }
                }
                IpAddr::V6(_) => {
                    let _ = write!(rest, "IN IP6 {addr}");
                }
            }
            64 - rest.len()
        };
        ConnText { buf, len }
    }
    fn full(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    fn without_nettype(&self) -> &[u8] {
        self.full().get(3..).unwrap_or_default()
    }
}

/// Output buffer; switched off when only the offer's meaning is wanted (voicemail).
struct Out {
    buf: Vec<u8>,
    on: bool,
}

impl Out {
    fn put(&mut self, bytes: &[u8]) {
        if self.on {
            self.buf.extend_from_slice(bytes);
        }
    }
    fn num(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
    fn end(&mut self) {
        self.put(b"\r\n");
    }
    fn line(&mut self, raw: &[u8]) {
        self.put(raw);
        self.end();
    }
}

/// An `m=` line's fields.
#[derive(Clone, Copy)]
struct MediaLine<'a> {
    media: &'a str,
    port: u16,
    proto: &'a str,
    fmt: &'a str,
}

fn parse_media_line<'a>(line: &Line<'a>) -> Result<MediaLine<'a>, SdpError> {
    let bad = || parse_error(line.n, "malformed m=");
    // Single spaces, as in `sdp-types`: the fmt list is the verbatim rest.
    let (media, rest) = cut(line.text()?, b' ').ok_or_else(bad)?;
    let (port, rest) = cut(rest, b' ').ok_or_else(bad)?;
    let (proto, fmt) = cut(rest, b' ').ok_or_else(bad)?;
    let (port, num_ports) = match cut(port, b'/') {
        Some((port, n)) => (port, Some(n)),
        None => (port, None),
    };
    let port = port.parse().map_err(|_| bad())?;
    if let Some(n) = num_ports {
        n.parse::<u16>().map_err(|_| bad())?;
    }
    Ok(MediaLine {
        media,
        port,
        proto,
        fmt,
    })
}

/// What the scan learnt about the anchored audio stream.
struct Anchor<'a> {
    index: usize,
    rtp_port: u16,
    /// Codecs left after the allow-list, in `m=` order.
    codecs: Vec<Codec>,
    /// Their payload types, for dropping rtpmap/fmtp/rtcp-fb of removed ones.
    kept: PtSet,
    filtered: bool,
    conn: Option<Conn<'a>>,
    /// Value of the first `a=rtcp` ("" if it has none).
    rtcp: Option<&'a str>,
}

/// Result of [`scan`].
struct Scanned {
    remote: RemoteMedia,
    /// Index of the anchored `m=` line.
    index: usize,
}

/// Once-only session-level lines seen so far.
#[derive(Default)]
struct Seen {
    origin: bool,
    name: bool,
    info: bool,
    uri: bool,
    conn: bool,
    zones: bool,
    key: bool,
    time: bool,
}

fn once(seen: &mut bool, line: &Line<'_>) -> Result<(), SdpError> {
    if std::mem::replace(seen, true) {
        return Err(parse_error(line.n, "line type repeated"));
    }
    Ok(())
}

/// The single pass behind [`rewrite_sdp`] and [`build_voicemail_answer_sdp`]: validates every line
/// (refusing exactly what the `sdp-types` parser refused), copies it to `out` with our address/port
/// edits, and reports each `m=` line to `on_media`.
// The SRTP pair (what to write, what was read) rides along the pass rather than make a second one.
#[allow(clippy::too_many_arguments)]
fn scan<'a>(
    sdp: &'a [u8],
    addr: IpAddr,
    port: u16,
    allowed_codecs: Option<&[String]>,
    out: &mut Out,
    srtp: Option<&CryptoOut>,
    crypto_in: &mut CryptoIn,
    mut on_media: impl FnMut(&MediaLine<'a>),
) -> Result<Scanned, SdpError> {
    let ours = ConnText::new(addr);
    let mut lines = Lines::new(sdp);
    match lines.next_line()? {
        Some(Line {
            key: b'v', value, n, ..
        }) if value != b"0" => return Err(parse_error(n, "version is not 0")),
        Some(Line { key: b'v', .. }) => out.line(b"v=0"),
        _ => return Err(SdpError::Parse("no v= line first".into())),
    }

    let mut seen = Seen::default();
    let mut session_conn = None;
    let mut next = lines.next_line()?;
    while let Some(line) = next.filter(|l| l.key != b'm') {
        match line.key {
            b'o' => {
                once(&mut seen.origin, &line)?;
                write_origin(&line, &ours, out)?;
            }
            b's' | b'i' | b'u' | b'k' => {
                let flag = match line.key {
                    b's' => &mut seen.name,
                    b'i' => &mut seen.info,
                    b'u' => &mut seen.uri,
                    _ => &mut seen.key,
                };
                once(flag, &line)?;
                line.text()?;
                out.line(line.raw);
            }
            b'e' | b'p' => {
                line.text()?;
                out.line(line.raw);
            }
            b'c' => {
                once(&mut seen.conn, &line)?;
                session_conn = Some(parse_connection(&line)?);
                out.put(b"c=");
                out.line(ours.full());
            }
            b'b' => {
                check_bandwidth(&line)?;
                out.line(line.raw);
            }
            b't' => {
                check_time(&line)?;
                seen.time = true;
                out.line(line.raw);
            }
            b'r' => {
                if !seen.time {
                    return Err(parse_error(line.n, "r= before any t="));
                }
                check_repeat(&line)?;
                out.line(line.raw);
            }
            b'z' => {
                once(&mut seen.zones, &line)?;
                if check_zones(&line)? > 0 {
                    out.line(line.raw);
                }
            }
            b'a' => {
                let (name, _) = attribute(line.text()?);
                let dropped = leaks_addresses(name) || (srtp.is_some() && is_crypto(name));
                if !dropped {
                    out.line(line.raw);
                }
            }
            // Unknown (and repeated v=) lines were dropped by the old serializer too.
            _ => {}
        }
        next = lines.next_line()?;
    }
    // Missing o=/s=/t= are tolerated (a bare "v=0" must stay a 488, not a 400); write the
    // placeholders the old serializer wrote so the output is complete SDP.
    if !seen.origin {
        out.put(b"o=- 0 0 ");
        out.line(ours.full());
    }
    if !seen.name {
        out.line(b"s=");
    }
    if !seen.time {
        out.line(b"t=0 0");
    }

    let mut anchor: Option<Anchor<'a>> = None;
    let mut unsupported: Option<&'a str> = None;
    let mut index = 0;
    while let Some(m_line) = next {
        let m = parse_media_line(&m_line)?;
        on_media(&m);
        let active_audio = m.port != 0 && m.media.eq_ignore_ascii_case("audio");
        let anchored = active_audio && anchor.is_none() && is_rtp(m.proto);
        if active_audio && !is_rtp(m.proto) {
            unsupported.get_or_insert(m.proto);
        }
        out.put(b"m=");
        out.put(m.media.as_bytes());
        out.put(b" ");
        if anchored {
            let a = anchor.insert(choose_codecs(&m, index, lines, allowed_codecs));
            crypto_in.proto = m.proto.to_owned();
            out.num(u64::from(port));
            out.put(b" ");
            out.put(srtp.map_or(m.proto, |s| s.proto.as_str()).as_bytes());
            out.put(b" ");
            if a.filtered {
                for (i, c) in a.codecs.iter().enumerate() {
                    if i > 0 {
                        out.put(b" ");
                    }
                    out.num(u64::from(c.payload_type));
                }
            } else {
                out.put(m.fmt.as_bytes());
            }
        } else {
            out.put(b"0 ");
            out.put(m.proto.as_bytes());
            out.put(b" ");
            out.put(m.fmt.as_bytes());
        }
        out.end();

        let mut section = anchor.as_mut().filter(|_| anchored);
        let (mut info, mut key, mut conn) = (false, false, false);
        next = lines.next_line()?;
        while let Some(line) = next.filter(|l| l.key != b'm') {
            match line.key {
                b'i' | b'k' => {
                    once(if line.key == b'i' { &mut info } else { &mut key }, &line)?;
                    line.text()?;
                    out.line(line.raw);
                }
                b'c' => {
                    let c = parse_connection(&line)?;
                    // Several media-level c= collapse into our one.
                    if !std::mem::replace(&mut conn, true) {
                        if let Some(a) = section.as_deref_mut() {
                            a.conn = Some(c);
                        }
                        out.put(b"c=");
                        out.line(ours.full());
                    }
                }
                b'b' => {
                    check_bandwidth(&line)?;
                    out.line(line.raw);
                }
                b'a' => {
                    let (name, value) = attribute(line.text()?);
                    if anchored && is_crypto(name) {
                        crypto_in.lines.push(value.unwrap_or_default().to_owned());
                    }
                    let verbatim = match section.as_deref_mut() {
                        _ if leaks_addresses(name) => false,
                        // The peer's keys stay with the edge; its own go in below.
                        _ if srtp.is_some() && is_crypto(name) => false,
                        Some(a) if name.eq_ignore_ascii_case("rtcp") => {
                            a.rtcp.get_or_insert(value.unwrap_or_default());
                            out.put(b"a=");
                            out.put(name.as_bytes());
                            out.put(b":");
                            out.num(u64::from(port.saturating_add(1)));
                            out.put(b" ");
                            out.line(ours.full());
                            false
                        }
                        Some(a) => !(a.filtered && attribute_pt(name, value).is_some_and(|pt| !a.kept.contains(pt))),
                        None => true,
                    };
                    if verbatim {
                        out.line(line.raw);
                    }
                }
                _ => {}
            }
            next = lines.next_line()?;
        }
        if let Some(srtp) = srtp.filter(|_| anchored) {
            for value in &srtp.lines {
                out.put(b"a=crypto:");
                out.line(value.as_bytes());
            }
        }
        index += 1;
    }

    let Some(anchor) = anchor else {
        return Err(unsupported.map_or(SdpError::NoAudio, |p| SdpError::UnsupportedTransport(p.to_owned())));
    };
    let conn = anchor.conn.or(session_conn).ok_or(SdpError::NoConnectionAddress)?;
    let addr = connection_ip(&conn).ok_or(SdpError::NoConnectionAddress)?;
    if anchor.codecs.iter().all(|c| is_telephone_event(&c.name)) {
        return Err(SdpError::NoCommonCodec);
    }
    let rtcp_port = anchor
        .rtcp
        .and_then(parse_rtcp_port)
        .unwrap_or_else(|| anchor.rtp_port.saturating_add(1));
    Ok(Scanned {
        index: anchor.index,
        remote: RemoteMedia {
            addr,
            rtp_port: anchor.rtp_port,
            rtcp_port,
            payload_types: anchor.codecs.iter().map(|c| c.payload_type).collect(),
            telephone_event_pt: anchor
                .codecs
                .iter()
                .find(|c| is_telephone_event(&c.name))
                .map(|c| c.payload_type),
            codecs: anchor.codecs,
        },
    })
}

/// Codecs of the anchored `m=` line (names from its section's rtpmap lines, else the static table),
/// narrowed by the allow-list; telephone-event always stays.
fn choose_codecs<'a>(m: &MediaLine<'a>, index: usize, section: Lines<'a>, allowed: Option<&[String]>) -> Anchor<'a> {
    let pts = || m.fmt.split_ascii_whitespace().filter_map(|f| f.parse::<u8>().ok());
    let wanted = pts().filter(|pt| *pt < 128).fold(0u128, |w, pt| w | 1 << pt);
    // A handful of codecs in the common case: no allocation; at most 128 in all, so the lookups
    // below stay linear in the fmt list.
    let mut few = [(0u8, "", 0u32); 8];
    let mut n = 0;
    let mut more = Vec::new();
    section_rtpmaps(section, wanted, |map| match few.get_mut(n) {
        Some(slot) => {
            *slot = map;
            n += 1;
        }
        None => more.push(map),
    });
    let maps = few.get(..n).unwrap_or_default().iter().chain(&more);
    let mut codecs = Vec::with_capacity(4);
    let mut kept = PtSet::default();
    for pt in pts() {
        let (name, clock_rate) = maps
            .clone()
            .find(|m| m.0 == pt)
            .map(|m| (m.1, m.2))
            .or_else(|| static_codec(pt))
            .unwrap_or(("unknown", 8000));
        let keep =
            allowed.is_none_or(|list| is_telephone_event(name) || list.iter().any(|a| a.eq_ignore_ascii_case(name)));
        if keep {
            kept.insert(pt);
            codecs.push(Codec {
                payload_type: pt,
                name: name.to_owned(),
                clock_rate,
            });
        }
    }
    Anchor {
        index,
        rtp_port: m.port,
        codecs,
        kept,
        filtered: allowed.is_some(),
        conn: None,
        rtcp: None,
    }
}

/// Rewrites `sdp` so all audio flows through `addr:port` (our relay side facing
/// the receiver of this SDP) and returns what the sender declared.
///
/// * `c=` (session and media level) and `o=` address become `addr`; the `o=`
///   session id and version are kept, so the sender's version increments on
///   re-offers carry through and an unchanged re-offer stays identical.
/// * The first active RTP audio `m=` gets `port` (and `a=rtcp` → `port + 1`);
///   other streams are disabled (port 0) since the edge relays audio only.
/// * ICE attributes (candidates, ufrag, pwd) are removed: they would bypass the anchor.
/// * Codecs pass through unless `allowed_codecs` (encoding names, any case) is
///   given; then others are removed with their rtpmap/fmtp/rtcp-fb lines.
///   telephone-event is always kept. Nothing left → [`SdpError::NoCommonCodec`].
///
/// A single pass over the lines into one buffer (this runs twice per call): other lines are
/// copied verbatim, output is always CRLF. Malformed SDP (no leading `v=0`, a line that is not
/// `x=value`, a bad field in a line type we read) is [`SdpError::Parse`]; missing `o=`/`s=`/`t=`
/// are tolerated as before.
pub fn rewrite_sdp(
    sdp: &[u8],
    addr: IpAddr,
    port: u16,
    allowed_codecs: Option<&[String]>,
) -> Result<(Bytes, RemoteMedia), SdpError> {
    // Only c=/o=/a=rtcp grow (by an address) and LF becomes CRLF.
    let mut out = Out {
        buf: Vec::with_capacity(sdp.len() + sdp.len() / 8 + 128),
        on: true,
    };
    let scanned = scan(
        sdp,
        addr,
        port,
        allowed_codecs,
        &mut out,
        None,
        &mut CryptoIn::default(),
        |_| {},
    )?;
    Ok((Bytes::from(out.buf), scanned.remote))
}

/// What the SRTP part of `sdp` says (transport and `a=crypto` of the stream the edge would anchor),
/// without writing anything.
pub(crate) fn crypto_of(sdp: &[u8]) -> Result<CryptoIn, SdpError> {
    let mut discard = Out {
        buf: Vec::new(),
        on: false,
    };
    let mut crypto = CryptoIn::default();
    scan(
        sdp,
        IpAddr::from([0, 0, 0, 0]),
        0,
        None,
        &mut discard,
        None,
        &mut crypto,
        |_| {},
    )?;
    Ok(crypto)
}

/// [`rewrite_sdp`] with the SRTP part of the edge's SDP given: the anchored `m=` line gets
/// `srtp.proto` and `srtp.lines` as its `a=crypto` lines; every `a=crypto` of the peer is left out.
pub(crate) fn rewrite_sdp_srtp(
    sdp: &[u8],
    addr: IpAddr,
    port: u16,
    allowed_codecs: Option<&[String]>,
    srtp: &CryptoOut,
) -> Result<(Bytes, RemoteMedia), SdpError> {
    let mut out = Out {
        buf: Vec::with_capacity(sdp.len() + sdp.len() / 8 + 256),
        on: true,
    };
    let scanned = scan(
        sdp,
        addr,
        port,
        allowed_codecs,
        &mut out,
        Some(srtp),
        &mut CryptoIn::default(),
        |_| {},
    )?;
    Ok((Bytes::from(out.buf), scanned.remote))
}

/// Negotiated voicemail media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailMedia {
    /// G.711 law chosen from the offer.
    pub law: G711Law,
    /// Payload type the caller uses for it.
    pub payload_type: u8,
    /// telephone-event payload type (8 kHz) if the caller offered one.
    pub telephone_event_pt: Option<u8>,
    /// Caller's declared media address.
    pub remote: RemoteMedia,
}

/// The edge's own SDP offer, for calls it originates (an API call's trunk leg): G.711 (PCMU, PCMA,
/// narrowed by `allowed_codecs`) plus RFC 4733 telephone-event, 20 ms packets. The answer is then read with
/// [`rewrite_sdp`], whose result is the offer for the other leg, so both legs end up on the codec the
/// answerer chose and the relay never transcodes.
pub fn build_offer_sdp(local: IpAddr, port: u16, allowed_codecs: Option<&[String]>) -> Bytes {
    offer_sdp(local, port, allowed_codecs, None)
}

/// [`build_offer_sdp`], `RTP/SAVP` with the edge's `a=crypto` lines when `srtp` says so.
pub(crate) fn offer_sdp(
    local: IpAddr,
    port: u16,
    allowed_codecs: Option<&[String]>,
    srtp: Option<&CryptoOut>,
) -> Bytes {
    let pts: Vec<(u8, &str)> = offered_laws(allowed_codecs)
        .into_iter()
        .map(|law| (law.payload_type(), law.encoding_name()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut offer = Session::new(Origin::with_ip_addr(now, now, local), "-");
    offer.set_connection(Connection::from_ip_addr(local));
    offer.add_time(sdp_types::Time::new(0, 0));
    let fmt: Vec<String> = pts.iter().map(|(pt, _)| pt.to_string()).chain(["101".into()]).collect();
    let mut media = Media {
        media: "audio".into(),
        port,
        num_ports: None,
        proto: "RTP/AVP".into(),
        fmt: fmt.join(" "),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    for (pt, name) in &pts {
        media.add_attribute_with_value("rtpmap", format!("{pt} {name}/8000"));
    }
    media.add_attribute_with_value("rtpmap", "101 telephone-event/8000");
    media.add_attribute_with_value("fmtp", "101 0-16");
    media.add_attribute_with_value("ptime", "20");
    media.add_attribute_from_str("sendrecv");
    if let Some(srtp) = srtp {
        media.proto = srtp.proto.clone();
        for line in &srtp.lines {
            media.add_attribute_with_value("crypto", line.clone());
        }
    }
    offer.add_media(media);
    serialize(&offer)
}

/// The G.711 laws of the edge's own offer ([`build_offer_sdp`]), in its order.
pub(crate) fn offered_laws(allowed_codecs: Option<&[String]>) -> Vec<G711Law> {
    let allowed = |name: &str| allowed_codecs.is_none_or(|list| list.iter().any(|c| c.eq_ignore_ascii_case(name)));
    let laws: Vec<G711Law> = [G711Law::Ulaw, G711Law::Alaw]
        .into_iter()
        .filter(|law| allowed(law.encoding_name()))
        .collect();
    if laws.is_empty() {
        // An allow-list without G.711 still needs something to offer: PCMU is what every trunk speaks.
        return vec![G711Law::Ulaw];
    }
    laws
}

/// Builds the edge's own SDP answer for voicemail: the caller's first offered
/// G.711 codec (PCMU or PCMA) plus telephone-event if offered; every other
/// `m=` line is rejected with port 0 as RFC 3264 requires.
pub fn build_voicemail_answer_sdp(local: IpAddr, port: u16, offer: &[u8]) -> Result<(Bytes, VoicemailMedia), SdpError> {
    voicemail_answer(local, port, offer, false).map(|(answer, media, _)| (answer, media))
}

/// [`build_voicemail_answer_sdp`] with SRTP (`srtp`): an `RTP/SAVP` offer is answered `RTP/SAVP` with a fresh key
/// of the edge's, and the caller's and the edge's contexts come back for the session.
pub(crate) fn voicemail_answer(
    local: IpAddr,
    port: u16,
    offer: &[u8],
    srtp: bool,
) -> Result<(Bytes, VoicemailMedia, Option<crate::srtp::LegCrypto>), SdpError> {
    // The offer is read by the same pass as `rewrite_sdp`, with its output switched off.
    let mut offered: Vec<MediaLine<'_>> = Vec::new();
    let mut discard = Out {
        buf: Vec::new(),
        on: false,
    };
    let mut crypto = CryptoIn::default();
    let Scanned { remote, index } = scan(offer, local, port, None, &mut discard, None, &mut crypto, |m| {
        offered.push(*m)
    })?;
    let srtp = match srtp {
        true => crate::srtp::voicemail_keys(&crypto)?,
        false => None,
    };
    let (law, payload_type) = remote
        .codecs
        .iter()
        .find_map(|c| {
            let law = if c.name.eq_ignore_ascii_case("PCMU") {
                G711Law::Ulaw
            } else if c.name.eq_ignore_ascii_case("PCMA") {
                G711Law::Alaw
            } else {
                return None;
            };
            (c.clock_rate == 8000).then_some((law, c.payload_type))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event_pt = remote
        .codecs
        .iter()
        .find(|c| is_telephone_event(&c.name) && c.clock_rate == 8000)
        .map(|c| c.payload_type);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut answer = Session::new(Origin::with_ip_addr(now, now, local), "-");
    answer.set_connection(Connection::from_ip_addr(local));
    answer.add_time(sdp_types::Time::new(0, 0));
    for (i, offered) in offered.iter().enumerate() {
        let mut media = Media {
            media: offered.media.to_owned(),
            port: 0,
            num_ports: None,
            proto: offered.proto.to_owned(),
            fmt: offered.fmt.to_owned(),
            media_title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        };
        if i == index {
            media.port = port;
            media.fmt = payload_type.to_string();
            media.add_attribute_with_value("rtpmap", format!("{payload_type} {}/8000", law.encoding_name()));
            if let Some(te) = telephone_event_pt {
                media.fmt = format!("{payload_type} {te}");
                media.add_attribute_with_value("rtpmap", format!("{te} telephone-event/8000"));
                media.add_attribute_with_value("fmtp", format!("{te} 0-16"));
            }
            media.add_attribute_with_value("ptime", "20");
            media.add_attribute_from_str("sendrecv");
            if let Some((out, _)) = &srtp {
                media.proto = out.proto.clone();
                for line in &out.lines {
                    media.add_attribute_with_value("crypto", line.clone());
                }
            }
        }
        answer.add_media(media);
    }
    Ok((
        serialize(&answer),
        VoicemailMedia {
            law,
            payload_type,
            telephone_event_pt,
            remote,
        },
        srtp.map(|(_, leg)| leg),
    ))
}

#[cfg(test)]
mod offer_tests {
    use super::*;

    #[test]
    fn own_offer_is_readable_and_narrowed() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let offer = build_offer_sdp(ip, 30000, Some(&["PCMA".to_string()]));
        let text = std::str::from_utf8(&offer).unwrap();
        assert!(text.contains("m=audio 30000 RTP/AVP 8 101\r\n"), "{text}");
        let (_, remote) = rewrite_sdp(&offer, ip, 40000, None).unwrap();
        assert_eq!(remote.rtp_port, 30000);
        assert_eq!(remote.telephone_event_pt, Some(101));
    }
}
