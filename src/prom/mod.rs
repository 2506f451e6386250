//! Prometheus compatibility: the remote-write receiver's decoding
//! ([`remote_write`]), how stored metric points read as Prometheus series
//! ([`series`], [`naming`] for OTLP metrics) and series selection over the
//! query service's view ([`select`]). The HTTP routes are in
//! `rest::prometheus`.

pub mod naming;
pub mod remote_write;
pub mod select;
pub mod selector;
pub mod series;
pub mod storage;
