//! The `llm` object of an LLM span: what promotion (`crate::llm`) took out
//! of the span's attributes, and where the texts went.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{hex_lower, AnyValue};

pub type Sha256Digest = [u8; 32];

/// The `llm` object of an LLM span (API.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmInfo {
    pub provider: String,
    pub model: String,
    /// chat | completion | embedding | tool | other
    pub operation: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub finish_reason: Option<String>,
    pub temperature: Option<f64>,
    pub prompt_sha256: Option<Sha256Digest>,
    pub completion_sha256: Option<Sha256Digest>,
    /// Present only between ingest and apply (see the module comment).
    pub prompt_text: Option<String>,
    pub completion_text: Option<String>,
    /// The attributes the texts were taken from, to give the span back.
    pub moved: Vec<MovedAttribute>,
}

/// Which of the two texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Text {
    Prompt,
    Completion,
}

/// An attribute promotion took out of the span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MovedAttribute {
    /// `None`: a span attribute; `Some(i)`: an attribute of event `i`.
    pub event: Option<u32>,
    pub key: String,
    pub value: MovedValue,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MovedValue {
    /// A string value: bytes `start..end` of the prompt or completion text.
    Slice { text: Text, start: u32, end: u32 },
    /// A value of another type, kept as it was (the text holds its string
    /// form, which cannot give it back).
    Kept(Option<AnyValue>),
}

impl LlmInfo {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider,
            "model": self.model,
            "operation": self.operation,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "ttft_ms": self.ttft_ms,
            "finish_reason": self.finish_reason,
            "temperature": self.temperature,
            "prompt_sha256": self.prompt_sha256.map(|h| hex_lower(&h)),
            "completion_sha256": self.completion_sha256.map(|h| hex_lower(&h)),
        })
    }

    /// Takes the text out, for the blob store: `(hash, text)` pairs.
    pub fn take_texts(&mut self) -> Vec<(Sha256Digest, String)> {
        let mut out = Vec::new();
        if let Some(t) = self.prompt_text.take() {
            debug_assert_eq!(self.prompt_sha256, Some(sha256(t.as_bytes())));
            out.push((sha256(t.as_bytes()), t));
        }
        if let Some(t) = self.completion_text.take() {
            debug_assert_eq!(self.completion_sha256, Some(sha256(t.as_bytes())));
            out.push((sha256(t.as_bytes()), t));
        }
        out
    }

    /// The hash of one of the texts.
    pub fn sha256_of(&self, text: Text) -> Option<Sha256Digest> {
        match text {
            Text::Prompt => self.prompt_sha256,
            Text::Completion => self.completion_sha256,
        }
    }

    /// One of the texts, while it is still in the span (before apply).
    pub fn text_in_span(&self, text: Text) -> Option<&str> {
        match text {
            Text::Prompt => self.prompt_text.as_deref(),
            Text::Completion => self.completion_text.as_deref(),
        }
    }
}

pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256::digest(bytes).into()
}
