//! Query strings: never a panic; what is accepted round-trips through percent-encoding.
#![no_main]

use eventwire_server::query::parse_query;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

fuzz_target!(|raw: &str| {
    let Ok(params) = parse_query(Some(raw)) else {
        return;
    };
    let encoded: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect();
    let again = parse_query(Some(&encoded.join("&"))).expect("re-encoded query parses");
    assert_eq!(params, again);
});
