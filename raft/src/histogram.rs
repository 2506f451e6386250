//! A lock-free latency histogram with fixed microsecond buckets, rendered as
//! a Prometheus histogram in seconds.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds, microseconds: 100 µs to 2.5 s.
pub const BUCKETS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, took: Duration) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKETS_MICROS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BUCKETS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_micros(&self) -> u64 {
        self.sum_micros.load(Ordering::Relaxed)
    }

    pub fn max_micros(&self) -> u64 {
        self.max_micros.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text form (HELP, TYPE, buckets, sum, count).
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_MICROS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += self.buckets[BUCKETS_MICROS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(80));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(10));
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "help");
        assert!(s.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"2.5\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_seconds_count 3\n"), "{s}");
        assert_eq!(h.max_micros(), 10_000_000);
    }
}
