//! What gets published: [`Message`], its [`Target`], typed [`Event`]s, and the SSE wire
//! encoding, done once per event and shared by every subscriber.
//!
//! ```
//! use eventwire_server::{Event, Message, Target};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct CacheUpdated { key: String }
//!
//! impl Event for CacheUpdated {
//!     const NAME: &'static str = "cache_updated";
//! }
//!
//! let message = Message::new("notification", serde_json::json!({"message": "hi"}))
//!     .to(Target::Topic("orders".into()));
//! assert_eq!(message.event(), "notification");
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::Error;

/// Longest event name, idempotency key, topic, client id or user id, in characters.
pub const MAX_NAME_LEN: usize = 128;

/// Event names the eventwire SDK uses for its own lifecycle events. The hub refuses them as
/// application event names, so an application event can never be mistaken for (or hidden
/// behind) the SDK's `open`, `error`, `gap`, `reconnecting`, `statechange` or `leader`.
pub const RESERVED_EVENT_NAMES: [&str; 6] = [
    "open",
    "error",
    "gap",
    "reconnecting",
    "statechange",
    "leader",
];

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Target {
    /// Every connection.
    #[default]
    All,
    /// Connections subscribed to this topic.
    Topic(String),
    /// Every connection of this client id.
    Client(String),
    /// Every connection of this user id.
    User(String),
    /// The connections of `client_id` that belong to `user_id` (used by `/test/echo`).
    ClientOfUser {
        /// The client id.
        client_id: String,
        /// The user the connections must belong to.
        user_id: String,
    },
    /// Admin connections that asked for the hub's monitoring events (`monitor=1`).
    Monitors,
}

/// One event to publish: a type name, a JSON payload, a [`Target`] and an optional
/// idempotency key.
///
/// The payload is kept as JSON text, so every number reaches subscribers with exactly the
/// digits it was published with (no float round trip, no 64-bit limit).
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) event: String,
    pub(crate) data: Box<RawValue>,
    pub(crate) target: Target,
    pub(crate) key: Option<String>,
    /// Delivered live only, never kept for replay (monitoring, echo).
    pub(crate) ephemeral: bool,
}

impl Message {
    /// A message for every connection. Validation happens when it is published.
    pub fn new(event: impl Into<String>, data: Value) -> Self {
        // A `Value` always serialises (its map keys are strings), so this cannot fail.
        #[allow(clippy::expect_used)]
        let data = serde_json::value::to_raw_value(&data).expect("a JSON value serialises");
        Message::from_raw(event, data)
    }

    /// A message whose payload is JSON text already checked by the caller (it is a
    /// [`RawValue`]); insignificant white space is removed, nothing else changes.
    pub fn from_raw(event: impl Into<String>, data: Box<RawValue>) -> Self {
        let data = match compact_json(data.get()) {
            std::borrow::Cow::Borrowed(_) => data,
            // Removing white space outside strings keeps the text valid JSON.
            std::borrow::Cow::Owned(text) => RawValue::from_string(text).unwrap_or(data),
        };
        Message {
            event: event.into(),
            data,
            target: Target::All,
            key: None,
            ephemeral: false,
        }
    }

    /// A message carrying a typed [`Event`].
    ///
    /// # Errors
    /// [`Error::MalformedJson`] when `event` cannot be serialised to JSON (a map with
    /// non-string keys, for example).
    pub fn typed<E: Event>(event: &E) -> Result<Self, Error> {
        let data = serde_json::value::to_raw_value(event)
            .map_err(|e| Error::MalformedJson(format!("cannot serialise {}: {e}", E::NAME)))?;
        Ok(Message::from_raw(E::NAME, data))
    }

    /// Sends the message to `target` instead of every connection.
    #[must_use]
    pub fn to(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Sets an idempotency key: publishing the same key again while the first event is in
    /// the history does not send it twice.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Delivers the message live only: it is not kept for replay and takes no history slot.
    #[must_use]
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// The event type.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The payload, as compact JSON text.
    pub fn data(&self) -> &RawValue {
        &self.data
    }

    /// Who receives it.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Checks every message of a batch; the error names the index when there are several.
    pub(crate) fn validate_all(messages: &[Message]) -> Result<(), Error> {
        for (i, message) in messages.iter().enumerate() {
            message
                .validate()
                .map_err(|e| if messages.len() > 1 { e.at_index(i) } else { e })?;
        }
        Ok(())
    }

    /// Checks the event name and idempotency key.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_event_name(&self.event)?;
        if let Some(key) = &self.key {
            validate_line("id", key).map_err(Error::InvalidId)?;
        }
        Ok(())
    }
}

/// A payload type that declares its event name, so `hub.send(&value)` needs no string.
///
/// This is the server half of typed events; the client SDK decodes the same JSON into the
/// same (or a compatible) type.
pub trait Event: Serialize {
    /// The SSE event type this payload is sent as. Must not start with `__`.
    const NAME: &'static str;
}

/// What publishing one message did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Receipt {
    /// Always `true`: failures are errors, not receipts.
    pub ok: bool,
    /// The hub-assigned event id.
    pub id: String,
    /// Connections on this hub the event was queued to.
    pub delivered: usize,
    /// `true` when the idempotency key was seen before and nothing was sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Parses the body of `POST /publish`: one event object, or an array of at most `max_batch`
/// of them. Payloads keep their exact JSON text. Errors name the element of an array.
///
/// # Errors
/// [`Error::MalformedJson`] for text that is not JSON or not of the expected shape, the
/// validation errors of each message (names, sizes, targets), and [`Error::BatchTooLarge`].
pub fn parse_publish_body(body: &[u8], max_batch: usize) -> Result<Vec<Message>, Error> {
    let malformed = |e: serde_json::Error| Error::MalformedJson(e.to_string());
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
            if items.len() > max_batch {
                return Err(Error::BatchTooLarge {
                    limit: max_batch,
                    got: items.len(),
                });
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    publish_item(item).map_err(|e| match e {
                        Error::MalformedJson(m) => Error::MalformedJson(format!("[{i}]: {m}")),
                        other => other.at_index(i),
                    })
                })
                .collect()
        }
        _ => {
            let item: &RawValue = serde_json::from_slice(body).map_err(malformed)?;
            Ok(vec![publish_item(item)?])
        }
    }
}

fn publish_item(item: &RawValue) -> Result<Message, Error> {
    if !item.get().starts_with('{') {
        return Err(Error::MalformedJson(
            "expected an event object, or an array of them".into(),
        ));
    }
    serde_json::from_str::<PublishBody>(item.get())
        .map_err(|e| Error::MalformedJson(e.to_string()))?
        .into_message()
}

/// Removes white space outside strings from valid JSON text; borrows when there is none.
pub(crate) fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let needs = bytes.iter().any(|&b| {
        let ws = !in_string && matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
        ws
    });
    if !needs {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

impl Receipt {
    /// A fresh event's receipt.
    pub fn new(id: u64, delivered: usize) -> Self {
        Receipt {
            ok: true,
            id: id.to_string(),
            delivered,
            duplicate: false,
        }
    }

    /// The receipt of a message whose idempotency key was already published as `id`.
    pub fn duplicate(id: u64) -> Self {
        Receipt {
            ok: true,
            id: id.to_string(),
            delivered: 0,
            duplicate: true,
        }
    }
}

/// The JSON body of `POST /publish` (one element of it, when it is an array).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PublishBody {
    event: String,
    data: Option<Box<RawValue>>,
    id: Option<String>,
    topic: Option<String>,
    client_id: Option<String>,
    user_id: Option<String>,
}

impl PublishBody {
    pub(crate) fn into_message(self) -> Result<Message, Error> {
        let target = match (self.topic, self.client_id, self.user_id) {
            (None, None, None) => Target::All,
            (Some(t), None, None) => Target::Topic(t),
            (None, Some(c), None) => Target::Client(c),
            (None, None, Some(u)) => Target::User(u),
            (None, Some(client_id), Some(user_id)) => Target::ClientOfUser { client_id, user_id },
            _ => return Err(Error::ConflictingTargets(
                "give at most one of `topic`, `clientId`, `userId` (or `clientId` with `userId`)"
                    .into(),
            )),
        };
        let named: Vec<(&str, &String)> = match &target {
            Target::Topic(t) => vec![("topic", t)],
            Target::Client(c) => vec![("clientId", c)],
            Target::User(u) => vec![("userId", u)],
            Target::ClientOfUser { client_id, user_id } => {
                vec![("clientId", client_id), ("userId", user_id)]
            }
            _ => Vec::new(),
        };
        for (field, name) in named {
            validate_name(field, name).map_err(Error::InvalidTarget)?;
        }
        let data = match self.data {
            Some(data) => data,
            None => serde_json::value::to_raw_value(&Value::Null)
                .map_err(|e| Error::MalformedJson(e.to_string()))?,
        };
        let mut message = Message::from_raw(self.event, data).to(target);
        message.key = self.id;
        message.validate()?;
        Ok(message)
    }
}

/// An event name: 1 to 128 characters, one line, not reserved.
pub(crate) fn validate_event_name(name: &str) -> Result<(), Error> {
    validate_line("event", name).map_err(Error::InvalidEvent)?;
    if name.starts_with("__") {
        return Err(Error::InvalidEvent(format!(
            "event: {name:?} is reserved: names starting with `__` are the hub's system events"
        )));
    }
    if RESERVED_EVENT_NAMES.contains(&name) {
        return Err(Error::InvalidEvent(format!(
            "event: {name:?} is reserved: the SDK uses it for its own lifecycle events \
             (reserved: open, error, gap, reconnecting, statechange, leader)"
        )));
    }
    Ok(())
}

/// A value that goes on an SSE field line: non-empty, not too long, no line break.
fn validate_line(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(format!("{field}: longer than {MAX_NAME_LEN} characters"));
    }
    if value.contains(['\n', '\r']) {
        return Err(format!("{field}: must not contain a line break"));
    }
    if value.contains('\0') {
        return Err(format!("{field}: must not contain a NUL character"));
    }
    Ok(())
}

/// A topic, client id or user id: like [`validate_line`], and no control characters or commas
/// (they are given as comma lists in query strings).
pub(crate) fn validate_name(field: &str, value: &str) -> Result<(), String> {
    validate_line(field, value)?;
    if value.contains(|c: char| c.is_control() || c == ',') {
        return Err(format!(
            "{field}: {value:?} must not contain commas or control characters"
        ));
    }
    Ok(())
}

/// Parses a `Last-Event-ID`: empty means none; otherwise 1 to 20 decimal digits that fit a u64.
///
/// # Errors
/// [`Error::InvalidLastEventId`] for anything else.
pub fn parse_last_event_id(raw: &str) -> Result<Option<u64>, Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidLastEventId(raw.chars().take(64).collect()));
    }
    raw.parse()
        .map(Some)
        .map_err(|_| Error::InvalidLastEventId(raw.into()))
}

/// The current time as RFC 3339 with milliseconds, as system events carry it.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

// --- wire encoding -------------------------------------------------------------------------

/// Encodes an application event as its SSE bytes: `id:`, `event:`, one `data:` line per line
/// of `data` (CRLF, LF and CR all end a line), and the blank line that dispatches it. `event`
/// must not contain a line break (publishing checks that). See the
/// [event stream format](https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
pub fn encode_event(id: u64, event: &str, data: &str) -> Bytes {
    encode_frame(Some(id), event, data)
}

/// Encodes a system event. System events carry no `id:` line, so they never move a client's
/// Last-Event-ID, except where the hub states a position on purpose (`id`).
pub(crate) fn encode_system(id: Option<u64>, event: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    encode_frame(id, event, &data)
}

// --- system event payloads (docs/PROTOCOL.md, "System events") -----------------------------

/// `__connected`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connected<'a> {
    pub(crate) connection_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) heartbeat_secs: u64,
    pub(crate) heartbeat_event: bool,
    /// The `retry:` hint, for clients that cannot read `retry:` lines (EventSource hides it).
    pub(crate) retry_ms: u64,
    pub(crate) replay_count: usize,
    pub(crate) server_time: String,
}

/// `__gap`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Gap {
    pub(crate) last_event_id: String,
    pub(crate) oldest_available_id: Option<String>,
}

/// `__heartbeat`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Heartbeat {
    server_time: String,
}

/// `__error`: why the hub ends a stream on purpose.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ended<'a> {
    pub(crate) reason: &'a str,
    pub(crate) message: &'a str,
    pub(crate) retry_ms: u64,
}

/// `__shutdown`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Shutdown {
    pub(crate) retry_ms: u64,
}

/// `__position`: a dispatched event whose only job is its `id:` line, the position a client
/// resumes from (sent after a replay). A dispatched event, not an id-only block, so that
/// clients which see ids only through events (every EventSource wrapper) learn it too.
pub(crate) fn encode_position(id: u64) -> Bytes {
    encode_frame(Some(id), "__position", "{}")
}

/// A heartbeat (`__heartbeat` event or comment), carrying the connection's position if given.
pub(crate) fn encode_heartbeat(position: Option<u64>, as_event: bool) -> Bytes {
    if as_event {
        return encode_system(
            position,
            "__heartbeat",
            &Heartbeat {
                server_time: now_rfc3339(),
            },
        );
    }
    let mut buf = BytesMut::with_capacity(40);
    if let Some(id) = position {
        put_id(&mut buf, id);
    }
    buf.put_slice(b": heartbeat\n\n");
    buf.freeze()
}

fn encode_frame(id: Option<u64>, event: &str, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + event.len() + 40);
    if let Some(id) = id {
        put_id(&mut buf, id);
    }
    put_event_and_data(&mut buf, event, data);
    buf.freeze()
}

fn put_id(buf: &mut BytesMut, id: u64) {
    buf.put_slice(b"id: ");
    let mut digits = itoa::Buffer::new();
    buf.put_slice(digits.format(id).as_bytes());
    buf.put_slice(b"\n");
}

/// Encodes a `retry:` hint.
pub(crate) fn encode_retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

fn put_event_and_data(buf: &mut BytesMut, event: &str, data: &str) {
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_bytes());
    buf.put_slice(b"\n");
    // SSE line terminators are CRLF, LF and CR; each line of the payload gets its own field.
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        buf.put_slice(b"data: ");
        buf.put_slice(&rest.as_bytes()[..end]);
        buf.put_slice(b"\n");
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    buf.put_slice(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frame_is_byte_exact() {
        let frame = encode_event(42, "notification", r#"{"message":"hi"}"#);
        assert_eq!(
            &frame[..],
            b"id: 42\nevent: notification\ndata: {\"message\":\"hi\"}\n\n"
        );
    }

    #[test]
    fn multi_line_data_gets_one_field_per_line() {
        let frame = encode_event(1, "t", "a\nb\r\nc\rd");
        assert_eq!(
            &frame[..],
            b"id: 1\nevent: t\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        let frame = encode_event(2, "t", "");
        assert_eq!(&frame[..], b"id: 2\nevent: t\ndata: \n\n");
    }

    #[test]
    fn system_frames_have_no_id() {
        let frame = encode_system(None, "__gap", &serde_json::json!({"lastEventId": "7"}));
        assert_eq!(
            &frame[..],
            b"event: __gap\ndata: {\"lastEventId\":\"7\"}\n\n"
        );
    }

    #[test]
    fn event_names_are_checked() {
        assert!(validate_event_name("notification").is_ok());
        let long = "x".repeat(129);
        let malformed = ["", "__connected", "a\nb", "a\rb", &long];
        for bad in malformed.into_iter().chain(RESERVED_EVENT_NAMES) {
            assert!(matches!(
                validate_event_name(bad),
                Err(Error::InvalidEvent(_))
            ));
        }
    }

    #[test]
    fn last_event_ids_are_checked() {
        assert_eq!(parse_last_event_id("").ok(), Some(None));
        assert_eq!(parse_last_event_id("17").ok(), Some(Some(17)));
        for bad in [
            "abc",
            "-1",
            "1.5",
            "99999999999999999999",
            "123456789012345678901",
        ] {
            assert!(parse_last_event_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payload_text_is_kept_exactly_and_compacted() {
        let body = br#"{"event":"n","data": [0.9323302868881393, 18446744073709551617, 1e2, {"a b": "x\" y\n"}]}"#;
        let messages = parse_publish_body(body, 10).unwrap();
        assert_eq!(
            messages[0].data().get(),
            r#"[0.9323302868881393,18446744073709551617,1e2,{"a b":"x\" y\n"}]"#
        );
        let absent = parse_publish_body(br#"{"event":"n"}"#, 10).unwrap();
        assert_eq!(absent[0].data().get(), "null");
    }

    #[test]
    fn batches_are_limited_and_shaped() {
        let batch = br#"[{"event":"a"},{"event":"b"},{"event":"c"}]"#;
        assert_eq!(parse_publish_body(batch, 3).unwrap().len(), 3);
        assert!(matches!(
            parse_publish_body(batch, 2),
            Err(Error::BatchTooLarge { limit: 2, got: 3 })
        ));
        for bad in [&b"3"[..], b"[3]", b"\"x\"", b"{", b""] {
            assert!(matches!(
                parse_publish_body(bad, 10),
                Err(Error::MalformedJson(_))
            ));
        }
    }

    #[test]
    fn conflicting_targets_are_rejected() {
        let body: PublishBody =
            serde_json::from_str(r#"{"event":"e","topic":"t","clientId":"c"}"#).unwrap();
        assert!(matches!(
            body.into_message(),
            Err(Error::ConflictingTargets(_))
        ));
    }
}
