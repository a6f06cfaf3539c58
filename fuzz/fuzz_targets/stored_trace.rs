//! Stored SIP traces (`edge_api::traces::stored`): what `GET /v1/calls/{id}/trace` reads from the store.
//! A damaged row must be refused or read, never a panic.
//!
//! Input: `[mode, bytes...]`. Mode 0: `bytes` as a stored trace's text after its magic line. Mode 1:
//! `bytes` as one message's text, stored with `begin`/`push` and read back: the same text, start line and
//! headers split from it, whatever its bytes.
#![no_main]

use edge_api::traces::{stored, TraceDirection};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 2 == 0 {
        let _ = stored::decode("call_fuzz", &format!("SIPTRACE1\n{text}"));
        return;
    }
    let legs = vec![("a@b".to_owned(), "carrier".to_owned())];
    let mut s = stored::begin(&legs, 0, 0, text.len());
    stored::push(
        &mut s,
        &stored::StoredMessage {
            t_us: 1,
            direction: TraceDirection::In,
            transport: "udp",
            peer: "127.0.0.1:5080",
            local: "127.0.0.1:5060",
            leg: 0,
            text: &text,
        },
    );
    let t = stored::decode("call_fuzz", &s).expect("a trace we wrote reads back");
    assert_eq!(t.messages.len(), 1);
    let m = &t.messages[0];
    assert!(text.starts_with(&m.start_line), "{:?}", m.start_line);
    assert!(text.ends_with(&m.body), "{:?}", m.body);
});
