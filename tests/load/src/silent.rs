//! `silent`: sockets that never complete a request, while probes check the hub still answers.
//!
//! Three flavours, assigned round-robin from `--flavours`:
//! - `idle`: connect and send nothing;
//! - `drip`: send a request head one byte every `--drip-secs` (header lines repeat forever,
//!   so the head never ends);
//! - `body`: send a complete `POST /publish` head with `Content-Length` and never the body.
//!
//! Each socket watches for the hub closing it (EOF, reset, or a failed write) and records
//! the time from open to close, and the status line if the hub answered before closing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep_until, Instant};

use crate::net::{connect, Hub, Sources, SseStream};
use crate::report::{progress, Dist, Outcome};
use crate::shard::{self, Down, Job as ShardJob, Up};
use crate::streams::unix_ms;

/// A silent socket's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Flavour {
    /// Send nothing.
    Idle,
    /// Drip a never-ending request head.
    Drip,
    /// A POST head whose body never comes.
    Body,
}

/// `silent`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Silent sockets to open.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Seconds to hold them open after the opening (probing every second).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Mix of flavours, assigned round-robin.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,drip,body"
    )]
    pub flavours: Vec<Flavour>,
    /// Seconds between two dripped bytes.
    #[arg(long, default_value_t = 2)]
    pub drip_secs: u64,
    /// Fail if any silent socket is still open this many seconds after it was opened (the
    /// hold is extended to cover it).
    #[arg(long)]
    pub expect_closed_within: Option<u64>,
    /// Fail if a `/healthz` or `/events` probe gets no answer within `--probe-timeout`.
    #[arg(long)]
    pub expect_healthy: bool,
    /// Seconds a probe may take.
    #[arg(long, default_value_t = 3)]
    pub probe_timeout: u64,
    /// Sockets connecting at once during the opening (keep it below the hub's listen backlog:
    /// a connect the kernel completed but the hub's queue dropped never reaches the hub).
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
}

/// One shard's sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    hub: Hub,
    sources: Sources,
    start: usize,
    end: usize,
    flavours: Vec<Flavour>,
    drip_ms: u64,
    concurrency: usize,
    /// Sockets stop watching at this wall-clock time (Unix ms) after their opening.
    hold_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ShardReport {
    opened: usize,
    open_failed: BTreeMap<String, usize>,
    /// Open-to-close times of sockets the hub closed, ms.
    closed_ms: Vec<f32>,
    /// How many closed sockets got a status line first, by status line.
    answered: BTreeMap<String, usize>,
    /// Sockets still open at the end and the longest such age, ms.
    still_open: usize,
    still_open_max_age_ms: f32,
    /// Per flavour: opened, closed.
    by_flavour: BTreeMap<String, (usize, usize)>,
}

enum SocketEnd {
    Failed(String),
    Closed {
        after: Duration,
        answer: Option<String>,
    },
    Open {
        age: Duration,
    },
}

/// Runs one shard: opens the sockets, reports `Ready`, holds them for `hold_ms`.
pub async fn shard(
    job: Job,
    mut down: mpsc::UnboundedReceiver<Down>,
    up: mpsc::UnboundedSender<Up>,
) {
    let job = Arc::new(job);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = down.recv().await;
        let _ = stop_tx.send(true);
    });
    let slots = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = (job.start..job.end)
        .map(|i| {
            let (job, slots, opened) = (job.clone(), slots.clone(), opened_tx.clone());
            let flavour = job.flavours[i % job.flavours.len()];
            let stop = stop_rx.clone();
            (
                flavour,
                tokio::spawn(socket(job, i, flavour, slots, opened, stop)),
            )
        })
        .collect();
    drop(opened_tx);
    let mut ready = 0;
    while ready < tasks.len() && opened_rx.recv().await.is_some() {
        ready += 1;
    }
    let _ = up.send(Up::Ready(json!({ "attempted": ready })));
    let mut report = ShardReport::default();
    for (flavour, task) in tasks {
        let entry = report
            .by_flavour
            .entry(format!("{flavour:?}").to_lowercase())
            .or_default();
        match task.await {
            Ok(SocketEnd::Failed(why)) => *report.open_failed.entry(why).or_default() += 1,
            Ok(SocketEnd::Closed { after, answer }) => {
                entry.0 += 1;
                entry.1 += 1;
                report.opened += 1;
                report.closed_ms.push(after.as_secs_f32() * 1000.0);
                if let Some(line) = answer {
                    *report.answered.entry(line).or_default() += 1;
                }
            }
            Ok(SocketEnd::Open { age }) => {
                entry.0 += 1;
                report.opened += 1;
                report.still_open += 1;
                report.still_open_max_age_ms =
                    report.still_open_max_age_ms.max(age.as_secs_f32() * 1000.0);
            }
            Err(e) => *report.open_failed.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    let _ = up.send(Up::Done(
        serde_json::to_value(&report).unwrap_or(Value::Null),
    ));
}

async fn socket(
    job: Arc<Job>,
    i: usize,
    flavour: Flavour,
    slots: Arc<Semaphore>,
    opened: mpsc::UnboundedSender<()>,
    mut stop: watch::Receiver<bool>,
) -> SocketEnd {
    let permit = slots.acquire_owned().await;
    let result = connect(job.hub.addr, Some(job.sources.addr(i))).await;
    drop(permit);
    let _ = opened.send(());
    let mut stream = match result {
        Ok(s) => s,
        Err(e) => {
            let text = e.to_string();
            return SocketEnd::Failed(text.split(" (").next().unwrap_or(&text).to_owned());
        }
    };
    let start = Instant::now();
    let now_ms = unix_ms();
    let hold = Duration::from_millis(job.hold_ms.saturating_sub(now_ms));
    let end_at = start + hold;
    let host = job.hub.addr.to_string();
    let head: Vec<u8> = match flavour {
        Flavour::Idle => Vec::new(),
        Flavour::Drip => format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n").into_bytes(),
        Flavour::Body => format!(
            "POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        .into_bytes(),
    };
    if flavour == Flavour::Body && stream.write_all(&head).await.is_err() {
        return SocketEnd::Closed {
            after: start.elapsed(),
            answer: None,
        };
    }
    const FILLER: &[u8] = b"X-Drip: 1\r\n";
    let mut dripped = 0usize;
    let drip_every = Duration::from_millis(job.drip_ms.max(1));
    let mut next_drip = start + drip_every;
    let mut buf = [0u8; 512];
    let mut answer: Option<String> = None;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return SocketEnd::Closed { after: start.elapsed(), answer },
                Ok(n) => {
                    if answer.is_none() {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        answer = text.lines().next().map(|l| l.trim().to_owned());
                    }
                }
            },
            () = sleep_until(next_drip), if flavour == Flavour::Drip => {
                let byte = if dripped < head.len() {
                    head[dripped]
                } else {
                    FILLER[(dripped - head.len()) % FILLER.len()]
                };
                dripped += 1;
                if stream.write_all(&[byte]).await.is_err() {
                    return SocketEnd::Closed { after: start.elapsed(), answer };
                }
                next_drip += drip_every;
            }
            () = sleep_until(end_at) => return SocketEnd::Open { age: start.elapsed() },
            _ = stop.changed() => return SocketEnd::Open { age: start.elapsed() },
        }
    }
}

#[derive(Debug, Default)]
struct Probes {
    healthz_ms: Vec<f64>,
    events_ms: Vec<f64>,
    failures: Vec<String>,
}

async fn probe_healthz(hub: Hub, timeout: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let fut = async {
        let mut conn = crate::net::Conn::open(&hub, None).await?;
        conn.call(&hub, "GET", "/healthz", None).await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok((200, _))) => Ok(start.elapsed().as_secs_f64() * 1000.0),
        Ok(Ok((status, _))) => Err(format!("healthz: status {status}")),
        Ok(Err(e)) => Err(format!("healthz: {e}")),
        Err(_) => Err(format!("healthz: no answer within {}s", timeout.as_secs())),
    }
}

async fn probe_events(hub: Hub, timeout: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let fut = async {
        let mut stream = SseStream::open(&hub, None, "clientId=probe", "").await?;
        stream.connected().await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(_)) => Ok(start.elapsed().as_secs_f64() * 1000.0),
        Ok(Err(e)) => Err(format!("events: {e}")),
        Err(_) => Err(format!(
            "events: no __connected within {}s",
            timeout.as_secs()
        )),
    }
}

/// Runs `silent`.
pub async fn run(hub: Hub, sources: Sources, per_process: usize, args: Args) -> bool {
    let mut out = Outcome::new("silent");
    if args.flavours.is_empty() {
        out.check(false, "no flavours");
        return out.finish();
    }
    let hold_secs = match args.expect_closed_within {
        Some(s) => args.duration.max(s + 3),
        None => args.duration,
    };
    // Every socket holds until this time; the opening gets a generous allowance.
    let opening_allowance = 30 + args.count as u64 / 500;
    let hold_ms = unix_ms() + (opening_allowance + hold_secs) * 1000;
    let jobs = shard::split(args.count, per_process)
        .into_iter()
        .map(|r| {
            ShardJob::Silent(Job {
                hub: hub.clone(),
                sources,
                start: r.start,
                end: r.end,
                flavours: args.flavours.clone(),
                drip_ms: args.drip_secs * 1000,
                concurrency: args
                    .concurrency
                    .div_ceil(args.count.div_ceil(per_process).max(1)),
                hold_ms,
            })
        })
        .collect();
    let opening = Instant::now();
    progress(format!("opening {} silent sockets", args.count));
    let mut shards = match shard::start(jobs) {
        Ok(s) => s,
        Err(e) => {
            out.check(false, format!("cannot start workers: {e}"));
            return out.finish();
        }
    };
    for s in &mut shards {
        if let Err(e) = s.ready().await {
            out.check(false, format!("worker: {e}"));
            return out.finish();
        }
    }
    let opening_ms = opening.elapsed().as_millis();
    out.line(format!(
        "opened {} silent sockets ({:?}) from {} source addresses from {} in {opening_ms} ms; holding {hold_secs} s, probing every second",
        args.count, args.flavours, sources.count, sources.first
    ));

    // Probe every second while the sockets are held.
    let probes = Arc::new(std::sync::Mutex::new(Probes::default()));
    let timeout = Duration::from_secs(args.probe_timeout);
    let probe_end = Instant::now() + Duration::from_secs(hold_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut running = Vec::new();
    while Instant::now() < probe_end {
        tick.tick().await;
        let (p, h) = (probes.clone(), hub.clone());
        running.push(tokio::spawn(async move {
            let (a, b) = tokio::join!(probe_healthz(h.clone(), timeout), probe_events(h, timeout));
            let Ok(mut p) = p.lock() else { return };
            match a {
                Ok(ms) => p.healthz_ms.push(ms),
                Err(e) => p.failures.push(e),
            }
            match b {
                Ok(ms) => p.events_ms.push(ms),
                Err(e) => p.failures.push(e),
            }
        }));
    }
    for task in running {
        let _ = task.await;
    }
    progress("probing done; collecting socket reports");
    for s in &shards {
        s.finish(Value::Null);
    }

    let mut total = ShardReport::default();
    for s in &mut shards {
        match s.done().await {
            Ok(v) => match serde_json::from_value::<ShardReport>(v) {
                Ok(r) => {
                    total.opened += r.opened;
                    total.closed_ms.extend(r.closed_ms);
                    total.still_open += r.still_open;
                    total.still_open_max_age_ms =
                        total.still_open_max_age_ms.max(r.still_open_max_age_ms);
                    for (k, v) in r.open_failed {
                        *total.open_failed.entry(k).or_default() += v;
                    }
                    for (k, v) in r.answered {
                        *total.answered.entry(k).or_default() += v;
                    }
                    for (k, (a, b)) in r.by_flavour {
                        let e = total.by_flavour.entry(k).or_default();
                        e.0 += a;
                        e.1 += b;
                    }
                }
                Err(e) => out.check(false, format!("worker report: {e}")),
            },
            Err(e) => out.check(false, format!("worker: {e}")),
        }
    }
    let closed = Dist::of(
        &mut total
            .closed_ms
            .iter()
            .map(|&x| f64::from(x) / 1000.0)
            .collect::<Vec<_>>(),
    );
    let p = match probes.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(_) => Probes::default(),
    };
    let (mut h, mut e) = (p.healthz_ms, p.events_ms);
    let healthz = Dist::of(&mut h);
    let events = Dist::of(&mut e);
    let failed: usize = total.open_failed.values().sum();
    out.line(format!(
        "opened {} (failed to open {failed}: {:?})",
        total.opened, total.open_failed
    ));
    out.line(format!(
        "closed by the hub: {} (open-to-close seconds: {})",
        closed.count,
        closed.show("s")
    ));
    out.line(format!(
        "still open at the end: {} (oldest {:.1} s)",
        total.still_open,
        total.still_open_max_age_ms / 1000.0
    ));
    out.line(format!(
        "per flavour (opened, closed): {:?}; answers before close: {:?}",
        total.by_flavour, total.answered
    ));
    out.line(format!("probe /healthz: {}", healthz.show("ms")));
    out.line(format!("probe /events __connected: {}", events.show("ms")));
    out.line(format!(
        "probe failures: {} {:?}",
        p.failures.len(),
        p.failures.iter().take(3).collect::<Vec<_>>()
    ));
    out.set("count", args.count);
    out.set("opened", total.opened);
    out.set("open_failed", &total.open_failed);
    out.set("opening_ms", opening_ms as u64);
    out.set("closed", closed.count);
    out.set("closed_after_s", closed);
    out.set("still_open", total.still_open);
    out.set(
        "still_open_max_age_s",
        f64::from(total.still_open_max_age_ms) / 1000.0,
    );
    out.set("by_flavour", &total.by_flavour);
    out.set("answered", &total.answered);
    out.set("probe_healthz_ms", healthz);
    out.set("probe_events_ms", events);
    out.set("probe_failures", p.failures.len());
    out.set(
        "probe_failure_examples",
        p.failures.iter().take(5).collect::<Vec<_>>(),
    );

    if let Some(secs) = args.expect_closed_within {
        let limit = secs as f64;
        let late = total
            .closed_ms
            .iter()
            .filter(|&&ms| f64::from(ms) / 1000.0 > limit)
            .count();
        out.check(
            total.still_open == 0,
            format!(
                "{} silent sockets still open after {:.1} s (expected closed within {secs} s)",
                total.still_open,
                total.still_open_max_age_ms / 1000.0
            ),
        );
        out.check(
            late == 0,
            format!("{late} silent sockets closed later than {secs} s"),
        );
    }
    if args.expect_healthy {
        out.check(
            p.failures.is_empty(),
            format!(
                "{} probes got no answer: {:?}",
                p.failures.len(),
                p.failures.iter().take(3).collect::<Vec<_>>()
            ),
        );
        out.check(healthz.count > 0, "no /healthz probe answered");
    }
    out.check(
        total.opened > 0 || args.count == 0,
        "no silent socket could be opened",
    );
    out.finish()
}
