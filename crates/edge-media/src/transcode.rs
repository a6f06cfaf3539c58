//! G.711 law conversion in the relay: PCMU <-> PCMA, byte for byte, in place.
//!
//! Why the relay converts rather than re-INVITE the carrier: once the carrier has an answer (a 183 from the
//! first agent, or the agent a transfer replaced), RFC 3261 13.2.1 makes it ignore any other SDP in later
//! responses to its INVITE, so a fallback agent or transfer target that chose the other law cannot be
//! announced until the call is up; a re-INVITE then costs a round trip, a glitch, and fails on carriers
//! that refuse mid-call offers. Both laws are 8-bit samples at 8 kHz, so conversion is one table lookup per
//! byte into the same buffer: same length, same timestamps, no allocation, no added delay.
//!
//! Which packets are converted follows from the SDP alone ([`law_rule`]): toward a side whose session names
//! one G.711 law only, audio in the sender's payload type for the other law is converted and re-labelled.
//! Everything else (DTMF events, comfort noise, other codecs, RTCP) passes untouched.

use std::sync::OnceLock;

use crate::g711::G711Law;

/// How to convert audio toward one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LawRule {
    /// The law the receiving side's session has, and its payload type for it.
    pub(crate) to_law: G711Law,
    pub(crate) to_pt: u8,
    /// The payload type the sending side uses for the other law: packets with it are converted.
    pub(crate) from_pt: u8,
}

/// The rule toward a side from what its peer declared it takes (`declared`, its SDP, in order) and what the
/// edge presented to it (`presented`: the laws of the SDP the edge sent there, `None` before any), given the
/// G.711 payload types the sending side declared (`sender`). `None`: nothing to convert.
pub(crate) fn law_rule(
    declared: &[(u8, G711Law)],
    presented: Option<&[G711Law]>,
    sender: &[(u8, G711Law)],
) -> Option<LawRule> {
    let takes = |law: G711Law| presented.is_none_or(|p| p.contains(&law));
    let mut receivable = declared.iter().filter(|(_, law)| takes(*law));
    let &(to_pt, to_law) = receivable.next()?;
    if receivable.any(|(_, law)| *law != to_law) {
        // It takes both laws: whatever the sender picks is fine.
        return None;
    }
    let other = match to_law {
        G711Law::Ulaw => G711Law::Alaw,
        G711Law::Alaw => G711Law::Ulaw,
    };
    let &(from_pt, _) = sender.iter().find(|(_, law)| *law == other)?;
    Some(LawRule { to_law, to_pt, from_pt })
}

/// `[µ-law -> A-law, A-law -> µ-law]`, through the linear value (the reference coders of `g711.rs`).
fn tables() -> &'static [[u8; 256]; 2] {
    static TABLES: OnceLock<[[u8; 256]; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = [[0u8; 256]; 2];
        for b in 0..=255u8 {
            t[0][usize::from(b)] = G711Law::Alaw.encode(G711Law::Ulaw.decode(b));
            t[1][usize::from(b)] = G711Law::Ulaw.encode(G711Law::Alaw.decode(b));
        }
        t
    })
}

/// The payload of an RTP packet: after the CSRCs and header extension, before the padding. `None` when the
/// header's own lengths do not fit the packet.
fn payload_range(packet: &[u8]) -> Option<std::ops::Range<usize>> {
    let first = *packet.first()?;
    let mut start = 12 + 4 * usize::from(first & 0x0F);
    if first & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let padding = if first & 0x20 != 0 {
        usize::from(*packet.last()?)
    } else {
        0
    };
    let end = packet.len().checked_sub(padding)?;
    (start <= end).then_some(start..end)
}

/// Converts `packet` (an RTP packet, version already checked) in place when `rule` applies to its payload
/// type; the marker bit is kept. Returns whether it did.
pub(crate) fn apply(rule: &LawRule, packet: &mut [u8]) -> bool {
    let Some(&pt_byte) = packet.get(1) else { return false };
    if pt_byte & 0x7F != rule.from_pt {
        return false;
    }
    let Some(range) = payload_range(packet) else {
        return false;
    };
    let table = &tables()[match rule.to_law {
        G711Law::Alaw => 0,
        G711Law::Ulaw => 1,
    }];
    for b in &mut packet[range] {
        *b = table[usize::from(*b)];
    }
    packet[1] = (pt_byte & 0x80) | (rule.to_pt & 0x7F);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use G711Law::{Alaw, Ulaw};

    const BOTH: &[(u8, G711Law)] = &[(0, Ulaw), (8, Alaw)];

    #[test]
    fn the_rule_follows_the_sessions() {
        // The carrier offered both and was answered PCMU; the fallback agent answered PCMA.
        let to_carrier = law_rule(BOTH, Some(&[Ulaw]), &[(8, Alaw)]);
        assert_eq!(
            to_carrier,
            Some(LawRule {
                to_law: Ulaw,
                to_pt: 0,
                from_pt: 8
            })
        );
        let to_agent = law_rule(&[(8, Alaw)], Some(&[Ulaw, Alaw]), BOTH);
        assert_eq!(
            to_agent,
            Some(LawRule {
                to_law: Alaw,
                to_pt: 8,
                from_pt: 0
            })
        );
        // Both sides on the same law, or a side that takes both: nothing to convert.
        assert_eq!(law_rule(BOTH, Some(&[Ulaw]), &[(0, Ulaw)]), None);
        assert_eq!(law_rule(BOTH, None, &[(8, Alaw)]), None);
        // Not G.711 at all (an Opus-only peer): nothing the relay can do.
        assert_eq!(law_rule(&[], Some(&[Ulaw]), BOTH), None);
    }

    #[test]
    fn conversion_keeps_the_sound() {
        for law in [Ulaw, Alaw] {
            let other = if law == Ulaw { Alaw } else { Ulaw };
            for s in (-32_000i16..32_000).step_by(97) {
                let byte = law.encode(s);
                let rule = LawRule {
                    to_law: other,
                    to_pt: other.payload_type(),
                    from_pt: law.payload_type(),
                };
                let mut packet = [0x80, law.payload_type() | 0x80, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, byte];
                assert!(apply(&rule, &mut packet));
                assert_eq!(packet[1], 0x80 | other.payload_type(), "marker kept, type relabelled");
                let (a, b) = (law.decode(byte), other.decode(packet[12]));
                // The step of the coarser law at that level bounds the error.
                let tolerance = (i32::from(a).abs() / 16).max(16);
                assert!(
                    (i32::from(a) - i32::from(b)).abs() <= tolerance,
                    "{law:?} {s}: {a} -> {b}"
                );
            }
        }
    }

    #[test]
    fn only_the_payload_of_the_rule_type_is_converted() {
        let rule = LawRule {
            to_law: Ulaw,
            to_pt: 0,
            from_pt: 8,
        };
        // A telephone-event (101) packet passes untouched.
        let mut event = [0x80, 101, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0x0B, 0x0A, 0x00, 0xA0];
        let before = event;
        assert!(!apply(&rule, &mut event));
        assert_eq!(event, before);
        // One CSRC, a one-word extension and two bytes of padding: only the 3 payload bytes change.
        let mut packet = vec![0xB1, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9, 9, 9];
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]);
        packet.extend_from_slice(&[0xD5, 0xD5, 0xD5, 0, 2]);
        assert!(apply(&rule, &mut packet));
        assert_eq!(
            &packet[..24],
            &[0xB1, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9, 9, 9, 0xBE, 0xDE, 0, 1, 7, 7, 7, 7]
        );
        let silence = tables()[1][0xD5];
        assert_eq!(&packet[24..], &[silence, silence, silence, 0, 2]);
        assert!(
            (Ulaw.decode(silence) - Alaw.decode(0xD5)).abs() <= 8,
            "A-law silence stays silence"
        );
    }

    #[test]
    fn lying_headers_change_nothing() {
        let rule = LawRule {
            to_law: Alaw,
            to_pt: 8,
            from_pt: 0,
        };
        // 15 CSRCs claimed in a 13-byte packet; an extension longer than the packet; padding past the start.
        for mut packet in [
            vec![0x8F, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5],
            vec![0x90, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0xBE, 0xDE, 0xFF, 0xFF, 1],
            vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 200],
            vec![0x80],
        ] {
            let before = packet.clone();
            assert!(!apply(&rule, &mut packet));
            assert_eq!(packet, before);
        }
    }
}
