//! Live tail over server-sent events: `GET /api/v1/traces/live`
//! (`service`, `status`) and `GET /api/v1/logs/live` (`service`,
//! `severity`). Each record is an event (`span` or `log`) whose data is its
//! REST JSON. A client that falls more than the tail buffer behind gets a
//! final `lagged` event and the stream ends (see [`crate::live_tail`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{ApiError, Params};
use crate::live_tail::LiveTail;
use crate::model::{LogRecord, Severity, SpanJson, SpanRecord, SpanStatus};

/// Comment lines that keep idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Turns a subscription into SSE events: `keep` filters, `event` shapes;
/// after a lag, one `lagged` event and the end.
pub fn events<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
    keep: impl Fn(&T) -> bool + Send + 'static,
    event: impl Fn(&T) -> Event + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let listener = Some(Listener { rx, keep, event });
    futures::stream::unfold(listener, |listener| async move {
        let mut l = listener?;
        loop {
            match l.rx.recv().await {
                Ok(item) if (l.keep)(&item) => {
                    let e = (l.event)(&item);
                    return Some((Ok(e), Some(l)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    let data = json!({
                        "missed": missed,
                        "message": "this client fell behind the live tail and was disconnected",
                    });
                    let e = Event::default().event("lagged").data(data.to_string());
                    return Some((Ok(e), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// One client's subscription and what it asked for.
struct Listener<T, K, E> {
    rx: broadcast::Receiver<T>,
    keep: K,
    event: E,
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

pub async fn traces(
    State(tail): State<Arc<LiveTail>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let service = p.one("service")?.map(str::to_string);
    let status = match p.one("status")? {
        None => None,
        Some(s) => Some(SpanStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status must be ok, error or unset, not {s:?}"))
        })?),
    };
    let keep = move |s: &Arc<SpanRecord>| {
        service.as_ref().is_none_or(|svc| &s.service == svc)
            && status.is_none_or(|st| s.status == st)
    };
    let event = |s: &Arc<SpanRecord>| {
        let json = serde_json::to_string(&SpanJson::from(s.as_ref())).unwrap_or_default();
        Event::default().event("span").data(json)
    };
    Ok(sse(events(tail.subscribe_spans(), keep, event)))
}

pub async fn logs(
    State(tail): State<Arc<LiveTail>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let service = p.one("service")?.map(str::to_string);
    let severity = match p.one("severity")? {
        None => None,
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "severity must be trace, debug, info, warn, error, fatal or unspecified, not {s:?}"
            ))
        })?),
    };
    let keep = move |l: &Arc<LogRecord>| {
        service.as_ref().is_none_or(|svc| &l.service == svc)
            && severity.is_none_or(|sev| l.severity == sev)
    };
    let event = |l: &Arc<LogRecord>| Event::default().event("log").data(l.to_json().to_string());
    Ok(sse(events(tail.subscribe_logs(), keep, event)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live_tail::Tapped;
    use futures::StreamExt;

    fn span(service: &str) -> SpanRecord {
        SpanRecord {
            service: service.into(),
            operation: "op".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_listener_gets_matching_records_and_a_slow_one_a_final_lagged_event() {
        let tail = LiveTail::with_buffer(4);
        assert!(!tail.is_listened());
        let rx = tail.subscribe_spans();
        assert!(tail.is_listened());
        let kept = |s: &Arc<SpanRecord>| s.service == "a";
        let names = |s: &Arc<SpanRecord>| Event::default().event("span").data(s.service.clone());
        let mut stream = Box::pin(events(rx, kept, names));
        tail.publish(Tapped {
            spans: vec![span("b"), span("a")],
            logs: Vec::new(),
        });
        let first = format!("{:?}", stream.next().await.unwrap().unwrap());
        assert!(first.contains("span") && first.contains('a'), "{first}");

        // Ten more than the buffer holds before the client reads again.
        tail.publish(Tapped {
            spans: (0..10).map(|_| span("a")).collect(),
            logs: Vec::new(),
        });
        let last = format!("{:?}", stream.next().await.unwrap().unwrap());
        assert!(
            last.contains("lagged") && last.contains(r#"missed\":6"#),
            "{last}"
        );
        assert!(
            stream.next().await.is_none(),
            "the stream ends after lagging"
        );
    }
}
