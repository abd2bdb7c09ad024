//! The hub's one error type, and how it answers over HTTP.
//!
//! Every variant maps to an HTTP status and a stable `code` string; the answer body is
//! `{"error": {"code": "...", "message": "..."}}` (see `docs/PROTOCOL.md`, "Errors").

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything that can go wrong when publishing, subscribing or authenticating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body is not JSON, or not of the expected shape.
    #[error("{0}")]
    MalformedJson(String),
    /// The request body was larger than the configured limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A publish batch with more events than the configured maximum.
    #[error("a batch holds at most {limit} events, got {got}")]
    BatchTooLarge {
        /// The limit.
        limit: usize,
        /// How many the batch held.
        got: usize,
    },
    /// The request body did not arrive within the body read timeout.
    #[error("the request body did not arrive within {}s", .0.as_secs_f64())]
    RequestTimeout(Duration),
    /// The request line's target is longer than the hub accepts.
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    /// The request's header section is larger than the hub accepts.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The request head is not valid HTTP/1.1.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// The body was not sent as `application/json`.
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// An event name that is empty, too long, reserved or spans several lines.
    #[error("{0}")]
    InvalidEvent(String),
    /// An idempotency key that is empty, too long or spans several lines.
    #[error("{0}")]
    InvalidId(String),
    /// More than one of `topic`, `clientId` and `userId` was given.
    #[error("{0}")]
    ConflictingTargets(String),
    /// A `topic`, `clientId` or `userId` target that is empty, too long or has commas or
    /// control characters.
    #[error("{0}")]
    InvalidTarget(String),
    /// A `Last-Event-ID` that is not an id this hub issues.
    #[error("Last-Event-ID {0:?} is not an event id issued by this hub (expected 1 to 20 decimal digits)")]
    InvalidLastEventId(String),
    /// A bad query parameter.
    #[error("{0}")]
    InvalidQuery(String),
    /// Auth is on and no token was sent.
    #[error("no token: send `Authorization: Bearer <jwt>`, the `token` query parameter or the auth cookie")]
    MissingToken,
    /// The token failed validation (signature, format, algorithm, claims).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token's header names, by `kid`, no key in the hub's key set: a key not added to
    /// the JWKS file yet, or already removed from it (key rotation), or a token from another
    /// issuer.
    #[error("unknown key: the header's `kid` names no key in the hub's key set")]
    UnknownKey,
    /// A ticket that is unknown, already used or expired.
    #[error("the ticket is unknown, already used or expired: get a new one from POST /tickets")]
    InvalidTicket,
    /// The token's `exp` is in the past.
    #[error("the token has expired")]
    TokenExpired,
    /// A valid token without the admin role on an admin endpoint.
    #[error("this endpoint needs the admin role")]
    Forbidden,
    /// The token does not allow this topic (its `eventwire` claim).
    #[error("the token does not allow the topic {0:?} (see its `eventwire` claim)")]
    ForbiddenTopic(String),
    /// No such endpoint.
    #[error("no endpoint at {0}")]
    NotFound(String),
    /// Wrong method for the endpoint.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A connection limit was reached.
    #[error("{0}")]
    TooManyConnections(String),
    /// The hub was set up with neither [`crate::Config::auth`] nor
    /// [`crate::Config::insecure_open_access`]: it serves nothing but `/healthz`.
    #[error("this hub has no authentication configured: set Config::auth (or, on a development machine only, Config::insecure_open_access)")]
    AuthNotConfigured,
    /// A setting that cannot work, found at start.
    #[error("{0}")]
    InvalidConfig(String),
    /// The broker (Redis) cannot be reached: nothing was published.
    #[error("the broker is unavailable: {0}")]
    BrokerUnavailable(String),
    /// The hub is shutting down and takes no new streams.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// With auth on, another user's connections hold this client id.
    #[error("client id {0:?} is held by another user")]
    ClientIdTaken(String),
    /// An admin dropped this client and refuses it for a while.
    #[error("client {client_id:?} was dropped by an admin; retry in {}s", retry_after.as_secs().max(1))]
    ClientPaused {
        /// The client id.
        client_id: String,
        /// How long until it is accepted again.
        retry_after: Duration,
    },
}

/// How long a client refused by a connection limit should wait before retrying.
pub(crate) const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(5);

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MalformedJson(_)
            | Error::InvalidEvent(_)
            | Error::InvalidId(_)
            | Error::ConflictingTargets(_)
            | Error::InvalidTarget(_)
            | Error::InvalidLastEventId(_)
            | Error::InvalidQuery(_)
            | Error::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Error::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Error::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::MissingToken
            | Error::InvalidToken(_)
            | Error::UnknownKey
            | Error::TokenExpired
            | Error::InvalidTicket => StatusCode::UNAUTHORIZED,
            Error::Forbidden | Error::ForbiddenTopic(_) => StatusCode::FORBIDDEN,
            Error::ClientIdTaken(_) => StatusCode::CONFLICT,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::ShuttingDown
            | Error::ClientPaused { .. }
            | Error::BrokerUnavailable(_)
            | Error::AuthNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Error::InvalidConfig(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code sent in the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MalformedJson(_) => "malformed_json",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::BatchTooLarge { .. } => "batch_too_large",
            Error::RequestTimeout(_) => "request_timeout",
            Error::UriTooLong(_) => "uri_too_long",
            Error::HeadersTooLarge(_) => "headers_too_large",
            Error::MalformedRequest(_) => "malformed_request",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::InvalidEvent(_) => "invalid_event",
            Error::InvalidId(_) => "invalid_id",
            Error::ConflictingTargets(_) => "conflicting_targets",
            Error::InvalidTarget(_) => "invalid_target",
            Error::InvalidLastEventId(_) => "invalid_last_event_id",
            Error::InvalidQuery(_) => "invalid_query",
            Error::MissingToken => "missing_token",
            Error::InvalidToken(_) => "invalid_token",
            Error::UnknownKey => "unknown_key",
            Error::TokenExpired => "token_expired",
            Error::InvalidTicket => "invalid_ticket",
            Error::Forbidden => "forbidden",
            Error::ForbiddenTopic(_) => "forbidden_topic",
            Error::ClientIdTaken(_) => "client_id_taken",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::TooManyConnections(_) => "too_many_connections",
            Error::ShuttingDown => "shutting_down",
            Error::BrokerUnavailable(_) => "broker_unavailable",
            Error::AuthNotConfigured => "auth_not_configured",
            Error::InvalidConfig(_) => "invalid_config",
            Error::ClientPaused { .. } => "client_paused",
        }
    }

    /// Prefixes the message with where in a batch the problem is, e.g. `[2].event: `.
    pub(crate) fn at_index(self, index: usize) -> Self {
        let at = |m: String| format!("[{index}].{m}");
        match self {
            Error::InvalidEvent(m) => Error::InvalidEvent(at(m)),
            Error::InvalidId(m) => Error::InvalidId(at(m)),
            Error::InvalidTarget(m) => Error::InvalidTarget(at(m)),
            Error::ConflictingTargets(m) => Error::ConflictingTargets(format!("[{index}]: {m}")),
            other => other,
        }
    }

    /// The JSON body of this error's answer: `{"error": {"code", "message"}}`.
    pub(crate) fn body(&self) -> String {
        json!({"error": {"code": self.code(), "message": self.to_string()}}).to_string()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response();
        let retry_after = match &self {
            Error::TooManyConnections(_) | Error::ShuttingDown | Error::BrokerUnavailable(_) => {
                Some(RETRY_AFTER_LIMIT)
            }
            Error::ClientPaused { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        if let Some(after) = retry_after {
            // Round up: a client told "0" would come straight back.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if matches!(
            self,
            Error::MissingToken | Error::InvalidToken(_) | Error::UnknownKey | Error::TokenExpired
        ) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant. The `match` makes a new variant a compile error here until it is
    /// listed, and so until the protocol table below is checked for it.
    fn every_variant() -> Vec<Error> {
        let s = String::new;
        let all = vec![
            Error::MalformedJson(s()),
            Error::PayloadTooLarge { limit: 1 },
            Error::BatchTooLarge { limit: 1, got: 2 },
            Error::RequestTimeout(Duration::from_secs(1)),
            Error::UriTooLong(1),
            Error::HeadersTooLarge(s()),
            Error::MalformedRequest(s()),
            Error::UnsupportedMediaType,
            Error::InvalidEvent(s()),
            Error::InvalidId(s()),
            Error::ConflictingTargets(s()),
            Error::InvalidTarget(s()),
            Error::InvalidLastEventId(s()),
            Error::InvalidQuery(s()),
            Error::MissingToken,
            Error::InvalidToken(s()),
            Error::UnknownKey,
            Error::InvalidTicket,
            Error::TokenExpired,
            Error::Forbidden,
            Error::ForbiddenTopic(s()),
            Error::NotFound(s()),
            Error::MethodNotAllowed,
            Error::TooManyConnections(s()),
            Error::AuthNotConfigured,
            Error::InvalidConfig(s()),
            Error::BrokerUnavailable(s()),
            Error::ShuttingDown,
            Error::ClientIdTaken(s()),
            Error::ClientPaused {
                client_id: s(),
                retry_after: Duration::from_secs(1),
            },
        ];
        for e in &all {
            match e {
                Error::MalformedJson(_)
                | Error::PayloadTooLarge { .. }
                | Error::BatchTooLarge { .. }
                | Error::RequestTimeout(_)
                | Error::UriTooLong(_)
                | Error::HeadersTooLarge(_)
                | Error::MalformedRequest(_)
                | Error::UnsupportedMediaType
                | Error::InvalidEvent(_)
                | Error::InvalidId(_)
                | Error::ConflictingTargets(_)
                | Error::InvalidTarget(_)
                | Error::InvalidLastEventId(_)
                | Error::InvalidQuery(_)
                | Error::MissingToken
                | Error::InvalidToken(_)
                | Error::UnknownKey
                | Error::InvalidTicket
                | Error::TokenExpired
                | Error::Forbidden
                | Error::ForbiddenTopic(_)
                | Error::NotFound(_)
                | Error::MethodNotAllowed
                | Error::TooManyConnections(_)
                | Error::AuthNotConfigured
                | Error::InvalidConfig(_)
                | Error::BrokerUnavailable(_)
                | Error::ShuttingDown
                | Error::ClientIdTaken(_)
                | Error::ClientPaused { .. } => {}
            }
        }
        all
    }

    /// `(status, code)` of every row of the error table in docs/PROTOCOL.md.
    fn protocol_table() -> Vec<(u16, String)> {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let section = doc
            .split("\n## Errors\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/PROTOCOL.md has an `## Errors` section");
        section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let status = cells.get(1)?.parse().ok()?;
                let code = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status, code.to_owned()))
            })
            .collect()
    }

    #[test]
    fn every_error_a_client_can_get_is_in_the_protocol_table_with_its_status() {
        let table = protocol_table();
        assert!(table.len() > 20, "the error table was not found: {table:?}");
        let mut answered: Vec<(u16, String)> = every_variant()
            .iter()
            // A bad setting stops the hub at start; it never reaches a client.
            .filter(|e| !matches!(e, Error::InvalidConfig(_)))
            .map(|e| (e.status().as_u16(), e.code().to_owned()))
            .collect();
        answered.sort();
        answered.dedup();
        let mut documented = table.clone();
        documented.sort();
        assert_eq!(
            answered, documented,
            "Error::status()/code() and the `## Errors` table of docs/PROTOCOL.md disagree"
        );
    }

    #[test]
    fn codes_are_distinct_snake_case_names() {
        let mut codes: Vec<&str> = every_variant().iter().map(Error::code).collect();
        assert!(codes
            .iter()
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n, "two variants share a code");
    }
}
