//! Secrets at rest: AEAD (ChaCha20-Poly1305) under an operator-supplied 32-byte key.
//!
//! Sealed values are bound to their row and column through the associated data, so a
//! ciphertext copied into another row fails to open instead of leaking there.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::fmt;
use std::path::Path;

const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;

/// A plaintext secret held in memory. `Debug`/`Display` never print it; it has no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext, for the one place that must use it (e.g. SIP digest auth).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret key given by configuration was refused. Never contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretKeyError {
    #[error("secret key must be 32 bytes given as 64 hex characters or base64")]
    BadEncoding,
    #[error("no secret key: set [secrets] key in the config or {SECRET_KEY_ENV}")]
    Missing,
    #[error("secret key file {path}: {message}")]
    KeyFile { path: String, message: String },
}

/// File (inside `[storage] data_dir`) holding a generated key when none is configured.
pub const SECRET_KEY_FILE: &str = "secret.key";

/// Environment variable that supplies (and overrides) the configured secret key.
pub const SECRET_KEY_ENV: &str = "ONEINBOX_SECRET_KEY";

/// Why a sealed value could not be opened. Never contains plaintext or ciphertext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed secret failed authentication (wrong key or tampered row)")]
    Authentication,
    #[error("system random source failed")]
    Random,
}

/// Encrypts and decrypts secret columns. Cheap to clone; the key never appears in `Debug`.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Parses the configured key (`[secrets] key` or `ONEINBOX_SECRET_KEY`):
    /// 64 hex characters, or standard/URL-safe base64 of exactly 32 bytes.
    pub fn from_encoded(encoded: &str) -> Result<Self, SecretKeyError> {
        let s = encoded.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(s).ok_or(SecretKeyError::BadEncoding)?
        } else {
            STANDARD
                .decode(s)
                .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
                .map_err(|_| SecretKeyError::BadEncoding)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretKeyError::BadEncoding)?;
        Ok(Self::new(key))
    }

    /// The key from `ONEINBOX_SECRET_KEY` if set and non-empty, else from the config's
    /// `[secrets] key`; `Missing` when neither is given (secrets are never stored unencrypted).
    pub fn resolve(config_key: Option<&str>) -> Result<Self, SecretKeyError> {
        let env = std::env::var(SECRET_KEY_ENV).ok().filter(|v| !v.trim().is_empty());
        match env.as_deref().or(config_key.filter(|k| !k.trim().is_empty())) {
            Some(k) => Self::from_encoded(k),
            None => Err(SecretKeyError::Missing),
        }
    }

    /// Like [`SecretBox::resolve`], but without env or config key falls back to
    /// `<data_dir>/secret.key`, generating it (hex, mode 0600, never overwritten) on first use,
    /// so a development install works out of the box and keeps its key across restarts.
    pub fn load_or_create(config_key: Option<&str>, data_dir: &Path) -> Result<Self, SecretKeyError> {
        match Self::resolve(config_key) {
            Err(SecretKeyError::Missing) => {}
            other => return other,
        }
        let path = data_dir.join(SECRET_KEY_FILE);
        let file_err = |e: std::io::Error| SecretKeyError::KeyFile {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => return Self::from_encoded(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(e)),
        }
        std::fs::create_dir_all(data_dir).map_err(file_err)?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SecretKeyError::KeyFile {
            path: path.display().to_string(),
            message: format!("random source failed: {e}"),
        })?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&path) {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, format!("{hex}\n").as_bytes()).map_err(file_err)?;
                Ok(Self::new(key))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::from_encoded(&std::fs::read_to_string(&path).map_err(file_err)?)
            }
            Err(e) => Err(file_err(e)),
        }
    }

    /// Seals `plaintext`, binding it to `context` (e.g. `phone_numbers.auth_password:phn_x`).
    pub fn seal(&self, context: &str, plaintext: &Secret) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption only fails for messages beyond ~256 GiB, far above any body limit.
            .map_err(|_| SecretError::Malformed)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens a value produced by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Secret, SecretError> {
        let b64 = sealed.strip_prefix(SEALED_PREFIX).ok_or(SecretError::Malformed)?;
        let raw = STANDARD.decode(b64).map_err(|_| SecretError::Malformed)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Authentication)?;
        String::from_utf8(pt).map(Secret).map_err(|_| SecretError::Malformed)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Option<Vec<u8>> = s.bytes().map(|b| (b as char).to_digit(16).map(|d| d as u8)).collect();
    let digits = digits?;
    if digits.len() % 2 != 0 {
        return None;
    }
    Some(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::new([7u8; 32])
    }

    #[test]
    fn round_trip_and_context_binding() {
        let b = boxed();
        let sealed = b.seal("t.c:1", &Secret::new("hunter2")).unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(b.open("t.c:1", &sealed).unwrap().expose(), "hunter2");
        assert_eq!(b.open("t.c:2", &sealed), Err(SecretError::Authentication));
        let other = SecretBox::new([8u8; 32]);
        assert_eq!(other.open("t.c:1", &sealed), Err(SecretError::Authentication));
        assert_eq!(b.open("t.c:1", "v1.!!"), Err(SecretError::Malformed));
    }

    #[test]
    fn key_parsing() {
        let hex = "00".repeat(32);
        assert!(SecretBox::from_encoded(&hex).is_ok());
        let b64 = STANDARD.encode([1u8; 32]);
        assert!(SecretBox::from_encoded(&b64).is_ok());
        assert_eq!(SecretBox::from_encoded("abcd").err(), Some(SecretKeyError::BadEncoding));
        assert_eq!(
            SecretBox::from_encoded(&"zz".repeat(32)).err(),
            Some(SecretKeyError::BadEncoding)
        );
    }

    #[test]
    fn resolve_prefers_env_then_config() {
        // Only meaningful when the environment does not already provide a key.
        if std::env::var_os(SECRET_KEY_ENV).is_some() {
            return;
        }
        assert_eq!(SecretBox::resolve(None).err(), Some(SecretKeyError::Missing));
        assert_eq!(SecretBox::resolve(Some("  ")).err(), Some(SecretKeyError::Missing));
        assert!(SecretBox::resolve(Some(&"ab".repeat(32))).is_ok());
        assert_eq!(
            SecretBox::resolve(Some("short")).err(),
            Some(SecretKeyError::BadEncoding)
        );
    }

    #[test]
    fn load_or_create_persists_a_generated_key() {
        if std::env::var_os(SECRET_KEY_ENV).is_some() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("edge-store-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = SecretBox::load_or_create(None, &dir).unwrap();
        let sealed = a.seal("c", &Secret::new("x")).unwrap();
        let b = SecretBox::load_or_create(None, &dir).unwrap();
        assert_eq!(b.open("c", &sealed).unwrap().expose(), "x");
        let text = std::fs::read_to_string(dir.join(SECRET_KEY_FILE)).unwrap();
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRET_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A configured key wins over the file.
        let c = SecretBox::load_or_create(Some(&"11".repeat(32)), &dir).unwrap();
        assert!(c.open("c", &sealed).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("pw")), "Secret(<redacted>)");
        assert!(!format!("{:?}", boxed()).contains('7'));
    }
}
