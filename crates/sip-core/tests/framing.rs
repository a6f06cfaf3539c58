//! Stream framing: split reads, pipelining, keep-alives, bounded memory.

use sip_core::framing::{Frame, FrameError, StreamFramer};
use sip_core::message::Message;

const MSG: &[u8] = b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:x@y>\r\n\
From: <sip:a@b>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

fn drain(f: &mut StreamFramer) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(fr) = f.next().unwrap() {
        out.push(fr);
    }
    out
}

#[test]
fn byte_by_byte_split_reads() {
    let mut f = StreamFramer::new(65536);
    let mut frames = Vec::new();
    for b in MSG.iter().chain(MSG) {
        f.push(&[*b]);
        frames.extend(drain(&mut f));
    }
    assert_eq!(frames.len(), 2);
    for fr in frames {
        let Frame::Message(m) = fr else { panic!("{fr:?}") };
        assert_eq!(&m[..], MSG);
        assert_eq!(Message::parse_stream(m).unwrap().body(), b"body");
    }
    assert_eq!(f.buffered(), 0);
}

#[test]
fn pipelined_with_keepalives() {
    let mut f = StreamFramer::new(65536);
    let mut data = b"\r\n\r\n".to_vec();
    data.extend_from_slice(MSG);
    data.extend_from_slice(b"\r\n");
    data.extend_from_slice(MSG);
    f.push(&data);
    let frames = drain(&mut f);
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(frames[0], Frame::KeepAlivePing);
    assert!(matches!(frames[1], Frame::Message(_)));
    assert_eq!(frames[2], Frame::KeepAlivePong);
    assert!(matches!(frames[3], Frame::Message(_)));
    // A half-received ping waits.
    f.push(b"\r\n\r");
    assert_eq!(f.next().unwrap(), None);
    f.push(b"\n");
    assert_eq!(f.next().unwrap(), Some(Frame::KeepAlivePing));
}

/// Found by the tcp_framer fuzz target: a ping read as `\r\n` then `\r\n` was taken for two pongs, so a
/// peer's keep-alive went unanswered whenever TCP cut it in the middle.
#[test]
fn ping_cut_after_its_first_crlf_is_still_a_ping() {
    let mut f = StreamFramer::new(65536);
    f.push(b"\r\n");
    assert_eq!(f.next().unwrap(), None, "a lone CRLF may be half a ping");
    f.push(b"\r\n");
    assert_eq!(f.next().unwrap(), Some(Frame::KeepAlivePing));
    assert_eq!(f.buffered(), 0);
    // A CRLF followed by anything else is a pong; the message after it is framed as usual.
    f.push(b"\r\n");
    assert_eq!(f.next().unwrap(), None);
    f.push(MSG);
    assert_eq!(drain(&mut f), vec![Frame::KeepAlivePong, Frame::Message(MSG.into())]);
}

#[test]
fn flood_without_blank_line_is_bounded() {
    let max = 4096;
    let mut f = StreamFramer::new(max);
    let chunk = [b'a'; 1000];
    let mut err = None;
    for _ in 0..100 {
        f.push(&chunk);
        assert!(f.buffered() <= max);
        if let Err(e) = f.next() {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(FrameError::TooLarge { max }));
    assert!(f.buffered() <= max);
}

#[test]
fn oversized_content_length_and_missing_length() {
    let mut f = StreamFramer::new(1024);
    f.push(b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 5000\r\n\r\n");
    assert_eq!(f.next(), Err(FrameError::TooLarge { max: 1024 }));
    let mut f = StreamFramer::new(1024);
    f.push(b"OPTIONS sip:x@y SIP/2.0\r\nVia: x\r\n\r\n");
    assert_eq!(f.next(), Err(FrameError::MissingContentLength));
    let mut f = StreamFramer::new(1024);
    f.push(b"OPTIONS sip:x@y SIP/2.0\r\nl: 1\r\ncontent-length : 2\r\n\r\nab");
    assert_eq!(f.next(), Err(FrameError::ConflictingContentLength));
    let mut f = StreamFramer::new(1024);
    f.push(b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: -1\r\n\r\n");
    assert_eq!(f.next(), Err(FrameError::InvalidContentLength));
}

#[test]
fn push_beyond_capacity_fails_after_complete_frames() {
    let mut f = StreamFramer::new(MSG.len() + 10);
    let mut data = MSG.to_vec();
    data.extend_from_slice(MSG);
    f.push(&data);
    assert!(matches!(f.next(), Ok(Some(Frame::Message(_)))));
    assert_eq!(f.next(), Err(FrameError::TooLarge { max: MSG.len() + 10 }));
}

/// What a TCP reader accepts as "this connection spoke SIP": a request or status line, nothing else.
#[test]
fn sip_start_lines_are_told_from_garbage() {
    use sip_core::framing::starts_with_sip_line;
    for ok in [
        MSG,
        b"INVITE sip:+14155550100@edge;transport=tcp SIP/2.0\r\nContent-Length: 0\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"SIP/2.0 404\r\n\r\n",
        b"sip/2.0 183 Session Progress\r\n\r\n",
        b"FOO-BAR sip:x SIP/2.0\n\n",
    ] {
        assert!(starts_with_sip_line(ok), "{}", String::from_utf8_lossy(ok));
    }
    for bad in [
        &b""[..],
        b"\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"hello\r\nContent-Length: 0\r\n\r\n",
        b"OPTIONS sip:x SIP/3.0\r\n\r\n",
        b"OPTIONS  sip:x SIP/2.0\r\n\r\n",
        b"OPTIONS sip:x\x01y SIP/2.0\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0 extra\r\n\r\n",
        b"OPT(ONS sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 20 OK\r\n\r\n",
        b"SIP/2.0 700 Odd\r\n\r\n",
        b"SIP/2.0 200 O\x00K\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
    ] {
        assert!(!starts_with_sip_line(bad), "{}", String::from_utf8_lossy(bad));
    }
}
