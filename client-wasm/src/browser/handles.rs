//! Handles that own what the browser can call back into: an event listener, a timer. Dropping
//! one removes the listener or clears the timer (the pattern of gloo's `EventListener` and
//! `Timeout`).
//!
//! Unlike gloo's, these take an existing JS function instead of wrapping a new Rust closure
//! each: a client has one callback for all its DOM events and timers (see `core`; listeners
//! get it bound to a number, or wrapped by a JS function), so a reconnect creates no Rust
//! closure and the wasm carries one closure shim instead of several.

use wasm_bindgen::{prelude::*, JsCast};
use web_sys::EventTarget;

use crate::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout` (window or worker); extra arguments reach the callback.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32, argument: u32) -> JsValue;

    /// The global `clearTimeout`.
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// `callback` listening for `event_type` on `target`; removed when dropped.
#[must_use = "the listener is removed when this handle is dropped"]
#[derive(Debug)]
pub(crate) struct Listen {
    target: EventTarget,
    /// The event type listened for (an `Rc`: the client hands it to each dispatch of a stream
    /// event of this type without copying it).
    pub(crate) event_type: Rc<str>,
    callback: js_sys::Function,
}

impl Listen {
    /// [`addEventListener`](https://developer.mozilla.org/en-US/docs/Web/API/EventTarget/addEventListener).
    pub(crate) fn new(target: &JsValue, event_type: &str, callback: js_sys::Function) -> Self {
        let target: EventTarget = target.clone().unchecked_into();
        // Cannot fail for a function listener on a live target.
        let _ = target.add_event_listener_with_callback(event_type, &callback);
        Self {
            target,
            event_type: event_type.into(),
            callback,
        }
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(&self.event_type, &self.callback);
    }
}

/// A pending `setTimeout(callback, ms, argument)`; cleared when dropped.
#[must_use = "the timer is cleared when this handle is dropped"]
#[derive(Debug)]
pub(crate) struct Timer(JsValue);

impl Timer {
    /// Calls `callback(argument)` after `ms` milliseconds. Delays past `setTimeout`'s limit
    /// (2³¹ − 1 ms, about 24.8 days) are capped there instead of firing at once.
    pub(crate) fn new(callback: &js_sys::Function, ms: u32, argument: u32) -> Self {
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        Self(set_timeout(callback, ms, argument))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        clear_timeout(&self.0);
    }
}
