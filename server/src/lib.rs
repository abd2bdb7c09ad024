//! # eventwire-server
//!
//! A Server-Sent Events hub on axum + tokio: mount [`router`] in any axum app and publish
//! from Rust with [`Hub`], or run the `eventwire` binary. The wire contract is in
//! `docs/PROTOCOL.md`.
//!
//! ```no_run
//! use eventwire_server::{router, serve, Config, Event, Hub};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct Progress { percent: u8 }
//! impl Event for Progress { const NAME: &'static str = "progress"; }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new(Config::default());
//! let app = axum::Router::new().nest("/sse", router(hub.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let server = tokio::spawn(serve(
//!     listener,
//!     hub.clone(),
//!     app,
//!     async { let _ = tokio::signal::ctrl_c().await; },
//!     std::time::Duration::from_secs(5),
//! ));
//! hub.send(&Progress { percent: 42 }).await?;
//! server.await??;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`hub`]: the fan-out core: connections, history, ids, counters.
//! - [`event`]: messages, targets, typed events, the SSE wire encoding.
//! - `stream`: one subscriber's byte stream (heartbeats, batching, final events).
//! - [`routes`]: every HTTP endpoint, in [`router`].
//! - [`auth`]: JWT verification.
//! - [`broker`]: the seam where multi-instance fan-out plugs in.
//! - [`monitor`]: presence and stats pushed to admin dashboards over the hub itself.
//! - [`config`]: every setting, with defaults.
//! - [`error`]: the one error type and its JSON answer.
//! - `metrics`: counters in a Prometheus registry.
//! - `main.rs` (the binary): flags, logging, signals; nothing else.

#![deny(missing_docs)]

pub mod auth;
pub mod broker;
pub mod config;
pub mod error;
pub mod event;
pub mod hub;
mod metrics;
pub mod monitor;
pub mod routes;
mod stream;

use std::future::Future;
use std::time::Duration;

pub use auth::{Auth, Identity};
pub use broker::{Broker, LocalBroker};
pub use config::{Config, Cors};
pub use error::Error;
pub use event::{Event, Message, Receipt, Target};
pub use hub::{ClientInfo, Hub, Stats, SubscribeRequest};
pub use routes::router;
pub use stream::Subscription;

/// Serves `app` on `listener` until `shutdown` completes, then shuts down gracefully: stops
/// accepting connections, ends every event stream of `hub` with `__shutdown`, and returns once
/// every connection is closed or `drain` has passed, whichever comes first.
///
/// Plain `axum::serve(..).with_graceful_shutdown(..)` would wait forever for open event
/// streams; this does not.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Hub,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = hub.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: ending every event stream");
        stopping.shutdown();
        let _ = signalled_tx.send(());
    });
    let deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(
                "drain time of {drain:?} is over; closing the remaining connections"
            );
            Ok(())
        }
    }
}
