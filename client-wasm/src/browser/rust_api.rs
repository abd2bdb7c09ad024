//! The Rust API, for Rust web apps (Leptos, Yew and the like).
//!
//! ```no_run
//! use eventwire_client::{Client, ClientEvent};
//!
//! # fn main() -> Result<(), eventwire_client::Error> {
//! let client = Client::builder("https://hub.example/events")
//!     .client_id("tab-1")
//!     .topics(["orders"])
//!     .build()?;
//! let _sub = client.on_event("notification", |ev: &ClientEvent| {
//!     if let ClientEvent::Message(m) = ev {
//!         web_sys::console::log_1(&m.data.as_str().into());
//!     }
//! });
//! # Ok(()) }
//! ```
//!
//! With the `typed` feature, `client.on::<T>("notification", |ev: T| …)` decodes each payload
//! into `T` (serde) and sends decode failures to the `error` listeners (kind `decode`).

use core::{cell::RefCell, future::Future, pin::Pin};

use js_sys::{Function, Promise};
use wasm_bindgen::{prelude::*, JsCast};

use super::core::{get, Core, Inner};
use crate::prelude::*;
use crate::{
    backoff::Backoff,
    error::Error,
    machine::{ErrorKind, Lifecycle, ReadyState},
    options::Options,
};

/// An event that arrived on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event type (`event:` field; `message` when absent).
    pub event_type: String,
    /// The payload as sent (`data:` lines joined).
    pub data: String,
    /// The event id: the stream's last event id when the event arrived (`None` before the
    /// first id).
    pub id: Option<String>,
}

/// What a listener receives.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// An event from the stream (application events, and system events asked for by name).
    Message(Message),
    /// A lifecycle event: `open`, `statechange`, `reconnecting`, `error`.
    Lifecycle(Lifecycle),
    /// `gap`: the hub's `__gap` arrived (its payload is in the message).
    Gap(Message),
}

impl ClientEvent {
    /// The type listeners subscribe to for this event.
    pub fn event_type(&self) -> &str {
        match self {
            Self::Message(m) => &m.event_type,
            Self::Gap(_) => "gap",
            Self::Lifecycle(l) => l.event_type(),
        }
    }

    /// Reads back the event object the core hands to listeners (see `core`): stream events
    /// carry `raw`, lifecycle events their own fields.
    fn from_js(object: &JsValue) -> Self {
        let event_type = get(object, "type").as_string().unwrap_or_default();
        let number = |key: &str| get(object, key).as_f64().unwrap_or(0.0);
        if let Some(data) = get(object, "raw").as_string() {
            let id = get(object, "id").as_string();
            return if event_type == "gap" {
                Self::Gap(Message {
                    event_type: "__gap".into(),
                    data,
                    id,
                })
            } else {
                Self::Message(Message {
                    event_type,
                    data,
                    id,
                })
            };
        }
        Self::Lifecycle(match event_type.as_str() {
            "open" => Lifecycle::Open,
            "statechange" => {
                Lifecycle::StateChange(ReadyState::from_number(number("readyState") as u16))
            }
            "reconnecting" => Lifecycle::Reconnecting {
                attempt: number("attempt") as u32,
                delay_ms: number("delayMs") as u32,
            },
            _ => Lifecycle::Error {
                kind: get(object, "kind")
                    .as_string()
                    .and_then(|k| ErrorKind::from_name(&k))
                    .unwrap_or(ErrorKind::Connection),
                message: get(object, "message").as_string().unwrap_or_default(),
            },
        })
    }
}

/// A boxed future, as returned by a Rust token provider.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Option<String>, String>>>>;

/// A Rust `getToken` or `getTicket`, as the JS function the core calls (returns a promise).
type TokenClosure = Closure<dyn Fn() -> Promise>;

/// `f` as a JS function returning a promise (wasm-bindgen-futures, only in builds with the
/// Rust API): `Ok(None)` resolves to `null`, `Err` rejects with the message.
fn promise_fn<F, Fut>(f: F) -> TokenClosure
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<Option<String>, String>> + 'static,
{
    Closure::new(move || {
        let future = f();
        wasm_bindgen_futures::future_to_promise(async move {
            match future.await {
                Ok(Some(token)) => Ok(JsValue::from(token)),
                Ok(None) => Ok(JsValue::NULL),
                Err(message) => Err(JsValue::from(message)),
            }
        })
    })
}

/// Builds a [`Client`]; see [`Client::builder`].
#[must_use = "call .build() to create the client"]
pub struct ClientBuilder {
    url: String,
    options: Options,
    get_token: Option<TokenClosure>,
}

impl core::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// `clientId`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.options.client_id = Some(id.into());
        self
    }

    /// `topics`.
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.options.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// `events`: the hub-side type filter.
    pub fn events<S: Into<String>>(mut self, events: impl IntoIterator<Item = S>) -> Self {
        self.options.events = events.into_iter().map(Into::into).collect();
        self
    }

    /// `token`: a fixed token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// `getToken`: called before every connect and reconnect.
    pub fn get_token<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = Result<Option<String>, String>> + 'static,
    {
        self.options.has_get_token = true;
        // `get_ticket` wins, whatever the order.
        if !self.options.has_get_ticket {
            self.get_token = Some(promise_fn(f));
        }
        self
    }

    /// `getTicket`: called before every connect and reconnect (tickets are single use); the
    /// ticket it gives (from the hub's
    /// [`POST /tickets`](https://github.com/eventwire/eventwire/blob/main/docs/PROTOCOL.md),
    /// fetched by your app or your own backend) goes in the `ticket` query parameter, so no
    /// token ever travels in the URL. An `Err` (or an empty ticket) is a failed attempt: an
    /// `error` event of kind [`ErrorKind::TicketFailed`], then a retry on the backoff.
    /// It wins over `token` and `get_token`, which are then neither called nor sent.
    pub fn get_ticket<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = Result<String, String>> + 'static,
    {
        self.options.has_get_ticket = true;
        self.get_token = Some(promise_fn(move || {
            let future = f();
            async move { future.await.map(Some) }
        }));
        self
    }

    /// `lastEventId`: where to start.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.options.last_event_id = Some(id.into()).filter(|t| !t.is_empty());
        self
    }

    /// `withCredentials`.
    pub fn with_credentials(mut self, yes: bool) -> Self {
        self.options.with_credentials = yes;
        self
    }

    /// `autoConnect` (default true).
    pub fn auto_connect(mut self, yes: bool) -> Self {
        self.options.auto_connect = yes;
        self
    }

    /// `enabled` (default true).
    pub fn enabled(mut self, yes: bool) -> Self {
        self.options.enabled = yes;
        self
    }

    /// `backoff`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// `heartbeatTimeoutMs` (0 disables the watchdog).
    pub fn heartbeat_timeout_ms(mut self, ms: u32) -> Self {
        self.options.heartbeat_timeout_ms = Some(ms);
        self
    }

    /// Creates the client; it connects at once unless `auto_connect(false)` or
    /// `enabled(false)`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] or [`Error::InvalidUrl`] naming what is wrong.
    pub fn build(self) -> Result<Client, Error> {
        let get_token = self
            .get_token
            .as_ref()
            .map(|c| c.as_ref().unchecked_ref::<Function>().clone());
        Ok(Client {
            core: Core::new(
                &self.url,
                self.options,
                get_token,
                super::core::global("EventSource"),
            )?,
            _get_token: self.get_token,
        })
    }
}

/// An eventwire client (Rust API). Dropping it closes the connection.
#[derive(Debug)]
pub struct Client {
    core: Core,
    /// The `getToken` or `getTicket` closure the core calls; lives as long as the client.
    _get_token: Option<TokenClosure>,
}

/// A registered listener; dropping it removes the listener.
#[must_use = "the listener is removed when this handle is dropped"]
#[derive(Debug)]
pub struct Subscription {
    core: Weak<RefCell<Inner>>,
    /// The listener's id; the client owns its closure (so `close()` frees it too).
    id: Option<u64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let (Some(rc), Some(id)) = (self.core.upgrade(), self.id) {
            Core(rc).remove_id(id);
        }
    }
}

impl Client {
    /// Starts building a client for the hub's `/events` URL.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            options: Options::default(),
            get_token: None,
        }
    }

    fn subscribe(
        &self,
        event_type: &str,
        f: impl Fn(&ClientEvent) + 'static,
        once: bool,
    ) -> Subscription {
        let listener = Closure::<dyn Fn(JsValue)>::new(move |object: JsValue| {
            f(&ClientEvent::from_js(&object))
        });
        Subscription {
            core: Rc::downgrade(&self.core.0),
            id: self.core.add_owned_listener(event_type, listener, once),
        }
    }

    /// Calls `f` for every `event_type` event: stream events (including system events asked
    /// for by name) and lifecycle events (`open`, `statechange`, `reconnecting`, `gap`,
    /// `error`).
    pub fn on_event(&self, event_type: &str, f: impl Fn(&ClientEvent) + 'static) -> Subscription {
        self.subscribe(event_type, f, false)
    }

    /// Like [`Client::on_event`], for the next event only.
    pub fn once_event(&self, event_type: &str, f: impl Fn(&ClientEvent) + 'static) -> Subscription {
        self.subscribe(event_type, f, true)
    }

    /// Calls `f` with each `event_type` payload decoded into `T` (JSON, or the plain string
    /// when the payload is not JSON). Decode failures go to the `error` listeners with kind
    /// `decode`.
    #[cfg(feature = "typed")]
    pub fn on<T>(&self, event_type: &str, f: impl Fn(T) + 'static) -> Subscription
    where
        T: serde::de::DeserializeOwned + 'static,
    {
        let weak = Rc::downgrade(&self.core.0);
        self.on_event(event_type, move |ev| {
            let ClientEvent::Message(m) = ev else {
                return;
            };
            match crate::decode::decode_typed::<T>(&m.event_type, &m.data) {
                Ok(value) => f(value),
                Err(e) => {
                    if let Some(rc) = weak.upgrade() {
                        Core(rc).emit(Lifecycle::Error {
                            kind: ErrorKind::Decode,
                            message: e.to_string(),
                        });
                    }
                }
            }
        })
    }

    /// `readyState`.
    pub fn ready_state(&self) -> ReadyState {
        self.core.ready_state()
    }

    /// The hub URL, resolved against the page.
    pub fn url(&self) -> String {
        self.core.url()
    }

    /// Failed connection attempts since the last healthy connection.
    pub fn reconnect_attempts(&self) -> u32 {
        self.core.reconnect_attempts()
    }

    /// The id of the last event received.
    pub fn last_event_id(&self) -> Option<String> {
        self.core.last_event_id()
    }

    /// Connects (after `auto_connect(false)`, or after retries were exhausted).
    pub fn connect(&self) {
        self.core.connect();
    }

    /// Reconnects now and resets the backoff.
    pub fn reconnect(&self) {
        self.core.reconnect();
    }

    /// Ends everything; no callback runs after this.
    pub fn close(&self) {
        self.core.close();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.core.close();
    }
}
