//! Checks on the decoded contents of a record, at two levels.
//!
//! - `storable_*`: what the hot store needs to store a record at all (names
//!   that fit a length-prefixed key, LLM texts that match their hashes). Run
//!   by apply on every replica, so they are part of the replicated state
//!   machine: a record failing them is rejected the same way everywhere.
//!   Changing them changes which logged entries apply, so for existing tags
//!   they may never be tightened.
//! - `admissible_*`: the ingest limits of `otlp::convert` on top of those.
//!   Run by the leader before it proposes a record forwarded by a peer, so a
//!   peer that skipped conversion (or forged the bytes) cannot get anything
//!   into the log that this node's own ingest would refuse.

use crate::model::limits::{
    MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_EVENTS,
    MAX_HISTOGRAM_BUCKETS, MAX_LINKS, MAX_LOG_BODY_BYTES, MAX_NAME_CHARS, MAX_QUANTILES,
};
use crate::model::llm::sha256;
use crate::model::{KeyValue, LogRecord, MetricPoint, SpanRecord};

/// Longest name the store indexes by (service and metric names): keys carry
/// it behind a 16-bit length. Far above what ingest lets through
/// ([`MAX_NAME_CHARS`] characters), and below `u16::MAX`.
pub const MAX_INDEX_NAME_BYTES: usize = 4096;

fn index_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_INDEX_NAME_BYTES {
        return Err(format!(
            "{what} of {} bytes exceeds {MAX_INDEX_NAME_BYTES}",
            name.len()
        ));
    }
    Ok(())
}

pub fn storable_span(s: &SpanRecord) -> Result<(), String> {
    index_name("service name", &s.service)?;
    if let Some(llm) = &s.llm {
        // The blob store keys each text by the hash the span keeps.
        let texts = [
            ("prompt", &llm.prompt_text, llm.prompt_sha256),
            ("completion", &llm.completion_text, llm.completion_sha256),
        ];
        for (what, text, hash) in texts {
            if let Some(t) = text {
                if hash != Some(sha256(t.as_bytes())) {
                    return Err(format!("LLM {what} text does not match its sha256"));
                }
            }
        }
    }
    Ok(())
}

pub fn storable_log(l: &LogRecord) -> Result<(), String> {
    index_name("service name", &l.service)
}

pub fn storable_metric(p: &MetricPoint) -> Result<(), String> {
    index_name("metric name", &p.name)
}

/// A name as `otlp::convert` leaves it: no control characters, bounded.
fn clean_name(what: &str, name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "{what} of {chars} characters exceeds {MAX_NAME_CHARS}"
        ));
    }
    Ok(())
}

fn count(what: &str, n: usize, max: usize) -> Result<(), String> {
    if n > max {
        return Err(format!("{n} {what}, the limit is {max}"));
    }
    Ok(())
}

fn attribute(key: &str, value_bytes: usize) -> Result<(), String> {
    if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
        return Err(format!(
            "attribute key of {} bytes exceeds {MAX_ATTRIBUTE_KEY_BYTES}",
            key.len()
        ));
    }
    if value_bytes > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(format!(
            "attribute {key:?} value of {value_bytes} bytes exceeds {MAX_ATTRIBUTE_VALUE_BYTES}"
        ));
    }
    Ok(())
}

fn attributes(kvs: &[KeyValue]) -> Result<(), String> {
    count("attributes", kvs.len(), MAX_ATTRIBUTES)?;
    kvs.iter()
        .try_for_each(|kv| attribute(&kv.key, kv.string_form().len()))
}

fn nonzero_id(what: &str, id: &[u8]) -> Result<(), String> {
    if id.iter().all(|b| *b == 0) {
        return Err(format!("{what} is all zero"));
    }
    Ok(())
}

pub fn admissible_span(s: &SpanRecord) -> Result<(), String> {
    storable_span(s)?;
    nonzero_id("trace_id", &s.trace_id)?;
    nonzero_id("span_id", &s.span_id)?;
    clean_name("service name", &s.service)?;
    clean_name("span name", &s.operation)?;
    count("events", s.events.len(), MAX_EVENTS)?;
    count("links", s.links.len(), MAX_LINKS)?;
    attributes(&s.attributes)?;
    attributes(&s.resource.attributes)?;
    attributes(&s.scope.attributes)?;
    s.events
        .iter()
        .try_for_each(|e| attributes(&e.attributes))?;
    s.links.iter().try_for_each(|l| attributes(&l.attributes))
}

pub fn admissible_log(l: &LogRecord) -> Result<(), String> {
    storable_log(l)?;
    clean_name("service name", &l.service)?;
    let body_bytes = l.body.as_ref().map_or(0, |b| b.string_form().len());
    if body_bytes > MAX_LOG_BODY_BYTES {
        return Err(format!(
            "log body of {body_bytes} bytes exceeds {MAX_LOG_BODY_BYTES}"
        ));
    }
    attributes(&l.attributes)?;
    attributes(&l.resource.attributes)?;
    attributes(&l.scope.attributes)
}

pub fn admissible_metric(p: &MetricPoint) -> Result<(), String> {
    storable_metric(p)?;
    clean_name("service name", &p.service)?;
    clean_name("metric name", &p.name)?;
    clean_name("metric unit", &p.unit)?;
    count("attributes", p.attributes.len(), MAX_ATTRIBUTES)?;
    p.attributes
        .iter()
        .try_for_each(|(k, v)| attribute(k, v.len()))?;
    if let Some(h) = &p.histogram {
        count("buckets", h.counts.len(), MAX_HISTOGRAM_BUCKETS)?;
    }
    count("quantiles", p.quantiles.len(), MAX_QUANTILES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_name_too_long_for_a_key_is_not_storable() {
        let span = SpanRecord {
            service: "s".repeat(MAX_INDEX_NAME_BYTES + 1),
            ..Default::default()
        };
        assert!(storable_span(&span).unwrap_err().contains("service name"));
        let span = SpanRecord {
            service: "s".repeat(MAX_NAME_CHARS + 1),
            trace_id: [1; 16],
            span_id: [1; 8],
            ..Default::default()
        };
        assert!(storable_span(&span).is_ok());
        assert!(admissible_span(&span).unwrap_err().contains("characters"));
    }

    #[test]
    fn an_llm_text_must_match_its_hash() {
        let span = SpanRecord {
            llm: Some(crate::model::llm::LlmInfo {
                prompt_text: Some("hello".into()),
                prompt_sha256: Some(sha256(b"other")),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(storable_span(&span).unwrap_err().contains("prompt"));
    }
}
