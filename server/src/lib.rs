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
//! - `net`: the accepted sockets: TCP_NODELAY, a write timeout, closing at the drain deadline.
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
mod net;
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
/// every connection is closed or `drain` has passed. Connections still open at the end of the
/// drain time are closed, not abandoned.
///
/// Plain `axum::serve(..).with_graceful_shutdown(..)` would wait forever for open event
/// streams; this does not. Every accepted socket also gets TCP_NODELAY and the hub's
/// [`Config::write_timeout`]: a peer that stops reading is disconnected.
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
    use std::future::IntoFuture;

    let closing = tokio_util::sync::CancellationToken::new();
    let listener = net::GuardedListener {
        inner: listener,
        write_timeout: hub.config().write_timeout,
        closing: closing.clone(),
    };
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = hub.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: ending every event stream");
            stopping.shutdown();
            let _ = signalled_tx.send(());
        })
        .into_future();
    let mut server = std::pin::pin!(server);
    let deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => return result,
        () = deadline => {}
    }
    tracing::warn!(
        remaining = hub.stats().active_connections,
        "drain time of {drain:?} is over; closing the remaining connections"
    );
    closing.cancel();
    // Every connection now fails its next I/O; give their tasks a moment to wind down.
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
