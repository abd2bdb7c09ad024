//! The JavaScript API, exported with wasm-bindgen: `createClient(url, options)` and the
//! client's methods. The npm package re-exports it as is.
//!
//! ```js
//! import init, { createClient } from "eventwire-client";
//! await init();
//! const client = createClient("https://hub.example/events", { topics: ["orders"] });
//! const off = client.on("notification", ({ data, id }) => console.log(id, data));
//! client.addEventListener("error", ({ kind, message }) => console.warn(kind, message));
//! ```

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{prelude::*, JsCast};

use super::core::{js_data, ClientEvent, Core, Listener, TokenSource};
use crate::prelude::*;
use crate::{
    error::Error,
    machine::Lifecycle,
    options::{OptionValue, Options},
};

/// Converts a JS value into the options parser's view of it.
fn option_value(value: &JsValue, depth: u32) -> OptionValue {
    if value.is_undefined() {
        OptionValue::Undefined
    } else if value.is_null() {
        OptionValue::Null
    } else if let Some(b) = value.as_bool() {
        OptionValue::Bool(b)
    } else if let Some(n) = value.as_f64() {
        OptionValue::Number(n)
    } else if let Some(s) = value.as_string() {
        OptionValue::String(s)
    } else if value.is_function() {
        OptionValue::Function
    } else if depth > 4 {
        OptionValue::Other("a deeply nested value".into())
    } else if Array::is_array(value) {
        let array: &Array = value.unchecked_ref();
        let mut items = Vec::new();
        for v in array.iter() {
            items.push(option_value(&v, depth + 1));
        }
        OptionValue::Array(items)
    } else if value.is_object() {
        OptionValue::Object(object_entries(value, depth + 1))
    } else {
        OptionValue::Other(value.js_typeof().as_string().unwrap_or_default())
    }
}

fn object_entries(value: &JsValue, depth: u32) -> Vec<(String, OptionValue)> {
    let object: &Object = value.unchecked_ref();
    let mut entries = Vec::new();
    for key in Object::keys(object).iter() {
        if let Some(name) = key.as_string() {
            let v = Reflect::get(value, &key).unwrap_or(JsValue::UNDEFINED);
            entries.push((name, option_value(&v, depth)));
        }
    }
    entries
}

fn set(target: &Object, key: &str, value: impl Into<JsValue>) {
    // Reflect.set on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), &value.into());
}

/// The object a JavaScript listener receives.
pub(crate) fn event_object(event: &ClientEvent) -> JsValue {
    let o = Object::new();
    set(&o, "type", event.event_type());
    match event {
        ClientEvent::Message(m) | ClientEvent::Gap(m) => {
            set(&o, "data", js_data(&m.data));
            set(&o, "raw", m.data.as_str());
            set(
                &o,
                "id",
                m.id.as_deref().map_or(JsValue::NULL, JsValue::from_str),
            );
        }
        ClientEvent::Lifecycle(Lifecycle::Open) => {}
        ClientEvent::Lifecycle(Lifecycle::StateChange(state)) => {
            set(&o, "readyState", *state as u8);
        }
        ClientEvent::Lifecycle(Lifecycle::Reconnecting { attempt, delay_ms }) => {
            set(&o, "attempt", *attempt);
            set(&o, "delayMs", *delay_ms);
        }
        ClientEvent::Lifecycle(Lifecycle::Error { kind, message }) => {
            set(&o, "kind", kind.as_str());
            set(&o, "message", message.as_str());
        }
    }
    o.into()
}

/// An eventwire client: a reconnecting
/// [`EventSource`](https://developer.mozilla.org/en-US/docs/Web/API/EventSource) for the hub.
/// Created by [`create_client`] (`createClient` in JavaScript).
#[wasm_bindgen(js_name = EventwireClient)]
#[derive(Debug)]
pub struct JsClient {
    core: Core,
    /// The one function behind every unsubscribe function `on` returns (each is this
    /// closure bound to a listener id). Owned by the client, so it lives until the client
    /// object is freed: calling an unsubscribe function after `close()` is a harmless no-op.
    /// Same signature as the core's callback, so the wasm carries one closure shim.
    unsubscribe: Closure<dyn Fn(JsValue, JsValue)>,
}

/// `createClient(url, options)`: creates a client and, unless `autoConnect: false` or
/// `enabled: false`, connects.
///
/// # Errors
/// Throws an `Error` naming the option for bad options (unknown key, wrong type, negative
/// delay, factor below 1) or a malformed URL.
#[wasm_bindgen(js_name = createClient)]
pub fn create_client(url: JsValue, options: JsValue) -> Result<JsClient, JsValue> {
    let url = url
        .as_string()
        .ok_or_else(|| Error::InvalidUrl("expected a string".into()))?;
    let (options, get_token) = parse_options(&options)?;
    let token_source = get_token.map(TokenSource::Js);
    let core = Core::new(&url, options, token_source)?;
    let weak = Rc::downgrade(&core.0);
    let unsubscribe = Closure::<dyn Fn(JsValue, JsValue)>::new(move |id: JsValue, _| {
        if let (Some(rc), Some(id)) = (weak.upgrade(), id.as_f64()) {
            Core(rc).remove_id(id as u64);
        }
    });
    Ok(JsClient { core, unsubscribe })
}

fn parse_options(options: &JsValue) -> Result<(Options, Option<Function>), Error> {
    if options.is_undefined() || options.is_null() {
        return Ok((Options::default(), None));
    }
    if !options.is_object() || Array::is_array(options) || options.is_function() {
        return Err(Error::option("options", "expected an object"));
    }
    let parsed = Options::from_entries(object_entries(options, 0))?;
    let get_token = Reflect::get(options, &JsValue::from_str("getToken"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok());
    Ok((parsed, get_token))
}

fn listener_fn(listener: JsValue) -> Result<Function, JsValue> {
    listener
        .dyn_into::<Function>()
        .map_err(|_| Error::option("listener", "expected a function").into())
}

#[wasm_bindgen(js_class = EventwireClient)]
impl JsClient {
    /// Adds `listener` for `type` (an event type from the hub, a system event such as
    /// `__connected`, or a lifecycle event: `open`, `statechange`, `reconnecting`, `gap`,
    /// `error`). Adding the same function twice for a type has no effect, as with
    /// [`EventTarget.addEventListener`](https://developer.mozilla.org/en-US/docs/Web/API/EventTarget/addEventListener).
    #[wasm_bindgen(js_name = addEventListener)]
    pub fn add_event_listener(&self, event_type: &str, listener: JsValue) -> Result<(), JsValue> {
        let f = listener_fn(listener)?;
        let _ = self.core.add_listener(event_type, Listener::Js(f), false);
        Ok(())
    }

    /// Removes `listener` from `type`.
    #[wasm_bindgen(js_name = removeEventListener)]
    pub fn remove_event_listener(
        &self,
        event_type: &str,
        listener: JsValue,
    ) -> Result<(), JsValue> {
        let f = listener_fn(listener)?;
        self.core.remove_js(event_type, &f);
        Ok(())
    }

    /// Adds `listener` for `type`; returns a function that removes it.
    pub fn on(&self, event_type: &str, listener: JsValue) -> Result<Function, JsValue> {
        self.subscribe(event_type, listener, false)
    }

    /// Adds `listener` for the next `type` event only; returns a function that removes it.
    pub fn once(&self, event_type: &str, listener: JsValue) -> Result<Function, JsValue> {
        self.subscribe(event_type, listener, true)
    }

    fn subscribe(
        &self,
        event_type: &str,
        listener: JsValue,
        once: bool,
    ) -> Result<Function, JsValue> {
        let f = listener_fn(listener)?;
        let id = self.core.add_listener(event_type, Listener::Js(f), once);
        let unsubscribe: &Function = self.unsubscribe.as_ref().unchecked_ref();
        // A duplicate (or a closed client) gets an unsubscribe that does nothing (id 0).
        let bound = unsubscribe.bind1(&JsValue::NULL, &JsValue::from(id.unwrap_or(0) as f64));
        Ok(bound.unchecked_into())
    }

    /// `0` connecting (or waiting to reconnect), `1` open, `2` closed.
    #[wasm_bindgen(getter = readyState)]
    pub fn ready_state(&self) -> u8 {
        self.core.ready_state() as u8
    }

    /// The hub URL, resolved against the page.
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.core.url()
    }

    /// Failed connection attempts since the last healthy connection.
    #[wasm_bindgen(getter = reconnectAttempts)]
    pub fn reconnect_attempts(&self) -> u32 {
        self.core.reconnect_attempts()
    }

    /// The id of the last event received (or the `lastEventId` option), or `null`.
    #[wasm_bindgen(getter = lastEventId)]
    pub fn last_event_id(&self) -> Option<String> {
        self.core.last_event_id()
    }

    /// Connects (after `autoConnect: false`, or after retries were exhausted).
    pub fn connect(&self) {
        self.core.connect();
    }

    /// Reconnects now and resets the backoff.
    pub fn reconnect(&self) {
        self.core.reconnect();
    }

    /// Ends everything: closes the stream, clears every timer, removes every listener.
    /// No callback runs after `close()`.
    pub fn close(&self) {
        self.core.close();
    }
}
