//! Hub settings: heartbeats, history, limits, auth and CORS.
//!
//! ```
//! use std::time::Duration;
//! use eventwire_server::{Auth, Config};
//!
//! let mut config = Config::default();
//! config.heartbeat = Duration::from_secs(10);
//! config.history_size = 5_000;
//! config.auth = Some(Auth::hs256(b"a long random secret"));
//! ```

use std::time::Duration;

use crate::auth::Auth;

/// Everything the hub and its router can be tuned with. Start from [`Config::default`]
/// (sensible production defaults, auth off) and change fields.
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
    /// Events queued per connection before it is cut as a slow consumer. Default 100.
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
    /// JWT verification; `None` leaves every endpoint open (dev mode).
    pub auth: Option<Auth>,
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
            queue_capacity: 100,
            max_connections: 10_000,
            max_connections_per_client: 16,
            max_connections_per_user: 64,
            idle_timeout: None,
            write_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            auth: None,
            token_cookie: "eventwire_token".into(),
            cors: Cors::Off,
        }
    }
}
