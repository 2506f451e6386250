//! Peers prove they know the cluster secret, on every node-to-node call.
//!
//! Each call carries `x-tael-peer-proof: v1.<unix ms>.<nonce>.<mac>`, where
//! `mac` is HMAC-SHA256 under the secret of the version, time and nonce. The
//! receiver checks it in an interceptor, before the request body is read (so
//! a stranger cannot make a node buffer a large message), and refuses a
//! proof that is malformed, wrong, outside the clock-skew window, or seen
//! before (a bounded replay cache covers the window). The secret itself is
//! never sent.
//!
//! What this does not do: bind the proof to the call's content. Someone who
//! can intercept and alter peer traffic could move a fresh proof onto a
//! forged call; peer TLS closes that (docs/security.md).

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

pub const PROOF_HEADER: &str = "x-tael-peer-proof";
const VERSION: &str = "v1";
const MIN_SECRET_BYTES: usize = 32;
/// How far a proof's time may be from the receiver's clock. Generous, so
/// clock drift between nodes (or a clock-fault nemesis) does not partition
/// the cluster; the replay cache covers all of it.
pub const MAX_SKEW_MS: u64 = 10 * 60 * 1000;
/// Proofs remembered for replay detection; beyond it new proofs are refused
/// (fail closed) until old ones age out of the window.
const MAX_REMEMBERED_PROOFS: usize = 1_000_000;

/// The shared cluster secret.
#[derive(Clone)]
pub struct PeerSecret {
    key: Arc<Vec<u8>>,
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(..)")
    }
}

impl PeerSecret {
    /// Reads the secret from `path` (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<PeerSecret, String> {
        let raw = std::fs::read(path)
            .map_err(|e| format!("reading the cluster secret {}: {e}", path.display()))?;
        let trimmed = raw.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the cluster secret in {} has {} bytes; it needs at least {MIN_SECRET_BYTES} \
                 (create one with `head -c 32 /dev/urandom | base64 > FILE`)",
                path.display(),
                trimmed.len()
            ));
        }
        Ok(PeerSecret::from_bytes(trimmed))
    }

    pub fn from_bytes(bytes: &[u8]) -> PeerSecret {
        PeerSecret {
            key: Arc::new(bytes.to_vec()),
        }
    }

    /// The key of `--log-integrity hmac`: derived from the secret under its
    /// own label, so an HMAC over a log record can never pass as a peer
    /// proof (or the reverse), and the secret itself never keys records.
    pub fn log_integrity_key(&self) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"tael-raft log integrity v1");
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, unix_ms: u64, nonce: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("tael-peer-{VERSION}\0{unix_ms}\0{nonce}").as_bytes());
        mac
    }

    /// A fresh proof for one call.
    pub fn proof(&self) -> String {
        let unix_ms = now_unix_ms();
        let nonce = crate::hex(&rand::random::<[u8; 16]>());
        let tag = self.mac(unix_ms, &nonce).finalize().into_bytes();
        format!("{VERSION}.{unix_ms}.{nonce}.{}", crate::hex(&tag))
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The client side: adds a proof to every call (nothing without a secret).
#[derive(Clone, Default)]
pub struct PeerProof {
    secret: Option<PeerSecret>,
}

impl PeerProof {
    pub fn new(secret: Option<PeerSecret>) -> PeerProof {
        PeerProof { secret }
    }
}

impl Interceptor for PeerProof {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(secret) = &self.secret {
            let value = MetadataValue::try_from(secret.proof())
                .map_err(|e| Status::internal(format!("peer proof header: {e}")))?;
            req.metadata_mut().insert(PROOF_HEADER, value);
        }
        Ok(req)
    }
}

/// The server side: refuses calls without a valid, unused proof.
#[derive(Clone)]
pub struct PeerCheck {
    secret: Option<PeerSecret>,
    seen: Arc<Mutex<ReplayCache>>,
}

#[derive(Default)]
struct ReplayCache {
    order: VecDeque<(u64, String)>,
    set: HashSet<String>,
}

impl ReplayCache {
    /// Remembers `nonce` (at `unix_ms`); false if it was seen already or the
    /// cache is full.
    fn insert(&mut self, unix_ms: u64, nonce: &str, now_ms: u64) -> bool {
        while let Some((t, _)) = self.order.front() {
            if t + 2 * MAX_SKEW_MS >= now_ms {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.set.remove(&old);
        }
        if self.set.len() >= MAX_REMEMBERED_PROOFS || self.set.contains(nonce) {
            return false;
        }
        self.set.insert(nonce.to_string());
        self.order
            .push_back((unix_ms.max(now_ms), nonce.to_string()));
        true
    }
}

impl PeerCheck {
    /// Without a secret every call passes (a cluster without peer auth).
    pub fn new(secret: Option<PeerSecret>) -> PeerCheck {
        PeerCheck {
            secret,
            seen: Default::default(),
        }
    }

    pub fn verify(&self, proof: Option<&str>) -> Result<(), Status> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let refuse = |why: &str| {
            tracing::warn!(
                reason = why,
                "refused a node-to-node call without a valid proof of the cluster secret"
            );
            Err(Status::unauthenticated(format!(
                "node-to-node call refused: {why}"
            )))
        };
        let Some(proof) = proof else {
            return refuse("no proof of the cluster secret");
        };
        let parts: Vec<&str> = proof.split('.').collect();
        let [VERSION, ms, nonce, tag] = parts[..] else {
            return refuse("malformed proof");
        };
        let (Ok(unix_ms), Some(tag), true) = (
            ms.parse::<u64>(),
            unhex(tag),
            nonce.len() == 32 && unhex(nonce).is_some(),
        ) else {
            return refuse("malformed proof");
        };
        if secret.mac(unix_ms, nonce).verify_slice(&tag).is_err() {
            return refuse("wrong cluster secret");
        }
        let now = now_unix_ms();
        if unix_ms.abs_diff(now) > MAX_SKEW_MS {
            return refuse("proof outside the clock-skew window");
        }
        if !self.seen.lock().unwrap().insert(unix_ms, nonce, now) {
            return refuse("proof used before");
        }
        Ok(())
    }
}

impl Interceptor for PeerCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let proof = req
            .metadata()
            .get(PROOF_HEADER)
            .and_then(|v| v.to_str().ok());
        self.verify(proof)?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> PeerSecret {
        PeerSecret::from_bytes(&[b; 32])
    }

    #[test]
    fn a_proof_passes_once_and_only_under_the_same_secret() {
        let check = PeerCheck::new(Some(secret(1)));
        let proof = secret(1).proof();
        assert!(check.verify(Some(&proof)).is_ok());
        assert!(check.verify(Some(&proof)).is_err(), "a replay is refused");
        assert!(check.verify(Some(&secret(2).proof())).is_err());
        assert!(check.verify(None).is_err());
    }

    #[test]
    fn malformed_and_stale_proofs_are_refused() {
        let check = PeerCheck::new(Some(secret(1)));
        let good = secret(1).proof();
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        for bad in ["", "v1", "v2.1.2.3", "v1.x.y.z", &good.replace("v1", "v2")] {
            assert!(check.verify(Some(bad)).is_err(), "{bad:?}");
        }
        // An old time with a correct MAC is still refused.
        let old = now_unix_ms() - MAX_SKEW_MS - 1_000;
        let nonce = parts[2].clone();
        let tag = secret(1).mac(old, &nonce).finalize().into_bytes();
        parts[1] = old.to_string();
        parts[3] = crate::hex(&tag);
        assert!(check.verify(Some(&parts.join("."))).is_err());
    }

    #[test]
    fn without_a_secret_everything_passes() {
        assert!(PeerCheck::new(None).verify(None).is_ok());
    }

    #[test]
    fn short_secrets_are_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "short\n").unwrap();
        assert!(PeerSecret::load(&p).unwrap_err().contains("at least 32"));
        std::fs::write(&p, format!("{}\n", "k".repeat(40))).unwrap();
        assert!(PeerSecret::load(&p).is_ok());
    }
}
