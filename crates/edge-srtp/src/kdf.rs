//! AES counter mode as SRTP uses it (RFC 3711 §4.1.1) and the AES-CM key derivation built on it
//! (RFC 3711 §4.3; RFC 7714 §11 keeps the same PRF for GCM).

use aes::cipher::BlockCipherEncrypt;
use aes::{Aes128, Block};

/// Blocks per call into AES (512 bytes of payload). Each call has a fixed cost (the VAES backend
/// of `aes` broadcasts the round keys per call), so a G.711 payload (10 blocks) goes in one call.
const CHUNK: usize = 32;

/// XORs `data` with the AES-CM keystream that starts at counter block `iv` (the counter is the
/// whole 128-bit block, big-endian; SRTP only ever carries into its low 16 bits).
///
/// Written over `encrypt_blocks` rather than the `ctr` crate's stream type so the per-packet path
/// borrows the expanded key instead of cloning it into a fresh cipher per packet.
pub(crate) fn aes_cm_xor(aes: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let start = u128::from_be_bytes(*iv);
    let mut blocks = [Block::default(); CHUNK];
    for (n, chunk) in data.chunks_mut(16 * CHUNK).enumerate() {
        let count = chunk.len().div_ceil(16);
        for (j, block) in blocks[..count].iter_mut().enumerate() {
            let counter = start.wrapping_add((n * CHUNK + j) as u128);
            *block = Block::from(counter.to_be_bytes());
        }
        aes.encrypt_blocks(&mut blocks[..count]);
        for (bytes, keystream) in chunk.chunks_mut(16).zip(&blocks[..count]) {
            for (b, k) in bytes.iter_mut().zip(keystream.iter()) {
                *b ^= k;
            }
        }
    }
}

/// Key derivation labels (RFC 3711 §4.3.2).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(crate) enum Label {
    RtpEncryption = 0,
    RtpAuth = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuth = 4,
    RtcpSalt = 5,
}

/// Fills `out` with the session key of `label` (RFC 3711 §4.3.1 with a key derivation rate of 0,
/// the only one the edge accepts, so `r` is 0 and each session key is derived once).
///
/// `master_salt` is the 14-byte salt; a 12-byte GCM salt is zero-padded on the right as libsrtp
/// does, which puts the label at byte 7 for every suite.
pub(crate) fn derive(master: &Aes128, master_salt: &[u8; 14], label: Label, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label as u8;
    out.fill(0);
    aes_cm_xor(master, &iv, out);
}
