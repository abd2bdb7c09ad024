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
//! // Development settings: no authentication. In production set `config.auth`.
//! let hub = Hub::new(Config::development());
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
//! - [`hub`]: the handle applications hold, and this instance's fan-out: connections,
//!   their entitlement and queues, slow-consumer cuts, counters.
//! - [`event`]: messages, targets, typed events, the SSE wire encoding.
//! - `stream`: one subscriber's byte stream (heartbeats, batching, final events), and the
//!   direct writes of publishers to an idle stream's socket.
//! - [`routes`]: every HTTP endpoint, in [`router`].
//! - [`query`]: strict query-string parsing.
//! - [`auth`]: JWT verification.
//! - [`broker`]: the seam: a broker owns ids, history and idempotency, and delivers every
//!   published event to each instance's fan-out (a [`Sink`]).
//! - [`memory`]: the in-process broker (the default).
//! - [`redis`]: the Redis Streams broker, for several instances.
//! - [`stats`]: the numbers `/stats` and `/clients` serve.
//! - [`monitor`]: presence and stats pushed to admin dashboards over the hub itself.
//! - [`config`]: every setting, with defaults.
//! - [`error`]: the one error type and its JSON answer.
//! - `metrics`: counters in a Prometheus registry.
//! - `conn`: one accepted connection: its first request head (httparse), event streams
//!   written straight to their sockets, every other request handed to hyper.
//! - `net`: the accepted sockets: the accept loop, the cap on connections that are not
//!   streams, TCP_NODELAY, send buffer, write timeout, closing at the drain deadline.
//! - `main.rs` (the binary): flags, logging, signals; nothing else.

#![deny(missing_docs)]

/// The README's Rust snippets, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub mod auth;
pub mod broker;
pub mod config;
mod conn;
pub mod error;
pub mod event;
pub mod hub;
pub mod memory;
mod metrics;
pub mod monitor;
mod net;
pub mod query;
pub mod redis;
pub mod routes;
pub mod stats;
mod stream;

use std::future::Future;
use std::time::Duration;

pub use auth::{Auth, Identity};
pub use broker::{Broker, History, InstanceReport, Sink, StoredEvent};
pub use config::{Config, Cors};
pub use error::Error;
pub use event::{Event, Message, Receipt, Target};
pub use hub::{ClientInfo, Hub, Stats, SubscribeRequest};
pub use memory::MemoryBroker;
pub use net::bind;
pub use redis::{RedisBroker, RedisOptions};
pub use routes::{admin_router, json_errors, router, subscribe_router};
pub use stream::Subscription;

/// Serves `app` on `listener` until `shutdown` completes, then shuts down gracefully: stops
/// accepting connections, ends every event stream of `hub` with `__shutdown`, and returns once
/// every connection is closed or `drain` has passed. Connections still open at the end of the
/// drain time are closed, not abandoned.
///
/// Plain `axum::serve(..).with_graceful_shutdown(..)` would wait forever for open event
/// streams, and runs hyper without a timer, so a socket that never sends a request holds a
/// file descriptor forever; this does neither. It serves HTTP/1.1 (put a TLS proxy in front
/// for HTTP/2 to browsers) with, from the hub's [`Config`]:
/// - a header read timeout ([`Config::header_read_timeout`]);
/// - a cap on connections that are not event streams ([`Config::max_pending_connections`]):
///   past it the oldest such connection is closed;
/// - TCP_NODELAY, a bounded send buffer ([`Config::send_buffer_bytes`]) and a write timeout
///   ([`Config::write_timeout`]): a peer that stops reading is disconnected;
/// - an accept loop that backs off when the process runs out of file descriptors.
///
/// Event streams skip hyper: the first request head of each connection is read with
/// `httparse`, and a `GET …/events` the router answers with a stream is written straight to
/// its socket, on a runtime of its own (one worker per core this process may use). An idle
/// stream then holds its socket and a cursor, not hyper's buffers, and fanning an event out to
/// thousands of streams never queues in front of a publisher's answer. A publish call that
/// reaches at most 8 connections is written by the publisher itself to those whose streams are
/// idle, which saves waking the streams runtime for one write. Every other request goes to
/// hyper. [`router`] served by `axum::serve` streams through hyper instead, as any body.
///
/// Bind `listener` with [`bind`] for a listen backlog larger than tokio's 128.
///
/// # Errors
/// None today: accept errors are retried. The `Result` is kept for errors a future version
/// cannot retry.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Hub,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioTimer;
    use hyper_util::server::graceful::GracefulShutdown;

    let config = hub.config().clone();
    let streams = StreamsRuntime::start()?;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // hyper's default limit of 100 header fields is `routes::MAX_HEADERS`: within it
        // hyper keeps a request's header arrays on the stack (`max_headers` above 100 makes
        // it allocate and fill them for every request), and its 431 beyond it is replaced
        // with the hub's JSON answer (`conn::HubAnswers`).
        .header_read_timeout(config.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let server = std::sync::Arc::new(conn::Server {
        app: routes::json_errors(app),
        http,
        stopping: tokio_util::sync::CancellationToken::new(),
        streams: streams.handle(),
        tracker: tokio_util::task::TaskTracker::new(),
        header_read_timeout: config.header_read_timeout,
        write_timeout: config.write_timeout,
        stream_bytes: hub.metrics().stream_bytes.clone(),
    });
    let gate = net::Gate::new(
        config.max_pending_connections,
        hub.metrics().connections("pending"),
    );
    let closing = tokio_util::sync::CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = net::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        net::tune(&stream, config.send_buffer_bytes);
        let switch = closing.child_token();
        let slot = gate.admit(switch.clone());
        tokio::spawn(conn::run(
            server.clone(),
            stream,
            slot,
            switch,
            graceful.watcher(),
        ));
    }
    drop(listener);
    server.stopping.cancel();
    tracing::info!("shutting down: ending every event stream");
    hub.shutdown();
    server.tracker.close();
    let drained = async {
        tokio::join!(graceful.shutdown(), server.tracker.wait());
    };
    tokio::select! {
        () = drained => return Ok(()),
        () = tokio::time::sleep(drain) => {}
    }
    tracing::warn!(
        remaining = hub.stats().active_connections,
        "drain time of {drain:?} is over; closing the remaining connections"
    );
    // Every connection now fails its next I/O; their tasks end on their own (and the streams
    // runtime drops what is left when `serve` returns).
    closing.cancel();
    Ok(())
}

/// The runtime [`serve`] writes event streams on, one worker per core this process may use.
/// Fan-out work (waking and writing thousands of streams per event) then never queues in
/// front of the tasks that answer publishes and new connections on the caller's runtime.
/// Shut down in the background when `serve` returns or is dropped: a runtime must not be
/// dropped, blocking, inside another one.
struct StreamsRuntime(Option<tokio::runtime::Runtime>);

impl StreamsRuntime {
    fn start() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("eventwire-streams")
            .enable_all()
            .build()?;
        Ok(StreamsRuntime(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the streams runtime lives until dropped"),
        }
    }
}

impl Drop for StreamsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
