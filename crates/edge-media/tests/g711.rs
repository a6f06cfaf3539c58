//! G.711 reference vectors and round trips.

use edge_media::g711::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear};
use edge_media::G711Law;

#[test]
fn known_values() {
    // ITU-T G.711 / Sun reference: silence and full-scale codes.
    assert_eq!(linear_to_ulaw(0), 0xFF);
    assert_eq!(ulaw_to_linear(0xFF), 0);
    assert_eq!(ulaw_to_linear(0x80), 32124);
    assert_eq!(ulaw_to_linear(0x00), -32124);
    assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
    assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    assert_eq!(linear_to_ulaw(-1), 0x7F);
    assert_eq!(linear_to_alaw(0), 0xD5);
    assert_eq!(alaw_to_linear(0xD5), 8);
    assert_eq!(alaw_to_linear(0x55), -8);
    assert_eq!(alaw_to_linear(0xAA), 32256);
    assert_eq!(alaw_to_linear(0x2A), -32256);
    assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
    assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    // Entry 163 of the published µ-law decode table (SoX g711.c): 32124 .. 7932, 7676, 7420, 7164.
    assert_eq!(ulaw_to_linear(0xA3), 7164, "mid-scale µ-law code");
    assert_eq!(linear_to_ulaw(1000), 0xCE);
    assert_eq!(linear_to_alaw(1000), 0xFA);
}

#[test]
fn every_code_round_trips() {
    for b in 0..=255u8 {
        assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law {b:#x}");
        // 0x7F is µ-law "negative zero", which decodes to 0 and re-encodes as 0xFF.
        if b != 0x7F {
            assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), b, "µ-law {b:#x}");
        }
    }
}

#[test]
fn linear_round_trip_error_within_quantization() {
    for law in [G711Law::Ulaw, G711Law::Alaw] {
        let mut prev = i16::MIN;
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let y = law.decode(law.encode(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            // Step size is ≤ 1/16 of the magnitude plus the smallest step.
            assert!(err <= i32::from(x).abs() / 16 + 40, "{law:?} {x} -> {y}");
            assert!(y >= prev, "{law:?} decoding is monotonic");
            prev = y;
        }
    }
}
