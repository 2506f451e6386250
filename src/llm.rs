//! LLM spans: OpenTelemetry GenAI attributes promoted into a typed `llm`
//! object, with prompt and completion text moved to the content-addressed
//! blob store.
//!
//! The text travels inside the span in the log entry (so every replica gets
//! it); applying the span stores it under its sha256 and keeps only the hash.
//! What was taken out of the span is recorded ([`MovedAttribute`]) so that
//! `otlp::encode` can put it back exactly as it was sent.

use std::borrow::Cow;

use crate::model::value::find;
use crate::model::{AnyValue, KeyValue, SpanRecord};

pub use crate::model::llm::{sha256, LlmInfo, MovedAttribute, MovedValue, Sha256Digest, Text};

/// Attributes whose presence makes a span an LLM span.
const MARKERS: [&str; 4] = [
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.operation.name",
];
/// Where instrumentations put the text, oldest conventions first.
const PROMPT_KEYS: [&str; 2] = ["gen_ai.prompt", "gen_ai.input.messages"];
const COMPLETION_KEYS: [&str; 2] = ["gen_ai.completion", "gen_ai.output.messages"];
const PROMPT_EVENT: &str = "gen_ai.content.prompt";
const COMPLETION_EVENT: &str = "gen_ai.content.completion";

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<Cow<'a, str>> {
    find(attrs, key).map(KeyValue::string_form)
}

fn get_u64(attrs: &[KeyValue], keys: &[&str]) -> Option<u64> {
    keys.iter()
        .find_map(|k| get(attrs, k).and_then(|v| v.trim().parse().ok()))
}

fn get_f64(attrs: &[KeyValue], keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| {
        get(attrs, k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite())
    })
}

fn operation(name: Option<&str>) -> &'static str {
    match name.unwrap_or("") {
        "chat" => "chat",
        "text_completion" | "completion" | "generate_content" => "completion",
        "embeddings" | "embedding" => "embedding",
        "execute_tool" | "tool" => "tool",
        _ => "other",
    }
}

/// A list attribute arrives flattened as JSON (`["stop"]`); take its first item.
fn first_of_list(v: &str) -> String {
    match serde_json::from_str::<Vec<String>>(v) {
        Ok(list) => list.into_iter().next().unwrap_or_default(),
        Err(_) => v.to_string(),
    }
}

/// What one text was made of: the removed attributes, in text order.
struct TakenText {
    text: String,
    moved: Vec<MovedAttribute>,
}

impl TakenText {
    fn new() -> TakenText {
        TakenText {
            text: String::new(),
            moved: Vec::new(),
        }
    }

    /// Appends `kv`'s string form (after a newline when not the first part).
    fn push(&mut self, which: Text, event: Option<u32>, kv: KeyValue) {
        if !self.moved.is_empty() {
            self.text.push('\n');
        }
        let start = self.text.len();
        self.text.push_str(&kv.string_form());
        let value = match kv.value {
            Some(AnyValue::String(_)) => MovedValue::Slice {
                text: which,
                start: start as u32,
                end: self.text.len() as u32,
            },
            other => MovedValue::Kept(other),
        };
        self.moved.push(MovedAttribute {
            event,
            key: kv.key,
            value,
        });
    }
}

/// Removes and returns the text under `keys` (attributes first, then the
/// content event), also gathering indexed `<key>.N.content` attributes.
fn take_text(span: &mut SpanRecord, which: Text, keys: &[&str], event: &str) -> Option<TakenText> {
    let mut taken = TakenText::new();
    for key in keys {
        if let Some(i) = span.attributes.iter().position(|kv| kv.key == *key) {
            taken.push(which, None, span.attributes.remove(i));
            return Some(taken);
        }
    }
    // OpenLLMetry style: gen_ai.prompt.0.content, gen_ai.prompt.1.content, ...
    let prefix = format!("{}.", keys[0]);
    let index_of = |k: &str| {
        k.strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".content"))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let mut parts: Vec<(u64, KeyValue)> = Vec::new();
    let mut kept = Vec::with_capacity(span.attributes.len());
    for kv in std::mem::take(&mut span.attributes) {
        match index_of(&kv.key) {
            Some(n) => parts.push((n, kv)),
            None => kept.push(kv),
        }
    }
    span.attributes = kept;
    if !parts.is_empty() {
        parts.sort_by_key(|(n, _)| *n);
        for (_, kv) in parts {
            taken.push(which, None, kv);
        }
        return Some(taken);
    }
    for (i, e) in span.events.iter_mut().enumerate() {
        if e.name != event {
            continue;
        }
        for key in keys {
            if let Some(at) = e.attributes.iter().position(|kv| kv.key == *key) {
                taken.push(which, Some(i as u32), e.attributes.remove(at));
                return Some(taken);
            }
        }
    }
    None
}

/// Makes `span` an LLM span if it carries GenAI attributes.
pub fn promote(span: &mut SpanRecord) {
    if !MARKERS.iter().any(|k| find(&span.attributes, k).is_some()) {
        return;
    }
    let a = &span.attributes;
    let input_tokens = get_u64(
        a,
        &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
    );
    let output_tokens = get_u64(
        a,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ],
    );
    let total_tokens = get_u64(a, &["gen_ai.usage.total_tokens", "llm.usage.total_tokens"]).or(
        match (input_tokens, output_tokens) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        },
    );
    let mut info = LlmInfo {
        provider: get(a, "gen_ai.provider.name")
            .or(get(a, "gen_ai.system"))
            .unwrap_or(Cow::Borrowed("unknown"))
            .into_owned(),
        model: get(a, "gen_ai.request.model")
            .or(get(a, "gen_ai.response.model"))
            .unwrap_or(Cow::Borrowed("unknown"))
            .into_owned(),
        operation: operation(get(a, "gen_ai.operation.name").as_deref()).to_string(),
        input_tokens,
        output_tokens,
        total_tokens,
        cost_usd: get_f64(
            a,
            &[
                "gen_ai.usage.cost",
                "gen_ai.usage.cost_usd",
                "llm.usage.cost_usd",
            ],
        ),
        // The GenAI metric convention measures this in seconds.
        ttft_ms: get_f64(a, &["gen_ai.server.time_to_first_token"])
            .map(|s| s * 1000.0)
            .or(get_f64(
                a,
                &["gen_ai.response.time_to_first_token_ms", "llm.ttft_ms"],
            )),
        finish_reason: get(a, "gen_ai.response.finish_reasons")
            .or(get(a, "gen_ai.response.finish_reason"))
            .map(|v| first_of_list(&v)),
        temperature: get_f64(a, &["gen_ai.request.temperature"]),
        ..Default::default()
    };
    if let Some(t) = take_text(span, Text::Prompt, &PROMPT_KEYS, PROMPT_EVENT) {
        info.prompt_sha256 = Some(sha256(t.text.as_bytes()));
        info.prompt_text = Some(t.text);
        info.moved.extend(t.moved);
    }
    if let Some(t) = take_text(span, Text::Completion, &COMPLETION_KEYS, COMPLETION_EVENT) {
        info.completion_sha256 = Some(sha256(t.text.as_bytes()));
        info.completion_text = Some(t.text);
        info.moved.extend(t.moved);
    }
    span.llm = Some(info);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::sort_unique;
    use crate::model::{SpanEvent, SpanKind, SpanStatus};

    fn span(attrs: &[(&str, &str)]) -> SpanRecord {
        let attributes = attrs
            .iter()
            .map(|(k, v)| KeyValue::string(*k, *v))
            .collect();
        SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            service: "agent".into(),
            operation: "chat gpt-4o".into(),
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            status: SpanStatus::Ok,
            kind: SpanKind::Client,
            attributes: sort_unique(attributes),
            ..Default::default()
        }
    }

    #[test]
    fn genai_attributes_become_the_llm_object_and_text_moves_out() {
        let mut s = span(&[
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o"),
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.usage.input_tokens", "120"),
            ("gen_ai.usage.output_tokens", "30"),
            ("gen_ai.request.temperature", "0.2"),
            ("gen_ai.response.finish_reasons", "[\"stop\"]"),
            ("gen_ai.server.time_to_first_token", "0.25"),
            ("gen_ai.prompt", "What is Raft?"),
            ("gen_ai.completion", "A consensus algorithm."),
            ("http.route", "/v1/chat"),
        ]);
        promote(&mut s);
        assert_eq!(s.kind_label(), "llm");
        assert_eq!(s.kind, SpanKind::Client, "the OTLP kind is kept");
        let llm = s.llm.clone().unwrap();
        assert_eq!(
            (
                llm.provider.as_str(),
                llm.model.as_str(),
                llm.operation.as_str()
            ),
            ("openai", "gpt-4o", "chat")
        );
        assert_eq!(
            (llm.input_tokens, llm.output_tokens, llm.total_tokens),
            (Some(120), Some(30), Some(150))
        );
        assert_eq!(llm.finish_reason.as_deref(), Some("stop"));
        assert_eq!(llm.ttft_ms, Some(250.0));
        assert_eq!(llm.temperature, Some(0.2));
        assert_eq!(llm.prompt_sha256, Some(sha256(b"What is Raft?")));
        assert!(
            s.attribute("gen_ai.prompt").is_none(),
            "text left the attributes"
        );
        assert!(s.attribute("gen_ai.completion").is_none());
        assert_eq!(s.attribute("http.route").as_deref(), Some("/v1/chat"));
        let mut llm = s.llm.unwrap();
        let texts = llm.take_texts();
        assert_eq!(texts.len(), 2);
        assert!(llm.prompt_text.is_none() && llm.prompt_sha256.is_some());
    }

    #[test]
    fn indexed_and_event_content_is_found_and_plain_spans_are_untouched() {
        let mut s = span(&[
            ("gen_ai.system", "anthropic"),
            ("gen_ai.prompt.0.content", "system rules"),
            ("gen_ai.prompt.1.content", "user question"),
        ]);
        s.events.push(SpanEvent {
            name: COMPLETION_EVENT.into(),
            time_unix_nanos: 1,
            attributes: vec![KeyValue::string("gen_ai.completion", "answer")],
            ..Default::default()
        });
        promote(&mut s);
        let llm = s.llm.as_ref().unwrap();
        assert_eq!(
            llm.prompt_text.as_deref(),
            Some("system rules\nuser question")
        );
        assert_eq!(llm.completion_text.as_deref(), Some("answer"));
        assert_eq!(llm.operation, "other");
        assert_eq!(llm.total_tokens, None);
        assert!(s.events[0].attributes.is_empty());

        let mut plain = span(&[("http.route", "/x")]);
        let before = plain.clone();
        promote(&mut plain);
        assert_eq!(plain, before);
    }
}
