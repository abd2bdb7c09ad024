//! Building the `GET /events` URL: the hub's query parameters (see `docs/PROTOCOL.md`),
//! percent-encoded like
//! [`encodeURIComponent`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/encodeURIComponent).
//!
//! ```
//! use eventwire_client::url::with_query;
//!
//! let url = with_query("https://hub.example/events#x", &[("topics", "a,b"), ("token", "t k")]);
//! assert_eq!(url, "https://hub.example/events?topics=a%2Cb&token=t%20k");
//! ```

use crate::prelude::*;
use crate::{error::Error, text::cat};

/// Checks what can be checked about a hub URL without a browser: not empty, no spaces or
/// control characters, and an `http`/`https` scheme when one is given (a relative URL such as
/// `/events` is resolved against the page by the browser glue).
///
/// # Errors
/// [`Error::InvalidUrl`] naming the problem.
pub fn validate(url: &str) -> Result<(), Error> {
    // `is_space` rather than `trim()`, and pieces pushed rather than `format!`: this runs in
    // the JavaScript build, which must not pull in `core::fmt` or Unicode tables (see `text`).
    if url.chars().all(is_space) {
        return Err(Error::InvalidUrl("the URL is empty".into()));
    }
    let quoted = |problem: &str| Error::InvalidUrl(cat(&["`", url, "` ", problem]));
    if url.chars().any(|c| is_space(c) || c.is_control()) {
        return Err(quoted("contains spaces or control characters"));
    }
    // Byte searches and `get` rather than `split_once` and `contains`: no memchr, no slicing
    // panic path.
    let colon = url.bytes().position(|b| b == b':');
    if let (Some(scheme), Some(rest)) = (
        colon.and_then(|i| url.get(..i)),
        colon.and_then(|i| url.get(i + 1..)),
    ) {
        let looks_like_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if looks_like_scheme {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(quoted("is not an http(s) URL"));
            }
            if !rest.starts_with("//") {
                return Err(quoted("has no host"));
            }
        }
    }
    Ok(())
}

/// Whether `c` is white space (`char::is_whitespace`, which needs a Unicode table; these are
/// the same characters, listed), or the byte-order mark.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            '\u{0b}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202f}'
                    | '\u{205f}'
                    | '\u{3000}'
                    | '\u{feff}'
        )
}

/// Appends `params` (skipping empty values) to `base`'s query string, dropping any fragment.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let base = base
        .bytes()
        .position(|b| b == b'#')
        .and_then(|i| base.get(..i))
        .unwrap_or(base);
    let mut out = String::from(base);
    let mut sep = if base.bytes().any(|b| b == b'?') {
        if matches!(base.as_bytes().last(), Some(b'?' | b'&')) {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (key, value) in params {
        if value.is_empty() {
            continue;
        }
        out.push_str(sep);
        encode_into(&mut out, key);
        out.push('=');
        encode_into(&mut out, value);
        sep = "&";
    }
    out
}

/// Percent-encodes `s` as `encodeURIComponent` does (UTF-8, unreserved set
/// `A-Z a-z 0-9 - _ . ! ~ * ' ( )`).
pub fn encode_into(out: &mut String, s: &str) {
    // Arithmetic instead of a lookup table: no index, so no bounds-check panic path.
    let hex = |n: u8| char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 });
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(hex(byte >> 4));
            out.push(hex(byte & 15));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_encode_uri_component() {
        let mut s = String::new();
        encode_into(&mut s, "a b,c/é?&=~*'()");
        assert_eq!(s, "a%20b%2Cc%2F%C3%A9%3F%26%3D~*'()");
    }

    #[test]
    fn appends_to_existing_query_and_skips_empty_values() {
        assert_eq!(
            with_query("http://h/events?x=1", &[("clientId", "c"), ("token", "")]),
            "http://h/events?x=1&clientId=c"
        );
        assert_eq!(
            with_query("http://h/events?", &[("a", "1")]),
            "http://h/events?a=1"
        );
        assert_eq!(with_query("/events", &[]), "/events");
    }

    #[test]
    fn spaces_are_the_unicode_white_space_set() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                is_space(c),
                c.is_whitespace() || c == '\u{feff}',
                "U+{:04X}",
                c as u32
            );
        }
        assert!(validate("\u{3000}").is_err());
        assert!(validate("https://hub/ev\u{a0}ents").is_err());
        assert!(validate("https://hub/\u{feff}events").is_err());
    }

    #[test]
    fn validates_urls() {
        assert!(validate("http://127.0.0.1:8080/events").is_ok());
        assert!(validate("HTTPS://hub.example/events").is_ok());
        assert!(validate("/events").is_ok());
        assert!(validate("events?x=a:b").is_ok());
        for bad in [
            "",
            "  ",
            "ht tp://x",
            "ftp://x/events",
            "http:x",
            "javascript:alert(1)",
        ] {
            let err = validate(bad).err();
            assert!(
                matches!(err, Some(Error::InvalidUrl(_))),
                "{bad:?} -> {err:?}"
            );
        }
        assert_eq!(
            validate("ftp://x/events").map_err(|e| e.to_string()),
            Err("eventwire: invalid option `url`: `ftp://x/events` is not an http(s) URL".into())
        );
        assert_eq!(
            validate("http:x").map_err(|e| e.to_string()),
            Err("eventwire: invalid option `url`: `http:x` has no host".into())
        );
    }
}
