//! The crate's error type.

use crate::prelude::*;
use crate::text::cat;

/// Everything that can go wrong in the SDK, named after the cause.
///
/// In JavaScript these arrive as real [`Error`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/Error)
/// objects whose message is this type's `Display` text ([`Error::message`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// An option has the wrong type or an out-of-range value; `option` is its path
    /// (`backoff.factor`, `topics[2]`).
    #[error("{}", self.message())]
    InvalidOption {
        /// The option's path, as the caller spelled it.
        option: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option that the SDK does not know (often a typo).
    #[error("{}", self.message())]
    UnknownOption(String),
    /// The hub URL cannot be parsed or is not `http(s)`.
    #[error("{}", self.message())]
    InvalidUrl(String),
    /// A method of the JavaScript client got a wrong argument (`type` not a string,
    /// `listener` not a function).
    #[error("{}", self.message())]
    InvalidArgument {
        /// The argument's name.
        argument: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// `getTicket` threw, rejected, or resolved to something other than a non-empty string.
    /// Never thrown: the client counts it as a failed attempt and retries on its backoff;
    /// the `error` event (kind [`ErrorKind::TicketFailed`](crate::ErrorKind::TicketFailed))
    /// carries it as its `error` field, with what `getTicket` threw as the `cause`. The text is
    /// that event's message.
    #[error("{}", self.message())]
    TicketFailed(String),
    /// An event's data could not be decoded into the listener's type.
    #[error("{}", self.message())]
    Decode {
        /// The event type.
        event: String,
        /// The decoder's message.
        reason: String,
    },
}

impl Error {
    /// Every [`Error::kind`] the JavaScript API throws or hands to `error` listeners
    /// (`Decode` is the Rust API's only). The npm package's `EventwireErrorType` must list
    /// them (`tests/contract.rs` checks it).
    pub const JS_KINDS: [&'static str; 5] = [
        "invalid_option",
        "unknown_option",
        "invalid_url",
        "invalid_argument",
        "ticket_failed",
    ];

    /// Shorthand for [`Error::InvalidOption`].
    pub(crate) fn option(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidOption {
            option: option.into(),
            reason: reason.into(),
        }
    }

    /// The message (the `Display` text), built without `core::fmt` so that the JavaScript
    /// build, which turns errors into JS `Error`s, carries no formatting machinery.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidOption { option, reason } => {
                cat(&["eventwire: invalid option `", option, "`: ", reason])
            }
            Self::UnknownOption(option) => cat(&["eventwire: unknown option `", option, "`"]),
            Self::InvalidUrl(reason) => cat(&["eventwire: invalid option `url`: ", reason]),
            Self::InvalidArgument { argument, reason } => {
                cat(&["eventwire: invalid argument `", argument, "`: ", reason])
            }
            Self::TicketFailed(reason) => cat(&["eventwire: ", reason]),
            Self::Decode { event, reason } => {
                cat(&["eventwire: cannot decode `", event, "` event: ", reason])
            }
        }
    }
}

impl Error {
    /// The machine-readable kind, set as the JavaScript error's `type` property (the npm
    /// package turns it into an `EventwireError`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidOption { .. } => "invalid_option",
            Self::UnknownOption(_) => "unknown_option",
            Self::InvalidUrl(_) => "invalid_url",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::TicketFailed(_) => "ticket_failed",
            Self::Decode { .. } => "decode",
        }
    }

    /// The option at fault, if any (`url` for a bad URL).
    pub fn option_name(&self) -> Option<&str> {
        match self {
            Self::InvalidOption { option, .. } | Self::UnknownOption(option) => Some(option),
            Self::InvalidUrl(_) => Some("url"),
            Self::TicketFailed(_) => Some("getTicket"),
            Self::InvalidArgument { .. } | Self::Decode { .. } => None,
        }
    }
}

impl From<Error> for wasm_bindgen::JsValue {
    fn from(error: Error) -> Self {
        let js = js_sys::Error::new(&error.message());
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&js, &"type".into(), &error.kind().into());
        if let Some(option) = error.option_name() {
            let _ = js_sys::Reflect::set(&js, &"option".into(), &option.into());
        }
        js.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_kinds_are_every_kind_but_decode() {
        let all = [
            Error::option("a", "b"),
            Error::UnknownOption("a".into()),
            Error::InvalidUrl("a".into()),
            Error::InvalidArgument {
                argument: "a",
                reason: "b",
            },
            Error::TicketFailed("a".into()),
            Error::Decode {
                event: "a".into(),
                reason: "b".into(),
            },
        ];
        let thrown: Vec<&str> = all
            .iter()
            .map(Error::kind)
            .filter(|k| *k != "decode")
            .collect();
        assert_eq!(thrown, Error::JS_KINDS);
    }

    #[test]
    fn messages_name_the_cause() {
        let cases = [
            (
                Error::option("backoff.factor", "must be at least 1"),
                "eventwire: invalid option `backoff.factor`: must be at least 1",
            ),
            (
                Error::UnknownOption("topic".into()),
                "eventwire: unknown option `topic`",
            ),
            (
                Error::InvalidArgument {
                    argument: "listener",
                    reason: "expected a function",
                },
                "eventwire: invalid argument `listener`: expected a function",
            ),
            (
                Error::InvalidUrl("the URL is empty".into()),
                "eventwire: invalid option `url`: the URL is empty",
            ),
            (
                Error::TicketFailed("getTicket failed: offline".into()),
                "eventwire: getTicket failed: offline",
            ),
            (
                Error::Decode {
                    event: "order".into(),
                    reason: "missing field `id`".into(),
                },
                "eventwire: cannot decode `order` event: missing field `id`",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.message(), text);
            assert_eq!(error.to_string(), text);
        }
    }
}
