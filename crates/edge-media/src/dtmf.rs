//! RFC 4733 telephone-event parsing with end-packet de-duplication.

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9 digits, 10 `*`, 11 `#`, 12-15 A-D.
    pub event: u8,
    /// E bit: last packets of the event (sent three times).
    pub end: bool,
    /// Volume in -dBm0.
    pub volume: u8,
    /// Duration so far in timestamp units.
    pub duration: u16,
}

/// Event code of `#`.
pub const EVENT_HASH: u8 = 11;

/// Parses a telephone-event payload (first 4 bytes; redundant blocks ignored).
pub fn parse_telephone_event(payload: &[u8]) -> Option<TelephoneEvent> {
    let b = payload.get(..4)?;
    Some(TelephoneEvent {
        event: b[0],
        end: b[1] & 0x80 != 0,
        volume: b[1] & 0x3F,
        duration: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// Reports each completed event once although its end packet is repeated.
#[derive(Debug, Default, Clone)]
pub struct DtmfDetector {
    /// (RTP timestamp, event) of the last reported end: all packets of one
    /// event share the timestamp of its start.
    last_end: Option<(u32, u8)>,
}

impl DtmfDetector {
    /// Feeds one telephone-event RTP packet; returns the event code when an
    /// event ends for the first time.
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<u8> {
        let ev = parse_telephone_event(payload)?;
        if !ev.end || ev.event > 15 {
            return None;
        }
        let key = (rtp_timestamp, ev.event);
        if self.last_end == Some(key) {
            return None;
        }
        self.last_end = Some(key);
        Some(ev.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reported_once() {
        let mut d = DtmfDetector::default();
        assert_eq!(d.on_packet(1000, &[11, 0x0A, 0, 160]), None);
        assert_eq!(d.on_packet(1000, &[11, 0x8A, 3, 32]), Some(EVENT_HASH));
        assert_eq!(d.on_packet(1000, &[11, 0x8A, 3, 32]), None);
        assert_eq!(d.on_packet(1000, &[11, 0x8A, 3, 32]), None);
        // Same digit pressed again: new timestamp, reported again.
        assert_eq!(d.on_packet(5000, &[11, 0x8A, 3, 32]), Some(EVENT_HASH));
        assert_eq!(d.on_packet(6000, &[11]), None, "truncated payload ignored");
    }
}
