//! `Last-Event-ID`: never a panic; an accepted id is the decimal form of what it parses to.
#![no_main]

use eventwire_server::event::parse_last_event_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    match parse_last_event_id(raw) {
        Ok(None) => assert!(raw.is_empty()),
        Ok(Some(id)) => assert_eq!(id, raw.parse::<u64>().expect("a u64")),
        Err(_) => assert!(raw.parse::<u64>().is_err() || raw.len() > 20 || raw.starts_with('+')),
    }
});
