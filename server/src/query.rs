//! Query strings, parsed strictly: every parameter at most once, and valid UTF-8 after
//! percent-decoding.
//!
//! A lenient parser (`serde_urlencoded`, `form_urlencoded`) replaces invalid UTF-8 with
//! U+FFFD, so `clientId=%FF` and `clientId=%FE` would name the same client, and keeps the
//! last of repeated parameters, so a proxy and the hub could read different values. Both are
//! refused here with a `400 invalid_query` naming the parameter.
//!
//! ```
//! use eventwire_server::query::parse_query;
//! let q = parse_query(Some("topics=a%2Cb&clientId=tab+1")).unwrap();
//! assert_eq!(q["clientId"], "tab 1");
//! assert!(parse_query(Some("clientId=%FF")).is_err());
//! assert!(parse_query(Some("a=1&a=2")).is_err());
//! ```

use std::collections::HashMap;

use percent_encoding::percent_decode;

use crate::error::Error;

/// Parses `application/x-www-form-urlencoded` query text (`+` is a space) into a map.
///
/// # Errors
/// [`Error::InvalidQuery`] for a repeated parameter or a name or value that is not UTF-8
/// once decoded.
pub fn parse_query(raw: Option<&str>) -> Result<HashMap<String, String>, Error> {
    let mut params = HashMap::new();
    let Some(raw) = raw else {
        return Ok(params);
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).map_err(|()| {
            Error::InvalidQuery("a parameter name is not UTF-8 after percent-decoding".into())
        })?;
        let value = decode(value).map_err(|()| {
            Error::InvalidQuery(format!(
                "{}: not UTF-8 after percent-decoding",
                printable(&name)
            ))
        })?;
        if params.contains_key(&name) {
            return Err(Error::InvalidQuery(format!(
                "{}: given more than once",
                printable(&name)
            )));
        }
        params.insert(name, value);
    }
    Ok(params)
}

fn decode(text: &str) -> Result<String, ()> {
    let spaced = text.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ())
}

/// A parameter name fit for an error message: at most 64 characters, debug-quoted.
fn printable(name: &str) -> String {
    format!("{:?}", name.chars().take(64).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let q = parse_query(Some("a=x+y%20z&b=&c&d=%E2%9C%93")).unwrap();
        assert_eq!(q["a"], "x y z");
        assert_eq!(q["b"], "");
        assert_eq!(q["c"], "");
        assert_eq!(q["d"], "✓");
        assert!(parse_query(None).unwrap().is_empty());
    }

    #[test]
    fn refuses_invalid_utf8_and_repeats() {
        for bad in [
            "clientId=%FF",
            "clientId=%FE",
            "%FF=1",
            "a=1&a=2",
            "a=1&b=2&a=1",
        ] {
            assert!(
                matches!(parse_query(Some(bad)), Err(Error::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
