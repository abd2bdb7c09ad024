//! Client options: their defaults, and parsing + validation of the JavaScript options object.
//!
//! Parsing reads a JavaScript object through the [`Value`] trait (the browser glue implements
//! it for `JsValue`, the tests for [`OptionValue`]), so everything (type checks, ranges,
//! unknown keys, names allowed by the hub) is here and tested natively. Parsing only converts
//! types; [`Options::validate`] holds the value rules, the same for the JavaScript options and
//! the Rust builder.
//!
//! ```
//! use eventwire_client::options::{OptionValue, Options};
//!
//! let opts = Options::parse(&OptionValue::Object(vec![
//!     ("clientId".into(), OptionValue::String("tab-1".into())),
//!     ("backoff".into(), OptionValue::Object(vec![("factor".into(), OptionValue::Number(0.5))])),
//! ]));
//! assert!(opts.unwrap_err().to_string().contains("backoff.factor"));
//! ```

use core::mem::take;

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
    /// A function (`getToken`, `getTicket`, `EventSource`; the glue keeps the function itself).
    Function,
    /// Anything else, with its name for messages (`a symbol`).
    Other(&'static str),
}

/// A JavaScript value, as far as option parsing looks at it.
pub trait Value: Sized {
    /// `undefined` or `null`: the option is not given.
    fn is_absent(&self) -> bool;
    /// The boolean, when it is one.
    fn as_bool(&self) -> Option<bool>;
    /// The number, when it is one.
    fn as_number(&self) -> Option<f64>;
    /// The string, when it is one.
    fn as_str(&self) -> Option<String>;
    /// Whether it is a function.
    fn is_function(&self) -> bool;
    /// The items, when it is an array.
    fn items(&self) -> Option<Vec<Self>>;
    /// The own enumerable keys, when it is a plain object (not an array or a function).
    fn keys(&self) -> Option<Vec<String>>;
    /// The property `key` of an object.
    fn get(&self, key: &str) -> Self;
    /// What it is, for messages: `a string`, `an array`, `null`...
    fn type_name(&self) -> &'static str;
}

impl Value for OptionValue {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Undefined | Self::Null)
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<String> {
        match self {
            Self::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn is_function(&self) -> bool {
        matches!(self, Self::Function)
    }

    fn items(&self) -> Option<Vec<Self>> {
        match self {
            Self::Array(items) => Some(items.clone()),
            _ => None,
        }
    }

    fn keys(&self) -> Option<Vec<String>> {
        match self {
            Self::Object(entries) => Some(entries.iter().map(|(k, _)| k.clone()).collect()),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Self {
        match self {
            Self::Object(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map_or(Self::Undefined, |(_, v)| v.clone()),
            _ => Self::Undefined,
        }
    }

    fn type_name(&self) -> &'static str {
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
    /// `token`: a fixed token for the `token` query parameter (ignored when a `getToken` or
    /// `getTicket` function is given).
    pub token: Option<String>,
    /// Whether a `getToken` function was given.
    pub has_get_token: bool,
    /// Whether a `getTicket` function was given: called before every connect and reconnect,
    /// its string goes in the `ticket` query parameter (a single-use ticket from the hub's
    /// `POST /tickets`), so no token travels in the URL. It wins over `token` and `getToken`,
    /// which are then neither called nor sent.
    pub has_get_ticket: bool,
    /// Whether an `EventSource` implementation was given (the glue keeps it; without one the
    /// global `EventSource` is used).
    pub has_event_source: bool,
    /// `shareAcrossTabs`: checked here, acted on by the npm package's TypeScript layer, which
    /// elects one tab to hold the connection.
    pub share_across_tabs: bool,
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
            has_get_ticket: false,
            has_event_source: false,
            share_across_tabs: false,
            last_event_id: None,
            with_credentials: false,
            auto_connect: true,
            enabled: true,
            backoff: Backoff::default(),
            heartbeat_timeout_ms: None,
        }
    }
}

/// How an option's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string.
    Text,
    /// An array of strings.
    Texts,
    /// A boolean.
    Flag,
    /// A delay: a number from 0 to `u32::MAX` milliseconds (rounded).
    Millis,
    /// Any number but NaN (ranges are [`Options::validate`]'s).
    Number,
    /// A whole number, 0 or more; `Infinity` means no limit.
    Count,
    /// A function.
    Function,
    /// The `backoff` object.
    Backoff,
}

impl Kind {
    /// What the option must be, for the error message.
    fn expected(self) -> &'static str {
        match self {
            Self::Text => "expected a string",
            Self::Texts => "expected an array of strings",
            Self::Flag => "expected a boolean",
            Self::Millis => "expected a number of milliseconds, 0 or more",
            Self::Number => "expected a number",
            Self::Count => "expected a whole number, 0 or more (or Infinity)",
            Self::Function => "expected a function",
            Self::Backoff => "expected an object",
        }
    }
}

/// A value read for an option: the field its [`Kind`] fills.
#[derive(Debug, Default)]
struct Read {
    text: String,
    texts: Vec<String>,
    /// Numbers, and booleans as 1 or 0.
    number: f64,
}

/// Stores a value read into the options.
type Apply = fn(&mut Options, &mut Read);

/// One accepted key: its name, how its value is read, where it goes.
type Spec = (&'static str, Kind, Apply);

/// The options `createClient` accepts: one table drives parsing, unknown-key detection and
/// the messages (a table instead of code per option keeps the JavaScript build small).
const OPTIONS: [Spec; 14] = [
    ("clientId", Kind::Text, |o, r| {
        o.client_id = Some(take(&mut r.text))
    }),
    ("topics", Kind::Texts, |o, r| o.topics = take(&mut r.texts)),
    ("events", Kind::Texts, |o, r| o.events = take(&mut r.texts)),
    ("token", Kind::Text, |o, r| {
        o.token = Some(take(&mut r.text)).filter(|t| !t.is_empty());
    }),
    ("getToken", Kind::Function, |o, _| o.has_get_token = true),
    ("getTicket", Kind::Function, |o, _| o.has_get_ticket = true),
    ("lastEventId", Kind::Text, |o, r| {
        o.last_event_id = Some(take(&mut r.text)).filter(|t| !t.is_empty());
    }),
    ("withCredentials", Kind::Flag, |o, r| {
        o.with_credentials = r.number != 0.0;
    }),
    ("autoConnect", Kind::Flag, |o, r| {
        o.auto_connect = r.number != 0.0
    }),
    ("enabled", Kind::Flag, |o, r| o.enabled = r.number != 0.0),
    ("backoff", Kind::Backoff, |_, _| {}),
    ("heartbeatTimeoutMs", Kind::Millis, |o, r| {
        o.heartbeat_timeout_ms = Some(r.number as u32);
    }),
    ("EventSource", Kind::Function, |o, _| {
        o.has_event_source = true
    }),
    ("shareAcrossTabs", Kind::Flag, |o, r| {
        o.share_across_tabs = r.number != 0.0;
    }),
];

/// The keys of the `backoff` option.
const BACKOFF_OPTIONS: [Spec; 5] = [
    ("initialDelayMs", Kind::Millis, |o, r| {
        o.backoff.initial_delay_ms = r.number as u32;
    }),
    ("factor", Kind::Number, |o, r| o.backoff.factor = r.number),
    ("maxDelayMs", Kind::Millis, |o, r| {
        o.backoff.max_delay_ms = r.number as u32;
    }),
    // `as` saturates: Infinity becomes u32::MAX, "no limit".
    ("maxAttempts", Kind::Count, |o, r| {
        o.backoff.max_attempts = r.number as u32;
    }),
    ("jitter", Kind::Number, |o, r| o.backoff.jitter = r.number),
];

/// The names in a table of specs.
const fn names<const N: usize>(specs: &[Spec; N]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = specs[i].0;
        i += 1;
    }
    names
}

/// The option names `createClient` accepts.
pub const KNOWN_OPTIONS: [&str; 14] = names(&OPTIONS);

/// The keys of the `backoff` option.
pub const KNOWN_BACKOFF_OPTIONS: [&str; 5] = names(&BACKOFF_OPTIONS);

/// What a name (`clientId`, a topic, an event type) must be: the hub's rule.
const NAME_RULE: &str = "must be 1 to 128 characters, without commas or control characters";

impl Options {
    /// Parses and validates a JavaScript options object (`undefined` or `null`: defaults).
    ///
    /// # Errors
    /// [`Error::UnknownOption`] for a key not in [`KNOWN_OPTIONS`] (or
    /// [`KNOWN_BACKOFF_OPTIONS`] inside `backoff`), [`Error::InvalidOption`] naming the first
    /// invalid option otherwise.
    pub fn parse<V: Value>(options: &V) -> Result<Self, Error> {
        let mut o = Self::default();
        if !options.is_absent() && !read(options, &OPTIONS, "", &mut o)? {
            return Err(Error::option("options", "expected an object"));
        }
        o.validate()?;
        Ok(o)
    }

    /// Validates options (parsed, or built from Rust with the builder): names as the hub
    /// accepts them, a `lastEventId` without control characters, `backoff.factor` at least 1
    /// and `backoff.jitter` from 0 to 1.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first invalid option.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(id) = &self.client_id {
            if !is_name(id) {
                return Err(Error::option("clientId", NAME_RULE));
            }
        }
        for (list, key) in [(&self.topics, "topics"), (&self.events, "events")] {
            for (i, name) in list.iter().enumerate() {
                if !is_name(name) {
                    return Err(Error::option(indexed(key, i), NAME_RULE));
                }
            }
        }
        if let Some(id) = &self.last_event_id {
            if id.chars().any(char::is_control) {
                return Err(Error::option(
                    "lastEventId",
                    "must not contain control characters",
                ));
            }
        }
        let b = &self.backoff;
        if !(b.factor.is_finite() && b.factor >= 1.0) {
            return Err(Error::option("backoff.factor", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(Error::option("backoff.jitter", "must be from 0 to 1"));
        }
        Ok(())
    }
}

/// Reads the keys of `object` listed in `specs` into `o` (`prefix` + key is the option's
/// path). `Ok(false)` when `object` is not a plain object.
fn read<V: Value>(
    object: &V,
    specs: &[Spec],
    prefix: &str,
    o: &mut Options,
) -> Result<bool, Error> {
    let Some(keys) = object.keys() else {
        return Ok(false);
    };
    for key in keys {
        if !specs.iter().any(|(name, ..)| *name == key) {
            return Err(Error::UnknownOption(cat(&[prefix, &key])));
        }
    }
    for &(key, kind, apply) in specs {
        let value = object.get(key);
        if value.is_absent() {
            continue;
        }
        let mut r = Read::default();
        let number = value.as_number();
        let ok = match kind {
            Kind::Text => value.as_str().map(|s| r.text = s).is_some(),
            Kind::Texts => match value.items() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let Some(text) = item.as_str() else {
                            let path = indexed(&cat(&[prefix, key]), i);
                            return Err(Error::option(path, Kind::Text.expected()));
                        };
                        r.texts.push(text);
                    }
                    true
                }
                None => false,
            },
            Kind::Flag => value
                .as_bool()
                .map(|b| r.number = f64::from(u8::from(b)))
                .is_some(),
            Kind::Millis => number
                .filter(|n| (0.0..=f64::from(u32::MAX)).contains(n))
                .map(|n| r.number = crate::num::round(n))
                .is_some(),
            Kind::Number => number
                .filter(|n| !n.is_nan())
                .map(|n| r.number = n)
                .is_some(),
            Kind::Count => number
                .filter(|n| *n >= 0.0 && (n.is_infinite() || crate::num::is_whole(*n)))
                .map(|n| r.number = n)
                .is_some(),
            Kind::Function => value.is_function(),
            Kind::Backoff => read(&value, &BACKOFF_OPTIONS, "backoff.", o)?,
        };
        if !ok {
            return Err(Error::option(cat(&[prefix, key]), kind.expected()));
        }
        apply(o, &mut r);
    }
    Ok(true)
}

/// `key[i]`, the path of an array item.
fn indexed(key: &str, i: usize) -> String {
    let mut path = cat(&[key, "["]);
    push_uint(&mut path, i as u64);
    path.push(']');
    path
}

/// The hub's rule for names: 1 to 128 characters, no control characters, no commas.
fn is_name(s: &str) -> bool {
    // One pass, no `chars().count()` (its fast path is ~1 KB of wasm).
    let mut len = 0usize;
    for c in s.chars() {
        if c.is_control() || c == ',' {
            return false;
        }
        len += 1;
    }
    (1..=128).contains(&len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> OptionValue {
        OptionValue::String(v.into())
    }

    fn object(entries: Vec<(&str, OptionValue)>) -> OptionValue {
        OptionValue::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    fn parse(entries: Vec<(&str, OptionValue)>) -> Result<Options, Error> {
        Options::parse(&object(entries))
    }

    fn err(entries: Vec<(&str, OptionValue)>) -> String {
        match parse(entries) {
            Ok(o) => panic!("expected an error, got {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn backoff_err(key: &str, value: OptionValue) -> String {
        err(vec![("backoff", object(vec![(key, value)]))])
    }

    #[test]
    fn empty_absent_and_defaults() {
        assert_eq!(parse(vec![]), Ok(Options::default()));
        assert_eq!(
            Options::parse(&OptionValue::Undefined),
            Ok(Options::default())
        );
        assert_eq!(Options::parse(&OptionValue::Null), Ok(Options::default()));
        let d = Options::default();
        assert!(d.auto_connect && d.enabled && !d.with_credentials);
        for not_an_object in [s("x"), OptionValue::Array(vec![]), OptionValue::Function] {
            let e = Options::parse(&not_an_object).unwrap_err().to_string();
            assert_eq!(e, "eventwire: invalid option `options`: expected an object");
        }
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
                object(vec![
                    ("initialDelayMs", OptionValue::Number(100.0)),
                    ("factor", OptionValue::Number(1.5)),
                    ("maxDelayMs", OptionValue::Number(1000.4)),
                    ("maxAttempts", OptionValue::Number(3.0)),
                    ("jitter", OptionValue::Number(0.0)),
                ]),
            ),
            ("heartbeatTimeoutMs", OptionValue::Number(500.0)),
            ("EventSource", OptionValue::Function),
            ("shareAcrossTabs", OptionValue::Bool(true)),
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
        assert!(o.has_event_source && o.share_across_tabs);
        let o = parse(vec![("withCredentials", OptionValue::Bool(false))]);
        assert_eq!(o, Ok(Options::default()));
    }

    #[test]
    fn undefined_and_null_mean_default() {
        let o = parse(vec![
            ("clientId", OptionValue::Undefined),
            ("topics", OptionValue::Null),
            ("backoff", OptionValue::Null),
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
        let e = backoff_err("initialDelay", OptionValue::Number(1.0));
        assert_eq!(e, "eventwire: unknown option `backoff.initialDelay`");
        assert_eq!(KNOWN_OPTIONS.len(), 14);
        assert!(KNOWN_OPTIONS.contains(&"getToken") && KNOWN_BACKOFF_OPTIONS.contains(&"jitter"));
    }

    #[test]
    fn bad_values_name_the_option_and_the_rule() {
        let n = OptionValue::Number;
        assert_eq!(
            backoff_err("initialDelayMs", n(-1.0)),
            "eventwire: invalid option `backoff.initialDelayMs`: expected a number of \
             milliseconds, 0 or more"
        );
        assert!(backoff_err("maxDelayMs", n(-5.0)).contains("`backoff.maxDelayMs`"));
        assert!(backoff_err("maxDelayMs", n(f64::INFINITY)).contains("`backoff.maxDelayMs`"));
        assert!(backoff_err("maxDelayMs", n(5e9)).contains("`backoff.maxDelayMs`"));
        assert!(backoff_err("maxDelayMs", s("5")).contains("`backoff.maxDelayMs`"));
        assert_eq!(
            backoff_err("factor", n(0.5)),
            "eventwire: invalid option `backoff.factor`: must be at least 1"
        );
        assert!(backoff_err("factor", n(f64::NAN)).contains("`backoff.factor`: expected a number"));
        assert!(backoff_err("jitter", n(1.5)).contains("`backoff.jitter`: must be from 0 to 1"));
        assert!(backoff_err("jitter", n(-0.1)).contains("`backoff.jitter`"));
        assert!(
            backoff_err("maxAttempts", n(2.5)).contains("`backoff.maxAttempts`: expected a whole")
        );
        assert!(backoff_err("maxAttempts", n(-1.0)).contains("`backoff.maxAttempts`"));
        assert!(err(vec![("heartbeatTimeoutMs", n(-1.0))]).contains("`heartbeatTimeoutMs`"));
        assert!(err(vec![("topics", s("a,b"))]).contains("`topics`: expected an array of strings"));
        assert_eq!(
            err(vec![("topics", OptionValue::Array(vec![s("ok"), n(1.0)]))]),
            "eventwire: invalid option `topics[1]`: expected a string"
        );
        assert!(backoff_err("nope", n(1.0)).contains("`backoff.nope`"));
        assert_eq!(
            err(vec![(
                "topics",
                OptionValue::Array(vec![s("ok"), s("a,b")])
            )]),
            "eventwire: invalid option `topics[1]`: must be 1 to 128 characters, without commas \
             or control characters"
        );
        assert!(err(vec![("events", OptionValue::Array(vec![s("")]))]).contains("`events[0]`"));
        assert!(err(vec![("clientId", s(&"x".repeat(129)))]).contains("`clientId`"));
        assert!(parse(vec![("clientId", s(&"é".repeat(128)))]).is_ok());
        assert!(err(vec![("clientId", s("a\u{7}b"))]).contains("`clientId`"));
        assert!(err(vec![("lastEventId", s("1\n2"))]).contains("`lastEventId`"));
        assert!(err(vec![("getToken", s("abc"))]).contains("`getToken`: expected a function"));
        assert!(err(vec![("getTicket", s("abc"))]).contains("`getTicket`: expected a function"));
        assert!(err(vec![("EventSource", s("x"))]).contains("`EventSource`: expected a function"));
        assert!(err(vec![("shareAcrossTabs", n(1.0))])
            .contains("`shareAcrossTabs`: expected a boolean"));
        assert!(err(vec![("autoConnect", s("yes"))]).contains("`autoConnect`: expected a boolean"));
        assert!(err(vec![("token", n(5.0))]).contains("`token`: expected a string"));
        assert!(err(vec![("backoff", n(1.0))]).contains("`backoff`: expected an object"));
        assert!(err(vec![("backoff", OptionValue::Array(vec![]))]).contains("`backoff`"));
    }

    #[test]
    fn get_ticket_is_a_function() {
        let o = parse(vec![("getTicket", OptionValue::Function)]);
        assert!(o.is_ok_and(|o| o.has_get_ticket && !o.has_get_token));
    }

    #[test]
    fn infinite_max_attempts_means_no_limit() {
        let o = parse(vec![(
            "backoff",
            object(vec![("maxAttempts", OptionValue::Number(f64::INFINITY))]),
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
