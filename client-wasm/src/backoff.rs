//! The reconnect delay schedule: exponential, capped, with jitter and a maximum attempt count.
//!
//! Pure arithmetic, no browser APIs, so it is tested natively.
//!
//! ```
//! use eventwire_client::backoff::Backoff;
//!
//! let backoff = Backoff { jitter: 0.0, ..Backoff::default() };
//! assert_eq!(backoff.delay_ms(1, 0.0), Some(2_000));
//! assert_eq!(backoff.delay_ms(2, 0.0), Some(4_000));
//! assert_eq!(backoff.delay_ms(6, 0.0), Some(30_000)); // capped, and never gives up
//! let five = Backoff { max_attempts: 5, ..backoff };
//! assert_eq!(five.delay_ms(6, 0.0), None); // past maxAttempts
//! ```

/// Settings of the reconnect backoff (the `backoff` option).
///
/// The delay before attempt `n` (1-based) is `min(initialDelayMs × factorⁿ⁻¹, maxDelayMs)`,
/// reduced by a random share of at most `jitter` of itself, so clients that lost the same hub
/// at the same moment do not all come back at the same moment. A delay never exceeds
/// `maxDelayMs`, except when the hub asks for more ([`Backoff::delay_with_floor_ms`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry, in milliseconds (`initialDelayMs`, default 2000).
    pub initial_delay_ms: u32,
    /// Growth factor between retries (`factor`, default 2, at least 1).
    pub factor: f64,
    /// Upper bound of any delay, in milliseconds (`maxDelayMs`, default 30000).
    pub max_delay_ms: u32,
    /// Retries before giving up with `retries_exhausted` (`maxAttempts`; default `u32::MAX`,
    /// which never gives up: the delay is capped at `max_delay_ms`).
    pub max_attempts: u32,
    /// Share of each delay that is randomised, from 0 (none) to 1 (`jitter`, default 0.5).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial_delay_ms: 2_000,
            factor: 2.0,
            max_delay_ms: 30_000,
            max_attempts: u32::MAX,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The nominal (un-jittered) delay before retry `attempt` (1-based), capped at
    /// `max_delay_ms`. Attempt 0 is treated as 1.
    pub fn base_delay_ms(&self, attempt: u32) -> u32 {
        let cap = f64::from(self.max_delay_ms);
        // initial × factor^(attempt − 1), multiplied out (no `powi` in `core`) and stopped
        // once past the cap.
        let mut raw = f64::from(self.initial_delay_ms);
        for _ in 1..attempt.min(1_001) {
            if raw >= cap {
                break;
            }
            raw *= self.factor;
        }
        let capped = raw.min(cap);
        // `capped` is finite and within u32 range: both bounds are u32 values.
        if capped.is_finite() {
            capped.max(0.0) as u32
        } else {
            self.max_delay_ms
        }
    }

    /// The delay before retry `attempt` (1-based), or `None` once `attempt` exceeds
    /// `max_attempts`.
    ///
    /// `random` is a number in `[0, 1)` (from `Math.random()` in the browser); it picks where in
    /// `[base × (1 − jitter), base]` the delay falls.
    pub fn delay_ms(&self, attempt: u32, random: f64) -> Option<u32> {
        if attempt > self.max_attempts {
            return None;
        }
        let base = f64::from(self.base_delay_ms(attempt));
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let delay = base * (1.0 - jitter * random);
        Some(crate::num::round(delay) as u32)
    }

    /// Like [`Backoff::delay_ms`], with a floor the hub asked for (its `retryMs`): the whole
    /// jitter window moves up until its low end is at least `floor_ms`, so the delay is never
    /// shorter than the hub asked and clients still spread over the same window width (a
    /// plain `max(delay, floor)` would send them all back at the floor, in one wave).
    pub fn delay_with_floor_ms(&self, attempt: u32, random: f64, floor_ms: u32) -> Option<u32> {
        let delay = self.delay_ms(attempt, random)?;
        let base = f64::from(self.base_delay_ms(attempt));
        let low = crate::num::round(base * (1.0 - self.jitter.clamp(0.0, 1.0))) as u32;
        Some(delay.saturating_add(floor_ms.saturating_sub(low)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> Backoff {
        Backoff {
            jitter: 0.0,
            ..Backoff::default()
        }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let b = Backoff::default();
        assert_eq!(b.initial_delay_ms, 2_000);
        assert_eq!(b.factor, 2.0);
        assert_eq!(b.max_delay_ms, 30_000);
        assert_eq!(b.max_attempts, u32::MAX);
        assert_eq!(b.jitter, 0.5);
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let b = Backoff {
            max_attempts: 10,
            ..no_jitter()
        };
        let delays: Vec<_> = (1..=6).map(|n| b.delay_ms(n, 0.7)).collect();
        assert_eq!(
            delays,
            vec![
                Some(2_000),
                Some(4_000),
                Some(8_000),
                Some(16_000),
                Some(30_000),
                Some(30_000)
            ]
        );
    }

    #[test]
    fn stops_after_max_attempts() {
        let b = Backoff {
            max_attempts: 5,
            ..no_jitter()
        };
        assert!(b.delay_ms(5, 0.0).is_some());
        assert_eq!(b.delay_ms(6, 0.0), None);
        let none = Backoff {
            max_attempts: 0,
            ..no_jitter()
        };
        assert_eq!(none.delay_ms(1, 0.0), None);
    }

    #[test]
    fn jitter_stays_within_its_share_and_under_the_cap() {
        let b = Backoff::default();
        for i in 0..100 {
            let r = f64::from(i) / 100.0;
            for attempt in 1..=5 {
                let base = b.base_delay_ms(attempt);
                let d = b.delay_ms(attempt, r).unwrap_or(u32::MAX);
                assert!(d <= base, "attempt {attempt} r {r}: {d} > {base}");
                assert!(f64::from(d) >= f64::from(base) * 0.5 - 1.0);
            }
        }
        // Different random draws give different delays.
        assert_ne!(b.delay_ms(1, 0.1), b.delay_ms(1, 0.9));
    }

    #[test]
    fn factor_one_is_constant_and_huge_factors_do_not_overflow() {
        let constant = Backoff {
            factor: 1.0,
            ..no_jitter()
        };
        assert_eq!(constant.delay_ms(5, 0.0), Some(2_000));
        let huge = Backoff {
            factor: 1e300,
            max_attempts: u32::MAX,
            ..no_jitter()
        };
        assert_eq!(huge.delay_ms(4_000_000, 0.0), Some(30_000));
    }

    #[test]
    fn by_default_never_gives_up_and_stays_capped() {
        let b = Backoff::default();
        for attempt in [6, 100, 10_000, u32::MAX] {
            let d = b.delay_ms(attempt, 0.3);
            assert!(
                d.is_some_and(|d| (15_000..=30_000).contains(&d)),
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn a_floor_moves_the_jitter_window_up_and_keeps_its_width() {
        let b = Backoff::default(); // first delay in [1000, 2000]
                                    // A floor below the window changes nothing.
        assert_eq!(b.delay_with_floor_ms(1, 0.5, 500), b.delay_ms(1, 0.5));
        // A floor inside or above it: [floor, floor + 1000].
        assert_eq!(b.delay_with_floor_ms(1, 0.0, 1_500), Some(2_500));
        assert_eq!(b.delay_with_floor_ms(1, 1.0, 1_500), Some(1_500));
        assert_eq!(b.delay_with_floor_ms(1, 0.0, 5_000), Some(6_000));
        assert_eq!(b.delay_with_floor_ms(1, 1.0, 5_000), Some(5_000));
        // Past maxAttempts the floor does not revive it.
        let one = Backoff {
            max_attempts: 1,
            ..b
        };
        assert_eq!(one.delay_with_floor_ms(2, 0.0, 5_000), None);
    }

    #[test]
    fn odd_random_values_are_clamped() {
        let b = Backoff::default();
        assert_eq!(b.delay_ms(1, f64::NAN), Some(2_000));
        assert_eq!(b.delay_ms(1, 7.0), Some(1_000));
    }
}
