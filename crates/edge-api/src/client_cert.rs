//! A customer trunk's client certificate (mutual TLS, `provider_config.tls_client_certificate` and
//! `tls_client_key`), checked when it is stored so a call never finds out: both PEM, the key the one of the
//! certificate, the certificate valid now. The edge shows it to the trunk as given (chain included).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ApiError;

pub const CERT_FIELD: &str = "provider_config.tls_client_certificate";
pub const KEY_FIELD: &str = "provider_config.tls_client_key";

/// Bound on each PEM text: a certificate chain of a few certificates is a few kilobytes.
const MAX_PEM_LEN: usize = 32 * 1024;

/// Checks a certificate (chain, PEM) and private key (PEM) pair at `now_ms`; returns them as given.
pub fn check(certificate: &str, key: &str, now_ms: i64) -> Result<(String, String), ApiError> {
    for (field, v) in [(CERT_FIELD, certificate), (KEY_FIELD, key)] {
        if v.len() > MAX_PEM_LEN {
            return Err(ApiError::field(
                field,
                format!("must be at most {MAX_PEM_LEN} bytes of PEM"),
            ));
        }
    }
    let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::field(
                CERT_FIELD,
                "is not PEM: expected the client certificate (-----BEGIN CERTIFICATE-----), then any \
                 intermediates",
            )
        })?;
    let der = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| {
        ApiError::field(
            KEY_FIELD,
            "is not a PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )
    })?;
    let (not_before, not_after) = {
        let leaf: &[u8] = chain.first().map(|c| c.as_ref()).unwrap_or_default();
        let (_, leaf) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| ApiError::field(CERT_FIELD, format!("is not a valid X.509 certificate: {e}")))?;
        let v = leaf.validity();
        (v.not_before.timestamp(), v.not_after.timestamp())
    };
    let now_s = now_ms.div_euclid(1000);
    if not_after < now_s {
        return Err(ApiError::field(
            CERT_FIELD,
            format!(
                "certificate expired at {} (now {})",
                edge_store::time::rfc3339(not_after.saturating_mul(1000)),
                edge_store::time::rfc3339(now_ms)
            ),
        ));
    }
    if not_before > now_s {
        return Err(ApiError::field(
            CERT_FIELD,
            format!(
                "certificate is not valid before {}",
                edge_store::time::rfc3339(not_before.saturating_mul(1000))
            ),
        ));
    }
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => ApiError::field(KEY_FIELD, "does not match the certificate"),
        e => ApiError::field(KEY_FIELD, format!("cannot be used: {e}")),
    })?;
    Ok((certificate.to_owned(), key.to_owned()))
}

/// Both of the pair or neither: one alone names the one missing.
pub fn pair<T>(certificate: Option<T>, key: Option<T>) -> Result<Option<(T, T)>, ApiError> {
    match (certificate, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ApiError::field(KEY_FIELD, "required with tls_client_certificate")),
        (None, Some(_)) => Err(ApiError::field(CERT_FIELD, "required with tls_client_key")),
    }
}
