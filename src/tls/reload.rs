//! A certificate that follows its files: re-read when they change on disk.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::pem::{load_certified_key, TlsError};

/// How often the files are looked at, at most: a stat of two files per
/// second, on the handshake path, costs nothing worth a background task.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of a file: a replaced file (written in place
/// or renamed over) changes at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

struct State {
    current: Arc<CertifiedKey>,
    /// The files' fingerprints when last loaded or last tried.
    seen: (Option<Fingerprint>, Option<Fingerprint>),
    checked_at: Instant,
}

/// This node's certificate and key, served to every handshake (as a server
/// for the listeners, as a client towards peers). When either file changes,
/// the pair is loaded again on the next handshake (checked at most once per
/// `CHECK_INTERVAL`); a new pair that does not load (half written, key and
/// certificate not matching yet) is logged and the old one kept, and it is
/// tried again once either file changes again.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    check_interval: Duration,
    state: Mutex<State>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the pair; an error here stops start-up.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Self::with_check_interval(cert, key, CHECK_INTERVAL)
    }

    pub fn with_check_interval(
        cert: &Path,
        key: &Path,
        check_interval: Duration,
    ) -> Result<Self, TlsError> {
        let seen = (fingerprint(cert), fingerprint(key));
        let current = Arc::new(load_certified_key(cert, key)?);
        Ok(ReloadingCert {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            check_interval,
            state: Mutex::new(State {
                current,
                seen,
                checked_at: Instant::now(),
            }),
        })
    }

    /// The certificate to present now, reloaded first if its files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked_at.elapsed() >= self.check_interval {
            state.checked_at = Instant::now();
            self.reload_if_changed(&mut state);
        }
        state.current.clone()
    }

    fn reload_if_changed(&self, state: &mut State) {
        let now = (fingerprint(&self.cert_path), fingerprint(&self.key_path));
        if now == state.seen {
            return;
        }
        state.seen = now;
        match load_certified_key(&self.cert_path, &self.key_path) {
            Ok(loaded) => {
                state.current = Arc::new(loaded);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "the changed TLS certificate or key cannot be loaded; still serving the previous one"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new self-signed certificate and key for 127.0.0.1, PEM.
    fn generate(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn der_of(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    fn served(r: &ReloadingCert) -> Vec<u8> {
        r.current().cert[0].to_vec()
    }

    #[test]
    fn a_replaced_certificate_is_served_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        // Replaced the way operators and tools do it: write aside, rename.
        let replace = |path: &Path, text: &str| {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        };
        let (a_cert, a_key) = generate("a");
        replace(&cert_path, &a_cert);
        replace(&key_path, &a_key);
        let r = ReloadingCert::with_check_interval(&cert_path, &key_path, Duration::ZERO).unwrap();
        assert_eq!(served(&r), der_of(&a_cert));

        let (b_cert, b_key) = generate("b");
        replace(&cert_path, &b_cert);
        replace(&key_path, &b_key);
        assert_eq!(served(&r), der_of(&b_cert), "the new pair is served");

        replace(&cert_path, "-----BEGIN CERTIFICATE-----\ngarbage\n");
        assert_eq!(served(&r), der_of(&b_cert), "a bad file keeps the old pair");

        // Half way through a rotation (new certificate, old key) the old
        // pair stays; once the key follows, the new pair is served.
        let (c_cert, c_key) = generate("c");
        replace(&cert_path, &c_cert);
        assert_eq!(
            served(&r),
            der_of(&b_cert),
            "a mismatched pair keeps the old"
        );
        replace(&key_path, &c_key);
        assert_eq!(served(&r), der_of(&c_cert));
    }

    #[test]
    fn checks_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (a_cert, a_key) = generate("a");
        std::fs::write(&cert_path, &a_cert).unwrap();
        std::fs::write(&key_path, &a_key).unwrap();
        let r =
            ReloadingCert::with_check_interval(&cert_path, &key_path, Duration::from_secs(3600))
                .unwrap();
        let (b_cert, b_key) = generate("b");
        std::fs::write(&cert_path, &b_cert).unwrap();
        std::fs::write(&key_path, &b_key).unwrap();
        assert_eq!(
            served(&r),
            der_of(&a_cert),
            "not looked at again within the interval"
        );
    }
}
