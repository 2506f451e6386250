//! Bounded work at the OTLP edges, the same for gRPC and HTTP.
//!
//! Three limits, each answered with a retryable refusal rather than a
//! queue without bound (429 with `Retry-After` over HTTP,
//! `RESOURCE_EXHAUSTED` with a `RetryInfo` over gRPC):
//!
//! - **Body budget** (`otlp_body_budget_mb`): bytes of request bodies being
//!   received or held at once. A body reserves its declared length (or
//!   what has arrived) before it is buffered; one that does not fit is
//!   refused at once, so a crowd of large or slow senders cannot exhaust
//!   memory, and a small export still fits beside them.
//! - **Body read timeout** (`otlp_body_read_timeout_ms`): a body must arrive
//!   whole within it (HTTP 408, gRPC `DEADLINE_EXCEEDED`), so a slow sender
//!   gives its budget back.
//! - **Exports in progress** (`otlp_max_inflight_exports`): decoding,
//!   validating and committing. Taken only once the whole body is in, so a
//!   slow sender never holds one; a request waits at most
//!   [`EXPORT_ADMISSION_WAIT`] for it.
//!
//! Decoding and validation of large messages run on the blocking pool, not
//! on the async workers that also carry Raft's heartbeats.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ingest::ShedReason;
use crate::slots::Slots;

/// How long a request whose body is in waits for an export slot.
pub const EXPORT_ADMISSION_WAIT: Duration = Duration::from_secs(1);
/// What a shed request is told to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;
/// A body of unknown length reserves this much at first, then grows.
const INITIAL_RESERVATION_BYTES: usize = 64 * 1024;
/// The budget is kept in KiB, so it fits a semaphore's permit count.
const BUDGET_UNIT_BYTES: usize = 1024;

impl Refusal {
    /// Why load was shed, when this is shedding (not a bad request).
    pub fn shed_reason(&self) -> Option<ShedReason> {
        match self {
            Refusal::BodyBudgetFull(_) => Some(ShedReason::BodyBudget),
            Refusal::ExportsBusy(_) => Some(ShedReason::ExportsBusy),
            Refusal::Timeout(_) => Some(ShedReason::BodyTimeout),
            Refusal::TooLarge(_) | Refusal::Unreadable(_) => None,
        }
    }
}

/// The limits' settings (from `ServeConfig`).
#[derive(Clone, Debug)]
pub struct OtlpLimitsConfig {
    pub max_inflight_exports: usize,
    pub body_budget_bytes: u64,
    pub body_read_timeout: Duration,
    /// Largest export accepted, after decompression: larger bodies get 413
    /// (HTTP) or RESOURCE_EXHAUSTED (gRPC).
    pub max_export_bytes: usize,
}

/// Why a request was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body budget is full right now: retry after [`RETRY_AFTER_SECS`].
    BodyBudgetFull(String),
    /// Every export slot stayed busy: retry after [`RETRY_AFTER_SECS`].
    ExportsBusy(String),
    /// The body exceeds the largest export accepted.
    TooLarge(String),
    /// The body did not arrive within the read timeout.
    Timeout(String),
    /// The body could not be read (the client went away, a bad frame).
    Unreadable(String),
}

pub struct OtlpLimits {
    config: OtlpLimitsConfig,
    inflight: Slots,
    /// In [`BUDGET_UNIT_BYTES`] units.
    body_budget: Arc<Semaphore>,
}

/// A received body; the budget it holds returns when this is dropped.
pub struct ReceivedBody {
    pub bytes: Bytes,
    _reserved: Vec<OwnedSemaphorePermit>,
}

/// Budget held by one body while it is received.
struct Reservation {
    budget: Arc<Semaphore>,
    permits: Vec<OwnedSemaphorePermit>,
    units: usize,
}

fn units_for(bytes: usize) -> usize {
    bytes.div_ceil(BUDGET_UNIT_BYTES)
}

impl Reservation {
    /// Holds enough budget for `bytes`, without waiting.
    fn cover(&mut self, bytes: usize, budget_bytes: u64) -> Result<(), Refusal> {
        let want = units_for(bytes);
        if want <= self.units {
            return Ok(());
        }
        let more = u32::try_from(want - self.units).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(more) {
            Ok(p) => {
                self.permits.push(p);
                self.units = want;
                Ok(())
            }
            Err(_) => Err(Refusal::BodyBudgetFull(format!(
                "overloaded: request bodies being received fill this node's \
                 {budget_bytes}-byte budget; retry in {RETRY_AFTER_SECS} s"
            ))),
        }
    }

    /// Covers `bytes`, reserving ahead in doublings (up to `max_bytes`) so
    /// a body of unknown length costs few semaphore calls.
    fn grow_to(
        &mut self,
        bytes: usize,
        max_bytes: usize,
        budget_bytes: u64,
    ) -> Result<(), Refusal> {
        if units_for(bytes) <= self.units {
            return Ok(());
        }
        let ahead = (self.units * BUDGET_UNIT_BYTES)
            .saturating_mul(2)
            .clamp(bytes, max_bytes.max(bytes));
        self.cover(ahead, budget_bytes)
            .or_else(|_| self.cover(bytes, budget_bytes))
    }
}

impl OtlpLimits {
    pub fn new(config: OtlpLimitsConfig) -> Arc<OtlpLimits> {
        let units = units_for(usize::try_from(config.body_budget_bytes).unwrap_or(usize::MAX))
            .min(Semaphore::MAX_PERMITS);
        Arc::new(OtlpLimits {
            inflight: Slots::new(config.max_inflight_exports, EXPORT_ADMISSION_WAIT),
            body_budget: Arc::new(Semaphore::new(units)),
            config,
        })
    }

    pub fn config(&self) -> &OtlpLimitsConfig {
        &self.config
    }

    /// Largest export accepted, after decompression.
    pub fn max_export_bytes(&self) -> usize {
        self.config.max_export_bytes
    }

    /// Waits (at most [`EXPORT_ADMISSION_WAIT`]) for an export slot.
    pub async fn admit_export(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        match self.inflight.acquire().await {
            Some(permit) => Ok(permit),
            None => Err(Refusal::ExportsBusy(format!(
                "overloaded: {} exports already in progress; retry in {RETRY_AFTER_SECS} s",
                self.config.max_inflight_exports
            ))),
        }
    }

    /// Receives a body of at most `max_bytes` within the read timeout,
    /// holding budget for it. `declared_len` (Content-Length) is reserved
    /// up front, so a body that cannot fit is refused before it is read.
    /// Beyond `max_bytes` the rest is read and dropped up to `drain_bytes`
    /// (an HTTP client still sending then gets the 413, not a reset).
    pub async fn receive<B>(
        &self,
        mut body: B,
        declared_len: Option<u64>,
        max_bytes: usize,
        drain_bytes: usize,
    ) -> Result<ReceivedBody, Refusal>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let too_large = || Refusal::TooLarge(format!("body exceeds the {max_bytes}-byte limit"));
        let declared = declared_len.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        if declared.is_some_and(|l| l > drain_bytes) {
            return Err(too_large());
        }
        let mut held = Reservation {
            budget: self.body_budget.clone(),
            permits: Vec::new(),
            units: 0,
        };
        let budget_bytes = self.config.body_budget_bytes;
        held.cover(
            declared.unwrap_or(INITIAL_RESERVATION_BYTES).min(max_bytes),
            budget_bytes,
        )?;
        let deadline = tokio::time::Instant::now() + self.config.body_read_timeout;
        // Its budget is held already: allocate the declared size at once.
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(max_bytes));
        let mut seen = 0usize;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(Refusal::Timeout(format!(
                        "the body did not arrive within {} ms ({seen} bytes came)",
                        self.config.body_read_timeout.as_millis()
                    )))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Refusal::Unreadable(format!("reading the body: {e}")))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            seen = seen.saturating_add(data.len());
            if seen <= max_bytes {
                held.grow_to(seen, max_bytes, budget_bytes)?;
                buf.extend_from_slice(&data);
            } else if seen > drain_bytes {
                break;
            }
        }
        if seen > max_bytes {
            return Err(too_large());
        }
        Ok(ReceivedBody {
            bytes: buf.freeze(),
            _reserved: held.permits,
        })
    }
}

/// The `Content-Length` of a request, when it states one.
pub fn declared_len(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn limits(budget_bytes: u64, timeout_ms: u64) -> Arc<OtlpLimits> {
        OtlpLimits::new(OtlpLimitsConfig {
            max_inflight_exports: 2,
            body_budget_bytes: budget_bytes,
            body_read_timeout: Duration::from_millis(timeout_ms),
            max_export_bytes: 20 << 20,
        })
    }

    /// A body that sends `first` and then nothing until dropped.
    fn stalled(
        first: &'static [u8],
    ) -> impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let chunks = futures::stream::iter([Ok(http_body::Frame::data(Bytes::from_static(first)))])
            .chain(futures::stream::pending());
        StreamBody::new(Box::pin(chunks))
    }

    use futures::StreamExt;

    #[tokio::test]
    async fn bodies_that_do_not_fit_the_budget_are_refused_and_small_ones_still_fit() {
        let l = limits(4 << 20, 60_000);
        // Two slow senders declaring 1.5 MiB each hold 3 MiB of the 4.
        let declared = 3 << 19;
        let slow = |l: Arc<OtlpLimits>| {
            tokio::spawn(async move {
                l.receive(stalled(b"x"), Some(declared), 20 << 20, 20 << 20)
                    .await
                    .map(|_| ())
            })
        };
        let a = slow(l.clone());
        let b = slow(l.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = l
            .receive(stalled(b"x"), Some(declared), 20 << 20, 20 << 20)
            .await
            .err()
            .unwrap();
        assert!(matches!(third, Refusal::BodyBudgetFull(_)), "{third:?}");
        // A small export still fits beside them.
        let small = l
            .receive(
                Full::new(Bytes::from_static(b"hello")),
                Some(5),
                20 << 20,
                20 << 20,
            )
            .await
            .unwrap();
        assert_eq!(&small.bytes[..], b"hello");
        a.abort();
        b.abort();
        let _ = (a.await, b.await);
        // Their budget came back.
        let again = l
            .receive(
                Full::new(Bytes::from(vec![7u8; declared as usize])),
                Some(declared),
                20 << 20,
                20 << 20,
            )
            .await
            .unwrap();
        assert_eq!(again.bytes.len(), declared as usize);
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_is_held_to_the_budget_as_it_arrives() {
        let l = limits(64 * 1024, 60_000);
        let chunk = Bytes::from(vec![1u8; 40 * 1024]);
        let frames = futures::stream::iter((0..3).map(move |_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk.clone()))
        }));
        let err = l
            .receive(StreamBody::new(frames), None, 20 << 20, 20 << 20)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Refusal::BodyBudgetFull(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_slow_body_times_out_and_gives_its_budget_back() {
        let l = limits(1 << 20, 200);
        let started = std::time::Instant::now();
        let err = l
            .receive(stalled(b"partial"), Some(1 << 20), 20 << 20, 20 << 20)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Refusal::Timeout(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The whole budget is free again.
        l.receive(
            Full::new(Bytes::from(vec![0u8; 1 << 20])),
            Some(1 << 20),
            20 << 20,
            20 << 20,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn too_large_bodies_are_refused() {
        let l = limits(64 << 20, 60_000);
        let err = l
            .receive(Full::new(Bytes::from(vec![0u8; 2048])), None, 1024, 4096)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Refusal::TooLarge(_)), "{err:?}");
        let err = l
            .receive(stalled(b""), Some(1 << 30), 1024, 4096)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, Refusal::TooLarge(_)),
            "declared too large, refused unread: {err:?}"
        );
    }

    #[tokio::test]
    async fn exports_in_progress_are_bounded() {
        let l = limits(1 << 20, 1000);
        let a = l.admit_export().await.unwrap();
        let _b = l.admit_export().await.unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            l.admit_export().await,
            Err(Refusal::ExportsBusy(_))
        ));
        assert!(started.elapsed() >= EXPORT_ADMISSION_WAIT);
        drop(a);
        let _c = l.admit_export().await.unwrap();
    }
}
