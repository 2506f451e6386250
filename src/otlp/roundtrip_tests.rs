//! OTLP in, OTLP out: hand-built exports go through conversion, the Raft
//! payload encoding, apply into a real store and back out through
//! [`super::encode`], and must come back as they were sent (modulo order).

#[path = "../../tests/fixtures/otlp_requests.rs"]
mod fixture;

use super::{convert, encode};
use crate::model::{SpanJson, SpanRecord};
use crate::payload;
use crate::state::apply;
use crate::state::hot::{HotStore, LogQuery};

/// Applies `record` as log entry 1 into a fresh store.
fn store_with(record: &tael_consensus::Record) -> (tempfile::TempDir, HotStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
    let mut batch = store.begin();
    batch.begin_entry(1);
    apply::apply(&mut batch, 1, record).unwrap().unwrap();
    let entry = tael_consensus::LogId::new(
        tael_consensus::LeaderId {
            term: 1,
            node_id: 1,
        },
        1,
    );
    batch.commit(Some(entry), None).unwrap();
    (dir, store)
}

#[test]
fn spans_come_back_as_they_were_sent() {
    let req = fixture::trace_request();
    let converted = convert::traces(req.clone());
    assert_eq!(converted.rejected, 0, "{:?}", converted.first_error);
    let sent = fixture::normalised_traces(fixture::traces_of(req));

    // Before apply, the LLM texts are still inside the spans.
    let no_blobs = |_: &[u8; 32]| -> Option<Vec<u8>> { None };
    let before_apply = encode::traces_data(&converted.records, no_blobs);
    assert_eq!(fixture::normalised_traces(before_apply), sent);

    let (_dir, store) = store_with(&payload::spans_record(converted.records.clone()));
    let stored = store.trace(&fixture::TRACE_ID).unwrap();
    assert_eq!(stored.len(), converted.records.len());
    let llm_spans: Vec<&SpanRecord> = stored.iter().filter(|s| s.llm.is_some()).collect();
    assert_eq!(llm_spans.len(), 2);
    for s in &llm_spans {
        let llm = s.llm.as_ref().unwrap();
        assert!(llm.prompt_text.is_none() && llm.completion_text.is_none());
        assert!(
            s.attribute("gen_ai.prompt").is_none(),
            "the text left the span"
        );
    }
    let back = encode::traces_data(&stored, |sha| store.blob(sha).unwrap());
    assert_eq!(fixture::normalised_traces(back), sent);

    // Without the blobs, the moved string attributes cannot come back.
    let without = encode::traces_data(&stored, no_blobs);
    assert_ne!(fixture::normalised_traces(without), sent);
}

#[test]
fn the_rest_view_shows_string_forms_as_before() {
    let converted = convert::traces(fixture::trace_request());
    let span = converted
        .records
        .iter()
        .find(|s| s.span_id == [1; 8])
        .unwrap();
    let json = serde_json::to_value(SpanJson::from(span)).unwrap();
    let attrs = &json["attributes"];
    assert_eq!(attrs["span.string"], "hello");
    assert_eq!(attrs["span.int"], i64::MIN.to_string());
    assert_eq!(attrs["span.double"], "-0.0025");
    assert_eq!(attrs["span.double_whole"], "42");
    assert_eq!(attrs["span.bool"], "true");
    assert_eq!(attrs["span.bytes"], "0001feff");
    assert_eq!(attrs["span.array"], r#"["a",2,3.25]"#);
    assert_eq!(
        attrs["span.kvlist"],
        r#"{"inner.absent":null,"inner.int":-7,"inner.list":[false,""]}"#
    );
    assert_eq!(attrs["span.empty"], "");
    assert_eq!(json["kind"], "internal");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["service"], "checkout");
    assert_eq!(
        json["events"][0]["attributes"]["exception.escaped"],
        "false"
    );
    assert!(json.get("llm").is_none());

    let llm = converted
        .records
        .iter()
        .find(|s| s.span_id == [20; 8])
        .unwrap();
    let json = serde_json::to_value(SpanJson::from(llm)).unwrap();
    assert_eq!(json["kind"], "llm");
    assert_eq!(json["llm"]["provider"], "openai");
    assert_eq!(json["llm"]["input_tokens"], 12);
    assert!(json["attributes"].get("gen_ai.prompt").is_none());
    let unspecified = converted
        .records
        .iter()
        .find(|s| s.span_id == [6; 8])
        .unwrap();
    assert_eq!(SpanJson::from(unspecified).kind, "internal");
}

#[test]
fn logs_come_back_as_they_were_sent() {
    let req = fixture::logs_request();
    let converted = convert::logs(req.clone());
    assert_eq!(converted.rejected, 0, "{:?}", converted.first_error);
    let sent = fixture::normalised_logs(fixture::logs_of(req));

    let (_dir, store) = store_with(&payload::logs_record(converted.records.clone()));
    let found = store
        .search_logs(&LogQuery {
            limit: 100,
            max_scanned: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(found.records.len(), converted.records.len());
    let in_blobs: Vec<_> = found
        .records
        .iter()
        .filter(|l| l.body_sha256.is_some())
        .collect();
    assert_eq!(
        in_blobs.len(),
        2,
        "both large bodies went to the blob store"
    );
    for l in &in_blobs {
        let json = l.to_json();
        let body = json["body"].as_str().unwrap();
        assert!(body.len() <= 1024, "the REST view shows a preview");
    }
    let back = encode::logs_data(&found.records, |sha| store.blob(sha).unwrap());
    assert_eq!(fixture::normalised_logs(back), sent);
}

#[test]
fn log_json_shows_string_forms_as_before() {
    let converted = convert::logs(fixture::logs_request());
    let by_text = |t: &str| {
        converted
            .records
            .iter()
            .find(|l| l.severity_text == t)
            .unwrap()
            .to_json()
    };
    assert_eq!(by_text("LEVEL0")["body"], "plain text body");
    assert_eq!(by_text("LEVEL1")["body"], "", "absent body");
    assert_eq!(by_text("LEVEL2")["body"], "", "empty body");
    assert_eq!(by_text("LEVEL3")["body"], "-12");
    assert_eq!(by_text("LEVEL6")["body"], "090807");
    assert_eq!(by_text("LEVEL7")["body"], r#"["x"]"#);
    let l = by_text("LEVEL1");
    assert_eq!(l["trace_id"], "7a".repeat(16));
    assert_eq!(l["attributes"]["log.double"], "-0.0025");
    assert_eq!(by_text("LEVEL0")["trace_id"], serde_json::Value::Null);
}
