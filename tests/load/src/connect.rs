//! `connect`: open N streams as fast as possible with C in flight; time to open them all,
//! per-stream latency to `__connected`, failures, and how many took over a second (a dropped
//! SYN costs a 1 s retransmit, the sign of a short listen backlog).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::net::{Hub, Sources, SseStream};
use crate::report::{Dist, Outcome};
use crate::shard::{self, Down, Job as ShardJob, Up};
use crate::streams::{client_id, unix_ms};

/// `connect`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Streams to open.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Connects in flight at once (over all workers).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Most failed opens allowed.
    #[arg(long, default_value_t = 0)]
    pub max_failures: usize,
    /// Most opens allowed to take over one second (unchecked when absent).
    #[arg(long)]
    pub max_slow: Option<usize>,
}

/// One shard's streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    hub: Hub,
    sources: Sources,
    start: usize,
    end: usize,
    concurrency: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ShardReport {
    opened: usize,
    failures: BTreeMap<String, usize>,
    latency_ms: Vec<f32>,
    first_start_unix_ms: u64,
    last_open_unix_ms: u64,
}

/// Runs one shard: opens every stream, holds them until `Finish`.
pub async fn shard(
    job: Job,
    mut down: mpsc::UnboundedReceiver<Down>,
    up: mpsc::UnboundedSender<Up>,
) {
    let slots = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let mut report = ShardReport {
        first_start_unix_ms: unix_ms(),
        ..ShardReport::default()
    };
    let tasks: Vec<_> = (job.start..job.end)
        .map(|i| {
            let (hub, slots) = (job.hub.clone(), slots.clone());
            let from = Some(job.sources.addr(i));
            tokio::spawn(async move {
                let _permit = slots.acquire_owned().await;
                let start = Instant::now();
                let query = format!("clientId={}", client_id(i));
                let result = async {
                    let mut s = SseStream::open(&hub, from, &query, "").await?;
                    s.connected().await?;
                    Ok::<_, crate::error::Error>(s)
                }
                .await;
                (start.elapsed(), unix_ms(), result)
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        match task.await {
            Ok((took, at, Ok(stream))) => {
                report.opened += 1;
                report.latency_ms.push(took.as_secs_f32() * 1000.0);
                report.last_open_unix_ms = report.last_open_unix_ms.max(at);
                held.push(stream);
            }
            Ok((_, _, Err(e))) => {
                let key = match e {
                    crate::error::Error::Status(code, _) => format!("status {code}"),
                    other => other.to_string(),
                };
                *report.failures.entry(key).or_default() += 1;
            }
            Err(e) => *report.failures.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    let _ = up.send(Up::Ready(Value::Null));
    let _ = down.recv().await;
    drop(held);
    let _ = up.send(Up::Done(
        serde_json::to_value(&report).unwrap_or(Value::Null),
    ));
}

/// Runs `connect`.
pub async fn run(hub: Hub, sources: Sources, per_process: usize, args: Args) -> bool {
    let mut out = Outcome::new("connect");
    let ranges = shard::split(args.count, per_process);
    let per_shard = args.concurrency.div_ceil(ranges.len());
    let jobs = ranges
        .into_iter()
        .map(|r| {
            ShardJob::Connect(Job {
                hub: hub.clone(),
                sources,
                start: r.start,
                end: r.end,
                concurrency: per_shard,
            })
        })
        .collect();
    let mut shards = match shard::start(jobs) {
        Ok(s) => s,
        Err(e) => {
            out.check(false, format!("cannot start workers: {e}"));
            return out.finish();
        }
    };
    // Every shard holds its streams until all are open, so the hub sees them all at once.
    for s in &mut shards {
        if let Err(e) = s.ready().await {
            out.check(false, format!("worker: {e}"));
        }
    }
    for s in &shards {
        s.finish(Value::Null);
    }
    let mut total = ShardReport {
        first_start_unix_ms: u64::MAX,
        ..ShardReport::default()
    };
    for s in &mut shards {
        match s.done().await.map(serde_json::from_value::<ShardReport>) {
            Ok(Ok(r)) => {
                total.opened += r.opened;
                total.latency_ms.extend(r.latency_ms);
                total.first_start_unix_ms = total.first_start_unix_ms.min(r.first_start_unix_ms);
                total.last_open_unix_ms = total.last_open_unix_ms.max(r.last_open_unix_ms);
                for (k, v) in r.failures {
                    *total.failures.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => out.check(false, format!("worker report: {e}")),
            Err(e) => out.check(false, format!("worker: {e}")),
        }
    }
    let all_ms = total
        .last_open_unix_ms
        .saturating_sub(total.first_start_unix_ms);
    let slow = total.latency_ms.iter().filter(|&&ms| ms > 1000.0).count();
    let mut latencies: Vec<f64> = total.latency_ms.iter().map(|&x| f64::from(x)).collect();
    let latency = Dist::of(&mut latencies);
    let failed: usize = total.failures.values().sum();
    out.line(format!(
        "{} of {} streams open ({} in flight) in {all_ms} ms",
        total.opened, args.count, args.concurrency
    ));
    out.line(format!("open-to-__connected: {}", latency.show("ms")));
    out.line(format!(
        "over 1 s (SYN retransmits?): {slow}; failures: {failed} {:?}",
        total.failures
    ));
    out.set("count", args.count);
    out.set("concurrency", args.concurrency);
    out.set("opened", total.opened);
    out.set("open_all_ms", all_ms);
    out.set("latency_ms", latency);
    out.set("slow_over_1s", slow);
    out.set("failed", failed);
    out.set("failure_kinds", &total.failures);
    out.check(
        failed <= args.max_failures,
        format!(
            "{failed} streams failed to open (allowed {})",
            args.max_failures
        ),
    );
    if let Some(max) = args.max_slow {
        out.check(
            slow <= max,
            format!("{slow} opens took over 1 s (allowed {max})"),
        );
    }
    out.finish()
}
