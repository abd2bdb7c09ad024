//! Distributions, the human summary and the one JSON line every subcommand prints.

use serde::Serialize;
use serde_json::Value;

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Marks the start of the run for [`progress`].
pub fn start_clock() {
    START.get_or_init(std::time::Instant::now);
}

/// A progress line on stderr (`[  12.3s] what`), for runs that take minutes.
pub fn progress(what: impl std::fmt::Display) {
    let t = START.get_or_init(std::time::Instant::now).elapsed();
    eprintln!("[{:>7.1}s] {what}", t.as_secs_f64());
}

/// Count, min, p50, p99 and max of a sample (milliseconds unless named otherwise).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Dist {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Dist {
    /// Summarises `samples` (sorted in place).
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            round(samples[i - 1])
        };
        Self {
            count: samples.len(),
            min: round(samples[0]),
            p50: rank(0.5),
            p99: rank(0.99),
            max: round(samples[samples.len() - 1]),
        }
    }

    /// `n=… min/p50/p99/max = …` for the summary.
    pub fn show(&self, unit: &str) -> String {
        if self.count == 0 {
            return "n=0".to_owned();
        }
        format!(
            "n={} min {}{unit} p50 {}{unit} p99 {}{unit} max {}{unit}",
            self.count, self.min, self.p50, self.p99, self.max
        )
    }
}

/// A latency histogram in microseconds with buckets 0.5% wide, small enough to pass between
/// processes and merge, for runs with millions of samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Hist {
    /// `(bucket, samples)` pairs, bucket `b` holding values near `e^(b / 200)` µs.
    buckets: std::collections::BTreeMap<u32, u64>,
    /// Number of samples.
    pub count: u64,
    /// Largest sample, µs (exact).
    pub max_us: u64,
}

impl Hist {
    const PER_E: f64 = 200.0;

    /// Adds one sample.
    pub fn record(&mut self, us: u64) {
        let bucket = ((us.max(1) as f64).ln() * Self::PER_E) as u32;
        *self.buckets.entry(bucket).or_default() += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Hist) {
        for (&b, &n) in &other.buckets {
            *self.buckets.entry(b).or_default() += n;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (nearest rank), in ms, within 0.5%.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let us = ((f64::from(b) + 0.5) / Self::PER_E).exp();
                return round(us.min(self.max_us as f64) / 1000.0);
            }
        }
        round(self.max_us as f64 / 1000.0)
    }

    /// Count, p50, p99 and max in ms, for the JSON line.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50": self.quantile_ms(0.5),
            "p99": self.quantile_ms(0.99),
            "max": round(self.max_us as f64 / 1000.0),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// What a subcommand found: its checks, its numbers, and the summary lines.
#[derive(Debug)]
pub struct Outcome {
    command: &'static str,
    failures: Vec<String>,
    lines: Vec<String>,
    results: serde_json::Map<String, Value>,
}

impl Outcome {
    /// An empty outcome for `command`.
    pub fn new(command: &'static str) -> Self {
        Self {
            command,
            failures: Vec::new(),
            lines: Vec::new(),
            results: serde_json::Map::new(),
        }
    }

    /// Adds a line to the human summary.
    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// Records a result field for the JSON line.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.results.insert(key.to_owned(), value);
    }

    /// A correctness check: when `ok` is false the run fails with `what`.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    /// Prints the summary (stderr) and the JSON line (stdout); returns whether all checks held.
    pub fn finish(mut self) -> bool {
        let ok = self.failures.is_empty();
        eprintln!("== eventwire-load {} ==", self.command);
        for line in &self.lines {
            eprintln!("  {line}");
        }
        for failure in &self.failures {
            eprintln!("  FAIL: {failure}");
        }
        eprintln!("  result: {}", if ok { "PASS" } else { "FAIL" });
        self.results
            .insert("command".into(), Value::from(self.command));
        self.results.insert("ok".into(), Value::from(ok));
        self.results
            .insert("failures".into(), Value::from(self.failures.clone()));
        println!("{}", Value::Object(self.results));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = Dist::of(&mut samples);
        assert_eq!(
            (d.count, d.min, d.p50, d.p99, d.max),
            (100, 1.0, 50.0, 99.0, 100.0)
        );
        assert_eq!(Dist::of(&mut []).count, 0);
    }

    #[test]
    fn histogram_quantiles_within_half_a_percent_and_merge() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        for us in 1..=50_000u64 {
            a.record(us * 2);
        }
        for us in 50_001..=100_000u64 {
            b.record(us * 2);
        }
        a.merge(&b);
        assert_eq!((a.count, a.max_us), (100_000, 200_000));
        let p50 = a.quantile_ms(0.5);
        let p99 = a.quantile_ms(0.99);
        assert!((p50 - 100.0).abs() <= 0.5, "p50 {p50}");
        assert!((p99 - 198.0).abs() <= 1.0, "p99 {p99}");
        assert_eq!(a.quantile_ms(1.0), 200.0);
        assert_eq!(Hist::default().quantile_ms(0.99), 0.0);
    }
}
