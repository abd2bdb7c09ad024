//! Hub settings: heartbeats, history, limits, auth and CORS.
//!
//! ```
//! use std::time::Duration;
//! use eventwire_server::{Auth, Config};
//!
//! let mut config = Config::default();
//! config.heartbeat = Duration::from_secs(10);
//! config.history_size = 5_000;
//! config.auth = Some(Auth::hs256(b"a random secret of at least 32 bytes")?);
//! # Ok::<(), eventwire_server::Error>(())
//! ```

use std::time::Duration;

use crate::auth::Auth;

/// Everything the hub and its router can be tuned with. Start from [`Config::default`]
/// (production defaults; set [`Config::auth`], or nothing but `/healthz` is served) or
/// [`Config::development`], and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Interval between heartbeats on every stream. Default 15 s.
    pub heartbeat: Duration,
    /// Send heartbeats as a named `__heartbeat` event instead of an SSE comment. Default off.
    pub heartbeat_event: bool,
    /// The `retry:` hint sent on open and before `__shutdown`. Default 2 s.
    pub retry: Duration,
    /// How many published events the history keeps for replay. Default 1000.
    pub history_size: usize,
    /// How long an event stays in the history. Default 5 minutes.
    pub history_ttl: Duration,
    /// Publish calls queued per connection before it is cut as a slow consumer. Default 1024:
    /// a burst of that many publish calls is absorbed by a reader that keeps up, and a reader
    /// that falls behind for good is cut by this cap or [`Config::max_lag`], whichever comes
    /// first. A queue holds pointers to events shared by every stream, not copies.
    pub queue_capacity: usize,
    /// Connections on this hub. Default 10 000.
    pub max_connections: usize,
    /// Connections per client id. Default 16.
    pub max_connections_per_client: usize,
    /// Connections per user. Default 64.
    pub max_connections_per_user: usize,
    /// End a stream that received no event for this long. Default off.
    pub idle_timeout: Option<Duration>,
    /// Disconnect a peer whose socket accepts no bytes for this long (it stopped reading).
    /// Applies to connections accepted by [`crate::serve`]. Default 30 s.
    pub write_timeout: Duration,
    /// Largest request body accepted by `/publish` and `/test/echo`. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Most events one `POST /publish` batch may hold. Default 1000.
    pub max_batch: usize,
    /// Most topics one connection may join. Default 64.
    pub max_topics_per_connection: usize,
    /// Most entries in one connection's `events` filter. Default 64.
    pub max_event_filters: usize,
    /// Cut a connection whose oldest unwritten event is older than this: a reader that
    /// drains too slowly to keep up, but never slowly enough to fill its queue. Default 30 s.
    pub max_lag: Duration,
    /// Close a connection whose request head has not fully arrived this long after the
    /// connection opened (or after its previous response). Applies to connections accepted
    /// by [`crate::serve`]. Default 10 s.
    pub header_read_timeout: Duration,
    /// Answer `408 request_timeout` when a request body has not fully arrived this long after
    /// its head. Default 10 s.
    pub body_read_timeout: Duration,
    /// Connections accepted by [`crate::serve`] that are not (yet) event streams: requests in
    /// progress, idle keep-alive connections, sockets that have sent nothing. Past it the
    /// oldest such connection is closed to make room. Default 1024.
    pub max_pending_connections: usize,
    /// The kernel send buffer of each accepted socket, in bytes (`SO_SNDBUF`; Linux doubles
    /// it). Bounds the bytes that sit unsent for a peer that stops reading before the write
    /// timeout or the queue limit cuts it. `None` keeps the system's default (which grows to
    /// several MiB). Default 64 KiB.
    pub send_buffer_bytes: Option<usize>,
    /// JWT verification: an HS256 secret ([`Auth::hs256`]), an RSA public key
    /// ([`Auth::rs256_pem`]) or the public keys of a JWKS file ([`Auth::key_set`] with a
    /// [`crate::auth::KeySet`], which [`crate::auth::KeySet::reload`] reads again in place:
    /// the binary's `--jwt-jwks`). With `None`, every endpoint but `/healthz` answers
    /// `503 auth_not_configured`, unless [`Config::insecure_open_access`] is set.
    pub auth: Option<Auth>,
    /// Serve every endpoint, publishing and admin included, to anyone, with no token: for a
    /// development machine only (the binary's `--dev`). Default off: running without
    /// authentication is a choice made by name, never by leaving `auth` empty.
    pub insecure_open_access: bool,
    /// A bearer token that grants `GET /metrics` and nothing else, so a scraper needs no
    /// token that could publish. Default none (admins only).
    pub metrics_token: Option<String>,
    /// Name of the cookie a token may be read from. Default `eventwire_token`.
    pub token_cookie: String,
    /// Which browser origins may call the hub.
    pub cors: Cors,
}

/// Which origins get CORS headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cors {
    /// No CORS headers: same-origin pages only (or CORS handled by the embedding app).
    #[default]
    Off,
    /// Any origin, credentials allowed (the request's origin is mirrored). Dev mode.
    Any,
    /// These exact origins, e.g. `https://app.example.com`, credentials allowed.
    Origins(Vec<String>),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(15),
            heartbeat_event: false,
            retry: Duration::from_secs(2),
            history_size: 1000,
            history_ttl: Duration::from_secs(300),
            queue_capacity: 1024,
            max_connections: 10_000,
            max_connections_per_client: 16,
            max_connections_per_user: 64,
            idle_timeout: None,
            write_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            max_batch: 1000,
            max_topics_per_connection: 64,
            max_event_filters: 64,
            max_lag: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_pending_connections: 1024,
            send_buffer_bytes: Some(64 * 1024),
            auth: None,
            insecure_open_access: false,
            metrics_token: None,
            token_cookie: "eventwire_token".into(),
            cors: Cors::Off,
        }
    }
}

/// The range every numeric setting must lie in, checked by [`Config::validate`].
struct Range {
    name: &'static str,
    value: u128,
    min: u128,
    max: u128,
    unit: &'static str,
}

impl Config {
    /// Development settings: no authentication ([`Config::insecure_open_access`]) and any
    /// CORS origin, like the binary's `--dev`. Anyone who reaches the hub can publish and
    /// read every event: never in production.
    pub fn development() -> Self {
        Config {
            insecure_open_access: true,
            cors: Cors::Any,
            ..Config::default()
        }
    }

    /// Checks every numeric setting against its allowed range. [`crate::Hub::new`] calls it;
    /// the binary calls it at start so that a bad flag is a clear message, not a failure on
    /// the first request.
    ///
    /// # Errors
    /// A message naming the setting, its value and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        const DAY_MS: u128 = 86_400_000;
        let ms = |name, d: Duration, min: u128, max: u128| Range {
            name,
            value: d.as_millis(),
            min,
            max,
            unit: " ms",
        };
        let n = |name, v: usize, min: u128, max: u128| Range {
            name,
            value: v as u128,
            min,
            max,
            unit: "",
        };
        let mut ranges = vec![
            ms("heartbeat", self.heartbeat, 100, DAY_MS),
            ms("retry", self.retry, 0, DAY_MS),
            ms("history_ttl", self.history_ttl, 0, 30 * DAY_MS),
            ms("write_timeout", self.write_timeout, 100, DAY_MS),
            ms("max_lag", self.max_lag, 100, DAY_MS),
            ms(
                "header_read_timeout",
                self.header_read_timeout,
                100,
                3_600_000,
            ),
            ms("body_read_timeout", self.body_read_timeout, 100, 3_600_000),
            n("history_size", self.history_size, 0, 10_000_000),
            n("queue_capacity", self.queue_capacity, 1, 1_000_000),
            n("max_connections", self.max_connections, 1, 10_000_000),
            n(
                "max_connections_per_client",
                self.max_connections_per_client,
                1,
                10_000_000,
            ),
            n(
                "max_connections_per_user",
                self.max_connections_per_user,
                1,
                10_000_000,
            ),
            n("max_body_bytes", self.max_body_bytes, 64, 1 << 30),
            n("max_batch", self.max_batch, 1, 1_000_000),
            n(
                "max_topics_per_connection",
                self.max_topics_per_connection,
                1,
                100_000,
            ),
            n("max_event_filters", self.max_event_filters, 1, 100_000),
            n(
                "max_pending_connections",
                self.max_pending_connections,
                1,
                10_000_000,
            ),
        ];
        if let Some(idle) = self.idle_timeout {
            ranges.push(ms("idle_timeout", idle, 100, 30 * DAY_MS));
        }
        if let Some(bytes) = self.send_buffer_bytes {
            ranges.push(n("send_buffer_bytes", bytes, 4096, 1 << 30));
        }
        for r in ranges {
            if r.value < r.min || r.value > r.max {
                return Err(format!(
                    "{} = {}{unit} is out of range: it must be from {} to {}{unit}",
                    r.name,
                    r.value,
                    r.min,
                    r.max,
                    unit = r.unit
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_values_are_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let config = Config {
            queue_capacity: 2_305_843_009_213_693_952,
            ..Config::default()
        };
        let message = config.validate().unwrap_err();
        assert!(message.contains("queue_capacity"), "{message}");
        let config = Config {
            heartbeat: Duration::from_secs(10 * 86_400),
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().contains("heartbeat"));
        let config = Config {
            max_batch: 0,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().contains("max_batch"));
    }
}
