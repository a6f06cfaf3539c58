//! TCP/TLS stream framing (RFC 3261 18.3): cut messages by the blank line and Content-Length,
//! and recognise RFC 5626 keep-alives. Memory is bounded: the buffer never holds more than
//! `max_message_size` bytes, so a peer streaming bytes without a blank line gets an error
//! instead of growing memory.

use bytes::{Buf, Bytes, BytesMut};

use crate::headers::lex::{parse_u64, trim_lws};
use crate::headers::{id, known_id};

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (headers + Content-Length body), ready for `Message::parse_stream`.
    Message(Bytes),
    /// CRLFCRLF ping: answer with a single CRLF.
    KeepAlivePing,
    /// A single CRLF (pong, or a stray CRLF between messages).
    KeepAlivePong,
}

/// Unrecoverable framing errors: the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("stream message without Content-Length")]
    MissingContentLength,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
}

/// Incremental framer over a byte stream.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max: usize,
    /// Bytes were refused because the buffer was full.
    overflow: bool,
    /// Bytes already scanned for the end of headers without finding it.
    scanned: usize,
}

impl StreamFramer {
    pub fn new(max_message_size: usize) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            max: max_message_size,
            overflow: false,
            scanned: 0,
        }
    }

    /// How many bytes `push` will still accept; read at most this much from the socket.
    pub fn remaining_capacity(&self) -> usize {
        self.max.saturating_sub(self.buf.len())
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes. Bytes beyond `max_message_size` of buffer are dropped and
    /// make `next` fail once the complete frames before them are drained.
    pub fn push(&mut self, data: &[u8]) {
        let room = self.remaining_capacity();
        if data.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Next complete frame, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        match self.next_inner()? {
            Some(f) => Ok(Some(f)),
            None if self.overflow => Err(FrameError::TooLarge { max: self.max }),
            None => Ok(None),
        }
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, FrameError> {
        let b = &self.buf[..];
        if b.starts_with(b"\r\n") {
            if b.starts_with(b"\r\n\r\n") {
                self.consume(4);
                return Ok(Some(Frame::KeepAlivePing));
            }
            // `\r\n` and `\r\n\r` may be a ping cut by the reads: the next byte decides.
            if b.len() == 2 || (b.len() == 3 && b[2] == b'\r') {
                return Ok(None);
            }
            // "\r\n" alone, or followed by a start line: a pong / stray CRLF.
            self.consume(2);
            return Ok(Some(Frame::KeepAlivePong));
        }
        let Some(head_end) = self.find_head_end() else {
            if self.buf.len() >= self.max {
                return Err(FrameError::TooLarge { max: self.max });
            }
            return Ok(None);
        };
        let cl = content_length(&self.buf[..head_end])?;
        let total = head_end
            .checked_add(cl)
            .filter(|&t| t <= self.max)
            .ok_or(FrameError::TooLarge { max: self.max })?;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.scanned = 0;
        let message = self.buf.split_to(total).freeze();
        self.release_if_empty();
        Ok(Some(Frame::Message(message)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.scanned = 0;
        self.release_if_empty();
    }

    /// With nothing buffered, the allocation the last message came from is let go (it is freed with
    /// that message): an idle connection holds no framer buffer.
    fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Index just past the blank line ending the headers (CRLFCRLF, or bare LFs).
    fn find_head_end(&mut self) -> Option<usize> {
        let b = &self.buf[..];
        // Resume a little before where the last scan stopped (a terminator may straddle).
        let mut i = self.scanned.saturating_sub(3);
        while let Some(off) = memchr::memchr(b'\n', &b[i..]) {
            let lf = i + off;
            match (b.get(lf + 1), b.get(lf + 2)) {
                (Some(b'\n'), _) => return Some(lf + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
                _ => i = lf + 1,
            }
        }
        self.scanned = b.len();
        None
    }
}

/// Whether a framed message starts with a SIP start line: `Method SP Request-URI SP SIP/2.0` or
/// `SIP/2.0 SP 3DIGIT [SP Reason]` (RFC 3261 7.1, 7.2).
///
/// The cheap test a TCP reader applies until a connection has said something in SIP: it reads the
/// first line only (one `memchr`), so a stream of framed garbage (`Content-Length: 0` and a blank line
/// after anything) does not count as SIP, without parsing the message a second time. The full parse,
/// with its 400 answers, stays with the engine.
pub fn starts_with_sip_line(frame: &[u8]) -> bool {
    let end = memchr::memchr(b'\n', frame).unwrap_or(frame.len());
    let line = frame[..end].strip_suffix(b"\r").unwrap_or(&frame[..end]);
    let is_version = |v: &[u8]| v.eq_ignore_ascii_case(b"SIP/2.0");
    let mut parts = line.splitn(3, |&c| c == b' ');
    let (Some(first), Some(second)) = (parts.next(), parts.next()) else {
        return false;
    };
    if is_version(first) {
        // A status line: three digits, 100-699, then a space and a reason phrase (which may be empty).
        return second.len() == 3
            && second.iter().all(u8::is_ascii_digit)
            && (b'1'..=b'6').contains(&second[0])
            && parts
                .next()
                .is_none_or(|reason| !reason.iter().any(|&c| c < b' ' && c != b'\t'));
    }
    let Some(version) = parts.next() else {
        return false;
    };
    !first.is_empty()
        && first.iter().all(|&c| crate::headers::lex::is_token_char(c))
        && !second.is_empty()
        && second.iter().all(|&c| c > b' ' && c != 0x7f)
        && is_version(version)
}

/// Content-Length from a header block; required on streams, duplicates must agree.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    // Skip the start line, then look at each header line (folded lines never start a name).
    let mut lines = head.split(|&c| c == b'\n').skip(1);
    for line in &mut lines {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            continue;
        }
        let name = trim_ascii(&line[..colon]);
        if known_id(name) != id::CONTENT_LENGTH {
            continue;
        }
        let v = std::str::from_utf8(&line[colon + 1..]).map_err(|_| FrameError::InvalidContentLength)?;
        let n = parse_u64(trim_lws(v))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(FrameError::InvalidContentLength)?;
        match found {
            Some(p) if p != n => return Err(FrameError::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(FrameError::MissingContentLength)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}
