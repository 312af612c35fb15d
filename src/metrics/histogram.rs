//! A Prometheus histogram of durations with fixed buckets: an observation
//! is a comparison walk over fifteen bounds and two additions, with no
//! allocation; rendering (`_bucket{le=…}`, `_sum`, `_count`) happens only
//! when `/metrics` is scraped.

use std::fmt::Write;
use std::time::Duration;

/// The upper bounds of the buckets, in nanoseconds and as Prometheus
/// writes them (seconds), from 50 µs to 5 s; above the last is `+Inf`.
/// One set for loop turns and commits alike: a turn of a busy server
/// takes tens of microseconds to a few milliseconds, a commit tens of
/// microseconds (page cache) to tens of milliseconds (a slow disk's sync).
const BOUNDS: [(u64, &str); 15] = [
    (50_000, "5e-05"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (5_000_000_000, "5"),
];

/// Counts of durations by bucket, their sum and their number.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Observations in each bucket (not cumulative); the last is `+Inf`.
    counts: [u64; BOUNDS.len() + 1],
    /// The sum of every observation, in nanoseconds (u64: 584 years).
    sum_nanos: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS
            .iter()
            .position(|&(bound, _)| nanos <= bound)
            .unwrap_or(BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Appends the family `name` (with its `HELP` and `TYPE` lines) in the
    /// text exposition format: cumulative buckets, then `_sum` in seconds
    /// and `_count`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (count, (_, le)) in self.counts.iter().zip(BOUNDS.iter()) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let total = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos as f64 / 1e9;
        let _ = write!(out, "{name}_sum {sum}\n{name}_count {total}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(h: &Histogram) -> Vec<String> {
        let mut out = String::new();
        h.render(&mut out, "t_seconds", "Test.");
        out.lines().map(str::to_string).collect()
    }

    #[test]
    fn buckets_are_cumulative_with_sum_and_count() {
        let mut h = Histogram::default();
        let us = Duration::from_micros;
        for d in [
            us(10),
            us(50),
            us(51),
            us(900),
            us(1000),
            us(3_000_000),
            us(9_000_000),
        ] {
            h.observe(d);
        }
        let lines = rendered(&h);
        assert_eq!(lines[0], "# HELP t_seconds Test.");
        assert_eq!(lines[1], "# TYPE t_seconds histogram");
        let bucket = |le: &str| {
            let key = format!("t_seconds_bucket{{le=\"{le}\"}} ");
            let line = lines.iter().find(|l| l.starts_with(&key)).unwrap();
            line[key.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(bucket("5e-05"), 2, "a bound is inclusive");
        assert_eq!(bucket("0.0001"), 3);
        assert_eq!(bucket("0.001"), 5);
        assert_eq!(bucket("1"), 5);
        assert_eq!(bucket("5"), 6);
        assert_eq!(bucket("+Inf"), 7);
        assert!(
            lines.contains(&"t_seconds_count 7".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"t_seconds_sum 12.002011".to_string()),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 2 + BOUNDS.len() + 1 + 2);
    }

    #[test]
    fn the_bounds_rise_and_their_labels_say_them_in_seconds() {
        for pair in BOUNDS.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        for (nanos, le) in BOUNDS {
            assert_eq!(le.parse::<f64>().unwrap(), nanos as f64 / 1e9, "{le}");
        }
    }

    #[test]
    fn an_empty_histogram_renders_zeros() {
        let lines = rendered(&Histogram::default());
        assert!(lines.contains(&"t_seconds_bucket{le=\"+Inf\"} 0".to_string()));
        assert!(lines.contains(&"t_seconds_sum 0".to_string()));
    }
}
