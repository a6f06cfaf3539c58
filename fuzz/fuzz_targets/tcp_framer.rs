//! The TCP stream framer (`sip_core::framing::StreamFramer`), with the stream cut into reads of any size.
//!
//! Input: `[max, cuts, stream...]`. `max` picks the framer's message limit (small ones make the overflow
//! paths reachable with short inputs), `cuts` seeds the read sizes. The stream is fed three ways:
//! 1. one byte per read, 2. reads of pseudo-random sizes, both as `transport::tcp` is meant to read (at most
//! `remaining_capacity()` bytes, then every complete frame is taken); 3. reads of any size, ignoring the
//! capacity (a careless driver). Must hold:
//! - 1 and 2 cut the same frames and end the same way (how TCP splits a stream changes nothing);
//! - the frames, with pings as CRLFCRLF and pongs as CRLF, are exactly the start of the stream;
//! - no message frame and no buffer is ever larger than `max`;
//! - every message frame is what `Message::parse_stream` is given in production, so it is parsed too.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip_core::framing::{Frame, FrameError, StreamFramer};
use sip_core::message::Message;

/// Frame limits to pick from: tiny ones reach the limits, the last is the edge's default.
const MAXES: [usize; 8] = [16, 64, 200, 512, 1500, 4096, 16384, 65535];

fuzz_target!(|data: &[u8]| {
    let [max_sel, cut_seed, stream @ ..] = data else {
        return;
    };
    let max = MAXES[usize::from(*max_sel) % MAXES.len()];
    let bytewise = run(stream, max, |_, _| 1, true);
    let mut rng = u64::from(*cut_seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let chunked = run(stream, max, |_, _| next_len(&mut rng), true);
    assert_eq!(
        bytewise.frames, chunked.frames,
        "frames depend on how the stream was read"
    );
    assert_eq!(
        bytewise.end, chunked.end,
        "the ending depends on how the stream was read"
    );
    let mut rng = u64::from(*cut_seed).wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    // A careless reader may lose bytes past the limit (the framer then fails); it must still not panic
    // nor exceed its bounds, which `run` checks.
    let _ = run(stream, max, |_, _| next_len(&mut rng), false);
});

/// Read sizes: mostly small, sometimes large (xorshift, so a cut seed replays exactly).
fn next_len(s: &mut u64) -> usize {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    match *s % 8 {
        0 => 1 + (*s >> 8) as usize % 4096,
        _ => 1 + (*s >> 8) as usize % 64,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Cut {
    Message(Bytes),
    Ping,
    Pong,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Stream consumed; this many bytes wait for more.
    NeedMore(usize),
    Error(FrameError),
}

struct Outcome {
    frames: Vec<Cut>,
    end: End,
}

fn run(stream: &[u8], max: usize, mut read_len: impl FnMut(usize, usize) -> usize, honour_capacity: bool) -> Outcome {
    let mut f = StreamFramer::new(max);
    let mut frames = Vec::new();
    let mut consumed_text: Vec<u8> = Vec::new();
    let mut pos = 0;
    let end = 'feed: loop {
        if pos >= stream.len() {
            break End::NeedMore(f.buffered());
        }
        let mut n = read_len(pos, max).min(stream.len() - pos);
        if honour_capacity {
            let room = f.remaining_capacity();
            // After every complete frame is taken, a framer that still waits always has room (else it
            // would have failed): a driver reading `remaining_capacity()` bytes never reads zero.
            assert!(room > 0, "framer waits for more with a full buffer");
            n = n.min(room);
        }
        f.push(&stream[pos..pos + n]);
        pos += n;
        assert!(f.buffered() <= max, "buffer {} over the limit {max}", f.buffered());
        loop {
            match f.next() {
                Ok(None) => break,
                Ok(Some(Frame::Message(m))) => {
                    assert!(m.len() <= max, "frame of {} bytes over the limit {max}", m.len());
                    let _ = Message::parse_stream(m.clone());
                    consumed_text.extend_from_slice(&m);
                    frames.push(Cut::Message(m));
                }
                Ok(Some(Frame::KeepAlivePing)) => {
                    consumed_text.extend_from_slice(b"\r\n\r\n");
                    frames.push(Cut::Ping);
                }
                Ok(Some(Frame::KeepAlivePong)) => {
                    consumed_text.extend_from_slice(b"\r\n");
                    frames.push(Cut::Pong);
                }
                Err(e) => break 'feed End::Error(e),
            }
        }
    };
    assert!(
        stream.starts_with(&consumed_text),
        "frames are not the start of the stream"
    );
    if let End::NeedMore(waiting) = end {
        assert_eq!(consumed_text.len() + waiting, stream.len(), "bytes lost");
    }
    Outcome { frames, end }
}
