//! Client options: their defaults, and parsing + validation of the JavaScript options object.
//!
//! The browser glue turns the JS object into [`OptionValue`]s; everything after that (type
//! checks, ranges, unknown keys, names allowed by the hub) is here and tested natively.
//!
//! ```
//! use eventwire_client::options::{OptionValue, Options};
//!
//! let opts = Options::from_entries(vec![
//!     ("clientId".into(), OptionValue::String("tab-1".into())),
//!     ("backoff".into(), OptionValue::Object(vec![("factor".into(), OptionValue::Number(0.5))])),
//! ]);
//! assert!(opts.unwrap_err().to_string().contains("backoff.factor"));
//! ```

use crate::prelude::*;
use crate::{
    backoff::Backoff,
    error::Error,
    text::{cat, push_uint},
};

/// A JavaScript value as the options parser sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// `undefined`: treated as "not given".
    Undefined,
    /// `null`: treated as "not given".
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<OptionValue>),
    /// A plain object, its own enumerable keys in order.
    Object(Vec<(String, OptionValue)>),
    /// A function (only `getToken` takes one; the glue keeps the function itself).
    Function,
    /// Anything else; the string is its `typeof`.
    Other(String),
}

impl OptionValue {
    fn type_name(&self) -> &str {
        match self {
            Self::Undefined => "undefined",
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
            Self::Function => "a function",
            Self::Other(t) => t,
        }
    }

    fn is_absent(&self) -> bool {
        matches!(self, Self::Undefined | Self::Null)
    }
}

/// The options of a client, validated. See the crate docs for each option's meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `clientId`: sent as the `clientId` query parameter.
    pub client_id: Option<String>,
    /// `topics`: joined with commas into the `topics` query parameter.
    pub topics: Vec<String>,
    /// `events`: the hub-side type filter (`events` query parameter).
    pub events: Vec<String>,
    /// `token`: a fixed token for the `token` query parameter (ignored when a `getToken`
    /// function is given).
    pub token: Option<String>,
    /// Whether a `getToken` function was given.
    pub has_get_token: bool,
    /// `lastEventId`: where to start (sent as the `lastEventId` query parameter).
    pub last_event_id: Option<String>,
    /// `withCredentials`, passed to the `EventSource`.
    pub with_credentials: bool,
    /// `autoConnect` (default true): connect as soon as the client is created.
    pub auto_connect: bool,
    /// `enabled` (default true): when false nothing connects; listeners are kept.
    pub enabled: bool,
    /// `backoff`.
    pub backoff: Backoff,
    /// `heartbeatTimeoutMs`: the watchdog. `None` = 2.5 × the hub's `heartbeatSecs`;
    /// `Some(0)` = no watchdog.
    pub heartbeat_timeout_ms: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            client_id: None,
            topics: Vec::new(),
            events: Vec::new(),
            token: None,
            has_get_token: false,
            last_event_id: None,
            with_credentials: false,
            auto_connect: true,
            enabled: true,
            backoff: Backoff::default(),
            heartbeat_timeout_ms: None,
        }
    }
}

/// The option names `createClient` accepts.
pub const KNOWN_OPTIONS: &[&str] = &[
    "clientId",
    "topics",
    "events",
    "token",
    "getToken",
    "lastEventId",
    "withCredentials",
    "autoConnect",
    "enabled",
    "backoff",
    "heartbeatTimeoutMs",
];

/// The keys of the `backoff` option.
pub const KNOWN_BACKOFF_OPTIONS: &[&str] = &[
    "initialDelayMs",
    "factor",
    "maxDelayMs",
    "maxAttempts",
    "jitter",
];

impl Options {
    /// Parses and validates the entries of a JavaScript options object.
    ///
    /// # Errors
    /// [`Error::UnknownOption`] for a key not in [`KNOWN_OPTIONS`], [`Error::InvalidOption`]
    /// naming the first invalid option otherwise.
    pub fn from_entries(entries: Vec<(String, OptionValue)>) -> Result<Self, Error> {
        let mut opts = Self::default();
        for (key, value) in entries {
            if value.is_absent() {
                if KNOWN_OPTIONS.contains(&key.as_str()) {
                    continue;
                }
                return Err(Error::UnknownOption(key));
            }
            match key.as_str() {
                "clientId" => opts.client_id = Some(name(&key, &value)?),
                "topics" => opts.topics = names(&key, &value)?,
                "events" => opts.events = names(&key, &value)?,
                "token" => opts.token = Some(string(&key, &value)?).filter(|t| !t.is_empty()),
                "getToken" => match value {
                    OptionValue::Function => opts.has_get_token = true,
                    other => return Err(wrong_type(&key, "an async function", &other)),
                },
                "lastEventId" => opts.last_event_id = last_event_id(&key, &value)?,
                "withCredentials" => opts.with_credentials = boolean(&key, &value)?,
                "autoConnect" => opts.auto_connect = boolean(&key, &value)?,
                "enabled" => opts.enabled = boolean(&key, &value)?,
                "backoff" => opts.backoff = backoff(&value)?,
                "heartbeatTimeoutMs" => opts.heartbeat_timeout_ms = Some(millis(&key, &value)?),
                _ => return Err(Error::UnknownOption(key)),
            }
        }
        Ok(opts)
    }

    /// Validates options built from Rust (the builder), with the same rules as
    /// [`Options::from_entries`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first invalid option.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(id) = &self.client_id {
            check_name("clientId", id)?;
        }
        for (list, key) in [(&self.topics, "topics"), (&self.events, "events")] {
            for (i, n) in list.iter().enumerate() {
                check_name(&indexed(key, i), n)?;
            }
        }
        if let Some(id) = &self.last_event_id {
            check_last_event_id("lastEventId", id)?;
        }
        check_backoff(&self.backoff)
    }
}

/// Formats a number for a message without `core`'s float formatting (which costs ~15 KB of
/// wasm): integers exactly, others to at most 6 decimals.
pub fn fmt_num(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    let abs = n.abs();
    if abs >= 1e18 {
        out.push_str("1e18+");
        return out;
    }
    let scaled = crate::num::round(abs * 1e6) as u64;
    let (int, mut frac) = (scaled / 1_000_000, scaled % 1_000_000);
    push_uint(&mut out, int);
    if frac != 0 {
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        // Leading zeros of the fraction: `frac` has fewer digits than `digits`.
        let mut width = 1;
        let mut rest = frac / 10;
        while rest > 0 {
            width += 1;
            rest /= 10;
        }
        for _ in width..digits {
            out.push('0');
        }
        push_uint(&mut out, frac);
    }
    out
}

/// `key[i]`, the path of an array element.
fn indexed(key: &str, i: usize) -> String {
    let mut out = cat(&[key, "["]);
    push_uint(&mut out, i as u64);
    out.push(']');
    out
}

fn wrong_type(key: &str, expected: &str, got: &OptionValue) -> Error {
    Error::option(
        key,
        cat(&["expected ", expected, ", got ", got.type_name()]),
    )
}

fn string(key: &str, value: &OptionValue) -> Result<String, Error> {
    match value {
        OptionValue::String(s) => Ok(s.clone()),
        other => Err(wrong_type(key, "a string", other)),
    }
}

fn boolean(key: &str, value: &OptionValue) -> Result<bool, Error> {
    match value {
        OptionValue::Bool(b) => Ok(*b),
        other => Err(wrong_type(key, "a boolean", other)),
    }
}

/// The hub's rule for names: 1 to 128 characters, no control characters, no commas.
fn check_name(key: &str, s: &str) -> Result<(), Error> {
    // One pass, no `chars().count()` (its fast path is ~1 KB of wasm).
    let mut len = 0usize;
    for c in s.chars() {
        if c.is_control() || c == ',' {
            return Err(Error::option(
                key,
                "must not contain commas or control characters",
            ));
        }
        len += 1;
    }
    if len == 0 || len > 128 {
        return Err(Error::option(key, "must be 1 to 128 characters"));
    }
    Ok(())
}

fn name(key: &str, value: &OptionValue) -> Result<String, Error> {
    let s = string(key, value)?;
    check_name(key, &s)?;
    Ok(s)
}

fn names(key: &str, value: &OptionValue) -> Result<Vec<String>, Error> {
    match value {
        OptionValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(name(&indexed(key, i), item)?);
            }
            Ok(out)
        }
        other => Err(wrong_type(key, "an array of strings", other)),
    }
}

fn check_last_event_id(key: &str, s: &str) -> Result<(), Error> {
    if s.chars().any(char::is_control) {
        return Err(Error::option(key, "must not contain control characters"));
    }
    Ok(())
}

fn last_event_id(key: &str, value: &OptionValue) -> Result<Option<String>, Error> {
    let s = string(key, value)?;
    check_last_event_id(key, &s)?;
    Ok(Some(s).filter(|s| !s.is_empty()))
}

fn number(key: &str, value: &OptionValue) -> Result<f64, Error> {
    match value {
        OptionValue::Number(n) if n.is_nan() => {
            Err(Error::option(key, "must be a number, got NaN"))
        }
        OptionValue::Number(n) => Ok(*n),
        other => Err(wrong_type(key, "a number", other)),
    }
}

/// A delay in milliseconds: finite, not negative, at most `u32::MAX`.
fn millis(key: &str, value: &OptionValue) -> Result<u32, Error> {
    let n = number(key, value)?;
    if n < 0.0 {
        return Err(Error::option(
            key,
            cat(&["must not be negative (got ", &fmt_num(n), ")"]),
        ));
    }
    if !n.is_finite() || n > f64::from(u32::MAX) {
        return Err(Error::option(
            key,
            cat(&["is too large (got ", &fmt_num(n), ")"]),
        ));
    }
    Ok(crate::num::round(n) as u32)
}

fn backoff(value: &OptionValue) -> Result<Backoff, Error> {
    let OptionValue::Object(entries) = value else {
        return Err(wrong_type("backoff", "an object", value));
    };
    let mut b = Backoff::default();
    for (key, value) in entries {
        let path = cat(&["backoff.", key]);
        if value.is_absent() && KNOWN_BACKOFF_OPTIONS.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "initialDelayMs" => b.initial_delay_ms = millis(&path, value)?,
            "maxDelayMs" => b.max_delay_ms = millis(&path, value)?,
            "factor" => b.factor = number(&path, value)?,
            "jitter" => b.jitter = number(&path, value)?,
            "maxAttempts" => {
                let n = number(&path, value)?;
                if n < 0.0 || (n.is_finite() && !crate::num::is_whole(n)) {
                    return Err(Error::option(
                        &path,
                        cat(&["must be a whole number, 0 or more (got ", &fmt_num(n), ")"]),
                    ));
                }
                b.max_attempts = if n >= f64::from(u32::MAX) {
                    u32::MAX
                } else {
                    n as u32
                };
            }
            _ => return Err(Error::UnknownOption(path)),
        }
    }
    check_backoff(&b)?;
    Ok(b)
}

fn check_backoff(b: &Backoff) -> Result<(), Error> {
    if !b.factor.is_finite() || b.factor < 1.0 {
        return Err(Error::option(
            "backoff.factor",
            cat(&["must be at least 1 (got ", &fmt_num(b.factor), ")"]),
        ));
    }
    if !(0.0..=1.0).contains(&b.jitter) {
        return Err(Error::option(
            "backoff.jitter",
            cat(&["must be between 0 and 1 (got ", &fmt_num(b.jitter), ")"]),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> OptionValue {
        OptionValue::String(v.into())
    }

    fn parse(entries: Vec<(&str, OptionValue)>) -> Result<Options, Error> {
        Options::from_entries(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    fn err(entries: Vec<(&str, OptionValue)>) -> String {
        match parse(entries) {
            Ok(o) => panic!("expected an error, got {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn numbers_format_without_float_machinery() {
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(-1.0), "-1");
        assert_eq!(fmt_num(2.25), "2.25");
        assert_eq!(fmt_num(0.000001), "0.000001");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(3.00025), "3.00025");
        assert_eq!(fmt_num(-0.1), "-0.1");
        assert_eq!(fmt_num(1e20), "1e18+");
        assert_eq!(fmt_num(1234567.0), "1234567");
        assert_eq!(fmt_num(f64::NAN), "NaN");
        assert_eq!(fmt_num(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(parse(vec![]), Ok(Options::default()));
        let d = Options::default();
        assert!(d.auto_connect && d.enabled && !d.with_credentials);
    }

    #[test]
    fn parses_every_option() {
        let o = parse(vec![
            ("clientId", s("c1")),
            ("topics", OptionValue::Array(vec![s("a"), s("b")])),
            ("events", OptionValue::Array(vec![s("notification")])),
            ("token", s("tok")),
            ("getToken", OptionValue::Function),
            ("lastEventId", s("42")),
            ("withCredentials", OptionValue::Bool(true)),
            ("autoConnect", OptionValue::Bool(false)),
            ("enabled", OptionValue::Bool(false)),
            (
                "backoff",
                OptionValue::Object(vec![
                    ("initialDelayMs".into(), OptionValue::Number(100.0)),
                    ("factor".into(), OptionValue::Number(1.5)),
                    ("maxDelayMs".into(), OptionValue::Number(1000.0)),
                    ("maxAttempts".into(), OptionValue::Number(3.0)),
                    ("jitter".into(), OptionValue::Number(0.0)),
                ]),
            ),
            ("heartbeatTimeoutMs", OptionValue::Number(500.0)),
        ])
        .unwrap_or_default();
        assert_eq!(o.client_id.as_deref(), Some("c1"));
        assert_eq!(o.topics, ["a", "b"]);
        assert_eq!(o.events, ["notification"]);
        assert_eq!(o.token.as_deref(), Some("tok"));
        assert!(o.has_get_token);
        assert_eq!(o.last_event_id.as_deref(), Some("42"));
        assert!(o.with_credentials && !o.auto_connect && !o.enabled);
        assert_eq!(
            o.backoff,
            Backoff {
                initial_delay_ms: 100,
                factor: 1.5,
                max_delay_ms: 1000,
                max_attempts: 3,
                jitter: 0.0
            }
        );
        assert_eq!(o.heartbeat_timeout_ms, Some(500));
    }

    #[test]
    fn undefined_and_null_mean_default() {
        let o = parse(vec![
            ("clientId", OptionValue::Undefined),
            ("topics", OptionValue::Null),
        ]);
        assert_eq!(o, Ok(Options::default()));
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(
            err(vec![("clientID", s("x"))]),
            "eventwire: unknown option `clientID`"
        );
        assert!(err(vec![("nope", OptionValue::Null)]).contains("`nope`"));
        let e = err(vec![(
            "backoff",
            OptionValue::Object(vec![("initialDelay".into(), OptionValue::Number(1.0))]),
        )]);
        assert!(e.contains("`backoff.initialDelay`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_option() {
        let bo = |k: &str, v: f64| {
            err(vec![(
                "backoff",
                OptionValue::Object(vec![(k.into(), OptionValue::Number(v))]),
            )])
        };
        assert!(
            bo("initialDelayMs", -1.0).contains("`backoff.initialDelayMs`: must not be negative")
        );
        assert!(bo("maxDelayMs", -5.0).contains("`backoff.maxDelayMs`"));
        assert!(bo("factor", 0.5).contains("`backoff.factor`: must be at least 1"));
        assert!(bo("jitter", 1.5).contains("`backoff.jitter`"));
        assert!(bo("maxAttempts", 2.5).contains("`backoff.maxAttempts`"));
        assert!(bo("maxAttempts", -1.0).contains("`backoff.maxAttempts`"));
        assert!(bo("factor", f64::NAN).contains("NaN"));
        assert!(err(vec![("heartbeatTimeoutMs", OptionValue::Number(-1.0))])
            .contains("`heartbeatTimeoutMs`: must not be negative"));
        assert!(err(vec![("topics", s("a,b"))]).contains("`topics`: expected an array"));
        assert!(err(vec![(
            "topics",
            OptionValue::Array(vec![s("ok"), s("a,b")])
        )])
        .contains("`topics[1]`"));
        assert!(err(vec![("events", OptionValue::Array(vec![s("")]))]).contains("`events[0]`"));
        assert!(err(vec![("clientId", s(&"x".repeat(129)))]).contains("`clientId`"));
        assert!(
            err(vec![("getToken", s("abc"))]).contains("`getToken`: expected an async function")
        );
        assert!(err(vec![("autoConnect", s("yes"))]).contains("`autoConnect`: expected a boolean"));
        assert!(err(vec![("backoff", OptionValue::Number(1.0))])
            .contains("`backoff`: expected an object"));
    }

    #[test]
    fn infinite_max_attempts_is_allowed() {
        let o = parse(vec![(
            "backoff",
            OptionValue::Object(vec![(
                "maxAttempts".into(),
                OptionValue::Number(f64::INFINITY),
            )]),
        )]);
        assert_eq!(o.map(|o| o.backoff.max_attempts), Ok(u32::MAX));
    }

    #[test]
    fn empty_token_and_last_event_id_mean_none() {
        let o = parse(vec![("token", s("")), ("lastEventId", s(""))]);
        assert_eq!(o, Ok(Options::default()));
    }

    #[test]
    fn builder_options_are_validated_the_same_way() {
        let mut o = Options::default();
        assert!(o.validate().is_ok());
        o.topics = vec!["fine".into(), String::new()];
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`topics[1]`"));
        o.topics.clear();
        o.backoff.factor = 0.9;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`backoff.factor`"));
    }
}
