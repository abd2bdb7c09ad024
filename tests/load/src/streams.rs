//! Checked SSE streams, shared by `storm` and `batch`.
//!
//! Each stream behaves like the SDK: it resumes with the last id it saw (from any block,
//! including `__heartbeat` and id-only blocks) whenever its connection ends, on purpose or
//! not. It records which load events (by sequence number) arrived and checks, once the
//! parent sends the publisher's acknowledged list, that every event meant for it after its
//! first `__connected` arrived exactly once and in order.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep_until, Instant};

use crate::net::{parse_id, Hub, Sources, SseStream};
use crate::shard::{Down, Up};

/// The event type the tool publishes and checks.
pub const LOAD_EVENT: &str = "n";

/// The streams of one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The hub.
    pub hub: Hub,
    /// Source addresses (stream `i` uses `sources.addr(i)`).
    pub sources: Sources,
    /// Global index of the first stream of this shard.
    pub start: usize,
    /// One past the last stream.
    pub end: usize,
    /// Ask for `heartbeat=event`.
    pub heartbeat_event: bool,
    /// When above 0, stream `i` joins topic `t{i % topics}`.
    pub topics: usize,
    /// Drop each connection after a random time in this range (ms), then resume.
    pub drop_ms: Option<(u64, u64)>,
    /// Connections opened at once during the opening.
    pub concurrency: usize,
    /// Pause between a drop and the reconnect, ms.
    pub reconnect_delay_ms: u64,
}

/// Where a published event was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every connection.
    All,
    /// One topic.
    Topic(String),
    /// One client id.
    Client(String),
}

/// An event the hub acknowledged with a 2xx.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acked {
    /// The sequence number in its data.
    pub seq: u32,
    /// The id the hub answered.
    pub id: u64,
    /// Its target.
    pub target: Target,
}

/// What the parent sends when publishing is over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    /// Every acknowledged event.
    pub acked: Vec<Acked>,
    /// Sequence numbers published without a 2xx (their fate is unknown).
    pub unacked: Vec<u32>,
    /// How long streams may take to receive what they miss.
    pub settle_ms: u64,
}

/// Results of a shard (summed over its streams).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Streams in the shard.
    pub streams: usize,
    /// Streams that never got a first `__connected`.
    pub never_connected: usize,
    /// Streams that did not receive everything before the settle time ran out.
    pub incomplete_streams: usize,
    /// Load events received (all streams).
    pub received: u64,
    /// Events received a second time (same sequence number).
    pub duplicates: u64,
    /// Events that arrived after a later one.
    pub out_of_order: u64,
    /// Events meant for a stream that never arrived, with no `__gap` covering them.
    pub lost: u64,
    /// Missing events covered by an announced `__gap`.
    pub gap_lost: u64,
    /// `__gap` events.
    pub gaps: u64,
    /// Events that reached a stream they were not addressed to.
    pub misdelivered: u64,
    /// Events received whose publish got no 2xx.
    pub unacked_received: u64,
    /// Times an `id:` lower than one already written on the connection (or resumed from)
    /// was written.
    pub id_regressions: u64,
    /// Reconnects the tool caused.
    pub drops: u64,
    /// Streams the hub ended (by reason: `__error` reason, `shutdown`, `eof`, `error`).
    pub hub_closed: BTreeMap<String, u64>,
    /// Failed (re)connects by cause.
    pub connect_errors: BTreeMap<String, u64>,
    /// Time from a drop to resynced (`__connected` + its replay), ms.
    pub resync_ms: Vec<f32>,
    /// Wall-clock time (Unix ms) of the last load event any stream received.
    pub last_event_unix_ms: u64,
    /// A few example problems.
    pub examples: Vec<String>,
}

impl Report {
    /// Adds another shard's report into this one.
    pub fn merge(&mut self, other: Report) {
        self.streams += other.streams;
        self.never_connected += other.never_connected;
        self.incomplete_streams += other.incomplete_streams;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.lost += other.lost;
        self.gap_lost += other.gap_lost;
        self.gaps += other.gaps;
        self.misdelivered += other.misdelivered;
        self.unacked_received += other.unacked_received;
        self.id_regressions += other.id_regressions;
        self.drops += other.drops;
        for (k, v) in other.hub_closed {
            *self.hub_closed.entry(k).or_default() += v;
        }
        for (k, v) in other.connect_errors {
            *self.connect_errors.entry(k).or_default() += v;
        }
        self.resync_ms.extend(other.resync_ms);
        self.last_event_unix_ms = self.last_event_unix_ms.max(other.last_event_unix_ms);
        for e in other.examples {
            if self.examples.len() < 10 {
                self.examples.push(e);
            }
        }
    }
}

/// The shard's `Ready`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ready {
    /// Streams that got their first `__connected`.
    pub connected: usize,
    /// Streams whose first attempts all failed.
    pub failed: usize,
}

/// The acknowledged list indexed by sequence number.
#[derive(Debug)]
struct Expected {
    by_seq: Vec<Option<Acked>>,
    by_id: std::collections::HashMap<u64, u32>,
    unacked: HashSet<u32>,
    deadline: Instant,
}

/// Wall-clock now in Unix ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Client id of stream `i`.
pub fn client_id(i: usize) -> String {
    format!("ld{i}")
}

/// Runs one shard of streams.
pub async fn shard(
    job: Job,
    mut down: mpsc::UnboundedReceiver<Down>,
    up: mpsc::UnboundedSender<Up>,
) {
    let job = Arc::new(job);
    let count = job.end - job.start;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let (fin_tx, fin_rx) = watch::channel::<Option<Arc<Expected>>>(None);
    let opening = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let tasks: Vec<_> = (job.start..job.end)
        .map(|i| {
            tokio::spawn(run_stream(
                job.clone(),
                i,
                ready_tx.clone(),
                fin_rx.clone(),
                opening.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let mut ready = Ready::default();
    while ready.connected + ready.failed < count {
        match ready_rx.recv().await {
            Some(true) => ready.connected += 1,
            Some(false) => ready.failed += 1,
            None => break,
        }
    }
    let _ = up.send(Up::Ready(
        serde_json::to_value(&ready).unwrap_or(Value::Null),
    ));

    let Some(Down::Finish(value)) = down.recv().await else {
        return;
    };
    let finish: Finish = match serde_json::from_value(value) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bad finish message: {e}");
            return;
        }
    };
    let max_seq = finish
        .acked
        .iter()
        .map(|a| a.seq as usize + 1)
        .max()
        .unwrap_or(0);
    let mut by_seq = vec![None; max_seq];
    let by_id = finish.acked.iter().map(|a| (a.id, a.seq)).collect();
    for acked in finish.acked {
        let seq = acked.seq as usize;
        by_seq[seq] = Some(acked);
    }
    let expected = Expected {
        by_seq,
        by_id,
        unacked: finish.unacked.into_iter().collect(),
        deadline: Instant::now() + Duration::from_millis(finish.settle_ms),
    };
    let _ = fin_tx.send(Some(Arc::new(expected)));

    let mut report = Report {
        streams: count,
        ..Report::default()
    };
    for task in tasks {
        if let Ok(r) = task.await {
            report.merge(r);
        }
    }
    let _ = up.send(Up::Done(
        serde_json::to_value(&report).unwrap_or(Value::Null),
    ));
}

/// One stream's record.
#[derive(Debug, Default)]
struct State {
    first_id: Option<u64>,
    seen: Vec<u64>,
    max_app_id: u64,
    gap_windows: Vec<(u64, u64)>,
    /// Load events without a sequence number in their data, received before the
    /// acknowledged list (id, arrived after a higher id).
    pending: Vec<(u64, bool)>,
    report: Report,
}

impl State {
    fn has(&self, seq: u32) -> bool {
        let (w, b) = (seq as usize / 64, seq % 64);
        self.seen.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    fn mark(&mut self, seq: u32) {
        let (w, b) = (seq as usize / 64, seq % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        self.seen[w] |= 1 << b;
    }

    /// Records load event `seq`; `late` when it arrived after an event with a higher id.
    fn record(&mut self, i: usize, seq: u32, id: u64, late: bool) {
        if self.has(seq) {
            self.report.duplicates += 1;
            self.example(format!("stream {i}: seq {seq} (id {id}) delivered twice"));
        } else {
            if late {
                self.report.out_of_order += 1;
                self.example(format!("stream {i}: seq {seq} (id {id}) out of order"));
            }
            self.mark(seq);
        }
    }

    /// Maps load events that carried no sequence number through the acknowledged ids.
    fn resolve_pending(&mut self, i: usize, expected: &Expected) {
        for (id, late) in std::mem::take(&mut self.pending) {
            match expected.by_id.get(&id) {
                Some(&seq) => self.record(i, seq, id, late),
                None => self.example(format!("stream {i}: id {id} was not acknowledged")),
            }
        }
    }

    fn example(&mut self, text: String) {
        if self.report.examples.len() < 3 {
            self.report.examples.push(text);
        }
    }
}

fn wants(target: &Target, topic: &Option<String>, client: &str) -> bool {
    match target {
        Target::All => true,
        Target::Topic(t) => topic.as_deref() == Some(t.as_str()),
        Target::Client(c) => c == client,
    }
}

/// Sequence numbers this stream should still receive (an announced `__gap` excuses those it
/// covers).
fn missing(
    state: &State,
    expected: &Expected,
    topic: &Option<String>,
    client: &str,
) -> HashSet<u32> {
    let Some(first) = state.first_id else {
        return HashSet::new();
    };
    expected
        .by_seq
        .iter()
        .flatten()
        .filter(|a| a.id > first && wants(&a.target, topic, client) && !state.has(a.seq))
        .filter(|a| {
            !state
                .gap_windows
                .iter()
                .any(|&(lo, hi)| a.id > lo && a.id < hi)
        })
        .map(|a| a.seq)
        .collect()
}

async fn run_stream(
    job: Arc<Job>,
    i: usize,
    ready: mpsc::UnboundedSender<bool>,
    mut fin: watch::Receiver<Option<Arc<Expected>>>,
    opening: Arc<Semaphore>,
) -> Report {
    let client = client_id(i);
    let topic = (job.topics > 0).then(|| format!("t{}", i % job.topics));
    let mut query = format!("clientId={client}");
    if let Some(t) = &topic {
        query.push_str(&format!("&topics={t}"));
    }
    if job.heartbeat_event {
        query.push_str("&heartbeat=event");
    }
    let from = Some(job.sources.addr(i));
    let mut st = State::default();
    let mut last_id = String::new();
    let mut expected: Option<Arc<Expected>> = None;
    let mut still_missing: HashSet<u32> = HashSet::new();
    let mut dropped_at: Option<Instant> = None;
    let mut first_failures = 0u32;
    let mut reported_ready = false;

    'outer: loop {
        if let Some(e) = &expected {
            if still_missing.is_empty() || Instant::now() >= e.deadline {
                break;
            }
        }
        // Open (the first connection waits for an opening slot).
        let mut permit = if reported_ready {
            None
        } else {
            opening.clone().acquire_owned().await.ok()
        };
        let opened = SseStream::open(&job.hub, from, &query, &last_id).await;
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                drop(permit);
                let key = match &e {
                    crate::error::Error::Status(code, _) => format!("status {code}"),
                    crate::error::Error::Timeout(what) => format!("timeout {what}"),
                    other => {
                        let text = other.to_string();
                        text.split(':').take(2).collect::<Vec<_>>().join(":")
                    }
                };
                *st.report.connect_errors.entry(key).or_default() += 1;
                if !reported_ready {
                    first_failures += 1;
                    if first_failures >= 3 {
                        reported_ready = true;
                        let _ = ready.send(false);
                    }
                }
                if expected.is_none() && fin.has_changed().unwrap_or(false) {
                    expected = fin.borrow_and_update().clone();
                    if let Some(e) = &expected {
                        st.resolve_pending(i, e);
                        still_missing = missing(&st, e, &topic, &client);
                    }
                }
                let pause = rand::thread_rng().gen_range(200..1000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        stream.parser.last_id.clone_from(&last_id);
        let mut conn_max_id = parse_id(&last_id).unwrap_or(0);
        let mut replay_left: Option<u64> = None;
        let drop_at = match (job.drop_ms, &expected) {
            (Some((lo, hi)), None) => {
                let ms = rand::thread_rng().gen_range(lo..=hi.max(lo));
                Instant::now() + Duration::from_millis(ms)
            }
            _ => Instant::now() + Duration::from_secs(365 * 24 * 3600),
        };
        let mut deadline = expected
            .as_ref()
            .map(|e| e.deadline)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        // A connection that goes silent for three heartbeats (and a margin) is dead: the
        // kernel may keep a socket the hub no longer holds, and an SDK would reconnect.
        let mut stall = Duration::from_secs(60);

        let end: &str = loop {
            let stall_at = stream.last_activity + stall;
            tokio::select! {
                block = stream.next_block() => {
                    let block = match block {
                        Ok(Some(b)) => b,
                        Ok(None) => break "eof",
                        Err(_) => break "error",
                    };
                    if let Some(id) = block.id.as_deref().and_then(parse_id) {
                        if id < conn_max_id {
                            st.report.id_regressions += 1;
                            st.example(format!("stream {i}: id {id} written after {conn_max_id}"));
                        }
                        conn_max_id = conn_max_id.max(id);
                    }
                    last_id.clone_from(&block.last_id);
                    let Some((name, data)) = block.event else { continue };
                    match name.as_str() {
                        "__connected" => {
                            if st.first_id.is_none() {
                                st.first_id = Some(block.id.as_deref().and_then(parse_id).unwrap_or(0));
                            }
                            if !reported_ready {
                                reported_ready = true;
                                let _ = ready.send(true);
                            }
                            drop(permit.take());
                            let count = serde_json::from_str::<Value>(&data)
                                .ok()
                                .and_then(|v| v.get("replayCount").and_then(Value::as_u64))
                                .unwrap_or(0);
                            replay_left = Some(count);
                            let heartbeat = serde_json::from_str::<Value>(&data)
                                .ok()
                                .and_then(|v| v.get("heartbeatSecs").and_then(Value::as_u64))
                                .unwrap_or(15);
                            stall = Duration::from_secs(heartbeat * 3 + 5);
                            if count == 0 {
                                if let Some(t) = dropped_at.take() {
                                    st.report.resync_ms.push(t.elapsed().as_secs_f32() * 1000.0);
                                }
                            }
                        }
                        "__gap" => {
                            st.report.gaps += 1;
                            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                            let from = v.get("lastEventId").and_then(Value::as_str).and_then(parse_id).unwrap_or(0);
                            let to = v.get("oldestAvailableId").and_then(Value::as_str).and_then(parse_id).unwrap_or(u64::MAX);
                            st.gap_windows.push((from, to));
                            if let Some(e) = &expected {
                                still_missing.retain(|&seq| {
                                    let id = e.by_seq.get(seq as usize).and_then(Option::as_ref).map_or(0, |a| a.id);
                                    !(id > from && id < to)
                                });
                                if still_missing.is_empty() {
                                    break 'outer;
                                }
                            }
                        }
                        "__error" => {
                            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                            let reason = v.get("reason").and_then(Value::as_str).unwrap_or("?").to_owned();
                            *st.report.hub_closed.entry(reason).or_default() += 1;
                        }
                        "__shutdown" => {
                            *st.report.hub_closed.entry("shutdown".into()).or_default() += 1;
                        }
                        LOAD_EVENT => {
                            let id = parse_id(&block.last_id).unwrap_or(0);
                            let late = id != 0 && id <= st.max_app_id;
                            st.report.received += 1;
                            st.report.last_event_unix_ms = unix_ms();
                            let seq = match data.trim().parse::<u32>() {
                                Ok(seq) => Some(seq),
                                Err(_) => expected.as_ref().and_then(|e| e.by_id.get(&id).copied()),
                            };
                            match seq {
                                Some(seq) => st.record(i, seq, id, late),
                                None if expected.is_none() => st.pending.push((id, late)),
                                None => st.example(format!("stream {i}: id {id} was not acknowledged")),
                            }
                            st.max_app_id = st.max_app_id.max(id);
                            if let Some(left) = replay_left.as_mut() {
                                if *left > 0 {
                                    *left -= 1;
                                    if *left == 0 {
                                        if let Some(t) = dropped_at.take() {
                                            st.report.resync_ms.push(t.elapsed().as_secs_f32() * 1000.0);
                                        }
                                    }
                                }
                            }
                            if let (Some(seq), true) = (seq, expected.is_some()) {
                                still_missing.remove(&seq);
                                if still_missing.is_empty() {
                                    break 'outer;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                () = sleep_until(drop_at) => {
                    st.report.drops += 1;
                    dropped_at = Some(Instant::now());
                    drop(stream);
                    let pause = Duration::from_millis(job.reconnect_delay_ms);
                    tokio::time::sleep(pause).await;
                    continue 'outer;
                }
                changed = fin.changed(), if expected.is_none() => {
                    if changed.is_err() {
                        break 'outer;
                    }
                    expected = fin.borrow_and_update().clone();
                    if let Some(e) = &expected {
                        deadline = e.deadline;
                        st.resolve_pending(i, e);
                        still_missing = missing(&st, e, &topic, &client);
                        if still_missing.is_empty() {
                            break 'outer;
                        }
                    }
                    // Keep this connection; no more drops after it ends.
                    continue;
                }
                () = sleep_until(stall_at) => {
                    if stream.last_activity + stall <= Instant::now() {
                        break "stalled";
                    }
                }
                () = sleep_until(deadline) => break 'outer,
            }
        };
        *st.report.hub_closed.entry(end.to_owned()).or_default() += 1;
        dropped_at = Some(Instant::now());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !reported_ready {
        let _ = ready.send(false);
    }
    finish_report(st, expected.as_deref(), &topic, &client, i)
}

fn finish_report(
    mut st: State,
    expected: Option<&Expected>,
    topic: &Option<String>,
    client: &str,
    i: usize,
) -> Report {
    let Some(first) = st.first_id else {
        st.report.never_connected = 1;
        return st.report;
    };
    let Some(expected) = expected else {
        return st.report;
    };
    let mut lost = 0;
    let mut gap_lost = 0;
    for acked in expected.by_seq.iter().flatten() {
        let mine = wants(&acked.target, topic, client);
        if st.has(acked.seq) {
            if !mine {
                st.report.misdelivered += 1;
                let text = format!(
                    "stream {i}: seq {} delivered but not addressed here",
                    acked.seq
                );
                st.example(text);
            }
            continue;
        }
        if !mine || acked.id <= first {
            continue;
        }
        if st
            .gap_windows
            .iter()
            .any(|&(a, b)| acked.id > a && acked.id < b)
        {
            gap_lost += 1;
        } else {
            lost += 1;
            if lost == 1 {
                let text = format!(
                    "stream {i}: seq {} (id {}) never arrived",
                    acked.seq, acked.id
                );
                st.example(text);
            }
        }
    }
    for (w, word) in st.seen.iter().enumerate() {
        for b in 0..64u32 {
            if word & (1u64 << b) != 0 {
                let seq = w as u32 * 64 + b;
                let acked = expected
                    .by_seq
                    .get(seq as usize)
                    .is_some_and(Option::is_some);
                if !acked && expected.unacked.contains(&seq) {
                    st.report.unacked_received += 1;
                }
            }
        }
    }
    st.report.lost = lost;
    st.report.gap_lost = gap_lost;
    st.report.incomplete_streams = usize::from(lost + gap_lost > 0);
    st.report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(acked: Vec<Acked>) -> Expected {
        let by_id = acked.iter().map(|a| (a.id, a.seq)).collect();
        let mut by_seq = vec![None; acked.len()];
        for a in acked {
            let seq = a.seq as usize;
            by_seq[seq] = Some(a);
        }
        Expected {
            by_seq,
            by_id,
            unacked: HashSet::new(),
            deadline: Instant::now(),
        }
    }

    fn all(seq: u32, id: u64) -> Acked {
        Acked {
            seq,
            id,
            target: Target::All,
        }
    }

    #[test]
    fn a_complete_stream_passes_and_each_fault_is_counted() {
        let e = expected(vec![all(0, 10), all(1, 11), all(2, 12), all(3, 13)]);
        let mut st = State {
            first_id: Some(10),
            ..State::default()
        };
        // seq 0 (id 10) is before the first __connected: not owed.
        st.record(0, 1, 11, false);
        st.record(0, 2, 12, false);
        st.record(0, 3, 13, false);
        let r = finish_report(st, Some(&e), &None, "ld0", 0);
        assert_eq!(
            (r.lost, r.duplicates, r.out_of_order, r.misdelivered),
            (0, 0, 0, 0)
        );

        let mut st = State {
            first_id: Some(10),
            ..State::default()
        };
        st.record(0, 1, 11, false);
        st.record(0, 1, 11, true);
        st.record(0, 3, 13, false);
        let r = finish_report(st, Some(&e), &None, "ld0", 0);
        assert_eq!((r.lost, r.duplicates, r.incomplete_streams), (1, 1, 1));
    }

    #[test]
    fn a_gap_excuses_what_it_covers_and_targets_are_respected() {
        let topic = Acked {
            seq: 2,
            id: 12,
            target: Target::Topic("t1".into()),
        };
        let e = expected(vec![all(0, 10), all(1, 11), topic]);
        let mut st = State {
            first_id: Some(9),
            gap_windows: vec![(9, 11)],
            ..State::default()
        };
        st.record(0, 1, 11, false);
        st.record(0, 2, 12, false);
        let r = finish_report(st, Some(&e), &Some("t0".into()), "ld0", 0);
        assert_eq!((r.lost, r.gap_lost, r.misdelivered), (0, 1, 1));
    }

    #[test]
    fn events_without_a_sequence_resolve_through_acknowledged_ids() {
        let e = expected(vec![all(0, 10), all(1, 11)]);
        let mut st = State {
            first_id: Some(9),
            pending: vec![(11, false), (10, true)],
            ..State::default()
        };
        st.resolve_pending(0, &e);
        let r = finish_report(st, Some(&e), &None, "ld0", 0);
        assert_eq!((r.lost, r.out_of_order, r.duplicates), (0, 1, 0));
    }
}
