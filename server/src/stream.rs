//! One subscriber's stream of SSE bytes: the opening frames, then queued events (several
//! queued events are written as one chunk), heartbeats, and a final `__error` or
//! `__shutdown` when the hub ends it on purpose.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior, Sleep};
use tokio_util::sync::CancellationToken;

use crate::event::{encode_heartbeat, encode_retry, encode_system};
use crate::hub::Hub;

/// Largest chunk a stream writes at once when events pile up.
const MAX_CHUNK: usize = 64 * 1024;

/// What a connection's queue holds: one event, or every event of one published batch that
/// the connection is entitled to (a batch takes one slot).
#[derive(Debug)]
pub(crate) enum Chunk {
    One(Bytes),
    /// A batch's frames, shared by every recipient; `Some` lists the indices this connection
    /// is entitled to when that is not all of them.
    Batch(std::sync::Arc<[Bytes]>, Option<Box<[u32]>>),
}

/// Why the hub ended a stream on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    SlowConsumer,
    Dropped,
}

/// A registered connection's stream. Dropping it unregisters the connection.
#[derive(Debug)]
pub struct Subscription {
    pending: VecDeque<Bytes>,
    rx: mpsc::Receiver<Chunk>,
    kill: oneshot::Receiver<Cut>,
    shutdown: CancellationToken,
    heartbeat: Interval,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    heartbeat_event: bool,
    /// Shutting down: write what is pending, then `__shutdown`.
    ending: bool,
    done: bool,
    guard: Guard,
}

/// Unregisters the connection when the stream is dropped, however it ends.
#[derive(Debug)]
struct Guard {
    hub: Hub,
    key: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.remove(self.key);
    }
}

impl Subscription {
    pub(crate) fn new(
        hub: Hub,
        key: u64,
        initial: Vec<Bytes>,
        rx: mpsc::Receiver<Chunk>,
        kill: oneshot::Receiver<Cut>,
        shutdown: CancellationToken,
        heartbeat_event: bool,
    ) -> Self {
        let config = hub.config();
        // Clamped: a huge interval would overflow `Instant` arithmetic.
        let period = config
            .heartbeat
            .clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        let mut heartbeat = interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle = config.idle_timeout.map(|d| {
            let d = d.min(Duration::from_secs(30 * 86_400));
            (d, Box::pin(tokio::time::sleep(d)))
        });
        Subscription {
            pending: initial.into(),
            rx,
            kill,
            shutdown,
            heartbeat,
            idle,
            heartbeat_event,
            ending: false,
            done: false,
            guard: Guard { hub, key },
        }
    }

    /// The next chunk of SSE bytes, or `None` when the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if !self.pending.is_empty() {
            return Some(self.take_pending());
        }
        if self.ending {
            return Some(self.finish_shutdown());
        }
        if self.shutdown.is_cancelled() {
            return Some(self.begin_shutdown());
        }
        let idle = async {
            match &mut self.idle {
                Some((_, sleep)) => sleep.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            cut = &mut self.kill => {
                self.done = true;
                match cut {
                    Ok(Cut::SlowConsumer) => Some(self.error_frame(
                        "slow_consumer",
                        "this connection fell behind and was cut; reconnect with Last-Event-ID to replay what it missed",
                    )),
                    Ok(Cut::Dropped) => Some(self.error_frame(
                        "dropped",
                        "an admin dropped this client; reconnect with Last-Event-ID to replay what it missed",
                    )),
                    Err(_) => None,
                }
            }
            () = self.shutdown.cancelled() => Some(self.begin_shutdown()),
            chunk = self.rx.recv() => match chunk {
                Some(chunk) => {
                    self.push(chunk);
                    while self.pending.len() < 64 {
                        let Ok(more) = self.rx.try_recv() else { break };
                        self.push(more);
                    }
                    if let Some((d, sleep)) = &mut self.idle {
                        sleep.as_mut().reset(Instant::now() + *d);
                    }
                    Some(self.take_pending())
                }
                None => {
                    self.done = true;
                    None
                }
            },
            _ = self.heartbeat.tick() => Some(self.heartbeat_frame()),
            () = idle => {
                self.done = true;
                Some(self.error_frame("idle_timeout", "no event for the idle timeout; reconnect when you need the stream again"))
            }
        }
    }

    /// The subscription as a stream of chunks, ready for `axum::body::Body::from_stream`.
    pub fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures_util::stream::unfold(self, |mut sub| async move {
            sub.next_chunk().await.map(|chunk| (chunk, sub))
        })
    }

    fn push(&mut self, chunk: Chunk) {
        match chunk {
            Chunk::One(frame) => self.pending.push_back(frame),
            Chunk::Batch(frames, None) => self.pending.extend(frames.iter().cloned()),
            Chunk::Batch(frames, Some(indices)) => self.pending.extend(
                indices
                    .iter()
                    .filter_map(|&i| frames.get(i as usize))
                    .cloned(),
            ),
        }
    }

    /// Shutdown: events already queued were counted as delivered, so they are written first.
    fn begin_shutdown(&mut self) -> Bytes {
        while let Ok(chunk) = self.rx.try_recv() {
            self.push(chunk);
        }
        if self.pending.is_empty() {
            self.finish_shutdown()
        } else {
            self.ending = true;
            self.take_pending()
        }
    }

    /// Joins pending frames into one chunk of at most [`MAX_CHUNK`] bytes (or one frame).
    fn take_pending(&mut self) -> Bytes {
        let Some(first) = self.pending.pop_front() else {
            return Bytes::new();
        };
        if self.pending.is_empty() || first.len() >= MAX_CHUNK {
            return first;
        }
        let mut buf = BytesMut::from(&first[..]);
        while let Some(next) = self.pending.front() {
            if buf.len() + next.len() > MAX_CHUNK {
                break;
            }
            buf.extend_from_slice(next);
            self.pending.pop_front();
        }
        buf.freeze()
    }

    fn finish_shutdown(&mut self) -> Bytes {
        self.done = true;
        let retry = self.guard.hub.config().retry.as_millis() as u64;
        let mut buf = BytesMut::from(&encode_retry(retry)[..]);
        buf.extend_from_slice(&encode_system(
            None,
            "__shutdown",
            &json!({ "retryMs": retry }),
        ));
        buf.freeze()
    }

    fn error_frame(&self, reason: &str, message: &str) -> Bytes {
        let retry = self.guard.hub.config().retry.as_millis() as u64;
        encode_system(
            None,
            "__error",
            &json!({"reason": reason, "message": message, "retryMs": retry}),
        )
    }

    /// A heartbeat, carrying this connection's position when it is safe to: the newest id
    /// is read first, and if the queue is then empty every event up to that id that this
    /// connection is entitled to has been handed over. A client that hears only heartbeats
    /// (a quiet topic) thus resumes from a recent id and gets no needless `__gap`.
    fn heartbeat_frame(&self) -> Bytes {
        let newest = self.guard.hub.newest_id();
        let position = (self.rx.is_empty() && self.pending.is_empty()).then_some(newest);
        encode_heartbeat(position, self.heartbeat_event)
    }
}
