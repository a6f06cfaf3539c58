//! SRTP relay cost per packet: protect + unprotect of a 172-byte G.711 RTP packet (12-byte header,
//! 160-byte payload), ours (RustCrypto primitives) against webrtc-srtp, for AES_CM_128_HMAC_SHA1_80
//! and AEAD_AES_128_GCM. Criterion reports packets/s as elements/s; the figures and the command are
//! in README.md ("Why our own SRTP on RustCrypto").
//!
//! `cargo bench -p edge-srtp --bench srtp`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_srtp::{MasterKey, SrtpContext, SrtpSuite};
use webrtc_srtp::context::Context as WebrtcContext;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn g711_packet() -> Vec<u8> {
    let mut packet = vec![0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0x12, 0x34, 0x56, 0x78];
    packet.extend((0..160u32).map(|i| (i * 7) as u8));
    packet
}

fn fixed_key(suite: SrtpSuite) -> Vec<u8> {
    (0..(suite.key_len() + suite.salt_len()) as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect()
}

fn relay(c: &mut Criterion) {
    if cfg!(target_arch = "x86_64") {
        #[cfg(target_arch = "x86_64")]
        eprintln!(
            "cpu: aes-ni={} pclmulqdq={} (the aes and ghash crates pick these at run time)",
            std::arch::is_x86_feature_detected!("aes"),
            std::arch::is_x86_feature_detected!("pclmulqdq"),
        );
    }
    let template = g711_packet();
    let mut group = c.benchmark_group("srtp_relay_g711_172B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    for (suite, profile) in [
        (SrtpSuite::AesCm128HmacSha1_80, ProtectionProfile::Aes128CmHmacSha1_80),
        (SrtpSuite::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm),
    ] {
        let key_salt = fixed_key(suite);
        let master = MasterKey::from_bytes(suite, &key_salt).unwrap();

        group.bench_function(format!("edge-srtp/{suite}"), |b| {
            let mut tx = SrtpContext::new(&master);
            let mut rx = SrtpContext::new(&master);
            let mut packet = Vec::with_capacity(template.len() + tx.max_overhead());
            let mut seq: u16 = 0;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                packet.clear();
                packet.extend_from_slice(&template);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                tx.protect_rtp(&mut packet).unwrap();
                rx.unprotect_rtp(black_box(&mut packet)).unwrap();
                black_box(&packet);
            });
        });

        group.bench_function(format!("webrtc-srtp/{suite}"), |b| {
            let (key, salt) = key_salt.split_at(suite.key_len());
            let mut tx = WebrtcContext::new(key, salt, profile, None, None).unwrap();
            let mut rx = WebrtcContext::new(key, salt, profile, None, None).unwrap();
            let mut plain = template.clone();
            let mut seq: u16 = 0;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                plain[2..4].copy_from_slice(&seq.to_be_bytes());
                let protected = tx.encrypt_rtp(&plain).unwrap();
                let clear = rx.decrypt_rtp(black_box(&protected)).unwrap();
                black_box(clear);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
