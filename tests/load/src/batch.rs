//! `batch`: N streams, one POST of the largest batch of tiny events the hub accepts, sent to
//! everyone, while a bystander publishes one event every 20 ms and times each answer.
//!
//! The batch's events are `{"event":"n"}` (no data: 14 bytes each, as many as fit in the body
//! limit); streams identify them by the ids the hub answers. The largest accepted length is
//! found without publishing: a batch whose last element is invalid (`__probe`) is answered
//! `400 invalid_event` when its length is accepted and `413`/another 400 when it is not.
//!
//! The streams live in worker processes (at least two: `shard` runs a lone shard in this
//! process), so that parsing every delivered event does not delay the bystander here: its
//! timings are then the hub's. `--in-process` is the exception, for comparison.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::net::{parse_id, rss_bytes, Client, Hub, Sources};
use crate::publish::{check_streams, finish_streams, publish, start_streams};
use crate::report::{progress, Dist, Outcome};
use crate::streams::{self, unix_ms, Acked, Target, LOAD_EVENT};

/// `batch`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// SSE streams receiving the batch.
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// Events in the batch (default: the largest the hub accepts within `--body-limit`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// The hub's request body limit in bytes.
    #[arg(long, default_value_t = 65_536)]
    pub body_limit: usize,
    /// The hub's process id, to read its RSS from /proc.
    #[arg(long)]
    pub hub_pid: Option<u32>,
    /// Milliseconds between the bystander's single publishes.
    #[arg(long, default_value_t = 20)]
    pub single_every_ms: u64,
    /// Seconds streams get to receive the whole batch.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// Seconds to wait after delivery before reading the hub's RSS "after".
    #[arg(long, default_value_t = 3)]
    pub rss_settle_secs: u64,
    /// Fail if a concurrent single publish took longer than this many ms (unchecked when
    /// absent: a wall-clock bound for full-size runs, not for a loaded test machine).
    #[arg(long)]
    pub max_single_ms: Option<f64>,
    /// Streams connecting at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Keep the streams in this process (up to `--per-process` of them) rather than in worker
    /// processes: the bystander's timings then include this process parsing every event.
    #[arg(long)]
    pub in_process: bool,
}

fn batch_body(n: usize, probe: bool) -> Bytes {
    let mut body = String::with_capacity(n * 14 + 2);
    body.push('[');
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        if probe && i + 1 == n {
            body.push_str(r#"{"event":"__probe"}"#);
        } else {
            body.push_str(r#"{"event":""#);
            body.push_str(LOAD_EVENT);
            body.push_str(r#""}"#);
        }
    }
    body.push(']');
    Bytes::from(body)
}

/// Whether the hub accepts a batch of `n` (checked with an invalid last element, so nothing
/// is published).
async fn length_accepted(client: &mut Client, n: usize) -> Result<bool, String> {
    let (status, answer) = client
        .call("POST", "/publish", Some(batch_body(n, true)))
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&status) {
        return Err(format!(
            "the hub accepted a reserved event name (status {status})"
        ));
    }
    let code = serde_json::from_slice::<Value>(&answer).ok().and_then(|v| {
        v.pointer("/error/code")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    Ok(status == 400 && code.as_deref() == Some("invalid_event"))
}

/// Runs `batch`.
pub async fn run(hub: Hub, sources: Sources, per_process: usize, args: Args) -> bool {
    let mut out = Outcome::new("batch");
    // The batch call itself may take minutes on a hub that expands it per recipient.
    let mut client =
        Client::new(hub.clone(), None).with_timeout(Duration::from_secs(args.settle_secs.max(60)));
    let rss = |pid: Option<u32>| pid.and_then(rss_bytes);

    // The largest batch by bytes, then the largest the hub accepts.
    // 14 bytes per element, plus the brackets, minus a comma; the probe element is 6 longer.
    let by_bytes = args.body_limit.saturating_sub(7) / 14;
    let size = match args.batch_size {
        Some(n) => n,
        None => {
            progress("probing the largest accepted batch");
            let (mut lo, mut hi) = (0usize, by_bytes);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                match length_accepted(&mut client, mid).await {
                    Ok(true) => lo = mid,
                    Ok(false) => hi = mid - 1,
                    Err(e) => {
                        out.check(false, format!("probing the batch limit: {e}"));
                        return out.finish();
                    }
                }
            }
            lo
        }
    };
    out.check(size > 0, "the hub accepts no batch at all");
    if size == 0 {
        return out.finish();
    }
    let body = batch_body(size, false);
    out.line(format!(
        "batch of {size} events ({} bytes; {by_bytes} would fit in {} bytes)",
        body.len(),
        args.body_limit
    ));
    out.set("batch_size", size);
    out.set("batch_bytes", body.len());

    let base = streams::Job {
        hub: hub.clone(),
        sources,
        start: 0,
        end: 0,
        heartbeat_event: false,
        topics: 0,
        drop_ms: None,
        reconnect_delay_ms: 0,
        concurrency: args.concurrency,
    };
    // At least two shards, so that each is a worker process (see the module docs).
    let per_process = if args.in_process {
        per_process
    } else {
        per_process.min(args.streams.div_ceil(2)).max(1)
    };
    let opening = Instant::now();
    let Some((mut shards, connected)) =
        start_streams(&mut out, &base, args.streams, per_process).await
    else {
        return out.finish();
    };
    let in_workers = shards.iter().all(|s| s.pid().is_some());
    out.line(format!(
        "{connected} of {} streams connected in {} ms, in {}",
        args.streams,
        opening.elapsed().as_millis(),
        if in_workers {
            format!("{} worker processes", shards.len())
        } else {
            "this process".to_owned()
        }
    ));
    out.set("streams_in_workers", in_workers);
    let rss_before = rss(args.hub_pid);

    // RSS sampler and bystander publisher.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), args.hub_pid);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(r) = rss(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let single_ms = Arc::new(Mutex::new(Vec::<f64>::new()));
    let single_errors = Arc::new(AtomicU64::new(0));
    let bystander = {
        let (stop, times, errors, hub) = (
            stop.clone(),
            single_ms.clone(),
            single_errors.clone(),
            hub.clone(),
        );
        let every = Duration::from_millis(args.single_every_ms.max(1));
        tokio::spawn(async move {
            let mut client = Client::new(hub, None);
            let body = serde_json::json!({"event": "bystander", "topic": "bystander", "data": 0});
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let start = Instant::now();
                match publish(&mut client, &body).await {
                    Ok((_, Some(_))) => {
                        if let Ok(mut t) = times.lock() {
                            t.push(start.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    progress(format!("posting the batch of {size}"));
    let batch_start_unix = unix_ms();
    let started = Instant::now();
    let answer = client.call("POST", "/publish", Some(body)).await;
    let batch_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut acked = Vec::new();
    let mut unacked = Vec::new();
    match answer {
        Ok((status, answer)) if (200..300).contains(&status) => {
            let results: Vec<Value> = serde_json::from_slice(&answer).unwrap_or_default();
            for (seq, r) in results.iter().enumerate() {
                match r.get("id").and_then(Value::as_str).and_then(parse_id) {
                    Some(id) => acked.push(Acked {
                        seq: seq as u32,
                        id,
                        target: Target::All,
                    }),
                    None => unacked.push(seq as u32),
                }
            }
            out.check(
                results.len() == size,
                format!(
                    "the batch answer has {} results for {size} events",
                    results.len()
                ),
            );
        }
        Ok((status, answer)) => out.check(
            false,
            format!(
                "the batch was refused: {status} {}",
                String::from_utf8_lossy(&answer)
            ),
        ),
        Err(e) => out.check(false, format!("the batch call failed: {e}")),
    }
    progress(format!("the batch call returned after {batch_ms:.0} ms"));
    out.line(format!("batch call took {batch_ms:.1} ms"));
    out.set("batch_call_ms", (batch_ms * 10.0).round() / 10.0);

    let report = finish_streams(
        &mut out,
        &mut shards,
        acked,
        unacked,
        args.settle_secs * 1000,
    )
    .await;
    let fanout_ms = report.last_event_unix_ms.saturating_sub(batch_start_unix);
    stop.store(true, Ordering::Relaxed);
    let _ = bystander.await;
    let _ = sampler.await;
    tokio::time::sleep(Duration::from_secs(args.rss_settle_secs)).await;
    let rss_after = rss(args.hub_pid);
    let single = {
        let mut t = single_ms.lock().map(|t| t.clone()).unwrap_or_default();
        Dist::of(&mut t)
    };
    out.line(format!(
        "every stream's last batch event arrived {fanout_ms} ms after the POST began"
    ));
    out.line(format!(
        "concurrent single publishes (every {} ms): {}; failed {}",
        args.single_every_ms,
        single.show("ms"),
        single_errors.load(Ordering::Relaxed)
    ));
    let mib = |b: Option<u64>| {
        b.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
            .unwrap_or("-".into())
    };
    let peak = peak.load(Ordering::Relaxed);
    out.line(format!(
        "hub RSS before {} / peak {} / after {}",
        mib(rss_before),
        mib(args.hub_pid.map(|_| peak)),
        mib(rss_after)
    ));
    out.set("fanout_ms", fanout_ms);
    out.set("single_publish_ms", single);
    out.set(
        "single_publish_failed",
        single_errors.load(Ordering::Relaxed),
    );
    out.set("rss_before", rss_before);
    out.set("rss_peak", args.hub_pid.map(|_| peak));
    out.set("rss_after", rss_after);
    check_streams(&mut out, &report);
    if let Some(max) = args.max_single_ms {
        out.check(
            single.max <= max,
            format!(
                "a concurrent single publish took {} ms (allowed {max})",
                single.max
            ),
        );
    }
    out.check(
        report.incomplete_streams == 0,
        format!(
            "{} streams did not receive the whole batch",
            report.incomplete_streams
        ),
    );
    out.finish()
}
