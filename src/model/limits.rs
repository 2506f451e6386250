//! Limits on what one record may carry, enforced where records enter the
//! cluster: by OTLP conversion on the receiving node, and again by the
//! leader on records forwarded to it (`payload::check`), so a peer that
//! skipped conversion cannot get anything larger into the log.

/// Largest attribute value (its string form) a record may carry.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024 * 1024;
/// Largest attribute key.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 1024;
/// Most attributes on one span, event, link, resource or scope.
pub const MAX_ATTRIBUTES: usize = 1024;
/// Most events on one span.
pub const MAX_EVENTS: usize = 1024;
/// Most links on one span.
pub const MAX_LINKS: usize = 1024;
/// Largest log body (its string form).
pub const MAX_LOG_BODY_BYTES: usize = 1024 * 1024;
/// Most buckets in one histogram point (explicit, or after converting an
/// exponential histogram).
pub const MAX_HISTOGRAM_BUCKETS: usize = 4096;
/// Most quantiles in one summary point.
pub const MAX_QUANTILES: usize = 1024;
/// Longest index name (service, span and metric names), in characters,
/// after control characters are dropped.
pub const MAX_NAME_CHARS: usize = 256;
