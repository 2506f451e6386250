//! Trace comments: small replicated writes whose id and creation time are
//! chosen once, by the leader that proposes them, and then travel in the log
//! entry, so every replica stores the same comment.

use serde::{Deserialize, Serialize};

use crate::model::{hex_lower, rfc3339_nanos, TraceId};

pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_AUTHOR_BYTES: usize = 256;
/// Comments returned by one read, at most.
pub const MAX_LIST: usize = 10_000;

/// A comment as stored and replicated. `id` and `created_at_unix_nanos` are
/// empty/zero until the leader stamps the record ([`stamp`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub id: String,
    pub trace_id: TraceId,
    pub span_id: Option<[u8; 8]>,
    pub author: String,
    pub body: String,
    pub created_at_unix_nanos: u64,
}

impl Comment {
    pub fn is_stamped(&self) -> bool {
        !self.id.is_empty() && self.created_at_unix_nanos > 0
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "trace_id": hex_lower(&self.trace_id),
            "span_id": self.span_id.map(|s| hex_lower(&s)),
            "author": self.author,
            "body": self.body,
            "created_at": rfc3339_nanos(self.created_at_unix_nanos),
        })
    }
}

/// Checks what a client may send; the messages name the offending field.
pub fn validate(c: &Comment) -> Result<(), String> {
    if c.body.trim().is_empty() {
        return Err("comment body must not be empty".into());
    }
    if c.body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "comment body is {} bytes; the limit is {MAX_BODY_BYTES}",
            c.body.len()
        ));
    }
    if c.author.len() > MAX_AUTHOR_BYTES {
        return Err(format!(
            "comment author is {} bytes; the limit is {MAX_AUTHOR_BYTES}",
            c.author.len()
        ));
    }
    Ok(())
}

/// Leader-side clock for comment times: never goes backwards on one leader,
/// even if the wall clock does.
static LAST_STAMP_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Assigns the id and creation time. Called only by the proposing leader.
/// The id comes from the record's batch key, so a comment proposed again
/// under the same key (a retried request, see `payload::comment_record`)
/// is answered with the id of the one apply keeps.
pub fn stamp(mut c: Comment, now_unix_nanos: u64, batch_key: &[u8; 16]) -> Comment {
    use std::sync::atomic::Ordering;
    let prev = LAST_STAMP_NANOS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now_unix_nanos.max(last + 1))
        })
        .expect("the update closure always succeeds");
    c.created_at_unix_nanos = now_unix_nanos.max(prev + 1);
    c.id = format!("c{}", hex_lower(&batch_key[..8]));
    debug_assert!(c.is_stamped());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(body: &str) -> Comment {
        Comment {
            id: String::new(),
            trace_id: [1; 16],
            span_id: None,
            author: "ana".into(),
            body: body.into(),
            created_at_unix_nanos: 0,
        }
    }

    #[test]
    fn stamps_are_unique_and_never_go_back() {
        let a = stamp(draft("x"), 1_000, &[1; 16]);
        let b = stamp(draft("x"), 500, &[2; 16]); // the wall clock stepped back
        assert!(a.is_stamped() && b.is_stamped());
        assert_ne!(a.id, b.id);
        assert!(b.created_at_unix_nanos > a.created_at_unix_nanos);
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate(&draft("fine")).is_ok());
        assert!(validate(&draft("  ")).unwrap_err().contains("empty"));
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        assert!(validate(&draft(&big)).unwrap_err().contains("limit"));
    }
}
