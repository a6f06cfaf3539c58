//! The crypto suites the edge speaks (RFC 4568 §6.2, RFC 7714 §14.1).

/// An SRTP crypto suite. Exhaustive on purpose: adding one (say AES-256) must touch every `match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// RFC 4568 §6.2.1, the suite every SDES peer must offer: AES-CM, 80-bit HMAC-SHA1 tag.
    AesCm128HmacSha1_80,
    /// RFC 4568 §6.2.2: 32-bit tag on SRTP (saves 6 bytes per packet); SRTCP keeps the 80-bit tag.
    AesCm128HmacSha1_32,
    /// RFC 7714: AES-128-GCM, 16-byte tag, 96-bit salt.
    AeadAes128Gcm,
}

/// Master and session cipher key length of every suite here (AES-128).
pub(crate) const KEY_LEN: usize = 16;
/// Longest master salt (the AES-CM suites'); the GCM salt is 12 bytes.
pub(crate) const MAX_SALT_LEN: usize = 14;

impl SrtpSuite {
    /// Every suite, in the edge's order of preference when it offers (strongest first).
    pub const ALL: [SrtpSuite; 3] = [
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The name in an SDES `a=crypto` line.
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The suite of an SDES name; `None` for a suite the edge does not implement.
    pub fn from_sdes_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL.into_iter().find(|s| s.sdes_name() == name)
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        KEY_LEN
    }

    /// Master (and session) salt length in bytes: 112 bits for AES-CM, 96 for GCM (RFC 7714 §12).
    pub fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 | SrtpSuite::AesCm128HmacSha1_32 => 14,
            SrtpSuite::AeadAes128Gcm => 12,
        }
    }

    /// Bytes an SRTP packet grows by when protected (without MKI).
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
            SrtpSuite::AeadAes128Gcm => 16,
        }
    }

    /// Authentication tag length of SRTCP: 80 bits for both AES-CM suites (RFC 4568 §6.2.2).
    pub fn rtcp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 | SrtpSuite::AesCm128HmacSha1_32 => 10,
            SrtpSuite::AeadAes128Gcm => 16,
        }
    }

    pub(crate) fn is_gcm(self) -> bool {
        matches!(self, SrtpSuite::AeadAes128Gcm)
    }
}

impl std::fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sdes_name())
    }
}
