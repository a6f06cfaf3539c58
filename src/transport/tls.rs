//! SIP over TLS, server side (`[sip] tls`): the certificate and key, loaded into a rustls
//! [`ServerConfig`] and re-read without a restart. The connections themselves are TCP connections with a
//! handshake in front ([`tcp::run`](super::tcp::run)): same framing, limits, time-outs and budgets.
//!
//! Provider: rustls with `ring`, the one the rest of the tree already uses (edge-providers, edge-api);
//! aws-lc-rs, rustls' default, needs cmake and a C toolchain to build. Versions: TLS 1.2 and 1.3 only
//! (rustls has nothing older).
//!
//! Reload: [`TlsCerts::reload`] re-reads both files; on SIGHUP and when either file's modification time or
//! size changes ([`watch`]). A pair that does not load (unreadable, not PEM, no key, key not the
//! certificate's) is refused with the reason logged, and the pair in use stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The protocol versions the listener speaks.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Where the certificate chain and the private key are (`sip.tls_certificate`, `sip.tls_private_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Which of the two files a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Certificate,
    PrivateKey,
}

/// Why a certificate and key pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        file: TlsFile,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not valid PEM: {message}")]
    BadPem {
        file: TlsFile,
        path: PathBuf,
        message: String,
    },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey { path: PathBuf },
    #[error("the certificate and key cannot serve together: {0}")]
    Pair(rustls::Error),
}

impl TlsError {
    /// The file at fault; `None` when each is fine alone but they are not a pair.
    pub fn file(&self) -> Option<TlsFile> {
        match self {
            TlsError::Read { file, .. } | TlsError::BadPem { file, .. } => Some(*file),
            TlsError::NoCertificate { .. } => Some(TlsFile::Certificate),
            TlsError::NoPrivateKey { .. } => Some(TlsFile::PrivateKey),
            TlsError::Pair(_) => None,
        }
    }
}

/// Reads a certificate chain and its private key (the listener's pair, or a client certificate).
pub fn read_pair(files: &TlsFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let read = |file: TlsFile, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            file,
            path: path.to_owned(),
            source,
        })
    };
    let bad_pem = |file: TlsFile, path: &Path, e: rustls_pki_types::pem::Error| TlsError::BadPem {
        file,
        path: path.to_owned(),
        message: e.to_string(),
    };
    let cert_pem = read(TlsFile::Certificate, &files.certificate)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(TlsFile::Certificate, &files.certificate, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.certificate.clone(),
        });
    }
    let key_pem = read(TlsFile::PrivateKey, &files.private_key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoPrivateKey {
                path: files.private_key.clone(),
            })
        }
        Err(e) => return Err(bad_pem(TlsFile::PrivateKey, &files.private_key, e)),
    };
    Ok((chain, key))
}

/// Reads both files and builds the listener's configuration: TLS 1.3 and 1.2, no client certificate.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = read_pair(files)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Pair)?;
    Ok(Arc::new(cfg))
}

/// What identifies a version of a file without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The listener's certificate and key in use, swapped whole on reload; each handshake takes the one in
/// place when it starts.
pub struct TlsCerts {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' stamps when last read (loaded or refused), so that a refused pair is not retried and
    /// logged again until one of the files changes.
    seen: Mutex<(Stamp, Stamp)>,
}

impl TlsCerts {
    /// Loads the pair; an error here stops the start (the config check has the same one).
    pub fn load(files: TlsFiles) -> Result<Arc<TlsCerts>, TlsError> {
        let seen = (stamp(&files.certificate), stamp(&files.private_key));
        let cfg = load(&files)?;
        Ok(Arc::new(TlsCerts {
            files,
            current: RwLock::new(cfg),
            seen: Mutex::new(seen),
        }))
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads both files: a pair that loads serves every handshake from now on (connections already
    /// open keep theirs); one that does not is refused and the pair in use stays. Logged either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        let seen = (stamp(&self.files.certificate), stamp(&self.files.private_key));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        match load(&self.files) {
            Ok(cfg) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = cfg;
                tracing::info!(
                    certificate = %self.files.certificate.display(),
                    private_key = %self.files.private_key.display(),
                    "sip.tls: certificate and key reloaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "sip.tls: new certificate and key refused; the ones in use stay");
                Err(e)
            }
        }
    }

    /// Reloads if either file changed (modification time or size) since it was last read; `None` when
    /// neither did.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = (stamp(&self.files.certificate), stamp(&self.files.private_key));
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return None;
        }
        Some(self.reload())
    }
}

/// How often [`watch`] looks at the files.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Reloads `certs` whenever its files change, checking every `every`.
pub async fn watch(certs: Arc<TlsCerts>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Reading and parsing two small files: off the async workers all the same.
        let c = certs.clone();
        let _ = tokio::task::spawn_blocking(move || c.reload_if_changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_1_2_and_1_3() {
        assert_eq!(VERSIONS.len(), 2);
        assert!(VERSIONS.iter().all(|v| matches!(
            v.version,
            rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
        )));
    }

    #[test]
    fn missing_and_empty_files_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            certificate: dir.path().join("cert.pem"),
            private_key: dir.path().join("key.pem"),
        };
        let e = load(&files).unwrap_err();
        assert_eq!(e.file(), Some(TlsFile::Certificate), "{e}");
        assert!(e.to_string().contains("cert.pem"), "{e}");
        std::fs::write(&files.certificate, "not a certificate\n").unwrap();
        let e = load(&files).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    }
}
