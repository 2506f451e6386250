//! Typed attribute values, as OTLP sends them.
//!
//! Records keep values typed so they can be given back as OTLP unchanged;
//! filters, indexes and the REST API see the *string form* (see
//! [`AnyValue::string_form`]), which is the text earlier versions stored.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Nesting depth beyond which the string form of arrays and maps stops
/// descending and writes [`NESTED_TOO_DEEP`] instead.
pub const MAX_STRING_FORM_DEPTH: usize = 16;
/// What the string form writes for a value nested deeper than
/// [`MAX_STRING_FORM_DEPTH`].
pub const NESTED_TOO_DEEP: &str = "<nested too deep>";

/// Deepest nesting of arrays and maps a value may have when decoded from
/// our own encoding (log entries, stored records). OTLP decoding stops far
/// sooner (protobuf at 100 nested messages, about 50 values; JSON at 128
/// levels, about 40 values), so only forged bytes reach it; without it, a
/// record nested a hundred thousand deep would exhaust the stack of every
/// node decoding it. Part of what apply accepts: never lower it.
pub const MAX_DECODE_DEPTH: usize = 128;

std::thread_local! {
    /// How many `AnyValue`s this thread is decoding, one inside the other.
    static DECODE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of [`DECODE_DEPTH`], left when dropped (on errors too).
struct DecodeLevel;

impl DecodeLevel {
    fn enter() -> (DecodeLevel, usize) {
        let depth = DECODE_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        (DecodeLevel, depth)
    }
}

impl Drop for DecodeLevel {
    fn drop(&mut self) {
        DECODE_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// One OTLP `AnyValue`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum AnyValue {
    /// An `AnyValue` with no value set (OTLP calls it "empty").
    Empty,
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AnyValue>),
    KvList(Vec<KeyValue>),
    /// `string_value_strindex`: a string-table reference used only by the
    /// profiling signal. Kept so a record gives back what it was sent.
    StrIndex(i32),
}

/// [`AnyValue`] as decoded: the same variants in the same order (the
/// encoding names variants by position), its nested values decoded through
/// the depth check of `AnyValue`'s `Deserialize`.
#[derive(Deserialize)]
#[serde(rename = "AnyValue")]
enum AnyValueRepr {
    Empty,
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AnyValue>),
    KvList(Vec<KeyValue>),
    StrIndex(i32),
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (_level, depth) = DecodeLevel::enter();
        if depth > MAX_DECODE_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "value nested deeper than {MAX_DECODE_DEPTH} levels"
            )));
        }
        Ok(match AnyValueRepr::deserialize(d)? {
            AnyValueRepr::Empty => AnyValue::Empty,
            AnyValueRepr::String(s) => AnyValue::String(s),
            AnyValueRepr::Bool(b) => AnyValue::Bool(b),
            AnyValueRepr::Int(i) => AnyValue::Int(i),
            AnyValueRepr::Double(f) => AnyValue::Double(f),
            AnyValueRepr::Bytes(b) => AnyValue::Bytes(b),
            AnyValueRepr::Array(a) => AnyValue::Array(a),
            AnyValueRepr::KvList(kvs) => AnyValue::KvList(kvs),
            AnyValueRepr::StrIndex(i) => AnyValue::StrIndex(i),
        })
    }
}

/// One attribute: OTLP `KeyValue`. The value is optional as in OTLP: an
/// absent value and an empty one differ in the string form of a map
/// (`null` and `""`), so both are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Option<AnyValue>,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(value),
        }
    }

    pub fn string(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue::new(key, AnyValue::String(value.into()))
    }

    /// The value's string form; an absent value reads as empty text.
    pub fn string_form(&self) -> Cow<'_, str> {
        self.value
            .as_ref()
            .map_or(Cow::Borrowed(""), AnyValue::string_form)
    }
}

impl AnyValue {
    /// The value as text: strings as they are, numbers and booleans as Rust
    /// prints them, bytes as lowercase hex, arrays and maps as compact JSON
    /// (maps with sorted keys, the last of a repeated key winning). Borrowed
    /// for strings, the common case.
    pub fn string_form(&self) -> Cow<'_, str> {
        string_form_at(self, 0)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, AnyValue::String(_))
    }
}

fn string_form_at(v: &AnyValue, depth: usize) -> Cow<'_, str> {
    match v {
        AnyValue::Empty => Cow::Borrowed(""),
        AnyValue::String(s) => Cow::Borrowed(s),
        AnyValue::Bool(b) => Cow::Owned(b.to_string()),
        AnyValue::Int(i) => Cow::Owned(i.to_string()),
        AnyValue::Double(d) => Cow::Owned(d.to_string()),
        AnyValue::Bytes(b) => Cow::Owned(tael_consensus::hex(b)),
        AnyValue::StrIndex(i) => Cow::Owned(i.to_string()),
        AnyValue::Array(_) | AnyValue::KvList(_) => Cow::Owned(to_json(v, depth).to_string()),
    }
}

/// The JSON form of a nested value, inside the string form of an array or map.
fn to_json(v: &AnyValue, depth: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if depth >= MAX_STRING_FORM_DEPTH {
        return J::String(NESTED_TOO_DEEP.into());
    }
    match v {
        AnyValue::Array(items) => J::Array(items.iter().map(|x| to_json(x, depth + 1)).collect()),
        // A map collects into serde_json's sorted map: the last of a repeated
        // key wins.
        AnyValue::KvList(kvs) => J::Object(
            kvs.iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map_or(J::Null, |x| to_json(x, depth + 1));
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        AnyValue::Bool(b) => J::Bool(*b),
        AnyValue::Int(i) => J::from(*i),
        AnyValue::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        _ => J::String(string_form_at(v, depth + 1).into_owned()),
    }
}

/// Sorts `kvs` by key, keeping the last value of a repeated key (a stable
/// sort keeps input order among equal keys). Records store attribute lists
/// in this form so lookups can binary-search.
pub fn sort_unique(mut kvs: Vec<KeyValue>) -> Vec<KeyValue> {
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out: Vec<KeyValue> = Vec::with_capacity(kvs.len());
    for kv in kvs {
        match out.last_mut() {
            Some(last) if last.key == kv.key => last.value = kv.value,
            _ => out.push(kv),
        }
    }
    out
}

/// The attribute `key` in a list kept by [`sort_unique`].
pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs
        .binary_search_by(|kv| kv.key.as_str().cmp(key))
        .ok()
        .map(|i| &attrs[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue::new(k, v)
    }

    #[test]
    fn string_form_of_scalars() {
        assert_eq!(AnyValue::Empty.string_form(), "");
        assert_eq!(AnyValue::String("a b".into()).string_form(), "a b");
        assert_eq!(AnyValue::Bool(true).string_form(), "true");
        assert_eq!(AnyValue::Int(-42).string_form(), "-42");
        assert_eq!(AnyValue::Double(0.5).string_form(), "0.5");
        assert_eq!(AnyValue::Double(3.0).string_form(), "3");
        assert_eq!(
            AnyValue::Double(-1e21).string_form(),
            "-1000000000000000000000"
        );
        assert_eq!(AnyValue::Bytes(vec![0, 0xab]).string_form(), "00ab");
        assert_eq!(AnyValue::StrIndex(7).string_form(), "7");
    }

    #[test]
    fn string_form_of_nested_values_is_compact_json() {
        let v = AnyValue::Array(vec![
            AnyValue::Int(1),
            AnyValue::Double(2.5),
            AnyValue::Double(f64::NAN),
            AnyValue::Bool(false),
            AnyValue::String("x".into()),
            AnyValue::Bytes(vec![1]),
            AnyValue::Empty,
            AnyValue::KvList(vec![
                kv("z", AnyValue::Int(1)),
                kv("a", AnyValue::Empty),
                kv("z", AnyValue::Int(2)),
                KeyValue {
                    key: "n".into(),
                    value: None,
                },
            ]),
        ]);
        assert_eq!(
            v.string_form(),
            r#"[1,2.5,null,false,"x","01","",{"a":"","n":null,"z":2}]"#
        );
    }

    #[test]
    fn string_form_stops_descending_at_the_depth_limit() {
        let mut v = AnyValue::Int(1);
        for _ in 0..MAX_STRING_FORM_DEPTH + 2 {
            v = AnyValue::Array(vec![v]);
        }
        let s = v.string_form();
        let opening = MAX_STRING_FORM_DEPTH;
        assert_eq!(
            s,
            format!(
                "{}\"{NESTED_TOO_DEEP}\"{}",
                "[".repeat(opening),
                "]".repeat(opening)
            )
        );
    }

    #[test]
    fn sort_unique_keeps_the_last_value_of_a_key() {
        let out = sort_unique(vec![
            kv("b", AnyValue::Int(1)),
            kv("a", AnyValue::Int(2)),
            kv("b", AnyValue::Int(3)),
        ]);
        assert_eq!(
            out,
            vec![kv("a", AnyValue::Int(2)), kv("b", AnyValue::Int(3))]
        );
        assert_eq!(
            find(&out, "b").map(KeyValue::string_form).as_deref(),
            Some("3")
        );
        assert_eq!(find(&out, "c"), None);
    }

    fn nested(depth: usize) -> AnyValue {
        let mut v = AnyValue::Int(1);
        for i in 0..depth - 1 {
            v = if i % 2 == 0 {
                AnyValue::Array(vec![v])
            } else {
                AnyValue::KvList(vec![KeyValue::new("k", v)])
            };
        }
        v
    }

    /// The bytes of a value nested `depth` deep, built without a nested
    /// value in memory (which could not even be dropped at that depth):
    /// `depth - 1` arrays of one element around an empty value.
    fn nested_bytes(depth: usize) -> Vec<u8> {
        let array = crate::codec::encode(&AnyValue::Array(vec![AnyValue::Empty]));
        let empty = crate::codec::encode(&AnyValue::Empty);
        let prefix = &array[..array.len() - empty.len()];
        let mut bytes = prefix.repeat(depth - 1);
        bytes.extend_from_slice(&empty);
        bytes
    }

    #[test]
    fn values_decode_as_they_were_encoded_up_to_the_depth_limit() {
        for v in [
            AnyValue::Empty,
            AnyValue::Bytes(vec![1, 2]),
            AnyValue::StrIndex(-3),
            nested(MAX_DECODE_DEPTH),
        ] {
            let bytes = crate::codec::encode(&v);
            assert_eq!(crate::codec::decode::<AnyValue>(&bytes).unwrap(), v);
        }
        let same = nested_bytes(3);
        assert_eq!(
            crate::codec::decode::<AnyValue>(&same).unwrap(),
            AnyValue::Array(vec![AnyValue::Array(vec![AnyValue::Empty])])
        );
    }

    #[test]
    fn a_value_nested_too_deep_is_an_error_not_a_stack_overflow() {
        // A small stack, as on the runtime's threads.
        let outcome = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(|| {
                let too_deep =
                    crate::codec::decode::<AnyValue>(&nested_bytes(MAX_DECODE_DEPTH + 1))
                        .unwrap_err()
                        .to_string();
                let hostile = crate::codec::decode::<Vec<KeyValue>>(&{
                    // One attribute whose value is nested 100,000 deep.
                    let mut b = crate::codec::encode(&vec![KeyValue::new("k", AnyValue::Empty)]);
                    let empty = crate::codec::encode(&AnyValue::Empty);
                    b.truncate(b.len() - empty.len());
                    b.extend(nested_bytes(100_000));
                    b
                })
                .unwrap_err()
                .to_string();
                // The depth count is back at zero after the errors.
                let fine = crate::codec::decode::<AnyValue>(&nested_bytes(MAX_DECODE_DEPTH));
                (too_deep, hostile, fine.is_ok())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.0.contains("nested deeper"), "{}", outcome.0);
        assert!(outcome.1.contains("nested deeper"), "{}", outcome.1);
        assert!(outcome.2);
    }
}
