//! One subscriber's stream of SSE bytes: the opening frames, then queued events (several
//! queued events are written as one chunk), heartbeats, and a final `__error` or
//! `__shutdown` when the hub ends it on purpose.
//!
//! A publish call hands every possible recipient the same [`Published`] (one `Arc`, one
//! queue slot, whatever the batch length). Each stream picks the frames it is entitled to
//! with its own [`Filter`], on its own task, walking the shared frames with a cursor: the
//! publisher's work is one `try_send` per recipient, and no stream copies a batch.
//!
//! **Direct writes.** Handing an event to a stream's task costs more than writing it when
//! the task is on another thread (the streams runtime of [`crate::serve`]): a wake-up of that
//! thread and two context switches, for one `send`. So a publish call that reaches only a few
//! connections writes straight to the socket of each one whose stream is *parked*: waiting,
//! with everything it was handed written (see [`Direct`]). Parking and waking both take the
//! connection's [`Direct`] lock, which a publisher holds for its write, so the socket always
//! has exactly one writer and events reach it in id order; whatever a publisher wrote moves
//! the stream's `written` id forward when it wakes, so it skips those events if they come
//! again (a write that fit only in part: its rest is written first, then the queue).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior, Sleep};

use crate::event::{encode_heartbeat, encode_retry, encode_system, Ended, Shutdown, Target};

/// Largest chunk a stream writes at once when events pile up.
const MAX_CHUNK: usize = 64 * 1024;

/// One published event, encoded once, shared by every recipient.
#[derive(Debug)]
pub(crate) struct Frame {
    /// 0 for frames that carry no id (the hub's monitoring events).
    pub(crate) id: u64,
    pub(crate) event: Box<str>,
    pub(crate) target: Target,
    pub(crate) bytes: Bytes,
}

/// The frames of one publish call (one event or a batch), in id order. This is what a
/// connection's queue holds: one slot per publish call.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) frames: Vec<Arc<Frame>>,
    /// When it was published; a stream that gets to it much later is cut (`max_lag`).
    /// `None` for a replay, which is old by nature.
    pub(crate) at: Option<Instant>,
}

impl Published {
    /// Whether publishers may write it to a parked stream's socket ([`Direct::write`]): every
    /// frame has an id (the stream skips by id what was written), and it is at most one
    /// chunk (it is joined per recipient while the fan-out's lock is held).
    pub(crate) fn writable_directly(&self) -> bool {
        self.frames.iter().all(|f| f.id != 0)
            && self.frames.iter().map(|f| f.bytes.len()).sum::<usize>() <= MAX_CHUNK
    }
}

/// What one connection is entitled to receive.
#[derive(Debug)]
pub(crate) struct Filter {
    pub(crate) client_id: String,
    pub(crate) user_id: Option<String>,
    pub(crate) topics: HashSet<String>,
    pub(crate) events: Option<HashSet<String>>,
    pub(crate) monitor: bool,
}

impl Filter {
    pub(crate) fn wants(&self, event: &str) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(event))
    }

    pub(crate) fn entitled(&self, target: &Target, event: &str) -> bool {
        let reaches = match target {
            Target::All => true,
            Target::Topic(t) => self.topics.contains(t),
            Target::Client(c) => &self.client_id == c,
            Target::User(u) => self.user_id.as_ref() == Some(u),
            Target::ClientOfUser { client_id, user_id } => {
                &self.client_id == client_id && self.user_id.as_ref() == Some(user_id)
            }
            Target::Monitors => self.monitor,
        };
        reaches && self.wants(event)
    }
}

/// Why the hub ended a stream on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    SlowConsumer,
    Dropped,
    /// The hub shuts down: write what is queued, then `__shutdown`.
    Shutdown,
}

/// Bytes waiting to be written: fixed frames, a position (`__position`), or a publish
/// call's frames from a cursor on.
#[derive(Debug)]
enum Pending {
    Bytes(Bytes),
    Position(u64, Bytes),
    Frames {
        published: Arc<Published>,
        next: usize,
    },
}

/// A stream's socket, as a publisher writes to it directly (see the module docs).
pub(crate) trait Socket: Send + Sync + std::fmt::Debug {
    /// Writes what fits without waiting, like `send(2)` on a non-blocking socket.
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize>;
}

/// The part of a connection that its publishers and its stream share for direct writes.
#[derive(Debug, Default)]
pub(crate) struct Direct {
    /// Publish calls handed to the stream's queue: a publisher counts one before each send,
    /// so a stream that has taken fewer knows its queue is not empty.
    queued: AtomicU64,
    parked: Mutex<Parked>,
}

#[derive(Debug, Default)]
struct Parked {
    /// Set once the stream is written to a socket of its own.
    socket: Option<Box<dyn Socket>>,
    /// The stream waits with nothing left to write; publishers may write.
    idle: bool,
    /// How many publish calls the stream had taken from its queue when it parked.
    taken: u64,
    /// The highest id the client has: the stream's when it parked, then what publishers wrote.
    written: u64,
    /// The rest of an event a publisher could write only in part: written first on waking.
    carry: Option<Bytes>,
    /// When a publisher last wrote (it holds off the idle timeout like any event).
    wrote_at: Option<Instant>,
}

impl Direct {
    fn lock(&self) -> std::sync::MutexGuard<'_, Parked> {
        self.parked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a publish call about to be handed to the stream's queue.
    pub(crate) fn queue(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// Writes the frames of `published` that this connection is entitled to and does not
    /// have straight to its socket, if its stream is parked. [`Wrote::Queue`] when the
    /// caller must queue `published` as usual: the stream is busy or the socket would block.
    /// Only for a delivery that [`Published::writable_directly`].
    pub(crate) fn write(&self, published: &Published, filter: &Filter) -> Wrote {
        let mut parked = self.lock();
        if !parked.idle || self.queued.load(Ordering::SeqCst) != parked.taken {
            return Wrote::Queue;
        }
        let mut written = parked.written;
        let mut chunk = Chunk::default();
        for frame in &published.frames {
            if frame.id > written && filter.entitled(&frame.target, &frame.event) {
                written = frame.id;
                chunk.push(&frame.bytes);
            }
        }
        let Some(bytes) = chunk.finish() else {
            // Like a queued delivery with nothing for the stream, it holds off the idle
            // timeout.
            parked.wrote_at = Some(Instant::now());
            return Wrote::Nothing;
        };
        let Some(socket) = &parked.socket else {
            return Wrote::Queue;
        };
        match socket.try_write(&bytes) {
            Ok(n) if n == bytes.len() => {
                parked.written = written;
                parked.wrote_at = Some(Instant::now());
                Wrote::All
            }
            Ok(n) if n > 0 => {
                parked.written = written;
                parked.wrote_at = Some(Instant::now());
                parked.carry = Some(bytes.slice(n..));
                parked.idle = false;
                Wrote::Part
            }
            // Would block, or failed: nothing was written, the stream deals with it.
            _ => Wrote::Queue,
        }
    }
}

/// What [`Direct::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// Everything for this connection is on its socket.
    All,
    /// Part of it is on the socket, the rest kept for the stream: the caller must still hand
    /// the delivery to the stream's queue, which wakes it.
    Part,
    /// Nothing in the delivery is for this connection (or it has it all already).
    Nothing,
    /// The caller must hand the delivery to the stream's queue.
    Queue,
}

/// What a stream needs from the connections it is registered with.
pub(crate) trait Registry: Send + Sync + std::fmt::Debug + 'static {
    /// Unregisters the connection (its stream ended).
    fn remove(&self, key: u64);
    /// The newest event id delivered to the connections (see [`Subscription`]'s heartbeat).
    fn position(&self) -> u64;
    /// Records how long after its publish call a stream wrote an event of it.
    fn delivered_after(&self, lag: Duration);
    /// Counts and logs a stream that cut itself for lagging.
    fn lag_cut(&self, client_id: &str, max_lag: Duration);
}

/// The settings a stream runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) retry_ms: u64,
    pub(crate) max_lag: Duration,
}

/// A registered connection's stream. Dropping it unregisters the connection.
#[derive(Debug)]
pub struct Subscription {
    pending: VecDeque<Pending>,
    rx: mpsc::Receiver<Arc<Published>>,
    /// Why the hub ends this stream (a cut, an admin's drop, the hub's shutdown): a oneshot,
    /// so waiting on it takes no lock.
    kill: oneshot::Receiver<Cut>,
    /// Started on the first poll, on the runtime that drives the stream: a tokio timer
    /// belongs to the runtime it was created on, and [`crate::serve`] drives streams on a
    /// runtime of their own.
    timers: Option<Timers>,
    heartbeat_event: bool,
    filter: Arc<Filter>,
    /// The highest event id this stream's client has: a frame at or below it is skipped
    /// (resuming: "register, read history, skip by id"), and an id this stream writes later
    /// (on a heartbeat) is never lower.
    written: u64,
    timing: Timing,
    /// Shutting down: write what is pending, then `__shutdown`.
    ending: bool,
    done: bool,
    /// Shared with publishers, who write to the socket while the stream is parked.
    direct: Arc<Direct>,
    /// Publish calls taken from `rx` (see [`Direct`]'s `queued`).
    taken: u64,
    guard: Guard,
}

/// The heartbeat and, when configured, the idle timeout.
#[derive(Debug)]
struct Timers {
    heartbeat: Interval,
    idle: Option<Pin<Box<Sleep>>>,
}

impl Timers {
    fn start(timing: &Timing) -> Self {
        let period = timing.heartbeat;
        let mut heartbeat = interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Timers {
            heartbeat,
            idle: timing.idle_timeout.map(|d| Box::pin(tokio::time::sleep(d))),
        }
    }
}

/// Unregisters the connection when the stream is dropped, however it ends.
#[derive(Debug)]
struct Guard {
    registry: Arc<dyn Registry>,
    key: u64,
}

/// `rest` of a partial direct write, then `frame`.
fn carried(rest: Option<Bytes>, frame: Bytes) -> Bytes {
    let Some(rest) = rest else {
        return frame;
    };
    let mut chunk = Chunk::default();
    chunk.push(&rest);
    chunk.push(&frame);
    chunk.finish().unwrap_or_default()
}

/// Pieces of SSE bytes joined into one chunk to write: a single piece is kept as it is (no
/// copy), a buffer is made from the second on.
#[derive(Debug, Default)]
struct Chunk {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
    /// Bytes pushed so far.
    len: usize,
}

impl Chunk {
    /// Whether `bytes` may join it within [`MAX_CHUNK`] (a piece alone always may).
    fn fits(&self, bytes: &Bytes) -> bool {
        self.len == 0 || self.len + bytes.len() <= MAX_CHUNK
    }

    fn push(&mut self, bytes: &Bytes) {
        self.len += bytes.len();
        match (self.first.take(), self.joined.as_mut()) {
            (None, None) => self.first = Some(bytes.clone()),
            (Some(first), None) => {
                let mut b = BytesMut::with_capacity(MAX_CHUNK.min(self.len.max(4096)));
                b.extend_from_slice(&first);
                b.extend_from_slice(bytes);
                self.joined = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(bytes),
        }
    }

    /// The joined bytes; `None` when nothing was pushed.
    fn finish(self) -> Option<Bytes> {
        self.joined.map(BytesMut::freeze).or(self.first)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Publishers stop writing, and the socket is closed with the stream.
        let mut parked = self.direct.lock();
        parked.idle = false;
        parked.socket = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.registry.remove(self.key);
    }
}

/// Everything [`Subscription::new`] needs from the hub's registration.
#[derive(Debug)]
pub(crate) struct Opening {
    pub(crate) key: u64,
    /// `retry:`, `__connected`, `__gap`: written first.
    pub(crate) head: Vec<Bytes>,
    /// History to replay (already checked against this connection's filter).
    pub(crate) replay: Option<Arc<Published>>,
    /// Written after the replay: `__position` and the id it carries.
    pub(crate) tail: Option<(u64, Bytes)>,
    /// The highest id the client has: its Last-Event-ID, or the id `__connected` carries.
    pub(crate) written: u64,
    pub(crate) rx: mpsc::Receiver<Arc<Published>>,
    pub(crate) kill: oneshot::Receiver<Cut>,
    pub(crate) filter: Arc<Filter>,
    pub(crate) heartbeat_event: bool,
    pub(crate) direct: Arc<Direct>,
}

/// What woke a waiting stream.
enum Woke {
    Cut(Result<Cut, oneshot::error::RecvError>),
    Published(Option<Arc<Published>>),
    Heartbeat,
    Idle,
}

impl Subscription {
    pub(crate) fn new(registry: Arc<dyn Registry>, opening: Opening, timing: Timing) -> Self {
        let mut pending: VecDeque<Pending> = opening.head.into_iter().map(Pending::Bytes).collect();
        if let Some(published) = opening.replay {
            pending.push_back(Pending::Frames { published, next: 0 });
        }
        pending.extend(opening.tail.map(|(id, bytes)| Pending::Position(id, bytes)));
        Subscription {
            pending,
            rx: opening.rx,
            kill: opening.kill,
            timers: None,
            heartbeat_event: opening.heartbeat_event,
            filter: opening.filter,
            written: opening.written,
            timing,
            ending: false,
            done: false,
            direct: opening.direct,
            taken: 0,
            guard: Guard {
                registry,
                key: opening.key,
            },
        }
    }

    /// The next chunk of SSE bytes, or `None` when the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            if !self.pending.is_empty() {
                if let Some(chunk) = self.take_pending() {
                    return Some(chunk);
                }
                // Nothing in what was pending is for this connection: wait for more.
                continue;
            }
            if self.ending {
                return Some(self.finish_shutdown());
            }
            // Everything returned before is written (see `attach`): publishers may write
            // while this waits.
            self.park();
            let timing = self.timing;
            let timers = self.timers.get_or_insert_with(|| Timers::start(&timing));
            let idle = async {
                match &mut timers.idle {
                    Some(sleep) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                biased;
                cut = &mut self.kill => Woke::Cut(cut),
                published = self.rx.recv() => Woke::Published(published),
                _ = timers.heartbeat.tick() => Woke::Heartbeat,
                () = idle => Woke::Idle,
            };
            let carry = self.unpark();
            match woke {
                Woke::Cut(cut) => {
                    if let Ok(Cut::Shutdown) = cut {
                        return Some(carried(carry, self.begin_shutdown()));
                    }
                    self.done = true;
                    let frame = match cut {
                        Ok(Cut::SlowConsumer) => self.slow_consumer_frame(),
                        Ok(Cut::Dropped) => self.error_frame(
                            "dropped",
                            "an admin dropped this client; reconnect with Last-Event-ID to replay what it missed",
                        ),
                        Ok(Cut::Shutdown) | Err(_) => return carry,
                    };
                    return Some(carried(carry, frame));
                }
                Woke::Published(Some(published)) => {
                    self.taken += 1;
                    if self.lagging(&published) {
                        return Some(carried(carry, self.cut_lagging()));
                    }
                    self.push(published);
                    while self.pending.len() < 64 {
                        let Ok(more) = self.rx.try_recv() else { break };
                        self.taken += 1;
                        self.push(more);
                    }
                    self.reset_idle(Instant::now());
                    if let Some(carry) = carry {
                        self.pending.push_front(Pending::Bytes(carry));
                    }
                }
                Woke::Published(None) => {
                    self.done = true;
                    return carry;
                }
                Woke::Heartbeat => return Some(carried(carry, self.heartbeat_frame())),
                Woke::Idle => {
                    // Events a publisher wrote directly count as activity too.
                    let pushed_back = self
                        .timers
                        .as_ref()
                        .and_then(|t| t.idle.as_ref())
                        .is_some_and(|sleep| sleep.deadline() > Instant::now());
                    if pushed_back {
                        if carry.is_some() {
                            return carry;
                        }
                        continue;
                    }
                    self.done = true;
                    return Some(carried(carry, self.error_frame("idle_timeout", "no event for the idle timeout; reconnect when you need the stream again")));
                }
            }
        }
    }

    /// Lets publishers write to the stream's socket directly from now on, while
    /// [`Subscription::next_chunk`] waits: the caller must then call `next_chunk` only once
    /// everything it returned before is written.
    pub(crate) fn attach(&self, socket: Box<dyn Socket>) {
        self.direct.lock().socket = Some(socket);
    }

    /// Parks the stream, if it has nothing left to write and has taken everything queued:
    /// publishers may then write to its socket until it wakes.
    fn park(&mut self) {
        if !self.pending.is_empty() || self.ending || self.done {
            return;
        }
        let mut parked = self.direct.lock();
        if parked.idle
            || parked.carry.is_some()
            || self.direct.queued.load(Ordering::SeqCst) != self.taken
        {
            return;
        }
        parked.idle = true;
        parked.taken = self.taken;
        parked.written = parked.written.max(self.written);
    }

    /// Takes the write back from publishers: adopts the id they moved the client to, resets
    /// the idle timeout for what they wrote, and returns the rest of a partial write, which
    /// must be written before anything else.
    fn unpark(&mut self) -> Option<Bytes> {
        let (written, wrote_at, carry) = {
            let mut parked = self.direct.lock();
            parked.idle = false;
            (parked.written, parked.wrote_at.take(), parked.carry.take())
        };
        self.written = self.written.max(written);
        if let Some(at) = wrote_at {
            self.reset_idle(at);
        }
        carry
    }

    /// Restarts the idle timeout from `at` (the last event written), when there is one.
    fn reset_idle(&mut self, at: Instant) {
        if let (
            Some(d),
            Some(Timers {
                idle: Some(sleep), ..
            }),
        ) = (self.timing.idle_timeout, &mut self.timers)
        {
            sleep.as_mut().reset(at + d);
        }
    }

    /// The subscription as a stream of chunks. For a response body, map the items into
    /// `Result`s: `Body::from_stream(sub.into_stream().map(Ok::<_, Infallible>))` (with
    /// `futures_util::StreamExt`), and set the SSE headers; or let [`crate::router`] do it.
    pub fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures_util::stream::unfold(self, |mut sub| async move {
            sub.next_chunk().await.map(|chunk| (chunk, sub))
        })
    }

    fn push(&mut self, published: Arc<Published>) {
        self.pending
            .push_back(Pending::Frames { published, next: 0 });
    }

    /// Whether `published`, the oldest event this stream has not written (it is received
    /// only once everything before it was written), is older than `max_lag`.
    fn lagging(&self, published: &Published) -> bool {
        published
            .at
            .is_some_and(|at| at.elapsed() > self.timing.max_lag)
    }

    fn cut_lagging(&mut self) -> Bytes {
        self.done = true;
        self.guard
            .registry
            .lag_cut(&self.filter.client_id, self.timing.max_lag);
        self.slow_consumer_frame()
    }

    /// Shutdown: events already queued were counted as delivered, so they are written first.
    fn begin_shutdown(&mut self) -> Bytes {
        while let Ok(published) = self.rx.try_recv() {
            self.taken += 1;
            self.push(published);
        }
        match self.take_pending() {
            Some(chunk) => {
                self.ending = true;
                chunk
            }
            None => self.finish_shutdown(),
        }
    }

    /// Joins pending bytes into one chunk of at most [`MAX_CHUNK`] bytes (or one frame);
    /// `None` when nothing pending is for this connection.
    fn take_pending(&mut self) -> Option<Bytes> {
        let mut chunk = Chunk::default();
        let mut now: Option<Instant> = None;
        'outer: while let Some(front) = self.pending.front_mut() {
            match front {
                Pending::Bytes(bytes) => {
                    if !chunk.fits(bytes) {
                        break;
                    }
                    chunk.push(bytes);
                    self.pending.pop_front();
                }
                Pending::Position(id, bytes) => {
                    if !chunk.fits(bytes) {
                        break;
                    }
                    chunk.push(bytes);
                    self.written = self.written.max(*id);
                    self.pending.pop_front();
                }
                Pending::Frames { published, next } => {
                    let mut carried = false;
                    while let Some(frame) = published.frames.get(*next) {
                        let seen = frame.id != 0 && frame.id <= self.written;
                        if !seen && self.filter.entitled(&frame.target, &frame.event) {
                            if !chunk.fits(&frame.bytes) {
                                break;
                            }
                            chunk.push(&frame.bytes);
                            carried = true;
                            self.written = self.written.max(frame.id);
                        }
                        *next += 1;
                    }
                    if let (true, Some(at)) = (carried, published.at) {
                        let now = *now.get_or_insert_with(Instant::now);
                        self.guard.registry.delivered_after(now - at);
                    }
                    if *next < published.frames.len() {
                        break 'outer;
                    }
                    self.pending.pop_front();
                }
            }
        }
        chunk.finish()
    }

    fn finish_shutdown(&mut self) -> Bytes {
        self.done = true;
        let retry = self.timing.retry_ms;
        let mut buf = BytesMut::from(&encode_retry(retry)[..]);
        buf.extend_from_slice(&encode_system(
            None,
            "__shutdown",
            &Shutdown { retry_ms: retry },
        ));
        buf.freeze()
    }

    fn slow_consumer_frame(&self) -> Bytes {
        self.error_frame(
            "slow_consumer",
            "this connection fell behind and was cut; reconnect with Last-Event-ID to replay what it missed",
        )
    }

    fn error_frame(&self, reason: &str, message: &str) -> Bytes {
        let retry = self.timing.retry_ms;
        encode_system(
            None,
            "__error",
            &Ended {
                reason,
                message,
                retry_ms: retry,
            },
        )
    }

    /// A heartbeat, carrying this connection's position when it is safe to: the newest id
    /// is read first, and if the queue is then empty every event up to that id that this
    /// connection is entitled to has been handed over. A client that hears only heartbeats
    /// (a quiet topic) thus resumes from a recent id and gets no needless `__gap`.
    ///
    /// The registry stores its position only once a publish call's fan-out is complete, so this
    /// stream may already have written a later event: the position is never lower than the
    /// highest id written here, so a client's Last-Event-ID never moves backwards.
    fn heartbeat_frame(&mut self) -> Bytes {
        let newest = self.guard.registry.position();
        let position = (self.rx.is_empty() && self.pending.is_empty()).then(|| {
            self.written = self.written.max(newest);
            self.written
        });
        encode_heartbeat(position, self.heartbeat_event)
    }
}
