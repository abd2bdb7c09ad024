//! # eventwire-client
//!
//! The browser client of the eventwire hub: a reconnecting wrapper over
//! [`EventSource`](https://developer.mozilla.org/en-US/docs/Web/API/EventSource)
//! ([HTML spec](https://html.spec.whatwg.org/multipage/server-sent-events.html)), written in
//! Rust and compiled to WebAssembly. JavaScript apps call `createClient(url, options)`
//! (exported with wasm-bindgen, see [`browser::js`]); Rust web apps use [`Client`].
//!
//! ```no_run
//! use eventwire_client::{backoff::Backoff, Client, ClientEvent};
//!
//! # fn main() -> Result<(), eventwire_client::Error> {
//! let client = Client::builder("http://127.0.0.1:8080/events")
//!     .topics(["orders"])
//!     .backoff(Backoff { max_attempts: 10, ..Backoff::default() })
//!     .build()?;
//! let _errors = client.on_event("error", |ev: &ClientEvent| {
//!     web_sys::console::warn_1(&format!("{ev:?}").into());
//! });
//! # Ok(()) }
//! ```
//!
//! What it adds to a bare `EventSource`: listeners that survive reconnects and can be added
//! before the connection opens; JSON-or-text payload decoding; it owns every reconnect: on any
//! failure it closes the `EventSource` (whose own retry has a fixed delay, no jitter and no
//! end) and reconnects on its own exponential backoff with jitter, never giving up by default,
//! carrying the last event id as the `lastEventId` query parameter so the hub replays what was
//! missed (an empty `id:` line resets that id, as the HTML spec says); reconnect after the hub's
//! `__shutdown` / `__error` hint, on `online` and when a hidden page comes back; a watchdog for
//! half-open connections; tokens refreshed before every connect, or with `getTicket` a fresh
//! single-use ticket from the hub's `POST /tickets` for every attempt, so that no token travels
//! in a URL (proxies and access logs keep URLs; `EventSource` cannot send headers). The wire
//! contract is the repository's `docs/PROTOCOL.md`.
//!
//! Every connection asks the hub for `__heartbeat` events (`heartbeat=event`: page code never
//! sees SSE comments), and the watchdog's default (2.5 × the `heartbeatSecs` that
//! `__connected` announces) is armed as soon as `__connected` confirms them with
//! `heartbeatEvent: true`. A hub that answers `false` (or predates the field) gets no default
//! watchdog, since an idle stream would look dead; set `heartbeatTimeoutMs` to choose one.
//!
//! # Layout
//! - [`backoff`]: the reconnect delay schedule (pure).
//! - [`options`]: option defaults, parsing and validation (pure).
//! - [`url`]: URL checks and the `/events` query string (pure).
//! - [`decode`]: payload decoding and the hub's system events (pure; typed decoding behind the
//!   `typed` feature).
//! - [`machine`]: the reconnect state machine (pure).
//! - [`listeners`]: the listener registry (pure).
//! - [`error`]: the error type.
//! - `num`: the float helpers `core` lacks (`round`, whole-number check).
//! - `text`: message building without `core::fmt`, which keeps the JavaScript build small.
//! - [`browser`]: the web-sys glue: the client core, the JavaScript API ([`browser::js`]) and
//!   the Rust API (`browser::rust_api`, with `std`). The core speaks JavaScript only
//!   (listeners are JS functions called with plain event objects); the Rust API wraps Rust
//!   closures and reads its typed events back, so the JavaScript build carries one dispatch
//!   path.
//!
//! The pure modules use no browser API and are tested natively (`cargo test -p
//! eventwire-client`); the glue is tested in headless Chromium against the real hub with
//! `wasm-pack test --headless --chrome` (`scripts/test-client-wasm.sh` starts the hub and a
//! fault proxy first).
//!
//! # Size
//! The JavaScript build (`scripts/build-client-wasm.sh`) is about 20 KB gzip, wasm and JS glue
//! together; the script fails above 20,672 bytes. That script's header lists what each change
//! bought.
//!
//! # Features
//! - `std` (default): links the standard library, as Rust web apps do, and provides the Rust
//!   API ([`Client`]).
//! - `typed`: `Client::on` decodes payloads into your `serde` types (implies `std`). Off by
//!   default, so the build JavaScript users get has no serde in it.
//! - `standalone`: this crate is the whole wasm module, as in the JavaScript build
//!   (`--no-default-features --features standalone`, see `scripts/build-client-wasm.sh`):
//!   talc becomes the global allocator and, without `std`, panics trap. Without `std` there is
//!   no panic message machinery at all (and the release build rebuilds core/alloc with
//!   `-Cpanic=immediate-abort` on a pinned nightly), which is most of what keeps that build
//!   small; the code therefore builds messages without `core::fmt` and avoids panicking paths.

#![deny(missing_docs)]
#![cfg_attr(not(feature = "std"), no_std)]
// The size rules in client-wasm/clippy.toml are the JavaScript build's (no `std`); the Rust
// API and the tests, built with `std`, may format and panic.
#![cfg_attr(
    any(test, feature = "std"),
    allow(clippy::disallowed_macros, clippy::disallowed_methods)
)]

extern crate alloc;

/// What `std`'s prelude would bring, for the `no_std` build (not every module needs every
/// item, hence the `allow`).
#[allow(unused_imports)]
mod prelude {
    pub(crate) use alloc::{
        borrow::ToOwned,
        boxed::Box,
        rc::{Rc, Weak},
        string::{String, ToString},
        vec::Vec,
    };
}

pub mod backoff;
pub mod browser;
pub mod decode;
pub mod error;
pub mod listeners;
pub mod machine;
mod num;
pub mod options;
mod text;
pub mod url;

#[cfg(feature = "std")]
pub use browser::rust_api::{
    Client, ClientBuilder, ClientEvent, Message, Subscription, TokenFuture,
};
pub use error::Error;
pub use machine::{ErrorKind, Lifecycle, ReadyState};

// The JavaScript build's allocator: talc, a maintained allocator for no_std and WebAssembly,
// about 2.6 KB gzip smaller here than Rust's default dlmalloc (measured with
// scripts/build-client-wasm.sh; `disable-realloc-in-place` trades some realloc speed for
// size). The SDK allocates little (a few strings per event), so speed is not the concern.
// wee_alloc is unmaintained (and leaks); lol_alloc is smaller but says it is not production
// ready.
#[cfg(all(
    feature = "standalone",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Without std, the JavaScript build's panics trap (a `RuntimeError: unreachable` in
/// JavaScript). The SDK does not panic on purpose (no `unwrap`, no indexing; `expect_throw`
/// where a failure is truly meant); this only covers what the compiler cannot rule out, such
/// as running out of memory.
#[cfg(all(
    feature = "standalone",
    not(feature = "std"),
    target_arch = "wasm32",
    not(test)
))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
