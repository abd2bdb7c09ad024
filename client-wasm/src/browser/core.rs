//! The client core shared by the JavaScript and Rust APIs: owns the state machine, the
//! `EventSource`, timers, window listeners and the listener registry, and carries out the
//! machine's commands.
//!
//! Ownership: everything the browser can call back into (EventSource listeners, timers, the
//! window's `online` and the document's `visibilitychange` listeners) is a handle
//! ([`Listen`], [`Timer`]) stored in [`Inner`]; dropping it removes the listener or clears
//! the timer. All of them call one JS function per client, the [`Closure`] in
//! `Inner::callback` (an event object for DOM events, a [`TimerKind`] number for timers), so
//! a reconnect creates no closure; `close()` drops the handles, then the closure. Callbacks
//! hold only a `Weak` reference, so dropping the client frees everything. User code
//! (listeners, `getToken`) is never called while `Inner` is borrowed.

use core::{
    cell::{Ref, RefCell, RefMut},
    future::Future,
    pin::Pin,
};

use wasm_bindgen::{prelude::*, JsCast};
use web_sys::{EventSource, EventSourceInit, MessageEvent};

use super::handles::{Listen, Timer};
use crate::prelude::*;
use crate::{
    decode::{decode_with, is_lifecycle, millis_hint, Decoded, SystemEvent},
    error::Error,
    listeners::Registry,
    machine::{Command, ErrorKind, Input, Lifecycle, Machine, ReadyState},
    options::Options,
    text::cat,
};

/// An event that arrived on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event type (`event:` field; `message` when absent).
    pub event_type: String,
    /// The payload as sent (`data:` lines joined).
    pub data: String,
    /// The event id; `None` for system events, which carry none (except `__connected`, which
    /// may carry the hub's newest id as a starting point).
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
            Self::Lifecycle(Lifecycle::Open) => "open",
            Self::Lifecycle(Lifecycle::StateChange(_)) => "statechange",
            Self::Lifecycle(Lifecycle::Reconnecting { .. }) => "reconnecting",
            Self::Lifecycle(Lifecycle::Error { .. }) => "error",
        }
    }
}

/// A boxed future, as returned by a Rust token provider.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Option<String>, String>>>>;

/// Where tokens come from before each (re)connect.
#[derive(Clone)]
pub(crate) enum TokenSource {
    /// A JavaScript function returning a string or a promise of one.
    Js(js_sys::Function),
    /// A Rust token provider, its future already turned into a promise (by the Rust API, so
    /// the future executor is only in builds that use it).
    Rust(Rc<dyn Fn() -> js_sys::Promise>),
}

/// A registered listener.
#[derive(Clone)]
pub(crate) enum Listener {
    /// A JavaScript function, called with `{ type, data, raw, id }` (or the lifecycle fields).
    Js(js_sys::Function),
    /// A Rust closure.
    Rust(Rc<dyn Fn(&ClientEvent)>),
}

impl Listener {
    fn same(a: &Self, b: &Self) -> bool {
        match (a, b) {
            (Self::Js(a), Self::Js(b)) => JsValue::from(a) == JsValue::from(b),
            (Self::Rust(a), Self::Rust(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The current `EventSource` and the listeners attached to it (`open`, `error`, the system
/// events and one per listened type, all calling the client's callback). Dropping it closes
/// the `EventSource` and removes the listeners.
struct Source {
    es: EventSource,
    listeners: Vec<Listen>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.es.close();
    }
}

/// What a timer passes to the client's callback (a number, where DOM events pass an object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum TimerKind {
    Retry = 1,
    Watchdog = 2,
}

pub(crate) struct Inner {
    machine: Machine,
    url: String,
    listeners: Registry<Listener>,
    token_source: Option<TokenSource>,
    source: Option<Source>,
    retry_timer: Option<Timer>,
    watchdog: Option<Timer>,
    window_listeners: Vec<Listen>,
    /// The one JS function behind every DOM listener and timer of this client; dropped by
    /// `close()` after all of them.
    callback: Option<Closure<dyn Fn(JsValue, JsValue)>>,
    /// `callback` as a JS function (kept apart so handles can be removed after it is gone).
    callback_fn: js_sys::Function,
    disposed: bool,
}

/// Something that calls user code, done after the borrow of `Inner` ends.
enum Effect {
    Emit(Lifecycle),
    FetchToken(u64),
    Feed(Input),
}

/// A cheap handle to the shared client state.
#[derive(Clone)]
pub(crate) struct Core(pub(crate) Rc<RefCell<Inner>>);

impl core::fmt::Debug for Core {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.try_borrow() {
            Ok(inner) => f
                .debug_struct("Client")
                .field("url", &inner.url)
                .field("readyState", &inner.machine.ready_state())
                .finish_non_exhaustive(),
            Err(_) => f.write_str("Client { .. }"),
        }
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[wasm_bindgen]
extern "C" {
    /// [`globalThis`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/globalThis):
    /// the window, or a worker's global scope. Read directly rather than through
    /// `web_sys::window()`, which probes four globals and costs imports and wasm.
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: JsValue;
}

/// `globalThis[key]`, when it is an object (`document`, `location`).
fn global_object(key: &str) -> Option<JsValue> {
    GLOBAL
        .with(|global| js_sys::Reflect::get(global, &JsValue::from_str(key)).ok())
        .filter(JsValue::is_object)
}

/// Resolves `url` against the page (relative URLs work) and checks it is http(s).
fn resolve_url(url: &str) -> Result<String, Error> {
    crate::url::validate(url)?;
    let base = global_object("location")
        .and_then(|location| js_sys::Reflect::get(&location, &JsValue::from_str("href")).ok())
        .and_then(|href| href.as_string())
        .unwrap_or_default();
    let parsed = if base.is_empty() {
        web_sys::Url::new(url)
    } else {
        web_sys::Url::new_with_base(url, &base)
    }
    .map_err(|_| Error::InvalidUrl(cat(&["`", url, "` is not a valid URL"])))?;
    match parsed.protocol().as_str() {
        "http:" | "https:" => Ok(parsed.href()),
        other => Err(Error::InvalidUrl(cat(&[
            "`",
            url,
            "` uses ",
            other,
            " (only http and https)",
        ]))),
    }
}

impl Core {
    /// Creates the client and, unless `autoConnect`/`enabled` say otherwise, connects.
    pub(crate) fn new(
        url: &str,
        options: Options,
        token_source: Option<TokenSource>,
    ) -> Result<Self, Error> {
        options.validate()?;
        let resolved = resolve_url(url)?;
        let seed = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
        let auto = options.auto_connect && options.enabled;
        let inner = Rc::new_cyclic(|weak: &Weak<RefCell<Inner>>| {
            let on_call = weak.clone();
            let callback = Closure::<dyn Fn(JsValue, JsValue)>::new(move |what, _: JsValue| {
                if let Some(rc) = on_call.upgrade() {
                    Core(rc).on_callback(&what);
                }
            });
            let callback_fn: js_sys::Function = callback.as_ref().clone().unchecked_into();
            RefCell::new(Inner {
                machine: Machine::new(resolved.clone(), options, seed),
                url: resolved,
                listeners: Registry::default(),
                token_source,
                source: None,
                retry_timer: None,
                watchdog: None,
                window_listeners: Vec::new(),
                callback: Some(callback),
                callback_fn,
                disposed: false,
            })
        });
        let core = Core(inner);
        core.install_window_listeners();
        if auto {
            core.feed(Input::Connect);
        }
        Ok(core)
    }

    /// The shared state; a re-entrant call (impossible: user code never runs under a borrow)
    /// throws instead of panicking, so no panic message is formatted.
    fn inner(&self) -> Ref<'_, Inner> {
        self.0
            .try_borrow()
            .expect_throw("eventwire: re-entrant client call")
    }

    /// Like [`Core::inner`], mutably.
    fn inner_mut(&self) -> RefMut<'_, Inner> {
        self.0
            .try_borrow_mut()
            .expect_throw("eventwire: re-entrant client call")
    }

    /// `online` on the global scope (windows and workers both fire it) and, on a page,
    /// `visibilitychange` on the document.
    fn install_window_listeners(&self) {
        let mut inner = self.inner_mut();
        let global = GLOBAL.with(JsValue::clone);
        let mut handles = alloc::vec![Listen::new(&global, "online", &inner.callback_fn)];
        if let Some(document) = global_object("document") {
            handles.push(Listen::new(
                &document,
                "visibilitychange",
                &inner.callback_fn,
            ));
        }
        inner.window_listeners = handles;
    }

    /// The client's one callback: a timer fired (`what` is a [`TimerKind`] number) or a DOM
    /// event arrived (`what` is the event).
    fn on_callback(&self, what: &JsValue) {
        if let Some(kind) = what.as_f64() {
            if kind == f64::from(TimerKind::Retry as u32) {
                self.feed(Input::RetryTimerFired);
            } else if kind == f64::from(TimerKind::Watchdog as u32) {
                self.feed(Input::WatchdogFired { now_ms: now_ms() });
            }
            return;
        }
        let event: &web_sys::Event = what.unchecked_ref();
        let event_type = event.type_();
        // Stream events are MessageEvents, including application events named `error`.
        if let Some(message) = event.dyn_ref::<MessageEvent>() {
            on_stream_event(self, &event_type, message);
            return;
        }
        let input = match event_type.as_str() {
            "open" => Input::Opened { now_ms: now_ms() },
            "error" => {
                let Some(ready_state) = self
                    .inner()
                    .source
                    .as_ref()
                    .map(|s| ReadyState::from_number(s.es.ready_state()))
                else {
                    return;
                };
                Input::SourceError {
                    ready_state,
                    now_ms: now_ms(),
                }
            }
            "online" => Input::Online,
            "visibilitychange" => {
                // Only becoming visible matters; hiding the page leaves the stream alone.
                let visible = event.target().is_some_and(|document| {
                    document
                        .unchecked_into::<web_sys::Document>()
                        .visibility_state()
                        == web_sys::VisibilityState::Visible
                });
                if !visible {
                    return;
                }
                Input::Visible
            }
            _ => return,
        };
        self.feed(input);
    }

    /// Feeds an input to the machine and carries out what it answers.
    pub(crate) fn feed(&self, input: Input) {
        // Inputs that effects feed back are handled after the current batch, in order
        // (batches taken whole: no `Vec::remove(0)` and its panic path).
        let mut queue = alloc::vec![input];
        while !queue.is_empty() {
            for input in core::mem::take(&mut queue) {
                let effects = {
                    let mut inner = self.inner_mut();
                    if inner.disposed {
                        return;
                    }
                    let commands = inner.machine.handle(input);
                    inner.run(commands)
                };
                for effect in effects {
                    match effect {
                        Effect::Emit(lifecycle) => {
                            self.dispatch(&ClientEvent::Lifecycle(lifecycle));
                        }
                        Effect::FetchToken(seq) => self.fetch_token(seq),
                        Effect::Feed(input) => queue.push(input),
                    }
                }
            }
        }
    }

    fn fetch_token(&self, seq: u64) {
        let source = {
            let inner = self.inner();
            if inner.disposed || !inner.machine.is_current(seq) {
                return;
            }
            inner.token_source.clone()
        };
        let promise = match source {
            None => {
                return self.feed(Input::TokenReady {
                    seq,
                    token: Ok(None),
                })
            }
            Some(TokenSource::Rust(f)) => f(),
            Some(TokenSource::Js(f)) => match f.call0(&JsValue::UNDEFINED) {
                Err(e) => {
                    return self.feed(Input::TokenReady {
                        seq,
                        token: Err(js_message(&e)),
                    })
                }
                Ok(value) => js_sys::Promise::resolve(&value),
            },
        };
        let weak = Rc::downgrade(&self.0);
        // One closure per token request, handed to JS with `into_js_value`: the garbage
        // collector frees it once the promise has settled and let go of it. It is not owned
        // by the client because the promise may settle after `close()` (then it does nothing).
        let on_settled = Closure::<dyn Fn(JsValue, JsValue)>::new(move |ok: JsValue, value| {
            let token = if ok.is_truthy() {
                token_value(&value)
            } else {
                Err(js_message(&value))
            };
            feed_weak(&weak, Input::TokenReady { seq, token });
        })
        .into_js_value();
        let on_settled: &js_sys::Function = on_settled.unchecked_ref();
        let resolved: JsValue = on_settled.bind1(&JsValue::NULL, &JsValue::TRUE).into();
        let rejected: JsValue = on_settled.bind1(&JsValue::NULL, &JsValue::FALSE).into();
        promise
            .unchecked_ref::<Thenable>()
            .then(&resolved, &rejected);
    }

    /// Calls every listener of `event`'s type. Nothing runs after `close()`, not even the
    /// rest of a dispatch that a listener interrupted by closing.
    pub(crate) fn dispatch(&self, event: &ClientEvent) {
        let listeners = {
            let mut inner = self.inner_mut();
            if inner.disposed {
                return;
            }
            inner.listeners.take_for_dispatch(event.event_type())
        };
        if listeners.is_empty() {
            return;
        }
        let mut js_event: Option<JsValue> = None;
        for (id, listener, once) in listeners {
            {
                let inner = self.inner();
                if inner.disposed {
                    return;
                }
                // Removed by an earlier listener of this same dispatch: skip it.
                if !once && !inner.listeners.contains(id) {
                    continue;
                }
            }
            match listener {
                Listener::Rust(f) => f(event),
                Listener::Js(f) => {
                    let arg = js_event.get_or_insert_with(|| super::js::event_object(event));
                    if let Err(e) = f.call1(&JsValue::UNDEFINED, arg) {
                        web_sys::console::error_2(&"eventwire: a listener threw".into(), &e);
                    }
                }
            }
        }
    }

    /// Registers a listener (ignored when the same JS function is already registered for
    /// this type); attaches a dispatcher for its type to the open `EventSource` if needed.
    pub(crate) fn add_listener(
        &self,
        event_type: &str,
        listener: Listener,
        once: bool,
    ) -> Option<u64> {
        let mut inner = self.inner_mut();
        if inner.disposed {
            return None;
        }
        let id = inner
            .listeners
            .add_unique(event_type, listener, once, Listener::same)?;
        inner.attach(event_type);
        Some(id)
    }

    /// Removes the listener with this id.
    pub(crate) fn remove_id(&self, id: u64) {
        if let Ok(mut inner) = self.0.try_borrow_mut() {
            inner.listeners.remove(id);
        }
    }

    /// Removes a JS listener function registered for `event_type`.
    pub(crate) fn remove_js(&self, event_type: &str, f: &js_sys::Function) {
        let target = JsValue::from(f);
        self.inner_mut().listeners.remove_where(
            event_type,
            |l| matches!(l, Listener::Js(g) if JsValue::from(g) == target),
        );
    }

    /// `connect()`.
    pub(crate) fn connect(&self) {
        self.feed(Input::Connect);
    }

    /// `reconnect()`.
    pub(crate) fn reconnect(&self) {
        self.feed(Input::Reconnect);
    }

    /// `close()`: ends everything and frees every closure and timer; no callback runs after.
    pub(crate) fn close(&self) {
        let mut inner = self.inner_mut();
        if inner.disposed {
            return;
        }
        let commands = inner.machine.handle(Input::Close);
        // The statechange to CLOSED is not delivered: nothing runs after close().
        let _ = inner.run(commands);
        inner.disposed = true;
        inner.source = None;
        inner.retry_timer = None;
        inner.watchdog = None;
        inner.window_listeners.clear();
        inner.listeners.clear();
        inner.token_source = None;
        // Last: nothing refers to it any more. Safe even when `close()` runs inside it (a
        // listener that closes the client): wasm-bindgen frees it when that call returns.
        inner.callback = None;
    }

    /// `readyState`.
    pub(crate) fn ready_state(&self) -> ReadyState {
        self.inner().machine.ready_state()
    }

    /// `url` (resolved).
    pub(crate) fn url(&self) -> String {
        self.inner().url.clone()
    }

    /// `reconnectAttempts`.
    pub(crate) fn reconnect_attempts(&self) -> u32 {
        self.inner().machine.attempts()
    }

    /// `lastEventId`.
    pub(crate) fn last_event_id(&self) -> Option<String> {
        self.inner().machine.last_event_id().map(str::to_owned)
    }
}

/// Feeds an input if the client still exists.
pub(crate) fn feed_weak(weak: &Weak<RefCell<Inner>>, input: Input) {
    if let Some(rc) = weak.upgrade() {
        Core(rc).feed(input);
    }
}

#[wasm_bindgen]
extern "C" {
    /// A promise, seen through a [`then`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/Promise/then)
    /// that takes plain functions (js-sys's takes closures).
    type Thenable;

    #[wasm_bindgen(method)]
    fn then(this: &Thenable, resolve: &JsValue, reject: &JsValue);
}

/// What a token promise resolved to: a string, or nothing (`undefined`/`null`).
fn token_value(value: &JsValue) -> Result<Option<String>, String> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| "getToken must resolve to a string".to_owned())
}

/// The message of a thrown JS value.
pub(crate) fn js_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| "unknown error".to_owned())
}

impl Inner {
    /// Carries out the machine's commands that call no user code; returns the rest.
    fn run(&mut self, commands: Vec<Command>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for command in commands {
            match command {
                Command::FetchToken { seq } => effects.push(Effect::FetchToken(seq)),
                Command::OpenSource { url } => {
                    self.source = None;
                    if let Err(message) = self.open_source(&url) {
                        effects.push(Effect::Emit(Lifecycle::Error {
                            kind: ErrorKind::Connection,
                            message,
                        }));
                        effects.push(Effect::Feed(Input::SourceError {
                            ready_state: ReadyState::Closed,
                            now_ms: now_ms(),
                        }));
                    }
                }
                Command::CloseSource => self.source = None,
                Command::SetRetryTimer { ms } => {
                    self.retry_timer = None;
                    self.retry_timer =
                        Some(Timer::new(&self.callback_fn, ms, TimerKind::Retry as u32));
                }
                Command::ClearRetryTimer => self.retry_timer = None,
                Command::SetWatchdog { ms } => {
                    self.watchdog = None;
                    self.watchdog = Some(Timer::new(
                        &self.callback_fn,
                        ms,
                        TimerKind::Watchdog as u32,
                    ));
                }
                Command::ClearWatchdog => self.watchdog = None,
                Command::Emit(lifecycle) => effects.push(Effect::Emit(lifecycle)),
            }
        }
        effects
    }

    fn open_source(&mut self, url: &str) -> Result<(), String> {
        let init = EventSourceInit::new();
        init.set_with_credentials(self.machine.options().with_credentials);
        let es = EventSource::new_with_event_source_init_dict(url, &init)
            .map_err(|e| cat(&["cannot open EventSource: ", &js_message(&e)]))?;
        let listeners = alloc::vec![
            Listen::new(&es, "open", &self.callback_fn),
            Listen::new(&es, "error", &self.callback_fn),
        ];
        self.source = Some(Source { es, listeners });
        for system in SystemEvent::ALL {
            self.attach(system.name());
        }
        for event_type in self.listeners.types() {
            self.attach(&event_type);
        }
        Ok(())
    }

    /// Makes the current `EventSource` call the client's callback for `event_type` events.
    fn attach(&mut self, event_type: &str) {
        // Lifecycle events come from the SDK; `error` is already listened for (connection
        // errors and application events named `error` arrive on the same listener).
        if is_lifecycle(event_type) {
            return;
        }
        let Some(source) = self.source.as_mut() else {
            return;
        };
        if source
            .listeners
            .iter()
            .any(|l| l.event_type() == event_type)
        {
            return;
        }
        source
            .listeners
            .push(Listen::new(&source.es, event_type, &self.callback_fn));
    }
}

/// Handles one event from the stream: bookkeeping, listeners, then system-event handling.
fn on_stream_event(core: &Core, event_type: &str, message: &MessageEvent) {
    let raw = message.data().as_string().unwrap_or_default();
    let system = SystemEvent::from_name(event_type);
    // `lastEventId` is the EventSource's own last event ID, which the hub moves on purpose: on
    // `__connected` for a fresh connection (its starting point), with an id-only block after a
    // replay, and on heartbeats (the connection's position). An event without an `id:` line
    // repeats the previous value. It is exactly what a reconnect must name, so take it always.
    let id = Some(message.last_event_id()).filter(|id| !id.is_empty());
    let msg = Message {
        event_type: event_type.to_owned(),
        data: raw,
        id: id.clone(),
    };
    core.feed(Input::Activity { id });
    core.dispatch(&ClientEvent::Message(msg.clone()));
    let Some(system) = system else {
        return;
    };
    let parsed = match js_sys::JSON::parse(&msg.data) {
        Ok(v) => v,
        Err(e) => {
            core.dispatch(&ClientEvent::Lifecycle(Lifecycle::Error {
                kind: ErrorKind::Decode,
                message: cat(&["bad ", event_type, " payload: ", &js_message(&e)]),
            }));
            JsValue::UNDEFINED
        }
    };
    let number = |key: &str| {
        js_sys::Reflect::get(&parsed, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_f64())
    };
    let text = |key: &str| {
        js_sys::Reflect::get(&parsed, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
    };
    match system {
        SystemEvent::Connected => core.feed(Input::Connected {
            heartbeat_secs: number("heartbeatSecs"),
            heartbeat_event: js_sys::Reflect::get(&parsed, &JsValue::from_str("heartbeatEvent"))
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }),
        // Counted as activity above (it re-arms the watchdog); nothing else to do.
        SystemEvent::Heartbeat => {}
        SystemEvent::Gap => core.dispatch(&ClientEvent::Gap(msg)),
        SystemEvent::Error | SystemEvent::Shutdown => {
            let server = system == SystemEvent::Error;
            let message = text("message").unwrap_or_else(|| {
                if server {
                    cat(&[
                        "the hub ended the stream (",
                        &text("reason").unwrap_or_default(),
                        ")",
                    ])
                } else {
                    "the hub is shutting down".to_owned()
                }
            });
            core.feed(Input::Ended {
                retry_ms: millis_hint(number("retryMs")).map(f64::from),
                server,
                message,
                now_ms: now_ms(),
            });
        }
    }
}

/// The `data` value JavaScript listeners get: the JSON value, or the string itself.
pub(crate) fn js_data(raw: &str) -> JsValue {
    match decode_with(raw, js_sys::JSON::parse) {
        Decoded::Value(v) => v,
        Decoded::Text(s) => JsValue::from_str(s),
    }
}
