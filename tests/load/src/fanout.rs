//! The subscriber side of `bench`: one shard's SSE connections to any of the compared servers,
//! each timing the events it receives against the send time they carry.
//!
//! A subscriber is a plain socket, not a hyper client: it writes its `GET`, reads the response
//! head, undoes chunked transfer coding when the server uses it (eventwire and node do; nchan
//! ends the body with the connection) and feeds [`crate::sse::Parser`]. That keeps the tool's
//! cost per delivered event small, since it shares a 2-core machine with the server it
//! measures, and lets a "slow" subscriber truly stop reading its socket.
//!
//! Every subscriber records which events (by sequence number) it got in a bitset, so each
//! phase's losses and duplicates are counted per connection. The parent drives the phases with
//! [`Step`]s: `Expect` (wait for a phase's events, then report it), `Drop` (every connection
//! drops and resumes with its Last-Event-ID), `Stall` (slow subscribers stop reading).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::error::Error;
use crate::net::{connect_with, Sources, CONNECT_TIMEOUT};
use crate::report::Hist;
use crate::servers::{parse_payload, Server, Stamp};
use crate::shard::{Down, Up};
use crate::sse::Parser;

/// Most phases one run may have (a phase index above it in a payload is ignored).
const MAX_PHASES: usize = 32;

/// Most times one subscriber reconnects after the server ended its stream unasked.
const MAX_UNASKED_RECONNECTS: u32 = 20;

/// Bytes read from a socket at once.
const READ_BUFFER: usize = 4096;

/// One shard's subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Which server (paths and readiness).
    pub server: Server,
    /// Its address.
    pub addr: SocketAddr,
    /// Source addresses (subscriber `i` uses `sources.addr(i)`).
    pub sources: Sources,
    /// Global index of the shard's first subscriber.
    pub start: usize,
    /// One past its last.
    pub end: usize,
    /// Subscribers over all shards (unicast event `s` goes to subscriber `s % total`).
    pub total: usize,
    /// Every subscriber has an address of its own and events go to one each.
    pub unicast: bool,
    /// When above 0, subscriber `i` is slow when `i % slow_every == 0`: it stops reading at
    /// `Stall` and its expectations end there.
    pub slow_every: usize,
    /// Receive buffer of slow subscribers' sockets, bytes.
    pub slow_recv_buffer: usize,
    /// Opens (and reopens) in flight in this shard.
    pub concurrency: usize,
}

/// Parent to shard, between `Ready` and `Finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Step {
    /// Wait (at most `timeout_ms`) until every reading subscriber has the phase's events, then
    /// answer a [`PhaseReport`].
    Expect(Expect),
    /// Every subscriber drops its connection and reopens it with its Last-Event-ID; it is
    /// resynced when it holds event `resync_seq` again over the new connection. No answer.
    Drop {
        /// The newest event acknowledged before the drop.
        resync_seq: u64,
    },
    /// Slow subscribers stop reading (answered with `Value::Null` once they have).
    Stall,
}

/// A phase's events: sequence numbers `first..end` except `failed` (not acknowledged).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expect {
    /// Phase index (in every payload of the phase).
    pub phase: usize,
    /// First sequence number.
    pub first: u64,
    /// One past the last.
    pub end: u64,
    /// Sequence numbers whose publish failed: owed to nobody.
    pub failed: Vec<u64>,
    /// Longest wait, ms.
    pub timeout_ms: u64,
}

/// What the shard saw of one phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Deliveries owed to the reading subscribers.
    pub expected: u64,
    /// Distinct deliveries that reached them.
    pub received: u64,
    /// Events a subscriber received a second time.
    pub duplicates: u64,
    /// Events that reached a subscriber they were not addressed to.
    pub misdelivered: u64,
    /// Owed deliveries that never arrived (counted per connection).
    pub lost: u64,
    /// Subscribers missing at least one event.
    pub subscribers_with_loss: u64,
    /// Every owed delivery arrived before the timeout.
    pub complete: bool,
    /// First and last arrival of an event of the phase, Unix µs (0 when none).
    pub first_us: u64,
    /// See `first_us`.
    pub last_us: u64,
    /// Send-to-arrival latency of first deliveries.
    pub latency: Hist,
    /// Drop-to-resynced time of subscribers resynced since the last report, ms × 1000.
    pub resync: Hist,
    /// Subscribers asked to resync that had not.
    pub unresynced: u64,
    /// Failed reopens (by cause) since the last report.
    pub reopen_errors: BTreeMap<String, u64>,
}

impl PhaseReport {
    /// Adds another shard's report of the same phase.
    pub fn merge(&mut self, other: &PhaseReport) {
        self.expected += other.expected;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.misdelivered += other.misdelivered;
        self.lost += other.lost;
        self.subscribers_with_loss += other.subscribers_with_loss;
        self.complete &= other.complete;
        if other.first_us != 0 {
            self.first_us = match self.first_us {
                0 => other.first_us,
                mine => mine.min(other.first_us),
            };
        }
        self.last_us = self.last_us.max(other.last_us);
        self.latency.merge(&other.latency);
        self.resync.merge(&other.resync);
        self.unresynced += other.unresynced;
        for (k, v) in &other.reopen_errors {
            *self.reopen_errors.entry(k.clone()).or_default() += v;
        }
    }
}

/// The shard's `Ready`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    /// Subscribers whose stream opened.
    pub connected: usize,
    /// Failed opens by cause.
    pub failed: BTreeMap<String, usize>,
    /// When the first open started and the last one finished, Unix µs.
    pub first_start_us: u64,
    /// See `first_start_us`.
    pub last_open_us: u64,
    /// Open-to-subscribed time of each subscriber, µs.
    pub open: Hist,
}

/// The shard's `Done`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {
    /// Streams the server ended without being asked, by how they ended.
    pub unasked_ends: BTreeMap<String, u64>,
    /// Slow subscribers.
    pub slow: u64,
    /// Slow subscribers whose connection the server had closed by the end.
    pub slow_cut: u64,
    /// Bytes slow subscribers found waiting when they read again at the end.
    pub slow_backlog_bytes: u64,
}

/// Wall-clock now, Unix µs (the publisher's send times are wall-clock too: the parent and the
/// worker processes share the machine's clock).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One subscriber's record.
#[derive(Debug, Default)]
struct Sub {
    /// Bit `n` set: event slot `n` received (slot = seq, or seq / total when unicast).
    seen: Vec<u64>,
    /// Its first open succeeded.
    opened: bool,
    /// A slow subscriber (stops reading at `Stall`).
    slow: bool,
    /// Waiting to hold this event again after a drop, since this time (Unix µs).
    resync: Option<(u64, u64)>,
    /// The reopen after the drop is done.
    reopened: bool,
}

impl Sub {
    fn has(&self, slot: usize) -> bool {
        self.seen
            .get(slot / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    fn mark(&mut self, slot: usize) {
        if self.seen.len() <= slot / 64 {
            self.seen.resize(slot / 64 + 1, 0);
        }
        self.seen[slot / 64] |= 1 << (slot % 64);
    }
}

#[derive(Debug, Default)]
struct PhaseAcc {
    received: u64,
    duplicates: u64,
    misdelivered: u64,
    first_us: u64,
    last_us: u64,
    latency: Hist,
}

/// What every subscriber task updates. A std `Mutex`: it is held for a few comparisons per
/// read, never across an `.await`.
#[derive(Debug, Default)]
struct Shared {
    subs: Vec<Sub>,
    phases: Vec<PhaseAcc>,
    stalled: bool,
    resync: Hist,
    reopen_errors: BTreeMap<String, u64>,
    unasked_ends: BTreeMap<String, u64>,
    slow_cut: u64,
    slow_backlog_bytes: u64,
}

#[derive(Debug)]
struct Ctx {
    job: Job,
    shared: Mutex<Shared>,
    opening: Semaphore,
    drops: watch::Receiver<u64>,
    stall: watch::Receiver<bool>,
    finish: watch::Receiver<bool>,
}

impl Ctx {
    fn slot(&self, seq: u64) -> usize {
        if self.job.unicast {
            (seq / self.job.total.max(1) as u64) as usize
        } else {
            seq as usize
        }
    }

    fn owed(&self, i: usize, seq: u64) -> bool {
        !self.job.unicast || seq % self.job.total.max(1) as u64 == i as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the events of one read.
    fn record(&self, local: usize, stamps: &[Stamp]) {
        let now = unix_us();
        let i = self.job.start + local;
        let mut guard = self.lock();
        let shared = &mut *guard;
        let reading = !(shared.stalled && shared.subs[local].slow);
        for stamp in stamps {
            if stamp.phase >= MAX_PHASES {
                continue;
            }
            if shared.phases.len() <= stamp.phase {
                shared
                    .phases
                    .resize_with(stamp.phase + 1, PhaseAcc::default);
            }
            let phase = &mut shared.phases[stamp.phase];
            let sub = &mut shared.subs[local];
            if !self.owed(i, stamp.seq) {
                phase.misdelivered += 1;
                continue;
            }
            let slot = self.slot(stamp.seq);
            if sub.has(slot) {
                phase.duplicates += 1;
                continue;
            }
            sub.mark(slot);
            if reading {
                phase.received += 1;
            }
            phase.latency.record(now.saturating_sub(stamp.sent_us));
            phase.first_us = if phase.first_us == 0 {
                now
            } else {
                phase.first_us.min(now)
            };
            phase.last_us = phase.last_us.max(now);
        }
        self.check_resync(&mut guard, local, now);
    }

    fn check_resync(&self, shared: &mut Shared, local: usize, now: u64) {
        let sub = &mut shared.subs[local];
        if let (Some((seq, since)), true) = (sub.resync, sub.reopened) {
            if sub.has(self.slot(seq)) {
                sub.resync = None;
                shared.resync.record(now.saturating_sub(since));
            }
        }
    }
}

/// Runs one shard: opens every subscriber, reports `Ready`, answers `Step`s until `Finish`.
pub async fn shard(
    job: Job,
    mut down: mpsc::UnboundedReceiver<Down>,
    up: mpsc::UnboundedSender<Up>,
) {
    let count = job.end - job.start;
    let (drops_tx, drops) = watch::channel(0u64);
    let (stall_tx, stall) = watch::channel(false);
    let (finish_tx, finish) = watch::channel(false);
    let shared = Shared {
        subs: (job.start..job.end)
            .map(|i| Sub {
                slow: job.slow_every > 0 && i % job.slow_every == 0,
                ..Sub::default()
            })
            .collect(),
        ..Shared::default()
    };
    let ctx = Arc::new(Ctx {
        opening: Semaphore::new(job.concurrency.max(1)),
        job,
        shared: Mutex::new(shared),
        drops,
        stall,
        finish,
    });
    let (open_tx, mut open_rx) = mpsc::unbounded_channel();
    let mut ready = Ready {
        first_start_us: unix_us(),
        ..Ready::default()
    };
    let tasks: Vec<_> = (0..count)
        .map(|local| tokio::spawn(subscriber(ctx.clone(), local, open_tx.clone())))
        .collect();
    drop(open_tx);
    for _ in 0..count {
        match open_rx.recv().await {
            Some(Ok(took)) => {
                ready.connected += 1;
                ready.open.record(took);
            }
            Some(Err(kind)) => *ready.failed.entry(kind).or_default() += 1,
            None => break,
        }
    }
    let missing = count - ready.connected - ready.failed.values().sum::<usize>();
    if missing > 0 {
        *ready.failed.entry("task ended".into()).or_default() += missing;
    }
    ready.last_open_us = unix_us();
    let _ = up.send(Up::Ready(
        serde_json::to_value(&ready).unwrap_or(Value::Null),
    ));

    while let Some(msg) = down.recv().await {
        let step = match msg {
            Down::Finish(_) => break,
            Down::Step(v) => match serde_json::from_value::<Step>(v) {
                Ok(step) => step,
                Err(e) => {
                    eprintln!("bad step: {e}");
                    continue;
                }
            },
        };
        match step {
            Step::Expect(e) => {
                let report = expect(&ctx, &e).await;
                let _ = up.send(Up::Step(
                    serde_json::to_value(&report).unwrap_or(Value::Null),
                ));
            }
            Step::Drop { resync_seq } => {
                let now = unix_us();
                {
                    let mut shared = ctx.lock();
                    let stalled = shared.stalled;
                    for sub in &mut shared.subs {
                        if sub.opened && !(stalled && sub.slow) {
                            sub.resync = Some((resync_seq, now));
                            sub.reopened = false;
                        }
                    }
                }
                drops_tx.send_modify(|g| *g += 1);
            }
            Step::Stall => {
                ctx.lock().stalled = true;
                let _ = stall_tx.send(true);
                // Let every slow subscriber leave its read before anything is published.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = up.send(Up::Step(Value::Null));
            }
        }
    }
    let _ = finish_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let shared = ctx.lock();
    let done = Done {
        unasked_ends: shared.unasked_ends.clone(),
        slow: shared.subs.iter().filter(|s| s.slow && s.opened).count() as u64,
        slow_cut: shared.slow_cut,
        slow_backlog_bytes: shared.slow_backlog_bytes,
    };
    let _ = up.send(Up::Done(serde_json::to_value(&done).unwrap_or(Value::Null)));
}

/// Waits for a phase's deliveries, then counts what each reading subscriber lacks.
async fn expect(ctx: &Ctx, e: &Expect) -> PhaseReport {
    let failed: std::collections::HashSet<u64> = e.failed.iter().copied().collect();
    let owed_total = {
        let shared = ctx.lock();
        let mut total = 0u64;
        for (local, sub) in shared.subs.iter().enumerate() {
            if !sub.opened || (shared.stalled && sub.slow) {
                continue;
            }
            let i = ctx.job.start + local;
            total += (e.first..e.end)
                .filter(|s| ctx.owed(i, *s) && !failed.contains(s))
                .count() as u64;
        }
        total
    };
    let deadline = Instant::now() + Duration::from_millis(e.timeout_ms);
    loop {
        let received = ctx.lock().phases.get(e.phase).map_or(0, |p| p.received);
        if received >= owed_total || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut shared = ctx.lock();
    let mut report = PhaseReport {
        expected: owed_total,
        ..PhaseReport::default()
    };
    let stalled = shared.stalled;
    for (local, sub) in shared.subs.iter().enumerate() {
        if !sub.opened || (stalled && sub.slow) {
            continue;
        }
        let i = ctx.job.start + local;
        let lost = (e.first..e.end)
            .filter(|s| ctx.owed(i, *s) && !failed.contains(s) && !sub.has(ctx.slot(*s)))
            .count() as u64;
        report.lost += lost;
        report.subscribers_with_loss += u64::from(lost > 0);
        if sub.resync.is_some() {
            report.unresynced += 1;
        }
    }
    report.complete = report.lost == 0;
    if let Some(p) = shared.phases.get_mut(e.phase) {
        report.received = p.received;
        report.duplicates = p.duplicates;
        report.misdelivered = p.misdelivered;
        report.first_us = p.first_us;
        report.last_us = p.last_us;
        report.latency = std::mem::take(&mut p.latency);
    }
    report.resync = std::mem::take(&mut shared.resync);
    report.reopen_errors = std::mem::take(&mut shared.reopen_errors);
    report
}

/// The name a failure is counted under.
fn kind(e: &Error) -> String {
    match e {
        Error::Status(code, _) => format!("status {code}"),
        Error::Timeout(what) => format!("timeout {what}"),
        Error::Io(io) => format!("io {:?}", io.kind()),
        other => {
            let text = other.to_string();
            text.split(':').take(2).collect::<Vec<_>>().join(":")
        }
    }
}

/// Why a subscriber left its read loop.
enum Next {
    Read,
    Ended(&'static str),
    Drop,
    Stall,
    Finish,
}

/// One subscriber: open, read until `Finish`, reopen on `Drop` or when the server ends the
/// stream, stop reading at `Stall` when slow. Every failure is counted, none panics.
async fn subscriber(
    ctx: Arc<Ctx>,
    local: usize,
    opened: mpsc::UnboundedSender<Result<u64, String>>,
) {
    let i = ctx.job.start + local;
    let slow = ctx.lock().subs[local].slow;
    let path = ctx.job.server.subscribe_path(i, ctx.job.unicast);
    let (mut drops, mut stall, mut finish) =
        (ctx.drops.clone(), ctx.stall.clone(), ctx.finish.clone());
    let first = {
        let _permit = ctx.opening.acquire().await;
        let start = Instant::now();
        Sse::open(&ctx, i, &path, "", slow)
            .await
            .map(|s| (s, start.elapsed().as_micros() as u64))
    };
    let mut sse = match first {
        Ok((sse, took)) => {
            ctx.lock().subs[local].opened = true;
            let _ = opened.send(Ok(took));
            sse
        }
        Err(e) => {
            let _ = opened.send(Err(kind(&e)));
            return;
        }
    };
    drop(opened);
    let mut unasked = 0u32;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        // Events that arrived with the response head (or __connected) are handled first.
        sse.deliver(&ctx, local);
        let stalled = slow && *stall.borrow();
        let next = tokio::select! {
            n = sse.read(&mut buf), if !stalled => match n {
                Ok(0) => Next::Ended("eof"),
                Ok(n) => {
                    sse.feed(&buf[..n]);
                    Next::Read
                }
                Err(_) => Next::Ended("error"),
            },
            changed = drops.changed(), if !stalled => {
                if changed.is_ok() { Next::Drop } else { Next::Finish }
            }
            changed = stall.changed(), if slow && !stalled => {
                if changed.is_ok() { Next::Stall } else { Next::Finish }
            }
            _ = finish.changed() => Next::Finish,
        };
        match next {
            Next::Read | Next::Stall => {}
            Next::Finish => break,
            Next::Ended(how) => {
                *ctx.lock().unasked_ends.entry(how.to_owned()).or_default() += 1;
                unasked += 1;
                if unasked > MAX_UNASKED_RECONNECTS || *finish.borrow() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                match reopen(&ctx, i, local, &path, &sse.parser.last_id, slow).await {
                    Some(next) => sse = next,
                    None => break,
                }
            }
            Next::Drop => {
                let last_id = sse.parser.last_id.clone();
                drop(sse);
                match reopen(&ctx, i, local, &path, &last_id, slow).await {
                    Some(next) => sse = next,
                    None => return,
                }
            }
        }
    }
    if slow && *stall.borrow() {
        slow_fate(&ctx, sse, &mut buf).await;
    }
}

/// Reopens with `last_id` (a few attempts); marks the subscriber reopened for its resync.
async fn reopen(
    ctx: &Ctx,
    i: usize,
    local: usize,
    path: &str,
    last_id: &str,
    slow: bool,
) -> Option<Sse> {
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let result = {
            let _permit = ctx.opening.acquire().await;
            Sse::open(ctx, i, path, last_id, slow).await
        };
        match result {
            Ok(sse) => {
                let mut shared = ctx.lock();
                shared.subs[local].reopened = true;
                drop(shared);
                let mut sse = sse;
                sse.deliver(ctx, local);
                let mut shared = ctx.lock();
                ctx.check_resync(&mut shared, local, unix_us());
                return Some(sse);
            }
            Err(e) => *ctx.lock().reopen_errors.entry(kind(&e)).or_default() += 1,
        }
    }
    None
}

/// A slow subscriber reads again at the end: did the server keep or close its connection, and
/// how much was waiting for it?
async fn slow_fate(ctx: &Ctx, mut sse: Sse, buf: &mut [u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bytes = 0u64;
    let cut = loop {
        let idle = Instant::now() + Duration::from_secs(1);
        match tokio::time::timeout_at(idle.min(deadline), sse.stream.read(buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => bytes += n as u64,
            Err(_) => break false,
        }
    };
    let mut shared = ctx.lock();
    shared.slow_cut += u64::from(cut);
    shared.slow_backlog_bytes += bytes;
}

/// An open SSE response on a raw socket.
#[derive(Debug)]
struct Sse {
    stream: TcpStream,
    chunked: Option<Chunked>,
    parser: Parser,
    /// The last chunk of a chunked body arrived.
    ended: bool,
}

impl Sse {
    /// Connects, sends the `GET`, reads the head (and, for eventwire, up to `__connected`).
    async fn open(
        ctx: &Ctx,
        i: usize,
        path: &str,
        last_id: &str,
        slow: bool,
    ) -> Result<Self, Error> {
        let job = &ctx.job;
        let recv_buffer = (slow && job.slow_recv_buffer > 0).then_some(job.slow_recv_buffer);
        let fut = async {
            let mut stream = connect_with(job.addr, Some(job.sources.addr(i)), recv_buffer).await?;
            let mut request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
                job.addr
            );
            if !last_id.is_empty() {
                request.push_str(&format!("Last-Event-ID: {last_id}\r\n"));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 2048];
            let body_start = loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(Error::Ended("before the response head"));
                }
                head.extend_from_slice(&buf[..n]);
                if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                if head.len() > 16 * 1024 {
                    return Err(Error::Ended("in an overlong response head"));
                }
            };
            let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
            let status: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status != 200 {
                return Err(Error::Status(
                    status,
                    text.lines().next().unwrap_or("").to_owned(),
                ));
            }
            let chunked = text.contains("\r\ntransfer-encoding: chunked");
            let mut parser = Parser::default();
            parser.last_id = last_id.to_owned();
            let mut sse = Self {
                stream,
                chunked: chunked.then(Chunked::default),
                parser,
                ended: false,
            };
            sse.feed(&head[body_start..]);
            if job.server.announces_connected() {
                sse.until_connected().await?;
            }
            Ok(sse)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Timeout("subscribe"))?
    }

    /// Reads until the `__connected` block; the blocks after it stay queued in the parser.
    async fn until_connected(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; 2048];
        loop {
            while let Some(block) = self.parser.next_block() {
                if matches!(&block.event, Some((name, _)) if name == "__connected") {
                    return Ok(());
                }
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::Ended("before __connected"));
            }
            self.feed(&buf[..n]);
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        self.stream.read(buf).await
    }

    /// Feeds body bytes (undoing chunked coding) to the parser.
    fn feed(&mut self, bytes: &[u8]) {
        match &mut self.chunked {
            None => self.parser.feed(bytes),
            Some(chunked) => {
                let parser = &mut self.parser;
                self.ended |= chunked.feed(bytes, &mut |data| parser.feed(data));
            }
        }
    }

    /// Hands the parsed events to the shard's record.
    fn deliver(&mut self, ctx: &Ctx, local: usize) {
        let mut stamps = Vec::new();
        while let Some(block) = self.parser.next_block() {
            if let Some((name, data)) = block.event {
                if name.starts_with("__") {
                    continue;
                }
                if let Some(stamp) = parse_payload(&data) {
                    stamps.push(stamp);
                }
            }
        }
        if !stamps.is_empty() {
            ctx.record(local, &stamps);
        }
    }
}

/// A decoder of HTTP/1.1 chunked transfer coding.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: usize,
    line: Vec<u8>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data,
    /// The CRLF after a chunk's data.
    AfterData,
    Done,
}

impl Chunked {
    /// Feeds coded bytes; `out` gets the data. Returns whether the last chunk arrived.
    fn feed(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        while !input.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(input);
                        return false;
                    };
                    self.line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    let text = String::from_utf8_lossy(&self.line);
                    let hex = text.split([';', '\r']).next().unwrap_or("").trim();
                    self.size = usize::from_str_radix(hex, 16).unwrap_or(0);
                    self.line.clear();
                    self.state = if self.size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::Data => {
                    let take = self.size.min(input.len());
                    out(&input[..take]);
                    input = &input[take..];
                    self.size -= take;
                    if self.size == 0 {
                        self.state = ChunkState::AfterData;
                    }
                }
                ChunkState::AfterData => match input.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        input = &input[nl + 1..];
                        self.state = ChunkState::Size;
                    }
                    None => return false,
                },
                ChunkState::Done => return true,
            }
        }
        self.state == ChunkState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut done = false;
        for part in parts {
            done = c.feed(part, &mut |d| out.extend_from_slice(d));
        }
        (out, done)
    }

    #[test]
    fn chunked_bodies_split_anywhere() {
        let whole: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        assert_eq!(decode(&[whole]), (b"hello, world".to_vec(), true));
        for cut in 1..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(
                decode(&[a, b]),
                (b"hello, world".to_vec(), true),
                "cut {cut}"
            );
        }
        assert_eq!(decode(&[b"3\r\nabc\r\n"]), (b"abc".to_vec(), false));
    }

    #[test]
    fn slots_and_owners() {
        let job = Job {
            server: Server::Eventwire,
            addr: "127.0.0.1:1".parse().expect("addr"),
            sources: Sources::parse("127.0.0.2").expect("sources"),
            start: 0,
            end: 4,
            total: 4,
            unicast: true,
            slow_every: 0,
            slow_recv_buffer: 4096,
            concurrency: 1,
        };
        let (_, drops) = watch::channel(0);
        let (_, stall) = watch::channel(false);
        let (_, finish) = watch::channel(false);
        let ctx = Ctx {
            job,
            shared: Mutex::default(),
            opening: Semaphore::new(1),
            drops,
            stall,
            finish,
        };
        assert!(ctx.owed(1, 9) && !ctx.owed(2, 9));
        assert_eq!(ctx.slot(9), 2);
    }
}
