//! The client core shared by the JavaScript and Rust APIs: owns the state machine, the
//! `EventSource`, timers, window listeners and the listener registry, and carries out the
//! machine's commands.
//!
//! The core speaks JavaScript only: listeners are JS functions called with plain event
//! objects (`{ type, data, raw, id }` for stream events, the lifecycle fields otherwise), and
//! `getToken` / `getTicket` is a JS function. The Rust API wraps Rust closures into JS
//! functions and reads its typed events back from those objects, so the build JavaScript users
//! get carries one dispatch path and no Rust-listener machinery. Payloads stay JS strings on
//! their way to listeners (no UTF-8 round trip through wasm memory): a stream event's
//! listeners' object is made in JavaScript before the event enters wasm, and its type is
//! known from the listener it came through; only system events are read into Rust. Ids stay
//! JS strings too: the last one is read into the machine only when it needs it (`SourceId`:
//! before a reconnect, or when read).
//!
//! Ownership: everything the browser can call back into (EventSource listeners, timers, the
//! window's `online` and the document's `visibilitychange` listeners) is a handle
//! ([`Listen`], [`Timer`]) stored in [`Inner`]; dropping it removes the listener or clears
//! the timer. All of them call one JS function per client, the [`Closure`] in
//! `Inner::callback`, with a [`Kind`] number that says what called (timers pass it, DOM
//! listeners are the callback bound to it or a JS function that calls it) and the event, so a
//! reconnect creates no Rust closure; `close()` drops the handles, then the closure. Callbacks
//! hold only a `Weak` reference, so dropping the client frees everything. User code
//! (listeners, `getToken`, `getTicket`) is never called while `Inner` is borrowed, and
//! `getToken` / `getTicket` always from a promise reaction, never inside `createClient` or a
//! listener's call.

use core::cell::{Ref, RefCell, RefMut};

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{prelude::*, JsCast};
use web_sys::EventSource;

use super::handles::{Listen, Timer};
use crate::prelude::*;
use crate::{
    decode::{is_lifecycle, SystemEvent},
    error::Error,
    listeners::Registry,
    machine::{Command, ErrorKind, Input, Io, Lifecycle, Machine, ReadyState, SourceId},
    options::Options,
    text::cat,
};

/// The current `EventSource` and the listeners attached to it (`open`, `error`, the system
/// events and one per listened type, all calling the client's callback: [`Kind`] says which).
/// Dropping it closes the `EventSource` and removes the listeners.
struct Source {
    es: EventSource,
    listeners: Vec<Listen>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.es.close();
    }
}

/// What called the client's callback: its first argument. Timers pass it to `setTimeout`,
/// DOM listeners are the callback bound to it, and the listener of a stream event type is
/// [`stream_listener`] with [`Kind::STREAM`] plus that type's index in [`Source::listeners`].
struct Kind;

impl Kind {
    const RETRY: u32 = 1;
    const WATCHDOG: u32 = 2;
    const ONLINE: u32 = 3;
    const VISIBILITY: u32 = 4;
    /// The `EventSource`'s `open` and `error` (connection events, and application events of
    /// those names).
    const OPEN: u32 = 5;
    const ERROR: u32 = 6;
    const STREAM: u32 = 8;
}

pub(crate) struct Inner {
    machine: Machine,
    /// Everything else: what carries out the machine's commands.
    io: Driver,
}

/// The browser side of a client: carries out the machine's commands as they come ([`Io`]).
pub(crate) struct Driver {
    listeners: Registry<Function>,
    /// `getToken`, or `getTicket` (the machine knows which one it is).
    get_token: Option<Function>,
    /// What the last `getToken`/`getTicket` call threw or resolved to when that was not a
    /// string: the `cause` of the next `ticket_failed` error. Never a ticket.
    cause: JsValue,
    /// The `EventSource` class: the `EventSource` option, or the global one (`undefined`
    /// where there is none: opening then fails like any other attempt).
    event_source: JsValue,
    with_credentials: bool,
    source: Option<Source>,
    /// The current `EventSource`'s last event ID as its events report it, a JS string
    /// handed to the machine only when it needs it (see [`Inner::adopt_id`]).
    source_id: SourceId<JsValue>,
    retry_timer: Option<Timer>,
    watchdog: Option<Timer>,
    window_listeners: Vec<Listen>,
    /// The one JS function behind every DOM listener and timer of this client; dropped by
    /// `close()` after all of them.
    callback: Option<Closure<dyn Fn(u32, JsValue)>>,
    /// `callback` as a JS function (kept apart so handles can be removed after it is gone).
    callback_fn: Function,
    /// What calls user code, done once the borrow of `Inner` has ended.
    later: Vec<Later>,
    /// The Rust API's listener closures, by listener id: owned here so that `close()` frees
    /// them too (a `Subscription` holds only the id).
    #[cfg(feature = "std")]
    owned: Vec<(u64, RustListener)>,
    disposed: bool,
}

/// A Rust API listener, as the JS function the core calls.
#[cfg(feature = "std")]
pub(crate) type RustListener = Closure<dyn Fn(JsValue)>;

/// Something that calls user code, done after the borrow of `Inner` ends.
enum Later {
    /// Call the listeners of this type with this event object.
    Emit(&'static str, JsValue),
    FetchToken(u64),
    /// The `EventSource` of attempt `seq` could not be created: a failed attempt, unless a
    /// newer one has started meanwhile (a listener called `reconnect()`).
    OpenFailed(u64, String),
}

/// A cheap handle to the shared client state.
#[derive(Clone)]
pub(crate) struct Core(pub(crate) Rc<RefCell<Inner>>);

impl core::fmt::Debug for Core {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.try_borrow() {
            Ok(inner) => f
                .debug_struct("Client")
                .field("url", &inner.machine.url())
                .field("readyState", &inner.machine.ready_state())
                .finish_non_exhaustive(),
            Err(_) => f.write_str("Client { .. }"),
        }
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

// The per-event path in JavaScript, so that a stream event enters wasm once, with its
// listeners' object made: the listener of a stream event type reads the event, runs
// `JSON.parse` in its own try/catch and builds the object literal, then calls the client's
// callback with the object and a number that names the type (no string read into wasm or
// compared); each listener is called in a try/catch of its own (wasm-bindgen's `catch`
// imports create a closure and an `arguments` object per call). wasm-bindgen writes it beside
// the glue (`snippets/*/inline0.js`); build-client-wasm.sh moves it into the glue.
#[wasm_bindgen(inline_js = r#"export const hot = {
  message(e) {
    const raw = e.data;
    if (typeof raw != "string") return;
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      data = raw;
    }
    return { type: e.type, data, raw, id: e.lastEventId || null };
  },
  listener(callback, kind) {
    return (e) => {
      const m = hot.message(e);
      if (m) callback(kind, m);
    };
  },
  call(listener, event) {
    try {
      listener(event);
    } catch (e) {
      console.error("eventwire: a listener threw", e);
    }
  },
  gap: (m) => ({ ...m, type: "gap" }),
};
"#)]
extern "C" {
    /// A stream event's listeners' object, `{ type, data, raw, id }`: `data` is the JSON
    /// value, or the string itself when the payload is not JSON (see [`crate::decode`]); `id`
    /// is `lastEventId`, `null` when it is `""`. `undefined` for other events (no string
    /// `data`: `open`, a connection `error`).
    #[wasm_bindgen(js_namespace = hot)]
    fn message(event: &JsValue) -> JsValue;

    /// The `EventSource` listener of a stream event type: calls `callback(kind, message(e))`
    /// (nothing for an event that is no stream event).
    #[wasm_bindgen(js_namespace = hot, js_name = listener)]
    fn stream_listener(callback: &Function, kind: u32) -> Function;

    /// Calls `listener(event)`; what it throws is reported on the console.
    #[wasm_bindgen(js_namespace = hot)]
    fn call(listener: &Function, event: &JsValue);

    /// The `gap` event's object: the `__gap` event's, with the type `gap`.
    #[wasm_bindgen(js_namespace = hot, js_name = gap)]
    fn gap_object(message: &JsValue) -> JsValue;
}

#[wasm_bindgen]
extern "C" {
    /// [`globalThis`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/globalThis):
    /// the window, or a worker's global scope. Read directly rather than through
    /// `web_sys::window()`, which probes four globals and costs imports and wasm.
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: JsValue;

    /// `JSON.parse` on a JS string as it is (js-sys's takes a `&str`, which would copy the
    /// payload into wasm memory and back). Only for system events: the hot path parses in
    /// [`message`].
    #[wasm_bindgen(js_namespace = JSON, js_name = parse, catch)]
    fn json_parse(text: &JsValue) -> Result<JsValue, JsValue>;

    /// The object [`message`] makes of a stream event, its `id` read with a direct property
    /// access (no key string copied out of wasm, no `Reflect`).
    type Message;
    /// The event's `lastEventId`, `null` when it is `""`.
    #[wasm_bindgen(method, getter)]
    fn id(this: &Message) -> JsValue;

    /// A promise, seen through a [`then`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/Promise/then)
    /// that takes plain functions (js-sys's takes closures).
    type Thenable;

    #[wasm_bindgen(method)]
    fn then(this: &Thenable, resolve: &JsValue, reject: &JsValue) -> Thenable;
}

/// `target[key]` (`undefined` when absent).
pub(crate) fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `target[key] = value` on a plain object.
pub(crate) fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Reflect.set on a plain object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

/// `globalThis[key]`.
pub(crate) fn global(key: &str) -> JsValue {
    GLOBAL.with(|global| get(global, key))
}

/// `globalThis[key]`, when it is an object (`document`, `location`).
fn global_object(key: &str) -> Option<JsValue> {
    Some(global(key)).filter(JsValue::is_object)
}

/// Resolves `url` against the page (relative URLs work) and checks it is http(s).
fn resolve_url(url: &str) -> Result<String, Error> {
    crate::url::validate(url)?;
    // Against the page (or worker) location; without one only absolute URLs resolve.
    let base = global_object("location")
        .and_then(|location| get(&location, "href").as_string())
        .unwrap_or_else(|| url.to_owned());
    let parsed = web_sys::Url::new_with_base(url, &base)
        .map_err(|_| Error::InvalidUrl(cat(&["`", url, "` is not a valid URL"])))?;
    // Properties read with `get`: one import for all of them.
    let text = |key| get(&parsed, key).as_string().unwrap_or_default();
    match text("protocol").as_str() {
        "http:" | "https:" => Ok(text("href")),
        other => Err(Error::InvalidUrl(cat(&[
            "`",
            url,
            "` uses ",
            other,
            " (only http and https)",
        ]))),
    }
}

/// The object listeners of a lifecycle event get, and its type.
pub(crate) fn lifecycle_object(event: &Lifecycle) -> (&'static str, JsValue) {
    let event_type = event.event_type();
    let o: JsValue = Object::new().into();
    set(&o, "type", &event_type.into());
    match event {
        Lifecycle::Open => {}
        Lifecycle::StateChange(state) => set(&o, "readyState", &(*state as u8).into()),
        Lifecycle::Reconnecting { attempt, delay_ms } => {
            set(&o, "attempt", &(*attempt).into());
            set(&o, "delayMs", &(*delay_ms).into());
        }
        Lifecycle::Error { kind, message } => {
            set(&o, "kind", &kind.as_str().into());
            set(&o, "message", &message.as_str().into());
        }
    }
    (event_type, o)
}

impl Core {
    /// Creates the client and, unless `autoConnect`/`enabled` say otherwise, connects.
    pub(crate) fn new(
        url: &str,
        options: Options,
        get_token: Option<Function>,
        event_source: JsValue,
    ) -> Result<Self, Error> {
        options.validate()?;
        let resolved = resolve_url(url)?;
        let seed = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
        let inner = Rc::new_cyclic(|weak: &Weak<RefCell<Inner>>| {
            let on_call = weak.clone();
            let callback = Closure::<dyn Fn(u32, JsValue)>::new(move |kind, what: JsValue| {
                if let Some(rc) = on_call.upgrade() {
                    Core(rc).on_callback(kind, &what);
                }
            });
            let callback_fn: Function = callback.as_ref().clone().unchecked_into();
            let with_credentials = options.with_credentials;
            RefCell::new(Inner {
                machine: Machine::new(resolved, options, seed),
                io: Driver {
                    listeners: Registry::default(),
                    get_token,
                    cause: JsValue::UNDEFINED,
                    event_source,
                    with_credentials,
                    source: None,
                    source_id: SourceId::default(),
                    retry_timer: None,
                    watchdog: None,
                    window_listeners: Vec::new(),
                    callback: Some(callback),
                    callback_fn,
                    later: Vec::new(),
                    #[cfg(feature = "std")]
                    owned: Vec::new(),
                    disposed: false,
                },
            })
        });
        let core = Core(inner);
        core.install_window_listeners();
        if core.inner().machine.wants_auto_connect() {
            core.feed(Input::Connect);
        }
        Ok(core)
    }

    /// The shared state. User code never runs under a borrow, so a borrow cannot collide; if
    /// one ever did, it throws a JS error rather than panicking (no panic message machinery).
    fn inner(&self) -> Ref<'_, Inner> {
        self.0
            .try_borrow()
            .expect_throw("eventwire: re-entrant call")
    }

    /// Like [`Core::inner`], mutably.
    fn inner_mut(&self) -> RefMut<'_, Inner> {
        self.0
            .try_borrow_mut()
            .expect_throw("eventwire: re-entrant call")
    }

    /// `online` on the global scope (windows and workers both fire it) and, on a page,
    /// `visibilitychange` on the document.
    fn install_window_listeners(&self) {
        let io = &mut self.inner_mut().io;
        let global = GLOBAL.with(JsValue::clone);
        let callback = &io.callback_fn;
        let mut handles = alloc::vec![Listen::new(
            &global,
            "online",
            bound(callback, Kind::ONLINE)
        )];
        if let Some(document) = global_object("document") {
            let listener = bound(callback, Kind::VISIBILITY);
            handles.push(Listen::new(&document, "visibilitychange", listener));
        }
        io.window_listeners = handles;
    }

    /// The client's one callback: `kind` says what called ([`Kind`]), `what` is the DOM
    /// event, or for a stream event its listeners' object.
    fn on_callback(&self, kind: u32, what: &JsValue) {
        if kind >= Kind::STREAM {
            // The type this listener was attached for (its source is the current one: a
            // replaced `EventSource` lost its listeners).
            let event_type = {
                let io = &self.inner().io;
                let listener = io
                    .source
                    .as_ref()
                    .and_then(|source| source.listeners.get((kind - Kind::STREAM) as usize));
                match listener {
                    Some(listener) => listener.event_type.clone(),
                    None => return,
                }
            };
            self.on_stream_event(&event_type, what);
            return;
        }
        let input = match kind {
            Kind::RETRY => Input::RetryTimerFired,
            Kind::WATCHDOG => Input::WatchdogFired { now_ms: now_ms() },
            Kind::ONLINE => Input::Online,
            // Only becoming visible matters; hiding the page leaves the stream alone.
            Kind::VISIBILITY
                if global_object("document")
                    .is_some_and(|d| get(&d, "visibilityState") == "visible") =>
            {
                Input::Visible
            }
            Kind::OPEN | Kind::ERROR => {
                let open = kind == Kind::OPEN;
                // Application events named `open` or `error` are MessageEvents (a string
                // `data`) on the same listener.
                let message = message(what);
                if !message.is_undefined() {
                    self.on_stream_event(if open { "open" } else { "error" }, &message);
                    return;
                }
                if open {
                    Input::Opened { now_ms: now_ms() }
                } else {
                    // Whatever the EventSource's readyState: the machine closes it and
                    // reconnects on its own schedule.
                    if self.inner().io.source.is_none() {
                        return;
                    }
                    Input::SourceError { now_ms: now_ms() }
                }
            }
            _ => return,
        };
        self.feed(input);
    }

    /// Handles one event from the stream (its listeners' object, made by [`message`]):
    /// bookkeeping, listeners, then system-event handling.
    fn on_stream_event(&self, event_type: &str, message: &JsValue) {
        let event: &Message = message.unchecked_ref();
        // `lastEventId` is the EventSource's own last event ID buffer, which the hub moves on
        // purpose: on `__connected` for a fresh connection (its starting point), with
        // `__position` after a replay, and on `__heartbeat` (the connection's position). An
        // event without an `id:` line repeats the previous value; after an empty `id:` line
        // it is "" (`null` in the object). It is exactly what a reconnect must name: every
        // event reports it, as the JS value it is, and the machine reads it only when it needs
        // it (see `SourceId`).
        let id = event.id();
        {
            // After `close()` both are no-ops (the machine is closed, nothing adopts the id).
            let mut inner = self.inner_mut();
            let Inner { machine, io } = &mut *inner;
            // Once an id was seen, emptiness no longer matters (see `SourceId::report`).
            let empty = !io.source_id.seen() && id.is_null();
            io.source_id.report(id, empty);
            machine.handle(Input::Activity { now_ms: now_ms() }, io);
        }
        self.dispatch(event_type, message);
        let Some(system) = SystemEvent::from_name(event_type) else {
            return;
        };
        // Parsed again, for the error (system events are few).
        let parsed = match json_parse(&get(message, "raw")) {
            Ok(v) => v,
            Err(e) => {
                self.emit(Lifecycle::Error {
                    kind: ErrorKind::Decode,
                    message: cat(&["bad ", event_type, " payload: ", &js_message(&e)]),
                });
                JsValue::UNDEFINED
            }
        };
        match system {
            SystemEvent::Connected => self.feed(Input::Connected {
                retry_ms: get(&parsed, "retryMs").as_f64(),
                heartbeat_secs: get(&parsed, "heartbeatSecs").as_f64(),
                heartbeat_event: get(&parsed, "heartbeatEvent").as_bool().unwrap_or(false),
            }),
            // Counted as activity above (their id reported, the watchdog's deadline moved);
            // nothing else to do.
            SystemEvent::Heartbeat | SystemEvent::Position => {}
            SystemEvent::Gap => self.dispatch("gap", &gap_object(message)),
            SystemEvent::Error | SystemEvent::Shutdown => {
                let server = system == SystemEvent::Error;
                let text = |key: &str| get(&parsed, key).as_string();
                let message = text("message").unwrap_or_else(|| {
                    if server {
                        "the hub ended the stream"
                    } else {
                        "the hub is shutting down"
                    }
                    .to_owned()
                });
                self.feed(Input::Ended {
                    // Sanitised by the machine.
                    retry_ms: get(&parsed, "retryMs").as_f64(),
                    server,
                    message,
                    now_ms: now_ms(),
                });
            }
        }
    }

    /// Feeds an input to the machine (after the last event id, see [`Inner::adopt_id`]),
    /// which has the driver carry out its commands; then does what calls user code.
    pub(crate) fn feed(&self, input: Input) {
        let later = {
            let mut inner = self.inner_mut();
            if inner.io.disposed {
                return;
            }
            inner.adopt_id();
            let Inner { machine, io } = &mut *inner;
            machine.handle(input, io);
            core::mem::take(&mut io.later)
        };
        for later in later {
            match later {
                Later::Emit(event_type, object) => self.dispatch(event_type, &object),
                Later::FetchToken(seq) => self.fetch_token(seq),
                Later::OpenFailed(seq, message) => self.feed(Input::OpenFailed {
                    seq,
                    message,
                    now_ms: now_ms(),
                }),
            }
        }
    }

    /// Calls `getToken` / `getTicket` for attempt `seq` and feeds its answer. It is called
    /// from a resolved promise, so a synchronous throw is a rejection like any other, and the
    /// `error` / `reconnecting` events of a failure reach listeners added after
    /// `createClient`.
    fn fetch_token(&self, seq: u64) {
        let get_token = {
            let inner = self.inner();
            if inner.io.disposed || !inner.machine.is_current(seq) {
                return;
            }
            inner.io.get_token.clone()
        };
        // Always there when the machine asks (the option comes with its function).
        let Some(get_token) = get_token else {
            return;
        };
        let weak = Rc::downgrade(&self.0);
        // One closure per request, handed to JS with `into_js_value`: the garbage collector
        // frees it once the promise has settled and let go of it. It is not owned by the
        // client because the promise may settle after `close()` (then it does nothing). Same
        // signature as the client's callback, so the wasm carries one closure shim.
        let on_settled = Closure::<dyn Fn(u32, JsValue)>::new(move |ok: u32, value: JsValue| {
            let Some(rc) = weak.upgrade() else {
                return;
            };
            // Anything but a string is no token (and for `getTicket` a failure, whose cause
            // is what was thrown or given).
            let token = if ok == 1 {
                Ok(value.as_string())
            } else {
                Err(js_message(&value))
            };
            if !matches!(token, Ok(Some(_))) {
                if let Ok(mut inner) = rc.try_borrow_mut() {
                    inner.io.cause = value;
                }
            }
            Core(rc).feed(Input::TokenReady { seq, token });
        })
        .into_js_value();
        let on_settled: &Function = on_settled.unchecked_ref();
        let resolved: JsValue = bound(on_settled, 1).into();
        let rejected: JsValue = bound(on_settled, 0).into();
        js_sys::Promise::resolve(&JsValue::UNDEFINED)
            .unchecked_ref::<Thenable>()
            .then(&get_token, &JsValue::UNDEFINED)
            .then(&resolved, &rejected);
    }

    /// Tells the listeners of a lifecycle event.
    pub(crate) fn emit(&self, event: Lifecycle) {
        let (event_type, object) = lifecycle_object(&event);
        self.dispatch(event_type, &object);
    }

    /// Calls every listener of `event_type` with `event`. Nothing runs after `close()`, not
    /// even the rest of a dispatch that a listener interrupted by closing.
    pub(crate) fn dispatch(&self, event_type: &str, event: &JsValue) {
        let mut dispatch = {
            let io = &self.inner().io;
            if io.disposed {
                return;
            }
            io.listeners.dispatch()
        };
        loop {
            let listener = {
                let io = &mut self.inner_mut().io;
                if io.disposed {
                    return;
                }
                // Listeners removed by an earlier listener of this dispatch are skipped.
                match io.listeners.next(event_type, &mut dispatch) {
                    Some(listener) => listener,
                    None => return,
                }
            };
            call(&listener, event);
        }
    }

    /// Registers a listener (ignored when the same function is already registered for this
    /// type); attaches a dispatcher for its type to the open `EventSource` if needed.
    pub(crate) fn add_listener(
        &self,
        event_type: &str,
        listener: Function,
        once: bool,
    ) -> Option<u64> {
        let io = &mut self.inner_mut().io;
        if io.disposed {
            return None;
        }
        let id = io
            .listeners
            .add_unique(event_type, listener, once, |a, b| a == b)?;
        attach(&mut io.source, &io.callback_fn, event_type);
        Some(id)
    }

    /// Registers a Rust listener's closure, which the client then owns (see
    /// `Driver::owned`).
    #[cfg(feature = "std")]
    pub(crate) fn add_owned_listener(
        &self,
        event_type: &str,
        closure: RustListener,
        once: bool,
    ) -> Option<u64> {
        let function: &Function = closure.as_ref().unchecked_ref();
        let id = self.add_listener(event_type, function.clone(), once)?;
        self.inner_mut().io.owned.push((id, closure));
        Some(id)
    }

    /// Removes the listener with this id (and frees its closure, for a Rust listener).
    pub(crate) fn remove_id(&self, id: u64) {
        if let Ok(mut inner) = self.0.try_borrow_mut() {
            inner.io.listeners.remove(id);
            // Freeing a closure that is running (a listener dropping its own subscription)
            // is safe: wasm-bindgen defers it until the call returns.
            #[cfg(feature = "std")]
            inner.io.owned.retain(|(owned, _)| *owned != id);
        }
    }

    /// Removes a listener function registered for `event_type`.
    pub(crate) fn remove_listener(&self, event_type: &str, f: &Function) {
        self.inner_mut()
            .io
            .listeners
            .remove_where(event_type, |g| g == f);
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
        if inner.io.disposed {
            return;
        }
        // The last event id stays readable after `close()`.
        inner.adopt_id();
        let Inner { machine, io } = &mut *inner;
        machine.handle(Input::Close, io);
        // The statechange to CLOSED is not delivered: nothing runs after close().
        io.later.clear();
        io.disposed = true;
        io.source = None;
        io.retry_timer = None;
        io.watchdog = None;
        io.window_listeners.clear();
        io.listeners.clear();
        #[cfg(feature = "std")]
        io.owned.clear();
        io.get_token = None;
        io.cause = JsValue::UNDEFINED;
        // Last: nothing refers to it any more. Safe even when `close()` runs inside it (a
        // listener that closes the client): wasm-bindgen frees it when that call returns.
        io.callback = None;
    }

    /// `readyState`.
    pub(crate) fn ready_state(&self) -> ReadyState {
        self.inner().machine.ready_state()
    }

    /// `url` (resolved).
    #[cfg(feature = "std")]
    pub(crate) fn url(&self) -> String {
        self.inner().machine.url().to_owned()
    }

    /// `url`, as a JS string.
    pub(crate) fn url_js(&self) -> JsValue {
        JsValue::from_str(self.inner().machine.url())
    }

    /// `reconnectAttempts`.
    pub(crate) fn reconnect_attempts(&self) -> u32 {
        self.inner().machine.attempts()
    }

    /// `lastEventId`.
    #[cfg(feature = "std")]
    pub(crate) fn last_event_id(&self) -> Option<String> {
        let mut inner = self.inner_mut();
        inner.adopt_id();
        inner.machine.last_event_id().map(str::to_owned)
    }

    /// `lastEventId`, as a JS string or `undefined`.
    pub(crate) fn last_event_id_js(&self) -> JsValue {
        let mut inner = self.inner_mut();
        inner.adopt_id();
        inner
            .machine
            .last_event_id()
            .map_or(JsValue::UNDEFINED, JsValue::from_str)
    }
}

/// The message of a thrown JS value: an `Error`'s `message`, or a thrown string.
pub(crate) fn js_message(e: &JsValue) -> String {
    get(e, "message")
        .as_string()
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".to_owned())
}

impl Inner {
    /// Hands the machine the id the current `EventSource`'s events reported since the last
    /// time, if any: before every input but the per-event `Activity` (so before the machine
    /// can close that `EventSource` or name the id in a new URL) and before the id is read.
    #[inline(never)]
    fn adopt_id(&mut self) {
        if let Some(id) = self.io.source_id.take() {
            let id = id.as_string().unwrap_or_default();
            self.machine.handle(Input::LastEventId { id }, &mut self.io);
        }
    }
}

impl Io for Driver {
    fn run(&mut self, command: Command) {
        match command {
            Command::FetchToken { seq } => self.later.push(Later::FetchToken(seq)),
            Command::OpenSource { url, seq } => {
                self.source = None;
                self.source_id.reset();
                if let Err(e) = self.open_source(&url) {
                    self.later.push(Later::OpenFailed(seq, js_message(&e)));
                }
            }
            // What its events reported was adopted before this input.
            Command::CloseSource => self.source = None,
            Command::SetRetryTimer { ms } => {
                self.retry_timer = None;
                self.retry_timer = Some(Timer::new(&self.callback_fn, ms, Kind::RETRY));
            }
            Command::ClearRetryTimer => self.retry_timer = None,
            Command::SetWatchdog { ms } => {
                self.watchdog = None;
                self.watchdog = Some(Timer::new(&self.callback_fn, ms, Kind::WATCHDOG));
            }
            Command::ClearWatchdog => self.watchdog = None,
            Command::Emit(lifecycle) => self.emit(&lifecycle),
        }
    }
}

impl Driver {
    /// Queues a lifecycle event for the listeners. A `ticket_failed` error carries the error
    /// itself as `error` (an `Error` of type `ticket_failed`, what `getTicket` threw as its
    /// `cause`).
    fn emit(&mut self, event: &Lifecycle) {
        let (event_type, object) = lifecycle_object(event);
        if let Lifecycle::Error {
            kind: ErrorKind::TicketFailed,
            message,
        } = event
        {
            let error = JsValue::from(Error::TicketFailed(message.clone()));
            let cause = core::mem::replace(&mut self.cause, JsValue::UNDEFINED);
            set(&error, "cause", &cause);
            set(&object, "error", &error);
        }
        self.later.push(Later::Emit(event_type, object));
    }

    fn open_source(&mut self, url: &str) -> Result<(), JsValue> {
        // An `EventSourceInit` dictionary is a plain object.
        let init: JsValue = Object::new().into();
        set(&init, "withCredentials", &self.with_credentials.into());
        // `new EventSource(url, init)` on the configured class (for tests, or Node's
        // `eventsource` package); one `Reflect.construct` serves every class.
        let args = js_sys::Array::of2(&url.into(), &init);
        let class: &Function = self.event_source.unchecked_ref();
        let es: EventSource = Reflect::construct(class, &args)?.unchecked_into();
        let listeners = alloc::vec![
            Listen::new(&es, "open", bound(&self.callback_fn, Kind::OPEN)),
            Listen::new(&es, "error", bound(&self.callback_fn, Kind::ERROR)),
        ];
        self.source = Some(Source { es, listeners });
        for system in SystemEvent::ALL {
            attach(&mut self.source, &self.callback_fn, system.name());
        }
        for event_type in self.listeners.event_types() {
            attach(&mut self.source, &self.callback_fn, event_type);
        }
        Ok(())
    }
}

/// `callback` bound to `kind`: it calls `callback(kind, event)`.
fn bound(callback: &Function, kind: u32) -> Function {
    callback
        .bind1(&JsValue::NULL, &kind.into())
        .unchecked_into()
}

/// Makes the current `EventSource` call the client's callback for `event_type` events, as
/// [`Kind::STREAM`] plus the listener's index.
fn attach(source: &mut Option<Source>, callback: &Function, event_type: &str) {
    // Lifecycle events come from the SDK; `open` and `error` are already listened for
    // (connection events and application events of those names arrive on the same listener).
    if is_lifecycle(event_type) {
        return;
    }
    let Some(source) = source.as_mut() else {
        return;
    };
    if source
        .listeners
        .iter()
        .any(|l| &*l.event_type == event_type)
    {
        return;
    }
    let kind = Kind::STREAM + source.listeners.len() as u32;
    let listener = stream_listener(callback, kind);
    source
        .listeners
        .push(Listen::new(&source.es, event_type, listener));
}
