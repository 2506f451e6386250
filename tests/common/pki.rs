//! Test certificates: a CA, and certificates it signs for 127.0.0.1 (IP
//! SAN, as peers and clients verify) and `localhost`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca_cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca_cert = dir.path().join(format!("{name}-ca.crt"));
        std::fs::write(&ca_cert, cert.pem()).unwrap();
        Pki {
            dir,
            ca_cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a certificate for 127.0.0.1 and `localhost` signed by this CA
    /// as `<name>.crt` and `<name>.key` in `dir`; returns (cert, key).
    pub fn issue_in(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue_in(self.dir.path(), name)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca_cert).unwrap()
    }
}
