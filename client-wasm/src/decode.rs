//! Payload decoding: the rule that turns an event's `data` string into a value, the hub's
//! system events, and (feature `typed`) decoding into a Rust type.
//!
//! The rule: `data` is the JSON value when the payload parses as JSON, otherwise the string
//! itself (some apps send plain text). The JavaScript build applies it with the browser's
//! [`JSON.parse`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/JSON/parse)
//! on the payload as a JS string (in the browser glue), so serde stays out of it;
//! `decode_typed` applies it with serde for Rust types.

/// The hub's system events (see the protocol's "System events").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    /// `__connected`: first event of every stream, announces `heartbeatSecs`.
    Connected,
    /// `__heartbeat`: the hub is alive; its `id:` (when present) is the connection's position.
    Heartbeat,
    /// `__position`: dispatched only to move the client's last event id (after a replay).
    Position,
    /// `__gap`: the history no longer reaches back to our Last-Event-ID.
    Gap,
    /// `__error`: the hub ends this stream on purpose; reconnect after `retryMs`.
    Error,
    /// `__shutdown`: the hub is going away; reconnect after `retryMs`.
    Shutdown,
}

impl SystemEvent {
    /// Every system event, for attaching listeners.
    pub const ALL: [SystemEvent; 6] = [
        Self::Connected,
        Self::Heartbeat,
        Self::Position,
        Self::Gap,
        Self::Error,
        Self::Shutdown,
    ];

    /// The event name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connected => "__connected",
            Self::Heartbeat => "__heartbeat",
            Self::Position => "__position",
            Self::Gap => "__gap",
            Self::Error => "__error",
            Self::Shutdown => "__shutdown",
        }
    }

    /// The system event with that wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// Names of the SDK's lifecycle events, which listeners get from the SDK rather than from the
/// stream.
/// (`leader` comes from the npm package's tab sharing; it is never read from the stream.)
pub const LIFECYCLE_EVENTS: [&str; 6] = [
    "open",
    "statechange",
    "reconnecting",
    "gap",
    "error",
    "leader",
];

/// Whether `event_type` is a lifecycle event (not attached to the `EventSource`).
pub fn is_lifecycle(event_type: &str) -> bool {
    LIFECYCLE_EVENTS.contains(&event_type)
}

/// Turns a number read from a system event (`retryMs`, `heartbeatSecs` × 1000) into
/// milliseconds: `None` when missing, negative, or not finite; capped at one day.
pub fn millis_hint(value: Option<f64>) -> Option<u32> {
    let v = value?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(crate::num::round(v.min(86_400_000.0)) as u32)
}

/// Decodes `raw` into `T` with the same rule as the JavaScript build: JSON first, and when the
/// payload is not JSON, the string itself (so `T = String` accepts plain text).
///
/// # Errors
/// [`crate::Error::Decode`] with serde's message when neither works.
#[cfg(feature = "typed")]
pub fn decode_typed<T: serde::de::DeserializeOwned>(
    event: &str,
    raw: &str,
) -> Result<T, crate::Error> {
    match serde_json::from_str::<T>(raw) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            if serde_json::from_str::<serde_json::Value>(raw).is_err() {
                if let Ok(v) = serde_json::from_value::<T>(serde_json::Value::String(raw.into())) {
                    return Ok(v);
                }
            }
            Err(crate::Error::Decode {
                event: event.into(),
                reason: json_err.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_event_names_round_trip() {
        for e in SystemEvent::ALL {
            assert_eq!(SystemEvent::from_name(e.name()), Some(e));
            assert!(e.name().starts_with("__"));
        }
        assert_eq!(SystemEvent::from_name("notification"), None);
        assert!(is_lifecycle("gap") && is_lifecycle("error") && !is_lifecycle("__gap"));
    }

    #[test]
    fn millis_hints_are_sanitised() {
        assert_eq!(millis_hint(Some(2000.0)), Some(2000));
        assert_eq!(millis_hint(Some(-1.0)), None);
        assert_eq!(millis_hint(Some(f64::NAN)), None);
        assert_eq!(millis_hint(None), None);
        assert_eq!(millis_hint(Some(1e12)), Some(86_400_000));
    }

    #[cfg(feature = "typed")]
    mod typed {
        use super::super::decode_typed;

        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Note {
            message: String,
        }

        #[test]
        fn decodes_json_into_the_type() {
            let n: Result<Note, _> = decode_typed("n", r#"{"message":"hi"}"#);
            assert_eq!(
                n.ok(),
                Some(Note {
                    message: "hi".into()
                })
            );
        }

        #[test]
        fn plain_text_decodes_as_string_and_json_strings_unwrap() {
            assert_eq!(
                decode_typed::<String>("p", "75 apples").ok(),
                Some("75 apples".into())
            );
            assert_eq!(
                decode_typed::<String>("p", "\"quoted\"").ok(),
                Some("quoted".into())
            );
            assert_eq!(decode_typed::<u32>("p", "75").ok(), Some(75));
        }

        #[test]
        fn mismatches_are_decode_errors_naming_the_event() {
            let e = decode_typed::<Note>("notification", r#"{"msg":1}"#).err();
            assert!(
                matches!(e, Some(crate::Error::Decode { ref event, .. }) if event == "notification")
            );
            assert!(decode_typed::<Note>("n", "not json").is_err());
        }
    }
}
