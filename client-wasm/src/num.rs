//! The float helpers this crate needs that `core` lacks without `std` (`f64::round`,
//! `f64::fract` and `f64::powi` live in std on stable Rust; the JavaScript build is `no_std`).

/// Rounds a non-negative `x` to the nearest integer (halves up). Values past `u64::MAX`
/// saturate; negative values and NaN give 0.
pub(crate) fn round(x: f64) -> f64 {
    (x + 0.5) as u64 as f64
}

/// Whether a non-negative, finite `x` is a whole number.
pub(crate) fn is_whole(x: f64) -> bool {
    // From 2^53 on every f64 is a whole number.
    x >= 9_007_199_254_740_992.0 || x == x as u64 as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_like_std_for_non_negative_values() {
        for x in [
            0.0,
            0.4,
            0.5,
            1.49,
            2.5,
            99.99,
            2_500.0,
            4_294_967_295.4,
            1e15 + 0.5,
        ] {
            assert_eq!(round(x), x.round(), "{x}");
        }
        assert_eq!(round(-3.0), 0.0);
        assert_eq!(round(f64::NAN), 0.0);
    }

    #[test]
    fn whole_numbers() {
        for x in [0.0, 1.0, 3.0, 4_294_967_295.0, 1e20] {
            assert!(is_whole(x), "{x}");
        }
        for x in [0.5, 1.000_001, 123.25] {
            assert!(!is_whole(x), "{x}");
        }
    }
}
