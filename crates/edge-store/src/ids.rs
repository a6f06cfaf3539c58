//! Random identifiers and API keys.

use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of the random part of resource ids (~119 bits).
const ID_RANDOM_LEN: usize = 20;

/// Resource kinds and their public id prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Account,
    ApiKey,
    Agent,
    PhoneNumber,
    Integration,
    Call,
    Voicemail,
    Webhook,
    WebhookDelivery,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Account => "acc_",
            IdKind::ApiKey => "key_",
            IdKind::Agent => "agt_",
            IdKind::PhoneNumber => "phn_",
            IdKind::Integration => "crd_",
            IdKind::Call => "call_",
            IdKind::Voicemail => "vm_",
            IdKind::Webhook => "whk_",
            IdKind::WebhookDelivery => "whd_",
        }
    }

    /// True when `id` has this kind's prefix followed by 1..=64 ASCII alphanumerics.
    /// Lets callers reject junk before touching the database.
    pub fn is_valid(self, id: &str) -> bool {
        id.strip_prefix(self.prefix())
            .is_some_and(|rest| !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
    }
}

pub(crate) fn new_id(kind: IdKind) -> Result<String, getrandom::Error> {
    Ok(format!("{}{}", kind.prefix(), random_base62(ID_RANDOM_LEN)?))
}

/// Uniform base62 string via rejection sampling (bytes >= 248 are discarded to avoid bias).
fn random_base62(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        for b in buf {
            if out.len() == len {
                break;
            }
            if b < 248 {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A new API key: `oik_` + hex of 32 random bytes. Only its SHA-256 is stored.
pub(crate) fn new_api_key() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(format!("oik_{}", hex(&raw)))
}

/// Hex SHA-256 of the full key string; the value stored in `api_keys.key_hash`.
pub(crate) fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_validate() {
        let id = new_id(IdKind::Agent).unwrap();
        assert!(id.starts_with("agt_"));
        assert_eq!(id.len(), 4 + ID_RANDOM_LEN);
        assert!(IdKind::Agent.is_valid(&id));
        assert!(!IdKind::PhoneNumber.is_valid(&id));
        assert!(!IdKind::Agent.is_valid("agt_"));
        assert!(!IdKind::Agent.is_valid("agt_a-b"));
        assert_ne!(new_id(IdKind::Agent).unwrap(), id);
    }

    #[test]
    fn api_key_format_and_hash() {
        let k = new_api_key().unwrap();
        assert!(k.starts_with("oik_"));
        assert_eq!(k.len(), 4 + 64);
        let h = hash_api_key(&k);
        assert_eq!(h.len(), 64);
        assert_ne!(h, k[4..]);
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
