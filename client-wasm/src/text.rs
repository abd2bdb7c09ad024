//! Message building without `core::fmt`.
//!
//! The JavaScript build stays small only when no `format!`, no `to_string()` on a number and
//! no `Display` impl is reached from wasm code: core's formatting machinery (padding, integer
//! and float printing, `Debug` escaping with its Unicode tables) costs several KB of wasm.
//! Messages are therefore built from string pieces, and numbers printed by hand.

use crate::prelude::*;

/// Concatenates `parts` into one string.
pub(crate) fn cat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// Appends the decimal digits of `n` (recursive instead of a digit buffer: no index, so no
/// bounds-check panic and its formatting).
pub(crate) fn push_uint(out: &mut String, n: u64) {
    if n >= 10 {
        push_uint(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uint(n: u64) -> String {
        let mut out = String::new();
        push_uint(&mut out, n);
        out
    }

    #[test]
    fn prints_integers_like_display() {
        for n in [0, 7, 10, 99, 100, 2_500, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(uint(n), n.to_string());
        }
        assert_eq!(cat(&["a", "", "bc", "d"]), "abcd");
    }
}
