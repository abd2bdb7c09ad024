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

use js_sys::{Array, Function, Object};
use wasm_bindgen::{prelude::*, JsCast};

use super::core::{get, Core};
use crate::prelude::*;
use crate::{
    error::Error,
    options::{Options, Value},
};

/// The options parser's view of JS values.
impl Value for JsValue {
    fn is_absent(&self) -> bool {
        self.is_undefined() || self.is_null()
    }

    fn as_bool(&self) -> Option<bool> {
        JsValue::as_bool(self)
    }

    fn as_number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn as_str(&self) -> Option<String> {
        self.as_string()
    }

    fn is_function(&self) -> bool {
        JsValue::is_function(self)
    }

    fn items(&self) -> Option<Vec<Self>> {
        Array::is_array(self).then(|| self.unchecked_ref::<Array>().iter().collect())
    }

    fn keys(&self) -> Option<Vec<String>> {
        if !self.is_object() || Array::is_array(self) || JsValue::is_function(self) {
            return None;
        }
        let mut keys = Vec::new();
        for key in Object::keys(self.unchecked_ref::<Object>()).iter() {
            keys.push(key.as_string().unwrap_or_default());
        }
        Some(keys)
    }

    fn get(&self, key: &str) -> Self {
        get(self, key)
    }

    fn type_name(&self) -> &'static str {
        if self.is_undefined() {
            "undefined"
        } else if self.is_null() {
            "null"
        } else if JsValue::as_bool(self).is_some() {
            "a boolean"
        } else if self.as_f64().is_some() {
            "a number"
        } else if self.is_string() {
            "a string"
        } else if Array::is_array(self) {
            "an array"
        } else if JsValue::is_function(self) {
            "a function"
        } else if self.is_object() {
            "an object"
        } else {
            "another type of value"
        }
    }
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
    unsubscribe: Closure<dyn Fn(u32, JsValue)>,
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
    let parsed = Options::parse(&options)?;
    // `getTicket` or `getToken`, when given, is a function (checked by the parser);
    // `getTicket` wins: no token goes in the URL then.
    let provider = if parsed.has_get_ticket {
        Some("getTicket")
    } else {
        parsed.has_get_token.then_some("getToken")
    };
    let get_token = provider.map(|key| get(&options, key).unchecked_into::<Function>());
    // `EventSource`, when given, is a function too; otherwise the global one.
    let event_source = if parsed.has_event_source {
        get(&options, "EventSource")
    } else {
        super::core::global("EventSource")
    };
    let core = Core::new(&url, parsed, get_token, event_source)?;
    let weak = Rc::downgrade(&core.0);
    let unsubscribe = Closure::<dyn Fn(u32, JsValue)>::new(move |id: u32, _: JsValue| {
        if let Some(rc) = weak.upgrade() {
            Core(rc).remove_id(id.into());
        }
    });
    Ok(JsClient { core, unsubscribe })
}

/// The arguments of the listener methods: a type (a string) and a function.
fn args(event_type: &JsValue, listener: JsValue) -> Result<(String, Function), JsValue> {
    let t = event_type.as_string().ok_or(Error::InvalidArgument {
        argument: "type",
        reason: "expected a string",
    })?;
    let f = listener
        .dyn_into::<Function>()
        .map_err(|_| Error::InvalidArgument {
            argument: "listener",
            reason: "expected a function",
        })?;
    Ok((t, f))
}

#[wasm_bindgen(js_class = EventwireClient)]
impl JsClient {
    /// Adds `listener` for `type` (an event type from the hub, a system event such as
    /// `__connected`, or a lifecycle event: `open`, `statechange`, `reconnecting`, `gap`,
    /// `error`). Adding the same function twice for a type has no effect, as with
    /// [`EventTarget.addEventListener`](https://developer.mozilla.org/en-US/docs/Web/API/EventTarget/addEventListener).
    #[wasm_bindgen(js_name = addEventListener)]
    pub fn add_event_listener(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] event_type: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Function")] listener: JsValue,
    ) -> Result<(), JsValue> {
        // `on` without its unsubscribe function: one code path for both.
        self.subscribe(&event_type, listener, false).map(drop)
    }

    /// Removes `listener` from `type`.
    #[wasm_bindgen(js_name = removeEventListener)]
    pub fn remove_event_listener(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] event_type: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Function")] listener: JsValue,
    ) -> Result<(), JsValue> {
        let (t, f) = args(&event_type, listener)?;
        self.core.remove_listener(&t, &f);
        Ok(())
    }

    /// Adds `listener` for `type`; returns a function that removes it.
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] event_type: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Function")] listener: JsValue,
    ) -> Result<Function, JsValue> {
        self.subscribe(&event_type, listener, false)
    }

    /// Adds `listener` for the next `type` event only; returns a function that removes it.
    pub fn once(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] event_type: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Function")] listener: JsValue,
    ) -> Result<Function, JsValue> {
        self.subscribe(&event_type, listener, true)
    }

    fn subscribe(
        &self,
        event_type: &JsValue,
        listener: JsValue,
        once: bool,
    ) -> Result<Function, JsValue> {
        let (t, f) = args(event_type, listener)?;
        let id = self.core.add_listener(&t, f, once);
        let unsubscribe: &Function = self.unsubscribe.as_ref().unchecked_ref();
        // A duplicate (or a closed client) gets an unsubscribe that does nothing (id 0). Ids
        // cross as u32, the closure's argument (the registry's count past 2³² would wrap).
        let bound = unsubscribe.bind1(&JsValue::NULL, &JsValue::from(id.unwrap_or(0) as u32));
        Ok(bound.unchecked_into())
    }

    /// `0` connecting (or waiting to reconnect), `1` open, `2` closed.
    #[wasm_bindgen(getter = readyState)]
    pub fn ready_state(&self) -> u8 {
        self.core.ready_state() as u8
    }

    /// The hub URL, resolved against the page.
    #[wasm_bindgen(getter, unchecked_return_type = "string")]
    pub fn url(&self) -> JsValue {
        self.core.url_js()
    }

    /// Failed connection attempts since the last healthy connection.
    #[wasm_bindgen(getter = reconnectAttempts)]
    pub fn reconnect_attempts(&self) -> u32 {
        self.core.reconnect_attempts()
    }

    /// The id of the last event received (or the `lastEventId` option), or `undefined`.
    #[wasm_bindgen(getter = lastEventId, unchecked_return_type = "string | undefined")]
    pub fn last_event_id(&self) -> JsValue {
        self.core.last_event_id_js()
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
