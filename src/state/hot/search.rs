//! Searches: spans, log records and metric points matching a query, newest
//! first, walking the most selective index over the time window within a
//! budget of candidates.

use std::ops::ControlFlow;

use fjall::{Guard, Keyspace};

use super::keys::{
    day_prefix, leading_time, prefixed, service_bucket_prefix, service_prefix, time_key_bounds,
    DAY_NANOS, RECORD_KEY_LEN, SERVICE_BUCKET_NANOS, SPAN_KEY_LEN,
};
use super::{Found, HotStore, LogQuery, MetricQuery, SearchResult, SpanQuery, StoreResult};
use crate::codec::decode;
use crate::model::{LogRecord, MetricPoint, Severity, SpanRecord, SpanStatus};

/// Which index a span scan walks.
#[derive(Clone, Copy, Debug)]
pub enum SpanWalk<'a> {
    /// Every span (`by_time`).
    Time,
    /// Spans with status error only (`by_error`).
    Errors,
    /// The spans of one service (`by_service`).
    Service(&'a str),
}

/// What a scan examined (of spans, or of log records).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanScan {
    pub scanned: usize,
    /// The budget ran out before the window was exhausted.
    pub truncated: bool,
}

/// Which index a log scan walks.
#[derive(Clone, Copy, Debug)]
pub enum LogWalk<'a> {
    /// Every record (the time-ordered primary keyspace).
    Time,
    /// The records of one service.
    Service(&'a str),
    /// The records of one severity.
    Severity(Severity),
}

/// The order a scan visits records in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// How a log or metric search reaches its candidates.
enum Walk<'a> {
    /// The time-ordered primary keyspace.
    Primary,
    /// An index keyed prefix ++ time ++ content key.
    Prefixed(&'a Keyspace, Vec<u8>),
    /// An index keyed day ++ prefix ++ time ++ content key.
    DayBucketed(&'a Keyspace, Vec<u8>),
}

impl HotStore {
    /// Spans matching `q`, newest first. Walks the most selective index over
    /// the time window and stops after `q.limit` matches or `q.max_scanned`
    /// candidates.
    pub fn search(&self, q: &SpanQuery) -> StoreResult<SearchResult> {
        let window = (
            q.since_unix_nanos.unwrap_or(0),
            q.until_unix_nanos.unwrap_or(u64::MAX),
        );
        let walk = if q.status == Some(SpanStatus::Error) {
            SpanWalk::Errors
        } else if let Some(service) = &q.service {
            SpanWalk::Service(service)
        } else {
            SpanWalk::Time
        };
        let mut result = SearchResult::default();
        let scan = self.visit_spans(window, walk, q.max_scanned, |span| {
            if q.matches(&span) {
                result.spans.push(span);
            }
            Ok(if result.spans.len() >= q.limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        result.scanned = scan.scanned;
        result.truncated = scan.truncated;
        Ok(result)
    }

    /// Visits the spans that started in `[from, to]`, newest first, through
    /// the index `walk` names, until `visit` breaks or `max_scanned` spans
    /// were visited (then the scan says it was truncated).
    pub fn visit_spans(
        &self,
        (from, to): (u64, u64),
        walk: SpanWalk<'_>,
        max_scanned: usize,
        mut visit: impl FnMut(SpanRecord) -> StoreResult<ControlFlow<()>>,
    ) -> StoreResult<SpanScan> {
        let mut scan = SpanScan::default();
        let Some(entries) = self.span_entries((from, to), walk)? else {
            return Ok(scan);
        };
        let ks = &self.keyspaces;
        for g in entries {
            if scan.scanned >= max_scanned {
                scan.truncated = true;
                break;
            }
            scan.scanned += 1;
            let k = g.key()?;
            let ids = &k[k.len() - SPAN_KEY_LEN..];
            // Read after the index entry: a cut or a move to the cold tier
            // may have taken the span in between.
            let Some(v) = ks.spans.get(ids)? else {
                continue;
            };
            if visit(decode(&v)?)?.is_break() {
                break;
            }
        }
        Ok(scan)
    }

    /// Index entries of the spans that started in `[from, to]`, newest
    /// first; each key ends with start ++ ids. `None` when the store has no
    /// span in the window.
    fn span_entries(
        &self,
        (from, to): (u64, u64),
        walk: SpanWalk<'_>,
    ) -> StoreResult<Option<Box<dyn Iterator<Item = Guard>>>> {
        let (lo, hi) = time_key_bounds(from, to);
        let ks = &self.keyspaces;
        Ok(Some(match walk {
            SpanWalk::Errors => Box::new(ks.by_error.range(lo.to_vec()..=hi.to_vec()).rev()),
            SpanWalk::Time => Box::new(ks.by_time.range(lo.to_vec()..=hi.to_vec()).rev()),
            SpanWalk::Service(service) => {
                // Clamp the window to the data that exists, then walk its
                // hour buckets newest first.
                let newest = match ks.by_time.last_key_value() {
                    Some(g) => leading_time(&g.key()?),
                    None => return Ok(None),
                };
                let oldest = match ks.by_time.first_key_value() {
                    Some(g) => leading_time(&g.key()?),
                    None => return Ok(None),
                };
                let (from, to) = (from.max(oldest), to.min(newest));
                if from > to {
                    return Ok(None);
                }
                let by_service = ks.by_service.clone();
                let service = service.to_string();
                Box::new(
                    (from / SERVICE_BUCKET_NANOS..=to / SERVICE_BUCKET_NANOS)
                        .rev()
                        .flat_map(move |bucket| {
                            let mut a = service_bucket_prefix(bucket, &service);
                            let mut b = a.clone();
                            a.extend_from_slice(&lo);
                            b.extend_from_slice(&hi);
                            by_service.range(a..=b).rev()
                        }),
                )
            }
        }))
    }

    /// Log records matching `q`, newest first, walking the most selective
    /// index (trace, service, severity, else time) over the time window.
    pub fn search_logs(&self, q: &LogQuery) -> StoreResult<Found<LogRecord>> {
        let ks = &self.keyspaces;
        let walk = if let Some(t) = &q.trace_id {
            Walk::Prefixed(&ks.log_by_trace, t.to_vec())
        } else if let Some(svc) = &q.service {
            Walk::DayBucketed(&ks.log_by_service, service_prefix(svc))
        } else if let Some(sev) = q.severity {
            Walk::DayBucketed(&ks.log_by_severity, vec![sev.code()])
        } else {
            Walk::Primary
        };
        let window = (q.since_unix_nanos, q.until_unix_nanos);
        scan_records(&ks.logs, walk, window, (q.limit, q.max_scanned), |l| {
            q.matches(l)
        })
    }

    /// Visits the log records of `[from, to]` (unix nanoseconds) in
    /// `order` through the index `walk` names, until `visit` breaks or
    /// `max_scanned` records were visited (then the scan says it was
    /// truncated). The index narrows the candidates only: `visit` sees
    /// every record the index holds for the window, with its key.
    pub fn visit_logs(
        &self,
        (from, to): (u64, u64),
        walk: LogWalk<'_>,
        order: Order,
        max_scanned: usize,
        visit: impl FnMut(&[u8], LogRecord) -> StoreResult<ControlFlow<()>>,
    ) -> StoreResult<SpanScan> {
        let ks = &self.keyspaces;
        let walk = match walk {
            LogWalk::Time => Walk::Primary,
            LogWalk::Service(svc) => Walk::DayBucketed(&ks.log_by_service, service_prefix(svc)),
            LogWalk::Severity(sev) => Walk::DayBucketed(&ks.log_by_severity, vec![sev.code()]),
        };
        visit_records(
            &ks.logs,
            walk,
            (Some(from), Some(to)),
            order,
            max_scanned,
            visit,
        )
    }

    /// Metric points matching `q`, newest first.
    pub fn search_metrics(&self, q: &MetricQuery) -> StoreResult<Found<MetricPoint>> {
        let ks = &self.keyspaces;
        let walk = match &q.name {
            Some(n) => Walk::DayBucketed(&ks.metric_by_name, service_prefix(n)),
            None => Walk::Primary,
        };
        let window = (q.since_unix_nanos, q.until_unix_nanos);
        scan_records(&ks.metrics, walk, window, (q.limit, q.max_scanned), |m| {
            q.matches(m)
        })
    }
}

/// Walks `primary` (keys: time ++ content key) or an index over it (keys
/// end with time ++ content key) newest first within the time window,
/// until `limit` records are kept or `max_scanned` candidates examined.
fn scan_records<T: serde::de::DeserializeOwned>(
    primary: &Keyspace,
    walk: Walk<'_>,
    window: (Option<u64>, Option<u64>),
    (limit, max_scanned): (usize, usize),
    keep: impl Fn(&T) -> bool,
) -> StoreResult<Found<T>> {
    let mut found = Found {
        records: Vec::new(),
        keys: Vec::new(),
        scanned: 0,
        truncated: false,
    };
    if limit == 0 {
        return Ok(found);
    }
    let scan = visit_records(
        primary,
        walk,
        window,
        Order::NewestFirst,
        max_scanned,
        |key: &[u8], record: T| {
            if keep(&record) {
                found.records.push(record);
                found.keys.push(key.to_vec());
            }
            Ok(if found.records.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )?;
    found.scanned = scan.scanned;
    found.truncated = scan.truncated;
    Ok(found)
}

/// Visits the records of `primary` in the time window in `order`, through
/// `walk`, until `visit` breaks or `max_scanned` candidates were visited
/// (then the scan says it was truncated). `visit` gets each record's key
/// in `primary` with it.
fn visit_records<T: serde::de::DeserializeOwned>(
    primary: &Keyspace,
    walk: Walk<'_>,
    (since, until): (Option<u64>, Option<u64>),
    order: Order,
    max_scanned: usize,
    mut visit: impl FnMut(&[u8], T) -> StoreResult<ControlFlow<()>>,
) -> StoreResult<SpanScan> {
    let mut scan = SpanScan::default();
    // Clamp the window to the data that exists: bucketed walks visit
    // every day in it.
    let time_of = |g: Option<Guard>| -> StoreResult<Option<u64>> {
        g.map(|g| Ok(leading_time(&g.key()?))).transpose()
    };
    let (Some(oldest), Some(newest)) = (
        time_of(primary.first_key_value())?,
        time_of(primary.last_key_value())?,
    ) else {
        return Ok(scan);
    };
    let from = since.unwrap_or(0).max(oldest);
    let to = until.unwrap_or(u64::MAX).min(newest);
    if from > to {
        return Ok(scan);
    }
    let mut lo = [0u8; RECORD_KEY_LEN];
    lo[..8].copy_from_slice(&from.to_be_bytes());
    let mut hi = [0xffu8; RECORD_KEY_LEN];
    hi[..8].copy_from_slice(&to.to_be_bytes());
    let is_index = !matches!(walk, Walk::Primary);
    let ordered = move |it: fjall::Iter| -> Box<dyn Iterator<Item = Guard>> {
        match order {
            Order::NewestFirst => Box::new(it.rev()),
            Order::OldestFirst => Box::new(it),
        }
    };
    let entries: Box<dyn Iterator<Item = Guard>> = match walk {
        Walk::Primary => ordered(primary.range(lo.to_vec()..=hi.to_vec())),
        Walk::Prefixed(index, prefix) => {
            ordered(index.range(prefixed(&prefix, &lo)..=prefixed(&prefix, &hi)))
        }
        Walk::DayBucketed(index, prefix) => {
            let index = index.clone();
            let days = from / DAY_NANOS..=to / DAY_NANOS;
            let days: Box<dyn Iterator<Item = u64>> = match order {
                Order::NewestFirst => Box::new(days.rev()),
                Order::OldestFirst => Box::new(days),
            };
            Box::new(days.flat_map(move |day| {
                let p = day_prefix(day, &prefix);
                ordered(index.range(prefixed(&p, &lo)..=prefixed(&p, &hi)))
            }))
        }
    };
    for g in entries {
        if scan.scanned >= max_scanned {
            scan.truncated = true;
            break;
        }
        scan.scanned += 1;
        let (key, record): (Vec<u8>, T) = if is_index {
            let k = g.key()?;
            let key = &k[k.len() - RECORD_KEY_LEN..];
            // The index entry and its record were read at different times:
            // a cut or a move to the cold tier may have taken the record in
            // between (it is then in the cold tier, or gone).
            let Some(v) = primary.get(key)? else {
                continue;
            };
            (key.to_vec(), decode(&v)?)
        } else {
            let (k, v) = g.into_inner()?;
            (k.to_vec(), decode(&v)?)
        };
        if visit(&key, record)?.is_break() {
            break;
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{log_id, open_store};
    use super::*;
    use crate::model::Severity;

    fn log(day: u64, n: u64, service: &str, severity: Severity) -> LogRecord {
        LogRecord {
            timestamp_unix_nanos: day * DAY_NANOS + n,
            severity,
            body: Some(crate::model::AnyValue::String(format!(
                "{service} day {day} #{n}"
            ))),
            service: service.into(),
            ..Default::default()
        }
    }

    fn bodies(f: Found<LogRecord>) -> Vec<String> {
        f.records
            .into_iter()
            .map(|l| l.body_text().into_owned())
            .collect()
    }

    #[test]
    fn day_bucketed_indexes_answer_newest_first_across_days() {
        let (_dir, store) = open_store();
        let mut batch = store.begin();
        batch.begin_entry(1);
        for (day, n, svc, sev) in [
            (20_000, 1, "a", Severity::Info),
            (20_003, 5, "a", Severity::Error),
            (20_003, 2, "b", Severity::Error),
            (20_010, 0, "a", Severity::Info),
            (20_010, 9, "b", Severity::Warn),
        ] {
            batch.put_log(&log(day, n, svc, sev));
        }
        batch.commit(Some(log_id(1)), None).unwrap();
        let q = |f: &dyn Fn(&mut LogQuery)| {
            let mut q = LogQuery {
                limit: 100,
                max_scanned: 100,
                ..Default::default()
            };
            f(&mut q);
            store.search_logs(&q).unwrap()
        };
        assert_eq!(
            bodies(q(&|q| q.service = Some("a".into()))),
            vec!["a day 20010 #0", "a day 20003 #5", "a day 20000 #1"]
        );
        let errors = q(&|q| q.severity = Some(Severity::Error));
        assert_eq!(errors.scanned, 2);
        assert_eq!(bodies(errors), vec!["a day 20003 #5", "b day 20003 #2"]);
        assert_eq!(
            bodies(q(&|q| {
                q.service = Some("a".into());
                q.since_unix_nanos = Some(20_003 * DAY_NANOS + 3);
            })),
            vec!["a day 20010 #0", "a day 20003 #5"]
        );
        assert_eq!(
            bodies(q(&|q| {
                q.service = Some("b".into());
                q.limit = 1;
            })),
            vec!["b day 20010 #9"]
        );
        assert!(bodies(q(&|q| q.service = Some("c".into()))).is_empty());
        assert!(bodies(q(&|q| q.since_unix_nanos = Some(u64::MAX - 1))).is_empty());
        assert_eq!(q(&|q| q.limit = 100).records.len(), 5);
    }

    #[test]
    fn log_visits_walk_either_way_within_budget() {
        let (_dir, store) = open_store();
        let mut batch = store.begin();
        batch.begin_entry(1);
        for (day, n, svc, sev) in [
            (20_000, 1, "a", Severity::Info),
            (20_003, 5, "a", Severity::Error),
            (20_003, 2, "b", Severity::Error),
            (20_010, 0, "a", Severity::Info),
        ] {
            batch.put_log(&log(day, n, svc, sev));
        }
        batch.commit(Some(log_id(1)), None).unwrap();
        let visit = |walk: LogWalk<'_>, order: Order, max_scanned: usize| {
            let mut seen = Vec::new();
            let scan = store
                .visit_logs((0, u64::MAX), walk, order, max_scanned, |_, l| {
                    seen.push(l.body_text().into_owned());
                    Ok(ControlFlow::Continue(()))
                })
                .unwrap();
            (seen, scan)
        };
        let (all, scan) = visit(LogWalk::Time, Order::OldestFirst, 100);
        assert_eq!(
            all,
            [
                "a day 20000 #1",
                "b day 20003 #2",
                "a day 20003 #5",
                "a day 20010 #0"
            ]
        );
        assert!(!scan.truncated);
        let (a, _) = visit(LogWalk::Service("a"), Order::OldestFirst, 100);
        assert_eq!(a, ["a day 20000 #1", "a day 20003 #5", "a day 20010 #0"]);
        let (a, _) = visit(LogWalk::Service("a"), Order::NewestFirst, 100);
        assert_eq!(a, ["a day 20010 #0", "a day 20003 #5", "a day 20000 #1"]);
        let (errors, _) = visit(LogWalk::Severity(Severity::Error), Order::OldestFirst, 100);
        assert_eq!(errors, ["b day 20003 #2", "a day 20003 #5"]);
        let (first, scan) = visit(LogWalk::Time, Order::NewestFirst, 2);
        assert_eq!(first, ["a day 20010 #0", "a day 20003 #5"]);
        assert!(scan.truncated, "the budget ran out before the window did");
        assert_eq!(scan.scanned, 2);
    }
}
