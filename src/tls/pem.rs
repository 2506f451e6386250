//! Reading certificates and keys from PEM files, with errors that name the
//! file and what is wrong with it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: String },
    #[error("{path} is not a valid PEM certificate file: {detail}")]
    BadCertificate { path: String, detail: String },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {detail}")]
    BadKey { path: String, detail: String },
    #[error("the private key in {key} does not belong to the certificate in {cert} ({detail})")]
    KeyMismatch {
        cert: String,
        key: String,
        detail: String,
    },
    #[error("the CA file {path} cannot be used: {detail}")]
    BadCa { path: String, detail: String },
    #[error("building the TLS configuration: {0}")]
    Config(String),
}

/// The one crypto provider of this process: ring.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Makes ring the process-wide default provider too, for libraries that
/// build their own TLS clients (the S3 cold store's HTTP client has no
/// provider of its own). Idempotent.
pub fn install_process_default() {
    // An error only says a default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadKey {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// A certificate chain with its key, checked to belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::BadKey {
            path: key.display().to_string(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Without this check a mismatched pair would load and fail every
    // handshake later with an opaque signature error.
    certified.keys_match().map_err(|e| TlsError::KeyMismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(certified)
}

/// The trust anchors in a CA file (one or more certificates).
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}
