//! One contract, not copies: every name the hub and the SDK emit, checked against the npm
//! package's TypeScript types (`npm/src/types.ts`, compiled as is into the shipped `.d.ts`)
//! and the hub's protocol (`docs/PROTOCOL.md`). Exact sets both ways, so a name added on one
//! side and not the other fails here.
#![cfg(not(target_arch = "wasm32"))]
// The size rules of client-wasm/clippy.toml are for the JavaScript build, not for tests.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)]

use std::collections::BTreeSet;

use eventwire_client::{
    decode::{SystemEvent, LIFECYCLE_EVENTS},
    options::{KNOWN_BACKOFF_OPTIONS, KNOWN_OPTIONS},
    Error, ErrorKind,
};

fn read(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn types_ts() -> String {
    read("npm/src/types.ts")
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

/// The text from `start` to the first line that is exactly `end`.
fn block<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("`{start}` not found"));
    let rest = &text[from..];
    let to = rest
        .find(&format!("\n{end}\n"))
        .unwrap_or_else(|| panic!("no `{end}` after `{start}`"));
    &rest[..to]
}

/// The string literals of a union type alias `export type NAME = "a" | "b";`.
fn union(ts: &str, name: &str) -> BTreeSet<String> {
    let start = format!("export type {name} =");
    let from = ts.find(&start).unwrap_or_else(|| panic!("{start}"));
    let text = &ts[from + start.len()..];
    let text = &text[..text.find(';').unwrap_or(text.len())];
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The property names declared at `indent` spaces in `text` (`  name?: ...` lines).
fn keys(text: &str, indent: usize) -> BTreeSet<String> {
    let pad = " ".repeat(indent);
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&pad)?;
            if rest.starts_with(' ') {
                return None;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = &rest[name.len()..];
            (!name.is_empty() && (after.starts_with(':') || after.starts_with("?:")))
                .then_some(name)
        })
        .collect()
}

/// The fields of the payload type of system event `name` in `SystemEvents`.
fn system_event_fields(ts: &str, name: &str) -> BTreeSet<String> {
    let events = block(ts, "export interface SystemEvents {", "}");
    let from = events
        .find(&format!("  {name}: "))
        .unwrap_or_else(|| panic!("SystemEvents lacks {name}"));
    let decl = &events[from..];
    let decl = &decl[..decl.find(">;").unwrap_or(decl.len())];
    if decl.contains("Record<string, never>") {
        return BTreeSet::new();
    }
    let inner = &decl[decl.find('{').unwrap_or(0) + 1..];
    // One line (`{ a: string; b: number }`) or one field per line.
    inner
        .split([';', '\n'])
        .filter_map(|part| {
            let part = part.trim();
            if part.starts_with("/**") || part.starts_with('*') {
                return None;
            }
            let name = part.split([':', '?']).next()?.trim();
            (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect()
}

/// The protocol's system events table: `(name, data fields)` per row.
fn protocol_system_events() -> Vec<(String, BTreeSet<String>)> {
    let doc = read("docs/PROTOCOL.md");
    let table = block(&doc, "| event          | when | data |", "");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let name = cells
                .first()?
                .trim_start_matches('|')
                .trim()
                .trim_matches('`');
            if !name.starts_with("__") {
                return None;
            }
            let data = cells.last()?;
            // The JSON object's keys: the first quoted word of each comma-separated item.
            let object = &data[data.find('{')? + 1..data.rfind('}')?];
            let fields = object
                .split(", \"")
                .filter_map(|item| item.trim_start_matches('"').split('"').next())
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
            Some((name.to_owned(), fields))
        })
        .collect()
}

#[test]
fn error_types_match_the_rust_error_kinds() {
    let mut expected = set(Error::JS_KINDS);
    expected.insert("unsupported_environment".into()); // the package's own
    assert_eq!(union(&types_ts(), "EventwireErrorType"), expected);
}

#[test]
fn client_error_kinds_match() {
    let mut expected = set(ErrorKind::ALL.map(ErrorKind::as_str));
    // The package's own, for a client created before the wasm was ready (npm/src/client.ts).
    expected.extend([
        "invalid_options".to_owned(),
        "unsupported_environment".to_owned(),
    ]);
    assert_eq!(union(&types_ts(), "ClientErrorKind"), expected);
}

#[test]
fn lifecycle_events_match() {
    let ts = types_ts();
    let lifecycle = block(&ts, "export interface LifecycleEvents {", "}");
    assert_eq!(keys(lifecycle, 2), set(LIFECYCLE_EVENTS));
}

#[test]
fn options_match() {
    let ts = types_ts();
    let options = block(&ts, "export interface ClientOptions {", "}");
    assert_eq!(keys(options, 2), set(KNOWN_OPTIONS));
    let backoff = block(&ts, "export interface BackoffOptions {", "}");
    assert_eq!(keys(backoff, 2), set(KNOWN_BACKOFF_OPTIONS));
}

#[test]
fn system_events_match_the_sdk() {
    let ts = types_ts();
    let events = block(&ts, "export interface SystemEvents {", "}");
    assert_eq!(
        keys(events, 2),
        set(SystemEvent::ALL.map(SystemEvent::name))
    );
}

#[test]
fn every_system_event_of_the_protocol_is_known_and_typed_field_by_field() {
    let ts = types_ts();
    let rows = protocol_system_events();
    assert!(rows.len() >= 5, "protocol table not found: {rows:?}");
    for (name, fields) in rows {
        assert!(
            SystemEvent::from_name(&name).is_some(),
            "the hub sends {name}, the SDK does not know it"
        );
        assert_eq!(
            system_event_fields(&ts, &name),
            fields,
            "{name}: types.ts and docs/PROTOCOL.md disagree"
        );
    }
}
