//! Master keys: the secret an SDES `inline:` parameter carries.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::KeyError;
use crate::suite::{SrtpSuite, KEY_LEN, MAX_SALT_LEN};

/// Master key and master salt of one direction of one leg, for one suite.
///
/// Wiped from memory on drop, and its `Debug` names only the suite: keys must never reach logs,
/// call records or metrics, and a `{:?}` of a struct that holds one is the usual way they would.
/// There is deliberately no `Display`; [`crate::CryptoAttribute::to_sdp_value`] is the one way
/// out, for the SDP body only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    #[zeroize(skip)]
    suite: SrtpSuite,
    key: [u8; KEY_LEN],
    salt: [u8; MAX_SALT_LEN],
}

impl MasterKey {
    /// Master key || master salt as SDES carries them; the length must be the suite's exactly.
    pub fn from_bytes(suite: SrtpSuite, key_salt: &[u8]) -> Result<MasterKey, KeyError> {
        let expected = suite.key_len() + suite.salt_len();
        if key_salt.len() != expected {
            return Err(KeyError::Length {
                suite,
                expected,
                got: key_salt.len(),
            });
        }
        let mut key = MasterKey {
            suite,
            key: [0; KEY_LEN],
            salt: [0; MAX_SALT_LEN],
        };
        key.key.copy_from_slice(&key_salt[..KEY_LEN]);
        key.salt[..suite.salt_len()].copy_from_slice(&key_salt[KEY_LEN..]);
        Ok(key)
    }

    /// A fresh key from the OS random source: the edge's own key for a leg it encrypts towards
    /// (it never forwards a peer's key to the other leg).
    pub fn generate(suite: SrtpSuite) -> Result<MasterKey, KeyError> {
        let mut key = MasterKey {
            suite,
            key: [0; KEY_LEN],
            salt: [0; MAX_SALT_LEN],
        };
        getrandom::fill(&mut key.key).map_err(|_| KeyError::Rng)?;
        getrandom::fill(&mut key.salt[..suite.salt_len()]).map_err(|_| KeyError::Rng)?;
        Ok(key)
    }

    /// The suite this key is for.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// The master key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The master salt bytes (14 for AES-CM, 12 for GCM).
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.suite.salt_len()]
    }

    /// Key || salt, zero-padded to 30 bytes; `len` is the used part. The caller wipes the copy.
    pub(crate) fn key_salt(&self) -> ([u8; KEY_LEN + MAX_SALT_LEN], usize) {
        let mut out = [0u8; KEY_LEN + MAX_SALT_LEN];
        out[..KEY_LEN].copy_from_slice(&self.key);
        out[KEY_LEN..].copy_from_slice(&self.salt);
        (out, KEY_LEN + self.suite.salt_len())
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl PartialEq for MasterKey {
    /// Constant-time: comparing keys (say, a re-INVITE's unchanged key) must not leak them.
    fn eq(&self, other: &MasterKey) -> bool {
        let mut diff = 0u8;
        for (a, b) in self
            .key
            .iter()
            .chain(&self.salt)
            .zip(other.key.iter().chain(&other.salt))
        {
            diff |= a ^ b;
        }
        self.suite == other.suite && diff == 0
    }
}

impl Eq for MasterKey {}
