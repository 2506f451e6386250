//! The shared cold store (`--cold-store s3://BUCKET/PREFIX`): cold files as
//! objects in one bucket, written once by the leader and read by every node.
//!
//! Nothing here runs at apply time: the leader uploads an object before it
//! proposes the move naming it (`serve::background`), and queries read
//! objects on the blocking pool (`reads.rs`, through [`ObjectFile`]). The
//! connection settings are the standard `AWS_*` environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...), read by `object_store`.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use parquet::file::reader::{ChunkReader, Length};

use super::Signal;

/// One request (connect, send, read the answer) gives up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A failed request is retried this often, within [`RETRY_WINDOW`]: a
/// query that needs an unreachable object fails within seconds (and says
/// which range), and a failed upload is tried again at the next
/// compaction interval.
const MAX_RETRIES: usize = 2;
const RETRY_WINDOW: Duration = Duration::from_secs(5);
/// Reads of an object fetch at least this much at once: a page header read
/// and the page after it are one request.
const READ_BLOCK_BYTES: u64 = 256 * 1024;
/// An object no manifest names is removed only once it is this old: the
/// move that names it may still be on its way through the log (see
/// [`orphans_to_remove`]).
pub const ORPHAN_GRACE_SECS: u64 = 3600;

/// Where the cold tier lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColdStoreKind {
    /// `file`: under the data directory; every node writes its own copy.
    Local,
    /// `s3://BUCKET/PREFIX`: one copy for the cluster.
    S3 { bucket: String, prefix: String },
}

impl ColdStoreKind {
    /// `file` or `s3://BUCKET[/PREFIX]`.
    pub fn parse(s: &str) -> Result<ColdStoreKind, String> {
        let s = s.trim();
        if s == "file" {
            return Ok(ColdStoreKind::Local);
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(format!(
                "cold store must be file or s3://BUCKET/PREFIX, not {s:?}"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let valid_bucket = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!("{s:?} does not name a valid S3 bucket"));
        }
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(format!("{s:?}: the prefix may not hold . or .."));
        }
        Ok(ColdStoreKind::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// Why an object could not be written, read, listed or removed.
#[derive(Debug, thiserror::Error)]
#[error("cold object store {url}: {message}")]
pub struct ObjectError {
    pub url: String,
    pub message: String,
}

/// One object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Relative to the prefix, as a manifest names it.
    pub name: String,
    pub last_modified_unix_secs: u64,
}

/// The bucket and prefix cold objects live under.
pub struct ColdObjects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://BUCKET/PREFIX`, for messages.
    url: String,
    /// The server's runtime: queries, on the blocking pool, wait on it.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ColdObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdObjects")
            .field("url", &self.url)
            .finish()
    }
}

impl ColdObjects {
    /// A client of `bucket` under `prefix`, configured from the `AWS_*`
    /// environment. Must be called inside the server's runtime. Connects
    /// lazily: a store that is down now fails the first request, not this.
    pub fn connect(bucket: &str, prefix: &str) -> Result<ColdObjects, String> {
        let url = format!("s3://{bucket}/{prefix}");
        let client = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_WINDOW,
        };
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(retry);
        // As `AmazonS3Builder::from_env`, on top of the timeouts above
        // (`with_client_options` would replace what the environment set).
        for (key, value) in std::env::vars() {
            if key.starts_with("AWS_") {
                if let Ok(k) = key.to_ascii_lowercase().parse() {
                    builder = builder.with_config(k, value);
                }
            }
        }
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("cold store {url}: {e}"))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            "the cold object store is opened inside the server's runtime".to_string()
        })?;
        Ok(ColdObjects {
            store: Arc::new(store),
            prefix: prefix.to_string(),
            url,
            runtime,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> ObjectError {
        ObjectError {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// Writes `bytes` as the object `name` (a single PUT: it is there
    /// whole or not at all).
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
        self.store
            .put(&self.path(name), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(format!("writing {name}: {e}")))
    }

    /// Every object under the prefix.
    pub async fn list(&self) -> Result<Vec<ListedObject>, ObjectError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let mut stream = self.store.list(prefix.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.error(format!("listing: {e}")))?;
            let full = meta.location.to_string();
            let name = if self.prefix.is_empty() {
                full
            } else {
                full.strip_prefix(&format!("{}/", self.prefix))
                    .unwrap_or(&full)
                    .to_string()
            };
            out.push(ListedObject {
                name,
                last_modified_unix_secs: u64::try_from(meta.last_modified.timestamp()).unwrap_or(0),
            });
        }
        Ok(out)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ObjectError> {
        self.store
            .delete(&self.path(name))
            .await
            .map_err(|e| self.error(format!("removing {name}: {e}")))
    }

    /// The bytes `[start, start + len)` of object `name`. Blocks: for the
    /// blocking pool only (queries), never for a runtime worker.
    fn get_range_blocking(&self, name: &str, start: u64, len: u64) -> Result<Bytes, ObjectError> {
        let path = self.path(name);
        let store = self.store.clone();
        self.runtime
            .block_on(async move { store.get_range(&path, start..start + len).await })
            .map_err(|e| self.error(format!("reading {name}: {e}")))
    }

    /// Object `name` of `len` bytes, for a Parquet reader.
    pub fn file(self: &Arc<Self>, name: &str, len: u64) -> ObjectFile {
        ObjectFile {
            inner: Arc::new(ObjectFileInner {
                objects: self.clone(),
                name: name.to_string(),
                len,
                block: std::sync::Mutex::new(None),
            }),
        }
    }
}

/// The name of a new object for `signal`: unique without coordination
/// (the proposing leader's applied index and a random nonce), so two
/// leaders never write the same name.
pub fn new_object_name(signal: Signal, applied_index: u64) -> String {
    let nonce: u64 = rand::random();
    format!(
        "{}/{}-{applied_index:020}-{nonce:016x}.parquet",
        signal.name(),
        signal.name()
    )
}

/// The objects of `listed` to remove: those no manifest names, older than
/// [`ORPHAN_GRACE_SECS`] at `now_unix_secs` (objects of moves that never
/// committed, objects of files a retention cut dropped). A named object is
/// never among them.
pub fn orphans_to_remove(
    listed: &[ListedObject],
    named: &std::collections::BTreeSet<String>,
    now_unix_secs: u64,
) -> Vec<String> {
    let out: Vec<String> = listed
        .iter()
        .filter(|o| !named.contains(&o.name))
        .filter(|o| now_unix_secs.saturating_sub(o.last_modified_unix_secs) >= ORPHAN_GRACE_SECS)
        .map(|o| o.name.clone())
        .collect();
    assert!(
        out.iter().all(|n| !named.contains(n)),
        "an object a manifest names is never removed"
    );
    out
}

/// An object read through ranged GETs, for a Parquet reader: the footer,
/// the page index, bloom filters and column chunks are each fetched as the
/// reader asks for them. The last block fetched is kept, so a page header
/// read and the page that follows it cost one request.
#[derive(Clone)]
pub struct ObjectFile {
    inner: Arc<ObjectFileInner>,
}

struct ObjectFileInner {
    objects: Arc<ColdObjects>,
    name: String,
    len: u64,
    block: std::sync::Mutex<Option<(u64, Bytes)>>,
}

impl ObjectFile {
    fn bytes(&self, start: u64, len: u64) -> std::io::Result<Bytes> {
        let i = &self.inner;
        if start.checked_add(len).is_none_or(|end| end > i.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: bytes {start}+{len} past its end {}", i.name, i.len),
            ));
        }
        if let Some((at, block)) = &*i.block.lock().unwrap() {
            if start >= *at && start + len <= at + block.len() as u64 {
                let from = (start - at) as usize;
                return Ok(block.slice(from..from + len as usize));
            }
        }
        let fetch = len.max(READ_BLOCK_BYTES).min(i.len - start);
        let block = i
            .objects
            .get_range_blocking(&i.name, start, fetch)
            .map_err(std::io::Error::other)?;
        if block.len() as u64 != fetch {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: a short read", i.name),
            ));
        }
        let out = block.slice(..len as usize);
        *i.block.lock().unwrap() = Some((start, block));
        Ok(out)
    }
}

impl Length for ObjectFile {
    fn len(&self) -> u64 {
        self.inner.len
    }
}

impl ChunkReader for ObjectFile {
    type T = ObjectRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ObjectRead> {
        Ok(ObjectRead {
            file: self.clone(),
            pos: start,
            buf: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.bytes(start, length as u64)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
    }
}

/// A reader of an [`ObjectFile`] from some offset to its end, fetching a
/// block at a time.
pub struct ObjectRead {
    file: ObjectFile,
    pos: u64,
    buf: Bytes,
}

impl Read for ObjectRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let left = self.file.inner.len.saturating_sub(self.pos);
            if left == 0 {
                return Ok(0);
            }
            self.buf = self.file.bytes(self.pos, left.min(READ_BLOCK_BYTES))?;
            self.pos += self.buf.len() as u64;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_store_settings_parse() {
        assert_eq!(ColdStoreKind::parse("file"), Ok(ColdStoreKind::Local));
        assert_eq!(
            ColdStoreKind::parse("s3://tael-cold/cluster-a/"),
            Ok(ColdStoreKind::S3 {
                bucket: "tael-cold".into(),
                prefix: "cluster-a".into()
            })
        );
        assert_eq!(
            ColdStoreKind::parse("s3://b"),
            Ok(ColdStoreKind::S3 {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "",
            "s3://",
            "s3:///p",
            "S3://b",
            "s3://Bad_Bucket/p",
            "s3://b/../x",
            "/tmp/x",
        ] {
            assert!(ColdStoreKind::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn only_unnamed_objects_past_the_grace_period_are_orphans() {
        let now = 10 * ORPHAN_GRACE_SECS;
        let obj = |name: &str, age: u64| ListedObject {
            name: name.into(),
            last_modified_unix_secs: now - age,
        };
        let listed = [
            obj("spans/named-old", 5 * ORPHAN_GRACE_SECS),
            obj("spans/unnamed-old", ORPHAN_GRACE_SECS),
            obj("spans/unnamed-new", ORPHAN_GRACE_SECS - 1),
            obj("logs/named-new", 1),
        ];
        let named = ["spans/named-old", "logs/named-new"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            orphans_to_remove(&listed, &named, now),
            vec!["spans/unnamed-old".to_string()]
        );
    }

    #[test]
    fn object_names_are_unique_and_under_their_signal() {
        let a = new_object_name(Signal::Logs, 7);
        let b = new_object_name(Signal::Logs, 7);
        assert_ne!(a, b);
        assert!(a.starts_with("logs/logs-00000000000000000007-"));
        assert!(a.ends_with(".parquet"));
    }
}
