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
}
