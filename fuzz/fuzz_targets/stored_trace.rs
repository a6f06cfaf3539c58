//! Stored SIP traces (`edge_api::traces::stored`): what `GET /v1/calls/{id}/trace` reads from the store.
//! A damaged row must be refused, never a panic or an allocation of what its header claims.
//!
//! Input: `[mode, bytes...]`. Mode 0: `bytes` as a stored text trace. Mode 1: `bytes` as the LZ4 block of a
//! packed trace (its 4-byte size first). Mode 2: `bytes` packed and unpacked give them back.
#![no_main]

use base64::Engine as _;
use edge_api::traces::stored;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    match mode % 3 {
        0 => {
            let text = format!("SIPTRACE1\n{}", String::from_utf8_lossy(rest));
            let _ = stored::decode("call_fuzz", &text);
        }
        1 => {
            let packed = format!(
                "SIPTRACE1Z\n{}",
                base64::engine::general_purpose::STANDARD.encode(rest)
            );
            let _ = stored::decode("call_fuzz", &packed);
        }
        _ => {
            let text = format!("SIPTRACE1\n{}", String::from_utf8_lossy(rest));
            let back = stored::unpack(&stored::pack(&text)).expect("our own packed trace unpacks");
            assert_eq!(back, text);
            assert_eq!(stored::decode("call_fuzz", &stored::pack(&text)), stored::decode("call_fuzz", &text));
        }
    }
});
