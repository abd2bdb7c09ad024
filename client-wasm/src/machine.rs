//! The reconnect state machine: every decision the client makes, with no browser APIs.
//!
//! The browser glue feeds it [`Input`]s (what happened) and carries out the [`Command`]s it
//! issues (what to do) through the [`Io`] trait, as they come. Time and randomness come in
//! from outside, so every path is tested natively.
//!
//! Rules it implements (see the crate docs):
//! - the SDK owns every reconnect: on any `EventSource` failure (an `error` event, whatever
//!   the readyState: the browser's own retry, a fixed `retry:` delay with no jitter and no
//!   attempt count, is never left running) it closes the `EventSource`, waits the backoff
//!   delay (exponential, with jitter) and opens a new one, carrying the last event id as the
//!   `lastEventId` query parameter; every failure counts as an attempt and announces
//!   `reconnecting { attempt, delayMs }`;
//! - the hub's `retryMs` (from `__connected`, `__shutdown` or `__error`) is the floor of the
//!   first delay after a connection is lost ([`Backoff::delay_with_floor_ms`]);
//! - by default it never gives up (the delay is capped); with `maxAttempts` it ends CLOSED
//!   with `retries_exhausted` after that many failed attempts; attempts reset once a
//!   connection has stayed open for [`HEALTHY_AFTER_MS`];
//! - `__shutdown` / `__error` close the stream and reconnect after at least the hinted delay;
//! - the last event id is the `lastEventId` of the last dispatched event, exactly as the
//!   `EventSource` reports it: an empty `id:` line resets it (HTML spec);
//! - with `getTicket`, every attempt starts with a fresh ticket (they are single use) in the
//!   `ticket` query parameter, never a token; a ticket that does not come is a failed attempt
//!   (kind `ticket_failed`) on the same backoff;
//! - `online`, or a hidden page made visible while the connection is down, reconnect at once;
//! - the watchdog treats a connection that received nothing for the heartbeat timeout as dead;
//!   every connection asks for `__heartbeat` events (`heartbeat=event`), and the default
//!   timeout is armed as soon as `__connected` confirms them (`heartbeatEvent: true`).
//!
//! ```
//! use eventwire_client::machine::{Command, Input, Machine};
//! use eventwire_client::options::Options;
//!
//! let mut m = Machine::new("http://hub/events".into(), Options::default(), 1);
//! let mut cmds = Vec::new();
//! m.handle(Input::Connect, &mut cmds);
//! assert!(cmds.iter().any(|c| matches!(c, Command::OpenSource { .. })));
//! ```

use crate::prelude::*;
use crate::{
    backoff::Backoff,
    decode::millis_hint,
    options::Options,
    text::{cat, push_uint},
    url::with_query,
};

/// A connection that stayed open this long resets the attempt counter.
pub const HEALTHY_AFTER_MS: f64 = 10_000.0;

/// Default watchdog: this many heartbeat intervals without any data.
pub const WATCHDOG_HEARTBEATS: f64 = 2.5;

/// The client's `readyState`, with [`EventSource`](https://developer.mozilla.org/en-US/docs/Web/API/EventSource/readyState)'s numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    /// 0: connecting, or waiting to reconnect.
    Connecting = 0,
    /// 1: open.
    Open = 1,
    /// 2: closed (not started, closed by the app, or retries exhausted).
    Closed = 2,
}

impl ReadyState {
    /// From an `EventSource.readyState` number.
    pub fn from_number(n: u16) -> Self {
        match n {
            0 => Self::Connecting,
            1 => Self::Open,
            _ => Self::Closed,
        }
    }
}

/// The `kind` of an `error` lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection failed or was lost.
    Connection,
    /// A payload could not be decoded.
    Decode,
    /// `maxAttempts` reconnects failed; the client is CLOSED.
    RetriesExhausted,
    /// The hub ended the stream on purpose (`__error`) or reported an error.
    Server,
    /// `getTicket` threw, rejected or resolved to no ticket: a failed attempt, retried on the
    /// backoff like any other.
    TicketFailed,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::Connection,
        Self::Decode,
        Self::RetriesExhausted,
        Self::Server,
        Self::TicketFailed,
    ];

    /// The kind named by [`ErrorKind::as_str`]'s string.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The string JavaScript sees.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Decode => "decode",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Server => "server",
            Self::TicketFailed => "ticket_failed",
        }
    }
}

/// A lifecycle event for listeners.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    /// `open`.
    Open,
    /// `statechange` with the new `readyState`.
    StateChange(ReadyState),
    /// `reconnecting`: retry `attempt` starts in `delay_ms`.
    Reconnecting {
        /// 1-based retry number.
        attempt: u32,
        /// Delay before it, in milliseconds.
        delay_ms: u32,
    },
    /// `error`.
    Error {
        /// What failed.
        kind: ErrorKind,
        /// A human-readable message.
        message: String,
    },
}

impl Lifecycle {
    /// The type listeners subscribe to for this event.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::StateChange(_) => "statechange",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Error { .. } => "error",
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The app called `connect()`.
    Connect,
    /// The app called `reconnect()`: reconnect now, reset the backoff.
    Reconnect,
    /// The app called `close()`.
    Close,
    /// What `getToken` (or `getTicket`) answered for connection `seq`: a string, nothing
    /// (`Ok(None)`: no token; for `getTicket` a failure), or the failure's message.
    TokenReady {
        /// The `seq` of the [`Command::FetchToken`] it answers.
        seq: u64,
        /// The token or ticket, or the failure's message.
        token: Result<Option<String>, String>,
    },
    /// The `EventSource` fired `open`.
    Opened {
        /// Current time in ms (any monotonic origin).
        now_ms: f64,
    },
    /// The `EventSource` for attempt `seq` could not be created (its constructor threw).
    OpenFailed {
        /// The `seq` of the [`Command::OpenSource`] that failed; a stale one is ignored.
        seq: u64,
        /// Why.
        message: String,
        /// Current time in ms.
        now_ms: f64,
    },
    /// The `EventSource` fired `error` (whatever its readyState: connection refused, a
    /// non-200 answer, a connection cut mid-stream).
    SourceError {
        /// Current time in ms.
        now_ms: f64,
    },
    /// Any event was dispatched on the stream (application or system event). The hot path:
    /// it only moves the watchdog's deadline; the event's id goes to [`SourceId`].
    Activity {
        /// Current time in ms: the watchdog's deadline moves to this plus its delay.
        now_ms: f64,
    },
    /// The current `EventSource`'s last event ID, as [`SourceId::take`] hands it over: adopted
    /// as the last event id (`""`, after an empty `id:` line, resets it). Fed before any
    /// other input and before the id is read, not per event.
    LastEventId {
        /// The event ID buffer's value.
        id: String,
    },
    /// `__connected` arrived with this `heartbeatSecs`, `heartbeatEvent` and `retryMs`.
    Connected {
        /// The hub's reconnect delay (`retryMs`), the floor of the first backoff delay.
        retry_ms: Option<f64>,
        /// The hub's heartbeat interval in seconds.
        heartbeat_secs: Option<f64>,
        /// Whether this connection's heartbeats come as `__heartbeat` events (visible to
        /// `EventSource`) rather than SSE comments (invisible). A hub that predates the field
        /// sends none: `false`.
        heartbeat_event: bool,
    },
    /// `__shutdown` (`server: false`) or `__error` (`server: true`) arrived.
    Ended {
        /// The hinted delay (`retryMs`).
        retry_ms: Option<f64>,
        /// True for `__error`.
        server: bool,
        /// The hub's message.
        message: String,
        /// Current time in ms.
        now_ms: f64,
    },
    /// The watchdog timer fired. With activity since it was armed, it is re-armed for the
    /// rest of the delay after that activity; otherwise the connection is dead.
    WatchdogFired {
        /// Current time in ms.
        now_ms: f64,
    },
    /// The retry timer fired.
    RetryTimerFired,
    /// The window fired `online`.
    Online,
    /// The page became visible.
    Visible,
}

/// Something to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Get a token or a ticket (call `getToken` or `getTicket`), then answer
    /// [`Input::TokenReady`] with this `seq`.
    FetchToken {
        /// Identifies this attempt; stale answers are ignored.
        seq: u64,
    },
    /// Drop any current `EventSource` and open a new one on `url`.
    OpenSource {
        /// The full `/events` URL with its query parameters.
        url: String,
        /// The connection attempt (answer a failure with [`Input::OpenFailed`]).
        seq: u64,
    },
    /// Close and drop the current `EventSource` (and its listeners).
    CloseSource,
    /// (Re)arm the retry timer.
    SetRetryTimer {
        /// Delay in ms.
        ms: u32,
    },
    /// Clear the retry timer.
    ClearRetryTimer,
    /// Arm the watchdog, replacing any pending one (it then answers
    /// [`Input::WatchdogFired`]). Not issued per event: activity moves the deadline in the
    /// machine, and a timer that fires before it is re-armed for the rest.
    SetWatchdog {
        /// Delay in ms.
        ms: u32,
    },
    /// Clear the watchdog.
    ClearWatchdog,
    /// Tell listeners.
    Emit(Lifecycle),
}

/// Carries out the machine's [`Command`]s as it issues them: the browser glue acts at once,
/// the tests record them (`Vec<Command>` implements it).
pub trait Io {
    /// Carries out one command.
    fn run(&mut self, command: Command);
}

impl Io for Vec<Command> {
    fn run(&mut self, command: Command) {
        self.push(command);
    }
}

/// Where the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started (`autoConnect: false` or `enabled: false`).
    Idle,
    /// Fetching a token, or the `EventSource` is connecting (or retrying by itself).
    Connecting,
    /// Open.
    Open,
    /// Waiting for the retry timer.
    Waiting,
    /// Closed by the app or after retries were exhausted.
    Closed,
}

/// The state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct Machine {
    base_url: String,
    options: Options,
    phase: Phase,
    ready_state: ReadyState,
    attempts: u32,
    seq: u64,
    last_event_id: Option<String>,
    opened_at: Option<f64>,
    /// The heartbeat interval announced by the last `__connected`.
    heartbeat_ms: Option<u32>,
    /// Whether the last `__connected` confirmed `__heartbeat` events.
    heartbeat_event: bool,
    /// The hub's last `retryMs` hint: the floor of the first delay after a loss.
    retry_floor_ms: Option<u32>,
    /// Whether a watchdog timer is pending (a `SetWatchdog` not yet fired or cleared).
    watchdog_pending: bool,
    /// The last activity since the pending watchdog timer was armed with its whole delay:
    /// the deadline is this plus the delay (one timer per period rather than one per event).
    activity_ms: Option<f64>,
    rng: u64,
}

impl Machine {
    /// A machine for `base_url` (already resolved) and `options`; `seed` seeds the jitter.
    pub fn new(base_url: String, options: Options, seed: u64) -> Self {
        let last_event_id = options.last_event_id.clone();
        Self {
            base_url,
            options,
            phase: Phase::Idle,
            ready_state: ReadyState::Closed,
            attempts: 0,
            seq: 0,
            last_event_id,
            opened_at: None,
            heartbeat_ms: None,
            heartbeat_event: false,
            retry_floor_ms: None,
            watchdog_pending: false,
            activity_ms: None,
            rng: seed | 1,
        }
    }

    /// What the app asked for when the client was created: connect at once?
    pub fn wants_auto_connect(&self) -> bool {
        self.options.auto_connect && self.options.enabled
    }

    /// The hub URL it was created with (without query parameters).
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The `readyState` apps see.
    pub fn ready_state(&self) -> ReadyState {
        self.ready_state
    }

    /// Failed attempts since the last healthy connection.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last event id received (or the `lastEventId` option).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Whether `seq` is the connection attempt currently waiting for its token.
    pub fn is_current(&self, seq: u64) -> bool {
        seq == self.seq && self.phase == Phase::Connecting
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input, out: &mut impl Io) {
        match input {
            Input::Connect => {
                if !self.options.enabled {
                    return;
                }
                match self.phase {
                    Phase::Idle | Phase::Closed => {
                        self.attempts = 0;
                        self.start(out);
                    }
                    Phase::Waiting => self.start(out),
                    Phase::Connecting | Phase::Open => {}
                }
            }
            Input::Reconnect => {
                if !self.options.enabled {
                    return;
                }
                self.attempts = 0;
                out.run(Command::CloseSource);
                self.start(out);
            }
            Input::Close => {
                if self.phase != Phase::Closed {
                    self.phase = Phase::Closed;
                    out.run(Command::CloseSource);
                    out.run(Command::ClearRetryTimer);
                    self.clear_watchdog(out);
                    self.set_state(ReadyState::Closed, out);
                }
            }
            Input::TokenReady { seq, token } => {
                if !self.is_current(seq) {
                    return;
                }
                // An empty string is no token; a ticket is required.
                let ticket = self.options.has_get_ticket;
                match token.map(|t| t.filter(|t| !t.is_empty())) {
                    Ok(None) if ticket => self.ticket_failed("expected a non-empty string", out),
                    Ok(token) => self.open_source(token, out),
                    Err(message) if ticket => self.ticket_failed(&message, out),
                    Err(message) => self.lost(
                        None,
                        ErrorKind::Connection,
                        cat(&["getToken failed: ", &message]),
                        None,
                        out,
                    ),
                }
            }
            Input::Opened { now_ms } => {
                if self.phase != Phase::Connecting {
                    return;
                }
                self.phase = Phase::Open;
                self.opened_at = Some(now_ms);
                self.set_state(ReadyState::Open, out);
                out.run(Command::Emit(Lifecycle::Open));
                self.arm_watchdog(out);
            }
            Input::OpenFailed {
                seq,
                message,
                now_ms,
            } => {
                if self.is_current(seq) {
                    let message = cat(&["cannot open EventSource: ", &message]);
                    self.lost(Some(now_ms), ErrorKind::Connection, message, None, out);
                }
            }
            Input::SourceError { now_ms } => {
                // Whatever the readyState: the browser's own retry is never left running.
                let message = match self.phase {
                    Phase::Open => "connection lost",
                    Phase::Connecting => "connection failed",
                    _ => return,
                };
                self.lost(
                    Some(now_ms),
                    ErrorKind::Connection,
                    message.into(),
                    None,
                    out,
                );
            }
            Input::Activity { now_ms } => {
                // The hot path: no timer is touched, only the deadline moves (a watchdog is
                // pending whenever there is one: every arm sets it, a firing re-arms it).
                if self.watchdog_pending && matches!(self.phase, Phase::Open | Phase::Connecting) {
                    self.activity_ms = Some(now_ms);
                }
            }
            Input::LastEventId { id } => {
                if matches!(self.phase, Phase::Open | Phase::Connecting) {
                    self.last_event_id = Some(id).filter(|id| !id.is_empty());
                }
            }
            Input::Connected {
                retry_ms,
                heartbeat_secs,
                heartbeat_event,
            } => {
                if let Some(floor) = millis_hint(retry_ms) {
                    self.retry_floor_ms = Some(floor);
                }
                self.heartbeat_ms = millis_hint(heartbeat_secs.map(|s| s * 1000.0));
                self.heartbeat_event = heartbeat_event;
                if matches!(self.phase, Phase::Open | Phase::Connecting) {
                    self.arm_watchdog(out);
                }
            }
            Input::Ended {
                retry_ms,
                server,
                message,
                now_ms,
            } => {
                if matches!(self.phase, Phase::Open | Phase::Connecting) {
                    let kind = if server {
                        ErrorKind::Server
                    } else {
                        ErrorKind::Connection
                    };
                    let floor = millis_hint(retry_ms);
                    if floor.is_some() {
                        self.retry_floor_ms = floor;
                    }
                    self.lost(Some(now_ms), kind, message, floor, out);
                }
            }
            Input::WatchdogFired { now_ms } => {
                self.watchdog_pending = false;
                if matches!(self.phase, Phase::Open | Phase::Connecting) {
                    // Early: activity since it was armed moved the deadline.
                    if let (Some(ms), Some(last)) = (self.watchdog_ms(), self.activity_ms) {
                        let rest = last + f64::from(ms) - now_ms;
                        if rest > 0.0 {
                            // Rounded up: it never fires early for a fraction of a ms.
                            let whole = rest as u32;
                            self.set_watchdog(whole + u32::from(f64::from(whole) < rest), out);
                            // The deadline stays where the last activity put it.
                            self.activity_ms = Some(last);
                            return;
                        }
                    }
                    let mut message = String::from("no data for ");
                    push_uint(&mut message, self.watchdog_ms().unwrap_or(0).into());
                    message.push_str(" ms (watchdog): connection treated as dead");
                    self.lost(Some(now_ms), ErrorKind::Connection, message, None, out);
                }
            }
            Input::RetryTimerFired => {
                if self.phase == Phase::Waiting {
                    self.start(out);
                }
            }
            Input::Online | Input::Visible => {
                if self.phase == Phase::Waiting {
                    out.run(Command::ClearRetryTimer);
                    self.start(out);
                }
            }
        }
    }

    /// The watchdog delay in force, if any.
    pub fn watchdog_ms(&self) -> Option<u32> {
        match self.options.heartbeat_timeout_ms {
            Some(0) => None,
            Some(ms) => Some(ms),
            // Every connection asks for `__heartbeat` events; the default watchdog runs when
            // `__connected` confirms them. Comment heartbeats (`: heartbeat`, from a hub that
            // ignores `heartbeat=event`) are invisible to EventSource: an idle stream would
            // look dead, so then there is no default watchdog. Until the first `__connected`
            // nothing is known; later connections start with the last one's answer, which
            // also catches a stream that stalls before its `__connected`.
            None if self.heartbeat_event => self
                .heartbeat_ms
                .map(|hb| crate::num::round(f64::from(hb) * WATCHDOG_HEARTBEATS) as u32),
            None => None,
        }
    }

    /// Arms the watchdog for its whole delay from now (or clears it when there is none).
    fn arm_watchdog(&mut self, out: &mut impl Io) {
        match self.watchdog_ms() {
            Some(ms) => self.set_watchdog(ms, out),
            None => self.clear_watchdog(out),
        }
    }

    /// A timer of `ms` replaces any pending one; no activity counted since.
    fn set_watchdog(&mut self, ms: u32, out: &mut impl Io) {
        self.watchdog_pending = true;
        self.activity_ms = None;
        out.run(Command::SetWatchdog { ms });
    }

    fn clear_watchdog(&mut self, out: &mut impl Io) {
        self.watchdog_pending = false;
        self.activity_ms = None;
        out.run(Command::ClearWatchdog);
    }

    fn set_state(&mut self, state: ReadyState, out: &mut impl Io) {
        if self.ready_state != state {
            self.ready_state = state;
            out.run(Command::Emit(Lifecycle::StateChange(state)));
        }
    }

    /// Starts a connection attempt: token or ticket first, then the source.
    fn start(&mut self, out: &mut impl Io) {
        self.phase = Phase::Connecting;
        self.seq += 1;
        self.opened_at = None;
        self.set_state(ReadyState::Connecting, out);
        if self.options.has_get_token || self.options.has_get_ticket {
            out.run(Command::FetchToken { seq: self.seq });
        } else {
            let token = self.options.token.clone();
            self.open_source(token, out);
        }
    }

    /// `getTicket` gave no ticket: a failed attempt, announced with kind `ticket_failed`.
    fn ticket_failed(&mut self, why: &str, out: &mut impl Io) {
        let message = cat(&["getTicket failed: ", why]);
        self.lost(None, ErrorKind::TicketFailed, message, None, out);
    }

    /// Opens the `EventSource`; `token` is the token, or with `getTicket` the ticket.
    fn open_source(&mut self, token: Option<String>, out: &mut impl Io) {
        let topics = comma_list(&self.options.topics);
        let events = comma_list(&self.options.events);
        let credential = if self.options.has_get_ticket {
            "ticket"
        } else {
            "token"
        };
        let params = [
            ("clientId", self.options.client_id.as_deref().unwrap_or("")),
            ("topics", topics.as_str()),
            ("events", events.as_str()),
            ("lastEventId", self.last_event_id.as_deref().unwrap_or("")),
            (credential, token.as_deref().unwrap_or("")),
            // Page code never sees SSE comments: ask for heartbeats the watchdog can see.
            ("heartbeat", "event"),
        ];
        out.run(Command::OpenSource {
            seq: self.seq,
            url: with_query(&self.base_url, &params),
        });
        self.arm_watchdog(out);
    }

    fn note_health(&mut self, now_ms: f64) {
        if let Some(opened) = self.opened_at.take() {
            if now_ms - opened >= HEALTHY_AFTER_MS {
                self.attempts = 0;
            }
        }
    }

    /// The connection is gone: close it, then retry after the backoff delay, or give up.
    /// `floor` is a delay the hub asked for on this loss (`__shutdown`/`__error`); the first
    /// attempt after a loss also respects the hub's last `retryMs`.
    fn lost(
        &mut self,
        now_ms: Option<f64>,
        kind: ErrorKind,
        message: String,
        floor: Option<u32>,
        out: &mut impl Io,
    ) {
        if let Some(now) = now_ms {
            self.note_health(now);
        }
        self.opened_at = None;
        out.run(Command::CloseSource);
        self.clear_watchdog(out);
        out.run(Command::Emit(Lifecycle::Error { kind, message }));
        self.attempts = self.attempts.saturating_add(1);
        let backoff: Backoff = self.options.backoff;
        let random = self.random();
        let floor = match floor {
            Some(floor) => floor,
            None if self.attempts == 1 => self.retry_floor_ms.unwrap_or(0),
            None => 0,
        };
        let delay = match backoff.delay_with_floor_ms(self.attempts, random, floor) {
            Some(delay) => delay,
            None => {
                self.phase = Phase::Closed;
                self.set_state(ReadyState::Closed, out);
                let mut message = String::from("gave up after ");
                push_uint(&mut message, self.attempts.saturating_sub(1).into());
                message.push_str(" failed attempts");
                out.run(Command::Emit(Lifecycle::Error {
                    kind: ErrorKind::RetriesExhausted,
                    message,
                }));
                return;
            }
        };
        self.phase = Phase::Waiting;
        self.set_state(ReadyState::Connecting, out);
        out.run(Command::Emit(Lifecycle::Reconnecting {
            attempt: self.attempts,
            delay_ms: delay,
        }));
        out.run(Command::SetRetryTimer { ms: delay });
    }

    /// xorshift64*: enough for jitter, deterministic for tests.
    fn random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The current `EventSource`'s last event ID buffer, as its events report it (their
/// [`lastEventId`](https://html.spec.whatwg.org/multipage/server-sent-events.html#dom-messageevent-lasteventid)),
/// kept in the form it came in (a JS string in the browser) until the machine needs it:
/// [`SourceId::take`] before any input other than [`Input::Activity`] and whenever the id is
/// read, so no event copies its id into the machine.
///
/// A new `EventSource` starts at `""`, which is not a reset: until an event reports another
/// id there is nothing to adopt. After one, every report counts, so an empty `id:` line
/// resets the id.
///
/// ```
/// use eventwire_client::machine::SourceId;
///
/// let mut id = SourceId::default();
/// id.report("", true);
/// assert_eq!(id.take(), None); // a new EventSource's "": no reset
/// id.report("7", false);
/// assert!(id.seen());
/// id.report("8", false);
/// assert_eq!(id.take(), Some("8"));
/// id.report("", true);
/// assert_eq!(id.peek(), Some(&"")); // an empty `id:` line after an id: a reset
/// ```
#[derive(Debug, Clone)]
pub struct SourceId<S> {
    /// The last report not yet taken, once a non-empty id has been reported.
    pending: Option<S>,
    /// Whether this `EventSource` has reported a non-empty id.
    seen: bool,
}

impl<S> Default for SourceId<S> {
    fn default() -> Self {
        Self {
            pending: None,
            seen: false,
        }
    }
}

impl<S> SourceId<S> {
    /// An event reported `id` (`empty` when it is `""`).
    pub fn report(&mut self, id: S, empty: bool) {
        self.seen |= !empty;
        if self.seen {
            self.pending = Some(id);
        }
    }

    /// Whether this `EventSource` has reported a non-empty id: from then on every report
    /// counts, so [`SourceId::report`] ignores `empty` (the browser asks for it only before).
    pub fn seen(&self) -> bool {
        self.seen
    }

    /// The id to adopt ([`Input::LastEventId`]) when one was reported since the last take.
    pub fn take(&mut self) -> Option<S> {
        self.pending.take()
    }

    /// What [`SourceId::take`] would answer, left in place.
    pub fn peek(&self) -> Option<&S> {
        self.pending.as_ref()
    }

    /// A new `EventSource`: nothing reported yet.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// `items` joined with commas (by hand: `[String]::join` is ~1 KB of wasm).
fn comma_list(items: &[String]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;

    fn opts() -> Options {
        Options {
            backoff: Backoff {
                initial_delay_ms: 100,
                factor: 2.0,
                max_delay_ms: 1_000,
                max_attempts: 3,
                jitter: 0.0,
            },
            ..Options::default()
        }
    }

    /// Feeds `input`; returns the commands, in order.
    fn run(m: &mut Machine, input: Input) -> Vec<Command> {
        let mut cmds = Vec::new();
        m.handle(input, &mut cmds);
        cmds
    }

    fn machine(o: Options) -> Machine {
        Machine::new("http://hub/events".into(), o, 7)
    }

    fn url_of(cmds: &[Command]) -> Option<String> {
        cmds.iter().find_map(|c| match c {
            Command::OpenSource { url, .. } => Some(url.clone()),
            _ => None,
        })
    }

    fn emits(cmds: &[Command]) -> Vec<Lifecycle> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Emit(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    fn activity(now_ms: f64) -> Input {
        Input::Activity { now_ms }
    }

    /// An event with this `lastEventId` on the current source, as the browser glue handles
    /// it: reported to `ids`, then handed to the machine (as before any other input).
    fn event(m: &mut Machine, ids: &mut SourceId<String>, id: &str) -> Vec<Command> {
        ids.report(id.to_owned(), id.is_empty());
        let mut cmds = run(m, activity(0.0));
        if let Some(id) = ids.take() {
            cmds.extend(run(m, Input::LastEventId { id }));
        }
        cmds
    }

    fn open(m: &mut Machine, now: f64) {
        let _ = run(m, Input::Connect);
        let _ = run(m, Input::Opened { now_ms: now });
    }

    #[test]
    fn connects_with_query_parameters() {
        let mut m = machine(Options {
            client_id: Some("c 1".into()),
            topics: vec!["a".into(), "b".into()],
            events: vec!["x".into()],
            token: Some("tok".into()),
            last_event_id: Some("5".into()),
            ..opts()
        });
        let cmds = run(&mut m, Input::Connect);
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some(
                "http://hub/events?clientId=c%201&topics=a%2Cb&events=x&lastEventId=5&token=tok\
                 &heartbeat=event"
            )
        );
        assert_eq!(
            emits(&cmds),
            [Lifecycle::StateChange(ReadyState::Connecting)]
        );
        let cmds = run(&mut m, Input::Opened { now_ms: 0.0 });
        assert_eq!(
            emits(&cmds),
            [Lifecycle::StateChange(ReadyState::Open), Lifecycle::Open]
        );
        assert_eq!(m.ready_state(), ReadyState::Open);
    }

    #[test]
    fn get_token_runs_before_every_connect_and_stale_answers_are_ignored() {
        let mut m = machine(Options {
            has_get_token: true,
            ..opts()
        });
        let cmds = run(&mut m, Input::Connect);
        assert_eq!(cmds.last(), Some(&Command::FetchToken { seq: 1 }));
        assert!(url_of(&cmds).is_none());
        let cmds = run(
            &mut m,
            Input::TokenReady {
                seq: 1,
                token: Ok(Some("t1".into())),
            },
        );
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?token=t1&heartbeat=event")
        );
        let _ = run(&mut m, Input::Opened { now_ms: 0.0 });
        let cmds = run(&mut m, Input::Reconnect);
        assert_eq!(cmds.last(), Some(&Command::FetchToken { seq: 2 }));
        // An answer to the old attempt changes nothing.
        assert!(run(
            &mut m,
            Input::TokenReady {
                seq: 1,
                token: Ok(Some("old".into()))
            }
        )
        .is_empty());
        // A failing getToken counts as a failed attempt.
        let cmds = run(
            &mut m,
            Input::TokenReady {
                seq: 2,
                token: Err("boom".into()),
            },
        );
        assert!(emits(&cmds).contains(&Lifecycle::Reconnecting {
            attempt: 1,
            delay_ms: 100
        }));
    }

    #[test]
    fn get_ticket_runs_before_every_attempt_and_its_failures_back_off_without_giving_up() {
        // With a token and getToken too: the ticket wins, no token goes anywhere.
        let mut m = machine(Options {
            has_get_ticket: true,
            has_get_token: true,
            token: Some("secret".into()),
            backoff: Backoff {
                max_attempts: u32::MAX,
                ..opts().backoff
            },
            ..opts()
        });
        let ticket = |m: &mut Machine, seq, token| run(m, Input::TokenReady { seq, token });
        let cmds = run(&mut m, Input::Connect);
        assert_eq!(cmds.last(), Some(&Command::FetchToken { seq: 1 }));
        let cmds = ticket(&mut m, 1, Ok(Some("k1".into())));
        // The ticket stands in for the token: `ticket=`, never `token=`.
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?ticket=k1&heartbeat=event")
        );
        let _ = run(&mut m, Input::Opened { now_ms: 0.0 });
        let _ = run(&mut m, Input::SourceError { now_ms: 1.0 });
        // Single use: the reconnect asks for a new one.
        let cmds = run(&mut m, Input::RetryTimerFired);
        assert_eq!(cmds.last(), Some(&Command::FetchToken { seq: 2 }));
        // A rejection, nothing, an empty string: each a failed attempt, announced and retried.
        let failures: [(Result<Option<String>, String>, &str); 3] = [
            (Err("offline".into()), "getTicket failed: offline"),
            (Ok(None), "getTicket failed: expected a non-empty string"),
            (
                Ok(Some(String::new())),
                "getTicket failed: expected a non-empty string",
            ),
        ];
        for (i, (answer, message)) in failures.into_iter().enumerate() {
            let seq = i as u64 + 2;
            let cmds = ticket(&mut m, seq, answer);
            assert!(url_of(&cmds).is_none());
            let error = Lifecycle::Error {
                kind: ErrorKind::TicketFailed,
                message: message.into(),
            };
            let attempt = i as u32 + 2;
            let delay_ms = (100 << (attempt - 1)).min(1_000);
            assert_eq!(
                emits(&cmds),
                [error, Lifecycle::Reconnecting { attempt, delay_ms }]
            );
            let cmds = run(&mut m, Input::RetryTimerFired);
            assert_eq!(cmds.last(), Some(&Command::FetchToken { seq: seq + 1 }));
        }
        let cmds = ticket(&mut m, 5, Ok(Some("k2".into())));
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?ticket=k2&heartbeat=event")
        );
        let cmds = run(&mut m, Input::Opened { now_ms: 2.0 });
        assert!(emits(&cmds).contains(&Lifecycle::Open));
    }

    #[test]
    fn a_failed_open_is_a_failed_attempt_unless_a_newer_one_started() {
        let mut m = machine(opts());
        let cmds = run(&mut m, Input::Connect);
        assert!(cmds
            .iter()
            .any(|c| matches!(c, Command::OpenSource { seq: 1, .. })));
        // Before the old attempt's failure is handled, the app reconnects: attempt 2.
        let cmds = run(&mut m, Input::Reconnect);
        assert!(cmds
            .iter()
            .any(|c| matches!(c, Command::OpenSource { seq: 2, .. })));
        let stale = Input::OpenFailed {
            seq: 1,
            message: "SyntaxError".into(),
            now_ms: 1.0,
        };
        assert!(run(&mut m, stale).is_empty());
        assert_eq!(m.attempts(), 0);
        let cmds = run(
            &mut m,
            Input::OpenFailed {
                seq: 2,
                message: "SyntaxError".into(),
                now_ms: 1.0,
            },
        );
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
        assert!(emits(&cmds).contains(&Lifecycle::Error {
            kind: ErrorKind::Connection,
            message: "cannot open EventSource: SyntaxError".into()
        }));
        assert!(cmds.contains(&Command::SetRetryTimer { ms: 100 }));
        assert_eq!(m.attempts(), 1);
    }

    #[test]
    fn every_failure_closes_the_source_and_backs_off_with_an_announced_attempt() {
        let mut m = machine(opts());
        open(&mut m, 0.0);
        // A connection lost mid-stream (the browser would retry by itself: it is not let).
        let cmds = run(&mut m, Input::SourceError { now_ms: 50.0 });
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
        assert!(cmds.contains(&Command::SetRetryTimer { ms: 100 }));
        assert!(emits(&cmds).contains(&Lifecycle::Reconnecting {
            attempt: 1,
            delay_ms: 100
        }));
        assert_eq!(m.ready_state(), ReadyState::Connecting);
        assert_eq!(m.attempts(), 1);
        // The retry fails before opening (connection refused): attempt 2, counted too.
        let _ = run(&mut m, Input::RetryTimerFired);
        let cmds = run(&mut m, Input::SourceError { now_ms: 60.0 });
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
        assert!(emits(&cmds).contains(&Lifecycle::Reconnecting {
            attempt: 2,
            delay_ms: 200
        }));
        assert_eq!(m.attempts(), 2);
        // An error while waiting (a stale source) changes nothing.
        assert!(run(&mut m, Input::SourceError { now_ms: 70.0 }).is_empty());
    }

    #[test]
    fn defaults_never_give_up_with_a_capped_delay() {
        let mut m = machine(Options::default());
        let _ = run(&mut m, Input::Connect);
        let mut last = 0;
        for i in 0..200 {
            let cmds = run(
                &mut m,
                Input::SourceError {
                    now_ms: f64::from(i),
                },
            );
            let delay = cmds.iter().find_map(|c| match c {
                Command::SetRetryTimer { ms } => Some(*ms),
                _ => None,
            });
            last = delay.unwrap_or_else(|| panic!("gave up at attempt {}: {cmds:?}", i + 1));
            assert!(last <= 30_000);
            assert!(url_of(&run(&mut m, Input::RetryTimerFired)).is_some());
        }
        assert!(last >= 15_000, "{last}");
        assert_eq!(m.attempts(), 200);
    }

    #[test]
    fn the_hubs_retry_is_the_floor_of_the_first_delay_only() {
        let mut m = machine(Options {
            backoff: Backoff {
                max_attempts: 10,
                ..opts().backoff
            },
            ..opts()
        });
        open(&mut m, 0.0);
        let _ = run(
            &mut m,
            Input::Connected {
                retry_ms: Some(700.0),
                heartbeat_secs: None,
                heartbeat_event: false,
            },
        );
        let cmds = run(&mut m, Input::SourceError { now_ms: 1.0 });
        assert!(
            cmds.contains(&Command::SetRetryTimer { ms: 700 }),
            "{cmds:?}"
        );
        let _ = run(&mut m, Input::RetryTimerFired);
        let cmds = run(&mut m, Input::SourceError { now_ms: 2.0 });
        assert!(
            cmds.contains(&Command::SetRetryTimer { ms: 200 }),
            "{cmds:?}"
        );
    }

    #[test]
    fn closed_source_backs_off_then_gives_up() {
        let mut m = machine(opts());
        let _ = run(&mut m, Input::Connect);
        let mut delays = Vec::new();
        for i in 0..3 {
            let cmds = run(
                &mut m,
                Input::SourceError {
                    now_ms: f64::from(i),
                },
            );
            assert_eq!(cmds.first(), Some(&Command::CloseSource));
            let timer = cmds.iter().find_map(|c| match c {
                Command::SetRetryTimer { ms } => Some(*ms),
                _ => None,
            });
            delays.extend(timer);
            assert_eq!(m.phase(), Phase::Waiting);
            assert_eq!(m.ready_state(), ReadyState::Connecting);
            let cmds = run(&mut m, Input::RetryTimerFired);
            assert!(url_of(&cmds).is_some());
        }
        assert_eq!(delays, [100, 200, 400]);
        let cmds = run(&mut m, Input::SourceError { now_ms: 5.0 });
        let e = emits(&cmds);
        assert!(e.contains(&Lifecycle::StateChange(ReadyState::Closed)));
        assert!(e.contains(&Lifecycle::Error {
            kind: ErrorKind::RetriesExhausted,
            message: "gave up after 3 failed attempts".into()
        }));
        assert_eq!(m.phase(), Phase::Closed);
        // The app can start again with connect().
        let cmds = run(&mut m, Input::Connect);
        assert!(url_of(&cmds).is_some());
        assert_eq!(m.attempts(), 0);
    }

    #[test]
    fn reconnect_carries_the_last_event_id() {
        let mut m = machine(opts());
        let mut ids = SourceId::default();
        open(&mut m, 0.0);
        let _ = event(&mut m, &mut ids, "41");
        let _ = event(&mut m, &mut ids, "41");
        let _ = event(&mut m, &mut ids, "42");
        assert_eq!(m.last_event_id(), Some("42"));
        let _ = run(&mut m, Input::SourceError { now_ms: 1.0 });
        let cmds = run(&mut m, Input::RetryTimerFired);
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?lastEventId=42&heartbeat=event")
        );
    }

    #[test]
    fn the_id_follows_the_event_sources_last_event_id_and_an_empty_id_line_resets_it() {
        let mut m = machine(Options {
            last_event_id: Some("5".into()),
            ..opts()
        });
        let mut ids = SourceId::default();
        open(&mut m, 0.0);
        // A new EventSource reports "" until an `id:` line: not a reset.
        let _ = event(&mut m, &mut ids, "");
        assert_eq!(m.last_event_id(), Some("5"));
        // `id: 7` on a system event (`__position`, `__heartbeat`) counts like any other.
        let _ = event(&mut m, &mut ids, "7");
        assert_eq!(m.last_event_id(), Some("7"));
        // An empty `id:` line after it: reset, and the reconnect names no id.
        let _ = event(&mut m, &mut ids, "");
        assert_eq!(m.last_event_id(), None);
        let _ = run(&mut m, Input::SourceError { now_ms: 1.0 });
        let cmds = run(&mut m, Input::RetryTimerFired);
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?heartbeat=event")
        );
        // On the new connection "" is again just "nothing yet"; an id is adopted.
        ids.reset();
        let _ = run(&mut m, Input::Opened { now_ms: 2.0 });
        let _ = event(&mut m, &mut ids, "");
        assert_eq!(m.last_event_id(), None);
        let _ = event(&mut m, &mut ids, "9");
        let _ = run(&mut m, Input::SourceError { now_ms: 3.0 });
        // Nothing from a closed source counts.
        assert!(event(&mut m, &mut ids, "").is_empty());
        let cmds = run(&mut m, Input::RetryTimerFired);
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?lastEventId=9&heartbeat=event")
        );
    }

    #[test]
    fn the_source_id_is_handed_over_once_per_report_and_a_reset_is_kept() {
        let mut ids = SourceId::default();
        // Batched: only the last report before a take counts.
        ids.report("1".to_owned(), false);
        ids.report("2".to_owned(), false);
        assert_eq!(ids.peek().map(String::as_str), Some("2"));
        assert_eq!(ids.take().as_deref(), Some("2"));
        assert_eq!(ids.take(), None);
        // "" after an id, even after a take, is a reset to hand over.
        ids.report(String::new(), true);
        assert_eq!(ids.take().as_deref(), Some(""));
        // A new source: its "" is nothing yet.
        ids.reset();
        ids.report(String::new(), true);
        assert_eq!(ids.take(), None);
    }

    #[test]
    fn attempts_reset_after_a_healthy_connection_only() {
        let mut m = machine(opts());
        open(&mut m, 0.0);
        let _ = run(&mut m, Input::SourceError { now_ms: 10.0 });
        assert_eq!(m.attempts(), 1);
        let _ = run(&mut m, Input::RetryTimerFired);
        let _ = run(&mut m, Input::Opened { now_ms: 100.0 });
        // Short-lived: the count goes on.
        let _ = run(&mut m, Input::SourceError { now_ms: 200.0 });
        assert_eq!(m.attempts(), 2);
        let _ = run(&mut m, Input::RetryTimerFired);
        let _ = run(&mut m, Input::Opened { now_ms: 1_000.0 });
        let cmds = run(
            &mut m,
            Input::SourceError {
                now_ms: 1_000.0 + HEALTHY_AFTER_MS,
            },
        );
        assert_eq!(m.attempts(), 1);
        assert!(emits(&cmds).contains(&Lifecycle::Reconnecting {
            attempt: 1,
            delay_ms: 100
        }));
    }

    #[test]
    fn shutdown_and_server_error_wait_at_least_the_hinted_delay() {
        let mut m = machine(opts());
        open(&mut m, 0.0);
        let cmds = run(
            &mut m,
            Input::Ended {
                retry_ms: Some(1234.0),
                server: false,
                message: "hub shutting down".into(),
                now_ms: 5.0,
            },
        );
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
        assert!(cmds.contains(&Command::SetRetryTimer { ms: 1234 }));
        let _ = run(&mut m, Input::RetryTimerFired);
        let _ = run(&mut m, Input::Opened { now_ms: 10.0 });
        let cmds = run(
            &mut m,
            Input::Ended {
                retry_ms: None,
                server: true,
                message: "slow consumer".into(),
                now_ms: 20.0,
            },
        );
        assert!(emits(&cmds).contains(&Lifecycle::Error {
            kind: ErrorKind::Server,
            message: "slow consumer".into()
        }));
        // No hint this time, second attempt: the backoff's own delay.
        assert!(cmds.contains(&Command::SetRetryTimer { ms: 200 }));
        // A hint below the backoff's delay does not shorten it.
        let _ = run(&mut m, Input::RetryTimerFired);
        let cmds = run(
            &mut m,
            Input::Ended {
                retry_ms: Some(10.0),
                server: true,
                message: "dropped".into(),
                now_ms: 30.0,
            },
        );
        assert!(cmds.contains(&Command::SetRetryTimer { ms: 400 }));
    }

    #[test]
    fn close_is_final_and_silences_everything() {
        let mut m = machine(opts());
        open(&mut m, 0.0);
        let cmds = run(&mut m, Input::Close);
        assert!(cmds.contains(&Command::CloseSource));
        assert!(cmds.contains(&Command::ClearRetryTimer));
        assert!(cmds.contains(&Command::ClearWatchdog));
        assert_eq!(m.ready_state(), ReadyState::Closed);
        for input in [
            Input::Opened { now_ms: 1.0 },
            Input::SourceError { now_ms: 1.0 },
            Input::RetryTimerFired,
            Input::WatchdogFired { now_ms: 1.0 },
            Input::Online,
            Input::Visible,
            Input::Close,
        ] {
            assert!(run(&mut m, input.clone()).is_empty(), "{input:?}");
        }
    }

    #[test]
    fn online_and_visible_skip_the_wait() {
        let mut m = machine(opts());
        open(&mut m, 0.0);
        // Nothing to do while open.
        assert!(run(&mut m, Input::Online).is_empty());
        assert!(run(&mut m, Input::Visible).is_empty());
        let _ = run(&mut m, Input::SourceError { now_ms: 1.0 });
        let cmds = run(&mut m, Input::Online);
        assert_eq!(cmds.first(), Some(&Command::ClearRetryTimer));
        assert!(url_of(&cmds).is_some());
        let _ = run(&mut m, Input::SourceError { now_ms: 2.0 });
        assert!(url_of(&run(&mut m, Input::Visible)).is_some());
    }

    fn connected(heartbeat_secs: f64, heartbeat_event: bool) -> Input {
        Input::Connected {
            retry_ms: None,
            heartbeat_secs: Some(heartbeat_secs),
            heartbeat_event,
        }
    }

    #[test]
    fn every_connection_asks_for_heartbeat_events() {
        let mut m = machine(opts());
        let cmds = run(&mut m, Input::Connect);
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?heartbeat=event")
        );
        let _ = run(&mut m, Input::Opened { now_ms: 0.0 });
        let _ = run(&mut m, Input::SourceError { now_ms: 1.0 });
        // Backoff retry, online, reconnect(): every URL asks again.
        let retry = url_of(&run(&mut m, Input::RetryTimerFired)).unwrap_or_default();
        let _ = run(&mut m, Input::SourceError { now_ms: 2.0 });
        let online = url_of(&run(&mut m, Input::Online)).unwrap_or_default();
        let manual = url_of(&run(&mut m, Input::Reconnect)).unwrap_or_default();
        for url in [retry, online, manual] {
            assert!(url.ends_with("?heartbeat=event"), "{url}");
        }
        // With getToken the URL is built after the token arrives: still asked for.
        let mut t = machine(Options {
            has_get_token: true,
            ..opts()
        });
        let _ = run(&mut t, Input::Connect);
        let cmds = run(
            &mut t,
            Input::TokenReady {
                seq: 1,
                token: Ok(Some("t".into())),
            },
        );
        assert_eq!(
            url_of(&cmds).as_deref(),
            Some("http://hub/events?token=t&heartbeat=event")
        );
    }

    #[test]
    fn watchdog_arms_at_two_and_a_half_heartbeats_as_soon_as_connected_confirms_events() {
        let mut m = machine(opts());
        // Before any `__connected` nothing is known: no default watchdog.
        let cmds = run(&mut m, Input::Connect);
        assert!(cmds.contains(&Command::ClearWatchdog), "{cmds:?}");
        assert!(!cmds
            .iter()
            .any(|c| matches!(c, Command::SetWatchdog { .. })));
        let cmds = run(&mut m, Input::Opened { now_ms: 0.0 });
        assert!(!cmds
            .iter()
            .any(|c| matches!(c, Command::SetWatchdog { .. })));
        // Armed by `__connected` itself: no `__heartbeat` has to arrive first.
        let cmds = run(&mut m, connected(2.0, true));
        assert_eq!(cmds, [Command::SetWatchdog { ms: 5_000 }]);
        // No activity since it was armed: when it fires, the connection is dead.
        let cmds = run(&mut m, Input::WatchdogFired { now_ms: 5_000.0 });
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
        assert!(emits(&cmds).iter().any(|l| matches!(
            l,
            Lifecycle::Error { kind: ErrorKind::Connection, message }
                if message.contains("watchdog") && message.contains("5000 ms")
        )));
        // The next connection is watched from the start, with the last `__connected`'s
        // answer: a stream that stalls before its `__connected` is caught too.
        let cmds = run(&mut m, Input::RetryTimerFired);
        assert!(cmds.contains(&Command::SetWatchdog { ms: 5_000 }));
        let _ = run(&mut m, Input::Opened { now_ms: 20.0 });
        // A new interval announced by the new connection replaces it at once.
        let cmds = run(&mut m, connected(1.0, true));
        assert_eq!(cmds, [Command::SetWatchdog { ms: 2_500 }]);
    }

    #[test]
    fn no_default_watchdog_when_the_hub_sends_comment_heartbeats() {
        let mut m = machine(opts());
        open(&mut m, 0.0);
        // A hub that ignored `heartbeat=event` (or predates it): an idle stream would look
        // dead, so there is no default watchdog and events do not arm one.
        let cmds = run(&mut m, connected(2.0, false));
        assert_eq!(cmds, [Command::ClearWatchdog]);
        assert!(run(&mut m, activity(0.0)).is_empty());
        assert_eq!(m.watchdog_ms(), None);
        // Confirmed on one connection, then a hub that says no: the watchdog is cleared.
        let cmds = run(&mut m, connected(2.0, true));
        assert_eq!(cmds, [Command::SetWatchdog { ms: 5_000 }]);
        let cmds = run(&mut m, connected(2.0, false));
        assert_eq!(cmds, [Command::ClearWatchdog]);
    }

    #[test]
    fn explicit_heartbeat_timeout_wins_and_zero_disables() {
        let mut m = machine(Options {
            heartbeat_timeout_ms: Some(700),
            ..opts()
        });
        let cmds = run(&mut m, Input::Connect);
        assert!(cmds.contains(&Command::SetWatchdog { ms: 700 }));
        // Also with comment heartbeats: the app chose the timeout.
        let _ = run(&mut m, Input::Opened { now_ms: 0.0 });
        let cmds = run(&mut m, connected(2.0, false));
        assert_eq!(cmds, [Command::SetWatchdog { ms: 700 }]);
        let mut off = machine(Options {
            heartbeat_timeout_ms: Some(0),
            ..opts()
        });
        let _ = run(&mut off, Input::Connect);
        let cmds = run(&mut off, connected(1.0, true));
        assert_eq!(cmds, [Command::ClearWatchdog]);
    }

    #[test]
    fn disabled_never_connects() {
        let mut m = machine(Options {
            enabled: false,
            ..opts()
        });
        assert!(!m.wants_auto_connect());
        assert!(run(&mut m, Input::Connect).is_empty());
        assert!(run(&mut m, Input::Reconnect).is_empty());
        assert_eq!(m.ready_state(), ReadyState::Closed);
    }

    #[test]
    fn jitter_varies_delays_within_bounds() {
        let mut m = machine(Options {
            backoff: Backoff {
                jitter: 0.5,
                max_attempts: u32::MAX,
                ..opts().backoff
            },
            ..opts()
        });
        let _ = run(&mut m, Input::Connect);
        let mut seen = Vec::new();
        for _ in 0..20 {
            let cmds = run(&mut m, Input::SourceError { now_ms: 0.0 });
            let _ = run(&mut m, Input::RetryTimerFired);
            for c in cmds {
                if let Command::SetRetryTimer { ms } = c {
                    seen.push(ms);
                }
            }
        }
        // Capped at 1000, at least half the cap once the cap is reached.
        assert!(
            seen[5..].iter().all(|&d| (500..=1000).contains(&d)),
            "{seen:?}"
        );
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() > 5, "jitter should vary delays: {seen:?}");
    }

    #[test]
    fn activity_moves_the_watchdog_deadline_without_a_timer_per_event() {
        let mut m = machine(Options {
            heartbeat_timeout_ms: Some(1_000),
            ..opts()
        });
        open(&mut m, 0.0);
        let cmds = run(&mut m, Input::Opened { now_ms: 0.0 });
        assert!(cmds.is_empty(), "already open: {cmds:?}");
        // Armed once (by the connect); events only move the deadline: no command per event.
        for t in [100.0, 400.0, 700.0] {
            assert!(run(&mut m, activity(t)).is_empty());
        }
        // The timer armed at 0 fires at 1000, early: re-armed for the rest (700 + 1000).
        let cmds = run(&mut m, Input::WatchdogFired { now_ms: 1_000.0 });
        assert_eq!(cmds, [Command::SetWatchdog { ms: 700 }]);
        assert_eq!(m.phase(), Phase::Open);
        // More activity meanwhile pushes it again; a fraction of a ms rounds up.
        assert!(run(&mut m, activity(1_500.5)).is_empty());
        let cmds = run(&mut m, Input::WatchdogFired { now_ms: 1_700.0 });
        assert_eq!(cmds, [Command::SetWatchdog { ms: 801 }]);
        // Nothing since: it fires at the deadline and the connection is dead.
        let cmds = run(&mut m, Input::WatchdogFired { now_ms: 2_501.0 });
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
        assert!(cmds.contains(&Command::ClearWatchdog), "{cmds:?}");
        assert!(emits(&cmds).iter().any(|l| matches!(
            l,
            Lifecycle::Error { kind: ErrorKind::Connection, message }
                if message.contains("watchdog") && message.contains("1000 ms")
        )));
        assert_eq!(m.phase(), Phase::Waiting);
        // A new connection arms a fresh timer for the whole delay; activity before the loss
        // does not carry over.
        let cmds = run(&mut m, Input::RetryTimerFired);
        assert!(
            cmds.contains(&Command::SetWatchdog { ms: 1_000 }),
            "{cmds:?}"
        );
        let _ = run(&mut m, Input::Opened { now_ms: 3_000.0 });
        let cmds = run(&mut m, Input::WatchdogFired { now_ms: 4_000.0 });
        assert_eq!(cmds.first(), Some(&Command::CloseSource));
    }
}
