//! Clients: span-set, trace-session and comment-list workloads.
//!
//! Every client draws its operations from its own RNG seeded from the run
//! seed, so the same seed yields the same operations (ids, keys, target
//! nodes by position); only timing and outcomes differ between runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tael_raft::http_client;
use tonic::transport::{Channel, Endpoint};

use super::cluster::Cluster;
use crate::events::{OpKind, Recorder, OBSERVER};

pub const SET_ADD: &str = "add";
pub const SET_READ: &str = "read";
pub const SET_READ_LOCAL: &str = "read-local";
pub const SESSION_ADD: &str = "s-add";
pub const SESSION_READ: &str = "s-read";
pub const LIST_APPEND: &str = "append";
/// Spans written already past the retention (the `retention` profile): a
/// retention cut may delete them at any time, and after the final cut no
/// node may return them.
pub const AGED_ADD: &str = "aged-add";
pub const AGED_READ: &str = "aged-read";
/// Keys the aged writer spreads its spans over.
pub const AGED_KEYS: u64 = 4;
/// A list client moves to the next window of keys after this many of its
/// operations. Every client walks the same windows, so a key sees about
/// this many operations per client; with indeterminate outcomes under
/// faults, 30 left the linearizability search out of budget on a few keys
/// (lin seed 6 unknown), 15 keeps every key checkable.
const LIST_OPS_PER_CLIENT_PER_WINDOW: u64 = 15;
/// Keys a list client picks from within one window.
const LIST_KEYS_PER_WINDOW: u64 = 3;
pub const LIST_READ: &str = "read-list";
pub const LIST_READ_LOCAL: &str = "read-list-local";

/// Processes of one client are `client + k * PROCESS_STRIDE` (a fresh id
/// after every unknown outcome).
pub const PROCESS_STRIDE: i64 = 1000;
/// The share of the span-set workload's reads made at `lease`, unless a
/// profile sets its own.
pub const LEASE_READ_SHARE: f64 = 0.3;

/// Process ids of the final reads after the heal.
pub const FINAL_PROCESS: i64 = 900;

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadConfig {
    pub set_clients: usize,
    pub set_keys: u64,
    pub session_clients: usize,
    pub list_clients: usize,
    /// Clients writing spans already past the retention.
    pub aged_clients: usize,
    /// How old aged spans are when written: past the run's retention.
    pub aged_span_age_nanos: u64,
    /// Re-send an export whose outcome is unknown, with the same span ids.
    pub retry: bool,
    pub op_timeout_ms: u64,
    /// Pause between one client's operations.
    pub think_ms: u64,
    /// The share of the span-set workload's reads made at `lease`.
    pub lease_read_share: f64,
    /// Bulk writers (see [`Clients::flood_client`]).
    pub flood_clients: usize,
    /// Exports each bulk writer keeps in flight at most.
    pub flood_in_flight: usize,
}

/// The observer event a bulk writer records every second (and once at the
/// end): `{"client", "acked", "failed"}`, running totals.
pub const FLOOD_RATE: &str = "flood-rate";
/// A bulk writer that failed holds its slot this long before the next
/// export: a node that is down refuses at once, and a tight loop of
/// refusals would take the CPU from the nodes.
const FLOOD_BACKOFF: Duration = Duration::from_millis(100);

/// Shared client state: a channel per node, the run's recorder.
#[derive(Clone)]
pub struct Clients {
    pub cluster: Cluster,
    pub rec: Recorder,
    channels: Arc<std::sync::Mutex<BTreeMap<u64, Channel>>>,
    pub cfg: WorkloadConfig,
}

pub fn set_trace_id(key: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0x7a;
    t[1] = 0x51;
    t[8..].copy_from_slice(&key.to_be_bytes());
    t
}

pub fn aged_trace_id(key: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0xa9;
    t[1] = 0xed;
    t[8..].copy_from_slice(&key.to_be_bytes());
    t
}

pub fn session_trace_id(client: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0x5e;
    t[1] = 0x55;
    t[8..].copy_from_slice(&client.to_be_bytes());
    t
}

/// Bulk writes spread over many traces (256 spans each), so no trace grows
/// without bound.
pub fn flood_trace_id(client: u64, n: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0xf1;
    t[1] = 0x00;
    t[2..8].copy_from_slice(&client.to_be_bytes()[2..]);
    t[8..].copy_from_slice(&(n / 256).to_be_bytes());
    t
}

pub fn list_trace_id(key: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0xc0;
    t[1] = 0x11;
    t[8..].copy_from_slice(&key.to_be_bytes());
    t
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bulk writers' client numbers in element ids, clear of the other clients.
const FLOOD_CLIENT_BASE: u64 = 0x7000;

/// Element ids are unique per run: client number in the high bits.
fn element_id(client: u64, n: u64) -> u64 {
    (client + 1) << 32 | (n + 1)
}

/// Spans `ids` of `trace`, started `age_nanos` ago (0: now).
fn spans_request(trace: [u8; 16], ids: &[u64], age_nanos: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        .saturating_sub(age_nanos);
    let spans = ids
        .iter()
        .map(|id| Span {
            trace_id: trace.to_vec(),
            span_id: id.to_be_bytes().to_vec(),
            name: "jepsen-op".into(),
            kind: 2,
            start_time_unix_nano: now.saturating_sub(1_000_000),
            end_time_unix_nano: now,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("jepsen".into())),
                    }),
                    key_strindex: 0,
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Whether an error message proves the write was never proposed: the
/// server says so only for these causes (see `Node::propose` and
/// `write::propose`), which happen before anything enters the log.
pub fn definitely_not_proposed(message: &str) -> bool {
    message.contains("no leader is known")
        || message.contains("overloaded: the state machine is behind")
        || message.contains("is not in the known membership")
}

/// How an export ended, in Jepsen terms.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Ok,
    Fail(String),
    Info(String),
}

pub fn classify_status(status: &tonic::Status) -> WriteOutcome {
    let msg = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        tonic::Code::InvalidArgument => WriteOutcome::Fail(msg),
        tonic::Code::Unavailable if definitely_not_proposed(status.message()) => {
            WriteOutcome::Fail(msg)
        }
        // The connection never came up, so the request was never sent.
        tonic::Code::Unavailable
            if status.message().contains("tcp connect error")
                || status.message().contains("error trying to connect") =>
        {
            WriteOutcome::Fail(msg)
        }
        _ => WriteOutcome::Info(msg),
    }
}

impl Clients {
    pub fn new(cluster: Cluster, rec: Recorder, cfg: WorkloadConfig) -> Clients {
        Clients {
            cluster,
            rec,
            channels: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
            cfg,
        }
    }

    fn channel(&self, node: u64) -> Result<Channel, String> {
        let mut map = self.channels.lock().expect("channels lock");
        if let Some(c) = map.get(&node) {
            return Ok(c.clone());
        }
        let spec = self.cluster.spec(node)?;
        let ch = Endpoint::from_shared(format!("http://{}", spec.otlp))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_millis(1000))
            .connect_lazy();
        map.insert(node, ch.clone());
        Ok(ch)
    }

    /// Drops a node's channel (its address changed or it was removed).
    pub fn forget_channel(&self, node: u64) {
        self.channels.lock().expect("channels lock").remove(&node);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.op_timeout_ms)
    }

    /// One export, recorded as invoke + completion.
    async fn export(
        &self,
        process: i64,
        f: &str,
        key: &str,
        trace: [u8; 16],
        ids: &[u64],
        node: u64,
    ) -> WriteOutcome {
        let value = json!(ids);
        self.rec.record(
            process,
            OpKind::Invoke,
            f,
            Some(key),
            value.clone(),
            Some(node),
            None,
        );
        let age_nanos = if f == AGED_ADD {
            self.cfg.aged_span_age_nanos
        } else {
            0
        };
        let outcome = self.send_spans(trace, ids, age_nanos, node).await;
        let (kind, error) = match &outcome {
            WriteOutcome::Ok => (OpKind::Ok, None),
            WriteOutcome::Fail(e) => (OpKind::Fail, Some(e.clone())),
            WriteOutcome::Info(e) => (OpKind::Info, Some(e.clone())),
        };
        self.rec
            .record(process, kind, f, Some(key), value, Some(node), error);
        outcome
    }

    /// One OTLP export of spans `ids` of `trace` to `node`, unrecorded.
    async fn send_spans(
        &self,
        trace: [u8; 16],
        ids: &[u64],
        age_nanos: u64,
        node: u64,
    ) -> WriteOutcome {
        match self.channel(node) {
            Err(e) => WriteOutcome::Fail(e),
            Ok(ch) => {
                let mut client = TraceServiceClient::new(ch);
                let mut req = tonic::Request::new(spans_request(trace, ids, age_nanos));
                req.set_timeout(self.timeout());
                if let Some(key) = http_client::default_api_key() {
                    let bearer = format!("Bearer {key}").parse().expect("a key is ASCII");
                    req.metadata_mut().insert("authorization", bearer);
                }
                match tokio::time::timeout(self.timeout(), client.export(req)).await {
                    Ok(Ok(resp)) => match resp.into_inner().partial_success {
                        Some(p) if p.rejected_spans > 0 => WriteOutcome::Info(format!(
                            "partial success: {} rejected: {}",
                            p.rejected_spans, p.error_message
                        )),
                        _ => WriteOutcome::Ok,
                    },
                    Ok(Err(status)) => classify_status(&status),
                    Err(_) => WriteOutcome::Info("client timeout".into()),
                }
            }
        }
    }

    /// Bulk writer (the `purge-race` profile): one-span exports, as many as
    /// `flood_in_flight` concurrent requests allow, spread over the nodes.
    /// They are load, not evidence: none is recorded as an operation (there
    /// are thousands a second); the running totals are, every second, as a
    /// [`FLOOD_RATE`] event.
    pub async fn flood_client(self, client: u64, stop: Arc<AtomicBool>) {
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let report = |acked: &AtomicU64, failed: &AtomicU64| {
            self.rec.record(
                OBSERVER,
                OpKind::Info,
                FLOOD_RATE,
                None,
                json!({"client": client, "acked": acked.load(Ordering::Relaxed),
                       "failed": failed.load(Ordering::Relaxed)}),
                None,
                None,
            );
        };
        let mut tasks = tokio::task::JoinSet::new();
        let mut next_report = Instant::now() + Duration::from_secs(1);
        let in_flight = self.cfg.flood_in_flight.max(1);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            while tasks.len() >= in_flight {
                tasks.join_next().await;
            }
            if Instant::now() >= next_report {
                report(&acked, &failed);
                next_report += Duration::from_secs(1);
            }
            let ids = self.cluster.ids();
            let node = ids[(n % ids.len() as u64) as usize];
            let span = element_id(FLOOD_CLIENT_BASE + client, n);
            let trace = flood_trace_id(client, n);
            let (me, acked, failed) = (self.clone(), acked.clone(), failed.clone());
            tasks.spawn(async move {
                if me.send_spans(trace, &[span], 0, node).await == WriteOutcome::Ok {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(FLOOD_BACKOFF).await;
                }
            });
            n += 1;
        }
        while tasks.join_next().await.is_some() {}
        report(&acked, &failed);
    }

    /// Reads one trace's span ids (as element ids), recorded.
    pub async fn read_trace(
        &self,
        process: i64,
        f: &str,
        key: &str,
        trace: [u8; 16],
        node: u64,
        consistency: &str,
    ) -> Result<Vec<u64>, String> {
        self.rec.record(
            process,
            OpKind::Invoke,
            f,
            Some(key),
            json!({ "consistency": consistency }),
            Some(node),
            None,
        );
        let path = format!("/api/v1/traces/{}?consistency={consistency}", hex(&trace));
        let result = match self.cluster.spec(node) {
            Err(e) => Err(e),
            Ok(spec) => {
                http_client::request("GET", &spec.url(&path), None, b"", self.timeout()).await
            }
        };
        let result = match result {
            Ok(r) if r.status == 404 => Ok(Vec::new()),
            Ok(r) if r.status == 200 => r.json().and_then(|v| {
                v["spans"]
                    .as_array()
                    .ok_or_else(|| "no spans array".to_string())?
                    .iter()
                    .map(|s| {
                        s["span_id"]
                            .as_str()
                            .and_then(|h| u64::from_str_radix(h, 16).ok())
                            .ok_or_else(|| format!("bad span_id in {s}"))
                    })
                    .collect::<Result<Vec<u64>, String>>()
            }),
            Ok(r) => Err(format!(
                "status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => Err(e),
        };
        // A read has no effect, so any error is a definite failure.
        match result {
            Ok(ids) => {
                self.rec.record(
                    process,
                    OpKind::Ok,
                    f,
                    Some(key),
                    json!(ids),
                    Some(node),
                    None,
                );
                Ok(ids)
            }
            Err(e) => {
                self.rec.record(
                    process,
                    OpKind::Fail,
                    f,
                    Some(key),
                    Value::Null,
                    Some(node),
                    Some(e.clone()),
                );
                Err(e)
            }
        }
    }

    fn pick_node(&self, rng: &mut StdRng) -> u64 {
        let ids = self.cluster.ids();
        ids[rng.random_range(0..ids.len())]
    }

    /// Span-set client: random adds and linearizable reads on random keys.
    pub async fn set_client(self, client: u64, seed: u64, stop: Arc<AtomicBool>) {
        let mut gen = SetGen::new(seed, client, self.cfg.set_keys);
        // Retries depend on outcomes; their own stream keeps the main
        // operation stream identical for a given seed.
        let mut retry_rng =
            StdRng::seed_from_u64(seed ^ 0x7e7_0000 ^ client.wrapping_mul(0x9e37_79b9));
        // Reads at `lease` make the same promise as `linearizable` (the
        // leader's lease is timed by the monotonic clock, which the clock
        // nemesis leaves alone), so the same set checker judges them.
        let mut level_rng =
            StdRng::seed_from_u64(seed ^ 0x1ea5_0000 ^ client.wrapping_mul(0x632b_e59b));
        let mut process = client as i64;
        while !stop.load(Ordering::Relaxed) {
            let op = gen.next(&self.cluster.ids());
            let key = format!("set-{}", op.key_no);
            let trace = set_trace_id(op.key_no);
            let node = op.node;
            if let Some(ids) = op.add {
                let mut attempt = 0;
                loop {
                    let node = if attempt == 0 {
                        node
                    } else {
                        self.pick_node(&mut retry_rng)
                    };
                    let outcome = self.export(process, SET_ADD, &key, trace, &ids, node).await;
                    // Retry mode also re-sends some acknowledged batches, as an
                    // exporter that lost the response would: re-ingesting the
                    // same spans must not store them twice.
                    if outcome == WriteOutcome::Ok
                        && self.cfg.retry
                        && attempt == 0
                        && retry_rng.random_bool(0.15)
                    {
                        attempt += 1;
                        continue;
                    }
                    if let WriteOutcome::Info(_) = outcome {
                        process += PROCESS_STRIDE;
                        attempt += 1;
                        if self.cfg.retry && attempt <= 3 && !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                    break;
                }
            } else {
                let level = if level_rng.random_bool(self.cfg.lease_read_share) {
                    "lease"
                } else {
                    "linearizable"
                };
                let _ = self
                    .read_trace(process, SET_READ, &key, trace, node, level)
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.think_ms)).await;
        }
    }

    /// Aged-span client: exports spans already past the retention, on
    /// random nodes and keys; a retention cut deletes them (checked after
    /// the final cut, `checkers::retention`).
    pub async fn aged_client(self, client: u64, seed: u64, stop: Arc<AtomicBool>) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xa9ed_0000 ^ client.wrapping_mul(0x27d4_eb2f));
        let mut process = 300 + client as i64;
        let id_client = 20_000 + client;
        let mut next = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key_no = rng.random_range(0..AGED_KEYS);
            let key = format!("aged-{key_no}");
            let ids = [element_id(id_client, next)];
            next += 1;
            let node = self.pick_node(&mut rng);
            let outcome = self
                .export(process, AGED_ADD, &key, aged_trace_id(key_no), &ids, node)
                .await;
            if let WriteOutcome::Info(_) = outcome {
                process += PROCESS_STRIDE;
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.think_ms * 2)).await;
        }
    }

    /// Trace-session client: owns one trace, writes to a home node, reads
    /// at the others.
    pub async fn session_client(self, client: u64, seed: u64, stop: Arc<AtomicBool>) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5e55_0000 ^ client.wrapping_mul(0x85eb_ca6b));
        let mut process = 100 + client as i64;
        let key = format!("session-{client}");
        let trace = session_trace_id(client);
        let mut next = 0u64;
        // Session element ids live in their own client-number range.
        let id_client = 10_000 + client;
        while !stop.load(Ordering::Relaxed) {
            let ids = self.cluster.ids();
            let home = ids[(client as usize) % ids.len()];
            if rng.random_bool(0.4) {
                let n = rng.random_range(1..=3);
                let new: Vec<u64> = (0..n).map(|i| element_id(id_client, next + i)).collect();
                next += n;
                if let WriteOutcome::Info(_) = self
                    .export(process, SESSION_ADD, &key, trace, &new, home)
                    .await
                {
                    process += PROCESS_STRIDE;
                }
            } else {
                let others: Vec<u64> = ids.iter().copied().filter(|i| *i != home).collect();
                let node = if others.is_empty() {
                    home
                } else {
                    others[rng.random_range(0..others.len())]
                };
                let _ = self
                    .read_trace(process, SESSION_READ, &key, trace, node, "linearizable")
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.think_ms)).await;
        }
    }

    /// Comment-list client: appends unique integers to a few traces'
    /// comment lists and reads the lists back; keys rotate so that each
    /// key's history stays small enough to check.
    pub async fn list_client(self, client: u64, seed: u64, stop: Arc<AtomicBool>) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc011_0000 ^ client.wrapping_mul(0xc2b2_ae35));
        let mut process = 200 + client as i64;
        let mut op_no = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key_no = (op_no / LIST_OPS_PER_CLIENT_PER_WINDOW) * LIST_KEYS_PER_WINDOW
                + rng.random_range(0..LIST_KEYS_PER_WINDOW);
            op_no += 1;
            let key = format!("list-{key_no}");
            let trace = hex(&list_trace_id(key_no));
            let node = self.pick_node(&mut rng);
            if rng.random_bool(0.5) {
                let value = element_id(20_000 + client, op_no);
                if !self
                    .append_comment(process, &key, &trace, value, node)
                    .await
                {
                    process += PROCESS_STRIDE;
                }
            } else {
                let _ = self
                    .read_comments(process, LIST_READ, &key, &trace, node, "linearizable")
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.think_ms)).await;
        }
    }

    /// Returns false when the outcome is unknown (the process must change).
    async fn append_comment(
        &self,
        process: i64,
        key: &str,
        trace: &str,
        value: u64,
        node: u64,
    ) -> bool {
        self.rec.record(
            process,
            OpKind::Invoke,
            LIST_APPEND,
            Some(key),
            json!(value),
            Some(node),
            None,
        );
        let body = serde_json::to_vec(&json!({"body": value.to_string(), "author": "jepsen"}))
            .expect("json");
        let r = match self.cluster.spec(node) {
            Err(e) => Err(format!("{e} (not sent)")),
            Ok(spec) => {
                http_client::request(
                    "POST",
                    &spec.url(&format!("/api/v1/traces/{trace}/comments")),
                    Some("application/json"),
                    &body,
                    self.timeout(),
                )
                .await
            }
        };
        let (kind, error) = match r {
            Ok(r) if r.status == 201 || r.status == 200 => (OpKind::Ok, None),
            Ok(r) => {
                let text = String::from_utf8_lossy(&r.body).to_string();
                let e = format!("status {}: {text}", r.status);
                if r.status == 400
                    || r.status == 404
                    || r.status == 413
                    || (r.status == 503 && definitely_not_proposed(&text))
                {
                    (OpKind::Fail, Some(e))
                } else {
                    (OpKind::Info, Some(e))
                }
            }
            // The TCP connection never came up: nothing was sent.
            Err(e) if e.starts_with("connecting to ") || e.ends_with("(not sent)") => {
                (OpKind::Fail, Some(e))
            }
            Err(e) => (OpKind::Info, Some(e)),
        };
        let unknown = kind == OpKind::Info;
        self.rec.record(
            process,
            kind,
            LIST_APPEND,
            Some(key),
            json!(value),
            Some(node),
            error,
        );
        !unknown
    }

    /// Reads a trace's comment bodies in commit order, recorded as `f`.
    pub async fn read_comments(
        &self,
        process: i64,
        f: &str,
        key: &str,
        trace: &str,
        node: u64,
        consistency: &str,
    ) -> Result<Vec<u64>, String> {
        self.rec.record(
            process,
            OpKind::Invoke,
            f,
            Some(key),
            Value::Null,
            Some(node),
            None,
        );
        let result = match self.cluster.spec(node) {
            Err(e) => Err(e),
            Ok(spec) => {
                let url = spec.url(&format!(
                    "/api/v1/traces/{trace}/comments?consistency={consistency}"
                ));
                http_client::request("GET", &url, None, b"", self.timeout()).await
            }
        };
        let result = match result {
            Ok(r) if r.status == 200 => r.json().and_then(|v| {
                v["comments"]
                    .as_array()
                    .ok_or_else(|| "no comments array".to_string())?
                    .iter()
                    .map(|c| {
                        c["body"]
                            .as_str()
                            .and_then(|b| b.parse::<u64>().ok())
                            .ok_or_else(|| format!("unexpected comment {c}"))
                    })
                    .collect::<Result<Vec<u64>, String>>()
            }),
            Ok(r) if r.status == 404 => Ok(Vec::new()),
            Ok(r) => Err(format!(
                "status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => Err(e),
        };
        match &result {
            Ok(list) => self.rec.record(
                process,
                OpKind::Ok,
                f,
                Some(key),
                json!(list),
                Some(node),
                None,
            ),
            Err(e) => self.rec.record(
                process,
                OpKind::Fail,
                f,
                Some(key),
                Value::Null,
                Some(node),
                Some(e.clone()),
            ),
        };
        result
    }

    /// Whether the server has the comments API (a 404 for an unknown route
    /// has no JSON `comments`; an empty trace answers 200 or 404 with JSON).
    pub async fn comments_supported(&self, node: u64) -> bool {
        let Ok(spec) = self.cluster.spec(node) else {
            return false;
        };
        let url = spec.url(&format!(
            "/api/v1/traces/{}/comments?consistency=local",
            hex(&list_trace_id(u64::MAX))
        ));
        match http_client::request("GET", &url, None, b"", Duration::from_secs(3)).await {
            Ok(r) => r.status == 200 && r.json().is_ok_and(|v| v["comments"].is_array()),
            Err(_) => false,
        }
    }
}

/// One span-set operation as the generator drew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOp {
    pub key_no: u64,
    pub node: u64,
    /// `Some(ids)` for an add of these elements, `None` for a read.
    pub add: Option<Vec<u64>>,
}

/// The span-set generator of one client: a pure function of the seed,
/// the client number and the node list it is given.
pub struct SetGen {
    rng: StdRng,
    client: u64,
    keys: u64,
    next: u64,
}

impl SetGen {
    pub fn new(seed: u64, client: u64, keys: u64) -> SetGen {
        SetGen {
            rng: StdRng::seed_from_u64(seed ^ 0x5e7_0000 ^ client.wrapping_mul(0x9e37_79b9)),
            client,
            keys,
            next: 0,
        }
    }

    pub fn next(&mut self, nodes: &[u64]) -> SetOp {
        let key_no = self.rng.random_range(0..self.keys);
        let node = nodes[self.rng.random_range(0..nodes.len())];
        let add = self.rng.random_bool(0.5).then(|| {
            let n = self.rng.random_range(1..=4);
            let ids = (0..n)
                .map(|i| element_id(self.client, self.next + i))
                .collect();
            self.next += n;
            ids
        });
        SetOp { key_no, node, add }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_never_proposed_errors_are_definite_failures() {
        let fail = |s: tonic::Status| matches!(classify_status(&s), WriteOutcome::Fail(_));
        assert!(fail(tonic::Status::invalid_argument("no valid spans")));
        assert!(fail(tonic::Status::unavailable("no leader is known")));
        assert!(fail(tonic::Status::unavailable(
            "forwarding to leader 2: overloaded: the state machine is behind; retry later"
        )));
        assert!(fail(tonic::Status::unavailable("tcp connect error")));
        // After proposing, or when it cannot be known: unknown.
        assert!(!fail(tonic::Status::unavailable(
            "timed out waiting for commit; the write may or may not apply"
        )));
        assert!(!fail(tonic::Status::unavailable(
            "timed out forwarding to leader 1; the write may or may not apply"
        )));
        assert!(!fail(tonic::Status::unavailable(
            "not the leader (leader: unknown)"
        )));
        assert!(!fail(tonic::Status::cancelled("operation was canceled")));
        assert!(!fail(tonic::Status::internal("boom")));
    }

    #[test]
    fn same_seed_same_operations() {
        let draw = |seed, client| {
            let mut g = SetGen::new(seed, client, 8);
            (0..200).map(|_| g.next(&[1, 2, 3])).collect::<Vec<_>>()
        };
        assert_eq!(draw(5, 0), draw(5, 0));
        assert_ne!(draw(5, 0), draw(6, 0));
        assert_ne!(draw(5, 0), draw(5, 1));
        let ops = draw(5, 0);
        assert!(ops.iter().any(|o| o.add.is_some()) && ops.iter().any(|o| o.add.is_none()));
        let mut ids: Vec<u64> = ops
            .iter()
            .flat_map(|o| o.add.clone().unwrap_or_default())
            .collect();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "element ids repeat");
    }

    #[test]
    fn ids_are_unique_and_spans_carry_them() {
        assert_ne!(element_id(0, 1), element_id(1, 0));
        assert_ne!(element_id(0, 0), 0);
        let req = spans_request(set_trace_id(3), &[element_id(2, 5)], 0);
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.span_id, element_id(2, 5).to_be_bytes().to_vec());
        assert_eq!(hex(&span.trace_id), hex(&set_trace_id(3)));
    }
}
